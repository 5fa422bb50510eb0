"""Per-video reconstruction + alignment benchmark: time split of SfM (decode, extract, match, map) per video and
of aligning them (load, retrieve, match, lift, sim3, refine, frame), frames/s, peak memory.

    python benchmarks/reconstruct.py [--quick] [--videos 2] [--frames 40]
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from recon import align as align_stage
from recon import reconstruct as recon_stage
from recon import sampling as frames_stage
from synth import WorldConfig, generate_world


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="2 short videos, 30 frames each")
    ap.add_argument("--videos", type=int, default=3)
    ap.add_argument("--frames", type=int, default=60)
    ap.add_argument("--seconds", type=float, default=24.0)
    args = ap.parse_args()
    if args.quick:
        args.videos, args.frames, args.seconds = 2, 30, 12.0
    table = Table(title=f"per-video reconstruction ({args.frames} frames sampled per video)")
    for col in ("video", "decode s", "extract s", "match s", "map s", "total s", "frames/s", "registered"):
        table.add_column(col, justify="right")
    with tempfile.TemporaryDirectory() as tmp:
        world = WorldConfig(scenes=1, videos=args.videos, seconds=args.seconds, fps=5.0)
        (scene_dir,) = generate_world(Path(tmp), world)
        for video in sorted((scene_dir / "videos").glob("*.mp4")):
            t = time.perf_counter()
            frames_stage.main(frames_stage.FramesConfig(num_frames=args.frames), video, Path(tmp) / "f" / video.stem)
            decode = time.perf_counter() - t
            report = recon_stage.main(
                recon_stage.ReconstructConfig(), Path(tmp) / "f" / video.stem, Path(tmp) / "s" / video.stem
            )
            s = report["seconds"]
            total = decode + sum(s.values())
            table.add_row(
                video.stem,
                f"{decode:.1f}",
                f"{s['extract']:.1f}",
                f"{s['match']:.1f}",
                f"{s['map']:.1f}",
                f"{total:.1f}",
                f"{report['frames_sampled'] / total:.2f}",
                f"{report['registered']}/{report['frames_sampled']}",
            )
        sfm = {d.name: d for d in sorted((Path(tmp) / "s").iterdir())}
        seconds = align_stage.main(align_stage.AlignConfig(), sfm, Path(tmp) / "align")["seconds"]
    console = Console()
    console.print(table)
    split = Table(title=f"aligning the {len(sfm)} videos (seconds; match/lift/sim3 are the node pairs' own time)")
    for col in seconds:
        split.add_column(col, justify="right")
    split.add_row(*(f"{v:.2f}" for v in seconds.values()))
    console.print(split)
    peak = max(resource.getrusage(who).ru_maxrss for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    console.print(f"peak resident memory: {peak / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
