"""Divide and conquer vs joint reconstruction, on the same sampled frames, side by side in one run.

Arms (every one gets the same frames, the same SIFT settings — ``ReconstructConfig.max_num_features``, one
self-calibrated ``camera_model`` per video — and all cores):

(a) howto3d as a user runs it: ``reconstruct`` (per-video SfM, product defaults) + ``align``.
(b) joint exhaustive: one database, every image pair matched, incremental mapping (what a newcomer does).
(c) best joint: one database, sequential pairs within each video (the product's overlap and VLAD loop closure),
    VLAD-retrieved pairs across videos (top ``--cross-top`` per frame, codebook over all frames), matched with
    ``pycolmap.match_image_pairs``, then the global mapper (``pycolmap.global_mapping``).

Frames are sampled once, before the arms, and timed apart. Printed per arm: wall time and its split (ours:
SfM of all videos, then the alignment's parts; extraction / matching / mapping summed over
videos are printed above the table), registered frames, camera-centre error after one Sim(3) to ground
truth (mean / max over frames), keypoint-transfer PCK in the shared frame, and the ratios, on SfM + alignment
alone and with the frame sampling counted in every arm.

    python benchmarks/align_vs_joint.py [--quick] [--videos 5] [--frames 40] [--preset degraded] [--set cuts=1]
                                        [--skip-exhaustive] [--json OUT]

``--preset degraded`` (blur, lens distortion, exposure jumps, hands, a jump cut per video) measures accuracy on
footage with cuts as well as on the clean default world; ``--set KEY=VALUE`` overrides any world setting.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]

import numpy as np  # noqa: E402
import pycolmap  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from howto3d import evaluation, recon_cmds, scenes  # noqa: E402
from howto3d.workspace import Workspace  # noqa: E402
from recon import sampling as frames_stage  # noqa: E402
from recon.config import ReconstructConfig  # noqa: E402
from recon.io import read_json  # noqa: E402
from recon.reconstruct import global_options, read_features, sequential_pairs  # noqa: E402
from recon.retrieval import learn_codebook, vlad  # noqa: E402
from recon.sampling import load as load_frames  # noqa: E402
from recon.scene import RegisteredFrame, SharedScene  # noqa: E402
from synth import generate_world, world_config  # noqa: E402


@dataclass
class Arm:
    name: str
    seconds: float = 0.0
    """SfM + alignment, after frames are sampled."""
    split: dict[str, float] = field(default_factory=dict)
    per_video: dict[str, float] = field(default_factory=dict)
    """Ours: extraction, matching and mapping seconds summed over the videos (they overlap in time)."""
    registered: int = 0
    centre_mean_cm: float = float("nan")
    centre_max_cm: float = float("nan")
    pck2: float = float("nan")
    pck5: float = float("nan")
    pairs: int = 0
    """Image pairs matched (joint arms; for ours: within videos + across videos)."""
    load: tuple[float, float] = (0.0, 0.0)
    """1-min load average before and after the arm."""
    cpu: float = 0.0
    """CPU seconds (user + system, this process and its finished workers): less sensitive to a busy machine than
    wall time, which is what a user waits for."""

    @contextmanager
    def measured(self) -> Iterator[None]:
        """Load before/after and CPU seconds of the whole arm."""
        before, cpu = load1(), cpu_seconds()
        yield
        self.load, self.cpu = (before, load1()), cpu_seconds() - cpu

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Wall seconds of one part of the arm, into ``split``."""
        t = time.perf_counter()
        yield
        self.split[name] = time.perf_counter() - t


def load1() -> float:
    return os.getloadavg()[0]


def cpu_seconds() -> float:
    return sum(
        r.ru_utime + r.ru_stime for r in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    )


def evaluate(arm: Arm, shared: SharedScene, gt: dict, align_dir: Path) -> None:
    """Registered frames, camera-centre error after one Sim(3) fit of all centres, shared-frame PCK."""
    arm.registered = len(shared.frames)
    if arm.registered < 3:
        return
    errors = evaluation.camera_errors(shared, gt)
    frames = sum(e["frames"] for e in errors.values())
    arm.centre_mean_cm = 100 * sum(e["centre_mean_m"] * e["frames"] for e in errors.values()) / frames
    arm.centre_max_cm = 100 * max(e["centre_max_m"] for e in errors.values())
    pck = evaluation.eval_transfer(shared, gt, align_dir)["pck_shared"]
    arm.pck2, arm.pck5 = pck["2cm"], pck["5cm"]


