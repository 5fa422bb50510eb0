"""Long videos: frame selection by motion, sequential matching, segments, incremental vs global mapping.

One synthetic scene whose videos are each made of two rendered shots spliced together (a cut to another
view with other part positions, as in an edited how-to), so every video is long and has two segments.
Both mappers run on the same kept frames, side by side in one run:

    python benchmarks/long_video.py [--quick] [--videos 3] [--seconds 300] [--world DIR] [--json out.json]

Reports per mapper: frames decoded (motion candidates) / kept, registered frames, segments kept / aligned,
dwell coverage (ground-truth dwells with a registered frame in the shared frame), camera-centre error after
one Sim(3) fit to the truth, and seconds per stage (frames, extract, match, map, align).
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import av  # noqa: E402
import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from howto3d.evaluation import camera_errors  # noqa: E402
from recon import align as align_stage  # noqa: E402
from recon import reconstruct as recon_stage  # noqa: E402
from recon import sampling as frames_stage  # noqa: E402
from recon.io import read_json  # noqa: E402
from recon.scene import SharedScene, load_shared_scene  # noqa: E402
from recon.sim3 import sim3_from_json  # noqa: E402
from synth import WorldConfig, generate_world  # noqa: E402
from synth.video_writer import VideoWriter  # noqa: E402

STAGES = ("frames", "extract", "match", "map", "align")


def splice(scene_dir: Path, parts: list[str], name: str) -> None:
    """Concatenate rendered videos ``parts`` of a synthetic scene into ``videos/<name>.mp4`` (a cut at each
    join) and add its ground truth (frames, dwells shifted; ``cuts``: times of the joins). The parts are
    removed from ``videos/`` so a workspace sees only the spliced video."""
    gt_path = scene_dir / "ground_truth.json"
    gt = json.loads(gt_path.read_text())
    first = gt["videos"][parts[0]]
    out = {k: first[k] for k in ("fps", "width", "height", "parts")} | {
        "file": f"videos/{name}.mp4",
        "frames": [],
        "dwells": [],
        "cuts": [],
    }
    offset, index = 0.0, 0
    with VideoWriter(scene_dir / "videos" / f"{name}.mp4", first["width"], first["height"], first["fps"]) as w:
        for part in parts:
            src = scene_dir / "videos" / f"{part}.mp4"
            with av.open(str(src)) as container:
                for frame in container.decode(video=0):
                    w.write(frame.to_ndarray(format="rgb24"))
            truth = gt["videos"].pop(part)
            if offset:
                out["cuts"].append(offset)
            out["frames"] += [
                f | {"index": index + f["index"], "time": round(offset + f["time"], 7)} for f in truth["frames"]
            ]
            out["dwells"] += [d | {"start": offset + d["start"], "end": offset + d["end"]} for d in truth["dwells"]]
            index += len(truth["frames"])
            offset = index / first["fps"]
            src.unlink()
            src.with_suffix(".srt").unlink(missing_ok=True)
    gt["videos"][name] = out
    gt_path.write_text(json.dumps(gt, indent=1))


def spliced_world(out: Path, videos: int, seconds: float, fps: float, size: tuple[int, int], seed: int) -> Path:
    """Render ``2 × videos`` shots of ``seconds / 2`` and splice them pairwise into ``videos`` long videos."""
    cfg = WorldConfig(
        scenes=1, videos=2 * videos, seconds=seconds / 2, seed=seed, width=size[0], height=size[1], fps=fps
    )
    (scene_dir,) = generate_world(out, cfg)
    for v in range(videos):
        splice(scene_dir, [f"video_{2 * v:02d}", f"video_{2 * v + 1:02d}"], f"long_{v:02d}")
    return scene_dir


def dwell_coverage(shared: SharedScene, gt: dict) -> tuple[int, int]:
    """(dwells with at least one registered frame in the shared frame, all dwells) over the scene's videos."""
    covered = total = 0
    for video, truth in gt["videos"].items():
        times = np.array([f.time for f in shared.frames_of(video)])
        for d in truth["dwells"]:
            total += 1
            covered += bool(((times >= d["start"]) & (times <= d["end"])).any())
    return covered, total


