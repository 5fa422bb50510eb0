"""Scale-out benchmark: per-video reconstruction with `local` (1 worker) vs `ray` (2 workers), the
alignment stage's video pairs with and without top-k pair selection, clip features in-process vs as Ray tasks, and
a batch of grounding queries in-process vs as Ray tasks, on one synthetic scene, side by side.

    python benchmarks/scale_out.py [--quick] [--videos 16] [--seconds 20] [--frames 30] [--ray-cpus 2]
    python benchmarks/scale_out.py --ws WS [--queries 1024]   # only features + queries, on a trained workspace

Both executors run single-threaded pycolmap per video (``reconstruct.num_threads = 1``), so the speed-up is
from running videos in parallel, as on a cluster (wall time ≈ per-video time × videos / cores).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]  # grounding.py

import numpy as np  # noqa: E402
import ray  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from grounding import query as gquery  # noqa: E402
from howto3d import grounding_cmds, recon_cmds, scenes  # noqa: E402
from howto3d.config import RunConfig  # noqa: E402
from howto3d.evaluation import camera_errors, load_gt  # noqa: E402
from howto3d.executor import mapper, pack_files, unpack_files  # noqa: E402
from howto3d.workspace import Workspace  # noqa: E402
from recon.align import Alignment  # noqa: E402
from synth import WorldConfig, generate_world  # noqa: E402
from temporal.features import FeatureConfig, scene_features  # noqa: E402


def _workspace(root: Path, world: WorldConfig, frames: int) -> tuple[Workspace, str]:
    ws = Workspace.init(root)
    (scene_dir,) = generate_world(ws.root, world)
    ws.remember("frames", "num_frames", frames)
    ws.remember("reconstruct", "num_threads", 1)
    return ws, scene_dir.name


def _timed(fn) -> tuple[float, object]:
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def _features_table(ws: Workspace, scene: str, console: Console) -> None:
    """Clip features of the scene's videos in-process vs one Ray task per video (results must be identical)."""
    videos = {v.name: v.path for v in ws.videos(scene)}
    shared = scenes.shared_scene(ws, scene)
    ray_map = mapper(RunConfig(executor="ray"))
    table = Table(title=f"clip features: {len(videos)} videos (decode + SIFT, then motion + gaze, per video)")
    for col in ("executor", "wall s", "speed-up", "identical"):
        table.add_column(col, justify="right")
    t_local, here = _timed(lambda: scene_features(videos, shared, FeatureConfig()))
    t_ray, there = _timed(lambda: scene_features(videos, shared, FeatureConfig(), map_videos=ray_map))
    same = all(np.array_equal(here[v], there[v]) for v in here) and sorted(here) == sorted(there)
    table.add_row("local (in-process)", f"{t_local:.1f}", "1.00×", "")
    table.add_row("ray", f"{t_ray:.1f}", f"{t_local / t_ray:.2f}×", str(same))
    console.print(table)


def _query_chunk(files: dict[str, bytes], scene: str, texts: list[str]) -> list[dict]:
    """Ray task: the grounding model arrives as bytes, is loaded once, and answers its share of the batch."""
    with tempfile.TemporaryDirectory(prefix="howto3d-query-") as tmp:
        unpack_files(files, Path(tmp) / "grounding")
        return gquery.load(Path(tmp) / "grounding").query(scene, texts)