def joint_images(ws: Workspace, scene: str, tmp: Path) -> tuple[Path, dict[str, float], dict[str, list[str]]]:
    """The workspace's sampled frames under ``images/<video>/`` (what a COLMAP user would give a joint run)."""
    images = tmp / "images"
    times, by_video = {}, {}
    for v in ws.videos(scene):
        meta = load_frames(ws.frames_dir(scene, v.name))
        (images / v.name).mkdir(parents=True)
        for f in sorted(meta["frames"], key=lambda f: f["time"]):
            shutil.copy(ws.frames_dir(scene, v.name) / "images" / f["name"], images / v.name / f["name"])
            name = f"{v.name}/{f['name']}"
            times[name] = f["time"]
            by_video.setdefault(v.name, []).append(name)
    return images, times, by_video


def extract(db: Path, images: Path, conf: ReconstructConfig) -> None:
    """SIFT of every image into one database, one self-calibrated camera per video (folder), as ours."""
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = conf.camera_model
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.num_threads = conf.num_threads
    extraction.sift.max_num_features = conf.max_num_features
    pycolmap.extract_features(
        db,
        images,
        camera_mode=pycolmap.CameraMode.PER_FOLDER,
        reader_options=reader,
        extraction_options=extraction,
        device=pycolmap.Device.cpu,
    )


def matching_options(conf: ReconstructConfig) -> pycolmap.FeatureMatchingOptions:
    opts = pycolmap.FeatureMatchingOptions()
    opts.num_threads = conf.num_threads
    opts.sift.cross_check = True
    return opts


def joint_scene(scene: str, models: dict, times: dict[str, float]) -> SharedScene:
    """The largest joint model as a shared scene (cameras only: what the evaluation needs)."""
    if not models:
        return SharedScene(scene, [], np.zeros((0, 3)), np.zeros((0, 3), np.uint8), np.zeros(0, int), [])
    rec = max(models.values(), key=lambda r: r.num_reg_images())
    frames = [
        RegisteredFrame(
            rec.images[i].name.split("/")[0],
            rec.images[i].name,
            times[rec.images[i].name],
            rec.cameras[rec.images[i].camera_id],
            rec.images[i].cam_from_world().matrix(),
            np.zeros((0, 2)),
            np.zeros(0, int),
        )
        for i in rec.reg_image_ids()
    ]
    videos = sorted({f.video for f in frames})
    return SharedScene(
        scene,
        videos,
        np.zeros((0, 3)),
        np.zeros((0, 3), np.uint8),
        np.zeros(0, int),
        sorted(frames, key=lambda f: (f.video, f.time)),
    )


def joint_exhaustive(ws: Workspace, scene: str, tmp: Path, conf: ReconstructConfig) -> tuple[Arm, SharedScene]:
    """(b) All frames in one exhaustive pycolmap run, incremental mapper."""
    arm = Arm("joint exhaustive + incremental")
    images, times, _ = joint_images(ws, scene, tmp)
    n = len(times)
    arm.pairs = n * (n - 1) // 2
    db = tmp / "joint.db"
    with arm.measured():
        with arm.stage("extract"):
            extract(db, images, conf)
        with arm.stage("match"):
            pycolmap.match_exhaustive(db, matching_options=matching_options(conf), device=pycolmap.Device.cpu)
        with arm.stage("map"):
            (tmp / "joint").mkdir()
            opts = pycolmap.IncrementalPipelineOptions()
            opts.num_threads = conf.num_threads
            opts.random_seed = conf.seed
            models = pycolmap.incremental_mapping(db, images, tmp / "joint", options=opts)
    arm.seconds = sum(arm.split.values())
    return arm, joint_scene(scene, models, times)


