"""Per-video reconstruction + alignment graph vs one joint pycolmap reconstruction of the same frames.

The source's claim: matching is O(N²) per video instead of O(n²N²) jointly. Both pipelines get the same
sampled frames; printed side by side: wall time, registered frames, keypoint-transfer PCK (shared frame).

    python benchmarks/align_vs_joint.py [--quick] [--videos 4] [--frames 30]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import numpy as np  # noqa: E402
import pycolmap  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from howto3d import evaluation, recon_cmds, scenes  # noqa: E402
from howto3d.workspace import Workspace  # noqa: E402
from recon.frames import load as load_frames  # noqa: E402
from recon.scene import RegisteredFrame, SharedScene  # noqa: E402
from synth import WorldConfig, generate_world  # noqa: E402


def joint(ws: Workspace, scene: str, tmp: Path) -> tuple[float, SharedScene]:
    """All videos' frames in one exhaustive pycolmap run (one camera per video)."""
    images = tmp / "images"
    times = {}
    for v in ws.videos(scene):
        meta = load_frames(ws.frames_dir(scene, v.name))
        (images / v.name).mkdir(parents=True)
        for f in meta["frames"]:
            shutil.copy(ws.frames_dir(scene, v.name) / "images" / f["name"], images / v.name / f["name"])
            times[f"{v.name}/{f['name']}"] = f["time"]
    t = time.perf_counter()
    db = tmp / "joint.db"
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "SIMPLE_RADIAL"
    pycolmap.extract_features(db, images, camera_mode=pycolmap.CameraMode.PER_FOLDER, reader_options=reader,
                              device=pycolmap.Device.cpu)
    pycolmap.match_exhaustive(db, device=pycolmap.Device.cpu)
    (tmp / "joint").mkdir()
    models = pycolmap.incremental_mapping(db, images, tmp / "joint")
    seconds = time.perf_counter() - t
    rec = max(models.values(), key=lambda r: r.num_reg_images())
    frames = [RegisteredFrame(rec.images[i].name.split("/")[0], rec.images[i].name, times[rec.images[i].name],
                              rec.cameras[rec.images[i].camera_id], rec.images[i].cam_from_world().matrix(),
                              np.zeros((0, 2)), np.zeros(0, int)) for i in rec.reg_image_ids()]
    videos = sorted({f.video for f in frames})
    return seconds, SharedScene(scene, videos, np.zeros((0, 3)), np.zeros((0, 3), np.uint8), np.zeros(0, int),
                                sorted(frames, key=lambda f: (f.video, f.time)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="3 videos × 20 frames")
    ap.add_argument("--videos", type=int, default=4)
    ap.add_argument("--frames", type=int, default=30)
    args = ap.parse_args()
    if args.quick:
        args.videos, args.frames = 3, 20
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.init(Path(tmp) / "ws")
        (scene_dir,) = generate_world(ws.root, WorldConfig(scenes=1, videos=args.videos, seconds=16.0, fps=5.0))
        scene = scene_dir.name
        t = time.perf_counter()
        recon_cmds.reconstruct(ws, scene, frames=args.frames)
        t_recon = time.perf_counter() - t
        recon_cmds.align(ws, scene)
        t_ours = time.perf_counter() - t
        gt = evaluation.load_gt(ws.ground_truth_path(scene))
        ours = scenes.shared_scene(ws, scene)
        ours_pck = evaluation.eval_transfer(ours, gt, ws.align_dir(scene))["pck_shared"]
        t_joint, joint_scene = joint(ws, scene, Path(tmp) / "joint")
        joint_pck = evaluation.eval_transfer(joint_scene, gt, Path(tmp) / "none")["pck_shared"]
    table = Table(title=f"{args.videos} videos × {args.frames} frames: per-video + graph vs joint")
    for col in ("pipeline", "wall s", "registered", "PCK@2cm", "PCK@5cm"):
        table.add_column(col, justify="right")
    table.add_row("per-video + alignment graph", f"{t_ours:.0f} (SfM {t_recon:.0f})", str(len(ours.frames)),
                  f"{ours_pck['2cm']:.2f}", f"{ours_pck['5cm']:.2f}")
    table.add_row("joint exhaustive (pycolmap)", f"{t_joint:.0f}", str(len(joint_scene.frames)),
                  f"{joint_pck['2cm']:.2f}", f"{joint_pck['5cm']:.2f}")
    console.print(table)
    console.print(f"time ratio joint / ours: {t_joint / t_ours:.2f} (ours includes frame sampling; the joint run "
                  "reuses those frames)")


if __name__ == "__main__":
    main()