def run(
    scene_dir: Path, work: Path, recon_conf: recon_stage.ReconstructConfig, frames_dirs: dict[str, Path], seconds: dict
) -> dict:
    """Reconstruct (given frames) and align every video of ``scene_dir``; evaluate against its ground truth."""
    gt = read_json(scene_dir / "ground_truth.json")
    sfm_dirs, reports = {}, {}
    for video in sorted(frames_dirs):
        sfm_dirs[video] = work / "sfm" / video
        try:
            reports[video] = recon_stage.main(recon_conf, frames_dirs[video], sfm_dirs[video])
        except recon_stage.Unreconstructable as e:
            reports[video] = {"error": str(e)}
            del sfm_dirs[video]
            continue
        for stage in ("extract", "match", "map"):
            seconds[stage] += reports[video]["seconds"][stage]
    t = time.perf_counter()
    align_stage.main(align_stage.AlignConfig(), sfm_dirs, work / "align")
    seconds["align"] += time.perf_counter() - t
    transforms = read_json(work / "align" / "transforms.json")
    by_segment = {
        v: {int(k): sim3_from_json(s) for k, s in segs.items()} for v, segs in transforms["shared_from_segment"].items()
    }
    shared = load_shared_scene(scene_dir.name, sfm_dirs, frames_dirs, by_segment)
    errors = camera_errors(shared, gt)
    covered, total = dwell_coverage(shared, gt)
    return {
        "kept": sum(len(read_json(d / "frames.json")["frames"]) for d in frames_dirs.values()),
        "registered": sum(r.get("registered_all_segments", 0) for r in reports.values()),
        "segments": sum(len(r.get("segments", [])) for r in reports.values()),
        "segments_aligned": sum(len(s) for s in by_segment.values()),
        "dwells": f"{covered}/{total}",
        "centre_mean_cm": round(100 * float(np.mean([e["centre_mean_m"] for e in errors.values()])), 3),
        "centre_max_cm": round(100 * max(e["centre_max_m"] for e in errors.values()), 3),
        "rotation_max_deg": round(max(e["rotation_max_deg"] for e in errors.values()), 3),
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "reports": reports,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="2 videos of 60 s (make bench)")
    ap.add_argument("--videos", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=300.0, help="length of each (spliced) video")
    ap.add_argument("--fps", type=float, default=4.0, help="rendered frame rate")
    ap.add_argument("--size", type=int, nargs=2, default=(480, 270))
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--mappers", nargs="+", default=["incremental", "global"])
    ap.add_argument("--frames", type=int, default=frames_stage.FramesConfig.num_frames, help="frames.num_frames")
    ap.add_argument("--sampling", default="motion", help="frames.sampling")
    ap.add_argument("--matching", default=recon_stage.ReconstructConfig.matching, help="reconstruct.matching")
    ap.add_argument("--world", type=Path, help="reuse (or keep) the rendered world in this folder")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    if args.quick:
        args.videos, args.seconds = 2, 60.0
    logging.basicConfig(level=logging.WARNING)
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.world or Path(tmp) / "world"
        scenes = sorted((root / "scenes").glob("*")) if (root / "scenes").exists() else []
        scene_dir = (
            scenes[0]
            if scenes
            else spliced_world(root, args.videos, args.seconds, args.fps, tuple(args.size), args.seed)
        )
        shots = sorted((scene_dir / "videos").glob("video_*.mp4"))  # a world rendered by generate_world alone
        for v in range(len(shots) // 2):
            splice(scene_dir, [shots[2 * v].stem, shots[2 * v + 1].stem], f"long_{v:02d}")
        frames_conf = frames_stage.FramesConfig(sampling=args.sampling, num_frames=args.frames)
        frames_dirs, decoded, t = {}, 0, time.perf_counter()
        for video in sorted((scene_dir / "videos").glob("*.mp4")):
            frames_dirs[video.stem] = Path(tmp) / "frames" / video.stem
            decoded += frames_stage.main(frames_conf, video, frames_dirs[video.stem])["selection"]["candidates"]
        frames_s = time.perf_counter() - t
        results = {}
        for mapper in args.mappers:
            work = Path(tmp) / mapper
            seconds = dict.fromkeys(STAGES, 0.0) | {"frames": frames_s}
            recon_conf = recon_stage.ReconstructConfig(mapper=mapper, matching=args.matching)
            results[mapper] = run(scene_dir, work, recon_conf, frames_dirs, seconds) | {"decoded": decoded}
            shutil.rmtree(work)
    length = read_json(scene_dir / "ground_truth.json")
    minutes = sum(len(v["frames"]) / v["fps"] for v in length["videos"].values()) / 60
    table = Table(
        title=f"long videos: {len(frames_dirs)} × {minutes / len(frames_dirs):.1f} min, one cut each "
        f"(seconds summed over videos)"
    )
    for col in (
        "mapper",
        "decoded/kept",
        "registered",
        "segments kept/aligned",
        "dwells covered",
        "centre mean/max cm",
        "rot max °",
        *(f"{s} s" for s in STAGES),
        "s per video-minute",
    ):
        table.add_column(col, justify="right")
    for mapper, r in results.items():
        total = sum(r["seconds"].values())
        table.add_row(
            mapper,
            f"{r['decoded']}/{r['kept']}",
            str(r["registered"]),
            f"{r['segments']}/{r['segments_aligned']}",
            r["dwells"],
            f"{r['centre_mean_cm']}/{r['centre_max_cm']}",
            str(r["rotation_max_deg"]),
            *(str(r["seconds"][s]) for s in STAGES),
            f"{total / minutes:.1f}",
        )
    console.print(table)
    if args.json:
        args.json.write_text(json.dumps({"minutes": minutes, "results": results}, indent=1))


if __name__ == "__main__":
    main()