def joint_pairs(
    db: Path, by_video: dict[str, list[str]], conf: ReconstructConfig, cross_top: int, seed: int
) -> list[tuple[str, str]]:
    """The product's within-video pairs per video, plus each frame's ``cross_top`` VLAD-retrieved frames of
    other videos."""
    pairs: set[tuple[str, str]] = set()
    for names in by_video.values():
        pairs.update(sequential_pairs(db, names, conf))
    database = pycolmap.Database.open(str(db))
    try:
        ids = {im.name: im.image_id for im in database.read_all_images()}
        names = [n for v in sorted(by_video) for n in by_video[v]]
        descs = [read_features(database, ids[n])[1] for n in names]
    finally:
        database.close()
    codebook = learn_codebook(descs, seed=seed)
    g = np.stack([vlad(d, codebook) for d in descs])
    video = np.array([n.split("/")[0] for n in names])
    sim = g @ g.T
    for i in range(len(names)):
        sim_i = np.where(video == video[i], -np.inf, sim[i])
        for j in np.argsort(-sim_i, kind="stable")[:cross_top]:
            if np.isfinite(sim_i[j]):
                pairs.add(tuple(sorted((names[i], names[int(j)]))))
    return sorted(pairs)


def joint_best(
    ws: Workspace, scene: str, tmp: Path, conf: ReconstructConfig, cross_top: int, seed: int
) -> tuple[Arm, SharedScene]:
    """(c) One database; sequential + loop-closure pairs within each video, VLAD-retrieved pairs across videos;
    ``match_image_pairs``; the global mapper."""
    arm = Arm(f"joint sequential + retrieval (top {cross_top}) + global")
    images, times, by_video = joint_images(ws, scene, tmp)
    db = tmp / "joint.db"
    with arm.measured():
        with arm.stage("extract"):
            extract(db, images, conf)
        with arm.stage("pairs"):
            pairs_path = tmp / "pairs.txt"
            pairs = joint_pairs(db, by_video, conf, cross_top, seed)
            pairs_path.write_text("".join(f"{a} {b}\n" for a, b in pairs))
        with arm.stage("match"):
            pairing = pycolmap.ImportedPairingOptions()
            pairing.match_list_path = str(pairs_path)
            pycolmap.match_image_pairs(
                db, matching_options=matching_options(conf), pairing_options=pairing, device=pycolmap.Device.cpu
            )
        with arm.stage("map"):
            (tmp / "joint").mkdir()
            models = pycolmap.global_mapping(db, images, tmp / "joint", options=global_options(conf))
    arm.pairs = len(pairs)
    arm.seconds = sum(arm.split.values())
    return arm, joint_scene(scene, models, times)


def sample_frames(ws: Workspace, scene: str, frames: int) -> float:
    """Every video's frames, sampled here one after another and recorded as ``reconstruct`` records them (so it
    starts at SfM and every arm gets the same frames); returns the seconds it took."""
    conf = replace(ws.config.frames, num_frames=frames)
    t = time.perf_counter()
    for v in ws.videos(scene):
        frames_stage.main(conf, v.path, ws.frames_dir(scene, v.name))
        ws.step("frames", f"{scene}/{v.name}", {"video": v.path}, asdict(conf)).put("done")
    return time.perf_counter() - t


def ours(ws: Workspace, scene: str, frames: int) -> Arm:
    """(a) ``reconstruct`` + ``align`` with the product's defaults, on frames already sampled."""
    arm = Arm("howto3d: per-video SfM + alignment graph")
    with arm.measured():
        with arm.stage("sfm"):
            recon_cmds.reconstruct(ws, scene, frames=frames)
        t = time.perf_counter()
        summary = recon_cmds.align(ws, scene)[scene]
        t_align = time.perf_counter() - t
    reports = [read_json(ws.sfm_dir(scene, v) / "report.json") for v in scenes.reconstructed_videos(ws, scene)]
    for stage in ("extract", "match", "map"):  # videos run side by side: these sum to more than the wall time
        arm.per_video[stage] = sum(r["seconds"][stage] for r in reports)
    for k, v in summary.get("seconds", {}).items():
        if k != "total" and v >= 0.05:
            arm.split[f"align:{k}"] = v
    arm.split["align (other)"] = max(0.0, t_align - summary.get("seconds", {}).get("total", 0.0))
    arm.seconds = sum(arm.split.values())
    intra = sum(_pairs_within(r) for r in reports)
    arm.pairs = intra + sum(e["frame_pairs"] for e in summary["edges"])
    return arm