def _queries_table(ws: Workspace, scene: str, n: int, workers: int, console: Console) -> None:
    """A batch of ``n`` queries: in this process (model loaded once) vs split over ``workers`` Ray tasks (each
    loads the model it receives: no shared filesystem), cold workers and then warm ones."""
    lines = [x.text for ns in scenes.narrations(ws, scene).values() for x in ns]
    texts = [f"{lines[i % len(lines)]} ({i})" for i in range(n)]  # distinct texts, real wording
    t_load, grounder = _timed(lambda: gquery.load(ws.grounding_dir))
    t_query, here = _timed(lambda: grounder.query(scene, texts))
    remote = ray.remote(_query_chunk).options(num_cpus=1)
    chunks = [texts[i::workers] for i in range(workers)]
    size = sum(map(len, pack_files(ws.grounding_dir).values())) >> 20
    table = Table(title=f"grounding queries: a batch of {n}, model folder {size} MiB")
    for col in ("where", "load s", "query s", "total s", "queries/s", "same answers"):
        table.add_column(col, justify="right")
    table.add_row(
        "in-process", f"{t_load:.1f}", f"{t_query:.1f}", f"{t_load + t_query:.1f}", f"{n / (t_load + t_query):.0f}", ""
    )
    for label in ("ray, cold workers", "ray, warm workers"):

        def on_ray() -> list[dict]:
            files = ray.put(pack_files(ws.grounding_dir))
            parts = ray.get([remote.remote(files, scene, c) for c in chunks])
            return [parts[i % workers][i // workers] for i in range(n)]

        t, there = _timed(on_ray)
        same = all(a["point"] == b["point"] for a, b in zip(here, there, strict=True))
        table.add_row(f"{label} ({workers})", "", "", f"{t:.1f}", f"{n / t:.0f}", str(same))
    console.print(table)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="8 videos × 12 s, 20 frames each")
    ap.add_argument("--videos", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--ray-cpus", type=int, default=2, help="CPUs of the local Ray cluster (= its workers)")
    ap.add_argument("--queries", type=int, default=1024, help="grounding queries in the batch")
    ap.add_argument("--ws", type=Path, help="only the features and queries tables, on this trained workspace")
    args = ap.parse_args()
    if args.quick:
        args.videos, args.seconds, args.frames = 8, 12.0, 20
    logging.basicConfig(level=logging.WARNING)
    console = Console()
    if args.ws is not None:
        ws = Workspace(args.ws)
        scene = ws.scenes()[0]
        ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        try:
            _features_table(ws, scene, console)
            _queries_table(ws, scene, args.queries, args.ray_cpus, console)
        finally:
            ray.shutdown()
        return
    world = WorldConfig(scenes=1, videos=args.videos, seconds=args.seconds, seed=0, width=640, height=360, fps=5.0)
    with tempfile.TemporaryDirectory(prefix="scale_out-") as tmp:
        ws_local, scene = _workspace(Path(tmp) / "local", world, args.frames)
        ws_ray = Workspace(shutil.copytree(ws_local.root, Path(tmp) / "ray"))
        ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        try:
            t_local, local = _timed(lambda: recon_cmds.reconstruct(ws_local, None, workers=1))
            t_ray, on_ray = _timed(lambda: recon_cmds.reconstruct(ws_ray, None, workers=args.ray_cpus, executor="ray"))
            table = Table(title=f"reconstruct: {args.videos} videos × {args.seconds:.0f} s, {args.frames} frames")
            for col in (
                "executor",
                "workers",
                "wall s",
                "speed-up",
                "Σ SfM task s / wall",
                "videos done",
                "registered frames",
            ):
                table.add_column(col, justify="right")
            for name, workers, t, summary in (("local", 1, t_local, local), ("ray", args.ray_cpus, t_ray, on_ray)):
                done = [r for r in summary if r["status"] == "done"]
                table.add_row(
                    name,
                    str(workers),
                    f"{t:.1f}",
                    f"{t_local / t:.2f}×",
                    f"{sum(r['seconds'] for r in summary) / t:.2f}",
                    f"{len(done)}/{len(summary)}",
                    str(sum(r["registered"] for r in done)),
                )
            console.print(
                f"machine load (1-min average) after reconstruct: {os.getloadavg()[0]:.1f} on "
                f"{os.cpu_count()} cores; the speed-up needs idle cores"
            )
            console.print(table)

            gt = load_gt(ws_local.scene_dir(scene) / "ground_truth.json")
            table = Table(title="align: node pairs matched with and without top-k (same models)")
            for col in (
                "pairs",
                "executor",
                "matched / all",
                "wall s",
                "aligned",
                "centre err mean m",
                "rotation err max °",
            ):
                table.add_column(col, justify="right")
            for k, executor in ((0, "local"), (5, "local"), (2, "local"), (2, "ray")):
                ws_local.remember("align", "video_pairs_per_node", k)
                t, _ = _timed(lambda executor=executor: recon_cmds.align(ws_local, None, force=True, executor=executor))
                result = Alignment.load(ws_local.align_dir(scene))
                errors = camera_errors(scenes.shared_scene(ws_local, scene), gt)
                pairs = result.graph["pairs"]
                table.add_row(
                    "all" if k == 0 else f"top-{k}",
                    executor,
                    f"{pairs['matched']}/{pairs['all']}",
                    f"{t:.1f}",
                    f"{len(result.shared_from_video)}/{args.videos}",
                    f"{np.mean([e['centre_mean_m'] for e in errors.values()]):.4f}",
                    f"{max(e['rotation_max_deg'] for e in errors.values()):.2f}",
                )
            console.print(table)
            _features_table(ws_local, scene, console)
            grounding_cmds.train(ws_local)
            _queries_table(ws_local, scene, args.queries, args.ray_cpus, console)
        finally:
            ray.shutdown()


if __name__ == "__main__":
    main()