def _pairs_within(report: dict) -> int:
    """Image pairs matched inside one video (exhaustive: all; sequential: counted from its settings)."""
    n, conf = report["frames_sampled"], report["config"]
    if report["matching"] == "exhaustive":
        return n * (n - 1) // 2
    k = conf["sequential_overlap"]
    return sum(min(k, n - 1 - i) for i in range(n)) + n * conf["loop_closure_neighbors"]  # loop closures: at most


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="3 videos × 20 frames")
    ap.add_argument("--videos", type=int, default=5)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--seconds", type=float, default=16.0, help="length of each synthetic video")
    ap.add_argument("--seed", type=int, default=0, help="seed of the synthetic world")
    ap.add_argument("--preset", default="default", help="synthetic world preset: default | degraded | long")
    ap.add_argument("--set", dest="settings", action="append", default=[], help="world setting KEY=VALUE")
    ap.add_argument("--cross-top", type=int, default=5, help="(c): retrieved frames of other videos per frame")
    ap.add_argument("--skip-exhaustive", action="store_true", help="leave out arm (b), the slowest")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    if args.quick:
        args.videos, args.frames = 3, 20
    pycolmap.logging.minloglevel = 2  # the joint runs' per-image INFO lines, as the product's SfM does
    console = Console(width=max(Console().width, 220))  # the split column is wide; logs keep it on one line
    conf = ReconstructConfig()
    arms: list[Arm] = []
    with tempfile.TemporaryDirectory() as tmp:
        ws = Workspace.init(Path(tmp) / "ws")
        world = world_config(
            args.preset, args.settings, scenes=1, videos=args.videos, seconds=args.seconds, fps=5.0, seed=args.seed
        )
        (scene_dir,) = generate_world(ws.root, world)
        scene = scene_dir.name
        gt = evaluation.load_gt(ws.ground_truth_path(scene))
        sampling = sample_frames(ws, scene, args.frames)
        arm = ours(ws, scene, args.frames)
        evaluate(arm, scenes.shared_scene(ws, scene), gt, ws.align_dir(scene))
        arms.append(arm)
        console.print(
            f"{arm.name}: {arm.seconds:.1f} s {arm.split}, summed over videos {arm.per_video}", highlight=False
        )
        arm, shared = joint_best(ws, scene, Path(tmp) / "best", conf, args.cross_top, args.seed)
        evaluate(arm, shared, gt, Path(tmp) / "none")
        arms.append(arm)
        console.print(f"{arm.name}: {arm.seconds:.1f} s {arm.split}", highlight=False)
        if not args.skip_exhaustive:
            arm, shared = joint_exhaustive(ws, scene, Path(tmp) / "exhaustive", conf)
            evaluate(arm, shared, gt, Path(tmp) / "none")
            arms.append(arm)
    total = args.videos * args.frames
    table = Table(
        title=f"{args.videos} videos × {args.frames} frames, {args.preset} world "
        f"{' '.join(args.settings)} (the same frames, sampled in {sampling:.1f} s)"
    )
    for col in (
        "arm",
        "SfM+align s",
        "split s",
        "pairs",
        "registered",
        "centre mean/max cm",
        "PCK@2/5cm",
        "×ours",
        "×ours (+sampling)",
        "CPU s (×ours)",
        "load",
    ):
        table.add_column(col, justify="right")
    for a in arms:
        split = " ".join(f"{k} {v:.1f}" for k, v in a.split.items())
        table.add_row(
            a.name,
            f"{a.seconds:.1f}",
            split,
            str(a.pairs),
            f"{a.registered}/{total}",
            f"{a.centre_mean_cm:.2f} / {a.centre_max_cm:.2f}",
            f"{a.pck2:.2f} / {a.pck5:.2f}",
            f"{a.seconds / arms[0].seconds:.2f}",
            f"{(a.seconds + sampling) / (arms[0].seconds + sampling):.2f}",
            f"{a.cpu:.0f} ({a.cpu / arms[0].cpu:.2f})",
            f"{a.load[0]:.1f}→{a.load[1]:.1f}",
        )
    console.print(table)
    console.print(
        "×ours: the arm's time over ours (SfM + alignment). '+sampling' counts the frame sampling in "
        "every arm. CPU s: CPU seconds of the arm. load: 1-min load average before → after."
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "videos": args.videos,
                    "frames": args.frames,
                    "seed": args.seed,
                    "preset": args.preset,
                    "settings": args.settings,
                    "sampling_s": sampling,
                    "arms": [a.__dict__ for a in arms],
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
