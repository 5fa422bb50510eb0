"""Every workspace command at PRODUCT DEFAULTS, against the synthetic world's ground truth.

The other end-to-end tests run 16–20-s clips at 30 frames, which takes the exhaustive-matching path. A user's
videos are longer and get the default 80 frames, which takes sequential matching + VLAD loop closures, where
extra SfM models repeated frames and scipy's Slerp refused duplicated times (four commands crashed). Here one
synthetic workspace (2 videos × 30 s, 640×360, 5 fps) is made by ``howto3d synth`` and ``howto3d run`` with
nothing overridden; then every command that reads a workspace runs on it through the real console entry point,
each checked for exit code 0, no traceback, no duplicated frame, and a bound against the ground truth.

One module-scoped fixture builds the workspace once (synth + run: most of the module's time); ``scale`` works on
a copy, because it changes the shared frame that the grounding model was trained in.
"""

from __future__ import annotations

import io
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pycolmap
import pytest
import trimesh
from PIL import Image
from scipy.spatial.transform import Rotation

from howto3d import evaluation, scenes
from howto3d.workspace import Workspace
from recon.io import read_json
from recon.sampling import load as load_frames
from recon.scene import SharedScene
from recon.video import probe, read_frames
from temporal.tasks import find_task_file, read_task_file
from viewer.geometry import heatmap_colors

pytestmark = pytest.mark.slow

VIDEOS, SECONDS, FPS, SIZE = 2, 30, 5, (640, 360)
DEFAULT_FRAMES = 80
"""``frames.num_frames``'s default: > ``exhaustive_max_frames`` (30), so SfM matches sequentially + loop closures."""


def _howto3d(*args: str, timeout: float) -> subprocess.CompletedProcess:
    """The real console entry point in a fresh process (the module fixture cannot use the ``cli`` fixture)."""
    return subprocess.run([sys.executable, "-m", "howto3d", *args], capture_output=True, text=True, timeout=timeout)


def _ok(r) -> str:
    """rc 0 and no traceback anywhere in the command's output; returns stdout."""
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-4000:]
    assert "Traceback" not in out, out[-4000:]
    return r.stdout


def _centre(P: np.ndarray) -> np.ndarray:
    P = np.asarray(P, float)
    return -P[:, :3].T @ P[:, 3]


def _angle_deg(R1: np.ndarray, R2: np.ndarray) -> float:
    return float(np.degrees(Rotation.from_matrix(R1 @ R2.T).magnitude()))


def _pose_error(cam_from_shared, world_from_shared: pycolmap.Sim3d, truth) -> tuple[float, float]:
    """Camera-centre error (m) and rotation error (deg) of a shared-frame pose, after the world fit."""
    P = np.asarray(cam_from_shared, float)
    centre = np.asarray(world_from_shared * _centre(P)[None]).reshape(3)
    R_world = P[:, :3] @ world_from_shared.rotation.matrix().T
    T = np.asarray(truth, float)
    return float(np.linalg.norm(centre - _centre(T))), _angle_deg(R_world, T[:, :3])


def _project(K, P, X) -> tuple[np.ndarray, float]:
    """Pixel (COLMAP/synth convention) and depth of world point X in a ground-truth camera."""
    xc = np.asarray(P)[:, :3] @ np.asarray(X, float) + np.asarray(P)[:, 3]
    return (np.asarray(K) @ (xc / xc[2]))[:2], float(xc[2])


def _marker_centre(drawn: np.ndarray, raw: np.ndarray) -> np.ndarray | None:
    """Centre of the green ground-truth dot (viewer_cmds.GT_COLOR) `--gt-part` draws into a frame (None: not
    there); pixels that turned much greener than the raw frame, away from the red heatmap."""
    d, r = drawn.astype(float), raw.astype(float)
    mask = (d[..., 1] - r[..., 1] > 40) & (d[..., 1] - d[..., 0] > 80) & (d[..., 1] - d[..., 2] > 60)
    if mask.sum() < 8:
        return None
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean() + 0.5, ys.mean() + 0.5])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Built:
    ws: Workspace
    scene: str
    gt: dict
    shared: SharedScene
    world_from_shared: pycolmap.Sim3d
    """The metric Sim(3) from the shared frame to the ground-truth world: one fit of all cameras."""
    seconds: dict[str, float]

    @property
    def root(self) -> str:
        return str(self.ws.root)

    def gt_frame(self, video: str, time_s: float) -> dict:
        return next(f for f in self.gt["videos"][video]["frames"] if abs(f["time"] - time_s) < 1e-3)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """``howto3d synth`` 2 videos × 30 s, then ``howto3d run`` with every setting at its default."""
    root = tmp_path_factory.mktemp("defaults") / "ws"
    seconds = {}
    t0 = time.perf_counter()
    _ok(
        _howto3d(
            "synth",
            str(root),
            "--scenes",
            "1",
            "--videos",
            str(VIDEOS),
            "--seconds",
            str(SECONDS),
            "--seed",
            "0",
            "--set",
            f"fps={FPS}",
            timeout=1800,
        )
    )
    seconds["synth"] = time.perf_counter() - t0
    toml = (root / "howto3d.toml").read_text()
    assert f"\nnum_frames = {DEFAULT_FRAMES}\n" in toml  # nothing overridden: the default users get
    t0 = time.perf_counter()
    _ok(_howto3d("run", str(root), timeout=5400))
    seconds["run"] = time.perf_counter() - t0
    ws = Workspace.open(root)
    assert ws.config.frames.num_frames == DEFAULT_FRAMES
    (scene,) = ws.scenes()
    gt = evaluation.load_gt(ws.ground_truth_path(scene))
    shared = scenes.shared_scene(ws, scene)
    sim = evaluation.world_from_shared(ws, scene, shared)
    assert sim is not None
    return Built(ws, scene, gt, shared, sim, seconds)


@pytest.fixture(scope="module")
def photos(built: Built, tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, str, float]]:
    """Frames SfM never saw (between two sampled ones), saved as JPEG photos: (path, video, time)."""
    out = tmp_path_factory.mktemp("photos")
    result = []
    for video in sorted(built.gt["videos"]):
        sampled = {f["index"] for f in load_frames(built.ws.frames_dir(built.scene, video))["frames"]}
        path = scenes.video(built.ws, built.scene, video).path
        n = probe(path).num_frames
        for q in (0.3, 0.7):
            index = next(i for i in range(int(q * n), n) if i not in sampled)
            _, t, rgb = next(iter(read_frames(path, [index])))
            p = out / f"{video}_{index:04d}.jpg"
            Image.fromarray(rgb).save(p, quality=92)
            result.append((p, video, float(t)))
    return result


def test_run_took_the_default_path(built: Built, cli):
    """80 frames per 30-s video, sequential matching + loop closures, every frame registered once."""
    ws, scene = built.ws, built.scene
    assert f"\nnum_frames = {DEFAULT_FRAMES}\n" in (ws.root / "howto3d.toml").read_text()
    videos = sorted(built.gt["videos"])
    assert len(videos) >= 2
    for v in videos:
        assert probe(scenes.video(ws, scene, v).path).duration >= SECONDS - 0.5
        frames = load_frames(ws.frames_dir(scene, v))["frames"]
        assert len(frames) == DEFAULT_FRAMES, v
        assert len({f["name"] for f in frames}) == len({f["time"] for f in frames}) == DEFAULT_FRAMES, v
        report = read_json(ws.sfm_dir(scene, v) / "report.json")
        assert report["matching"] == "sequential+retrieval", (v, report["matching"])
        registered = [f.name for f in built.shared.frames_of(v)]
        assert len(registered) == len(set(registered)) >= 0.9 * DEFAULT_FRAMES, (v, len(registered))
        assert (
            sum(seg["registered"] for seg in report["segments"]) == report["registered_all_segments"] <= DEFAULT_FRAMES
        ), (v, report["segments"])  # segments are disjoint: no frame twice
        print(
            f"\n[defaults] {v}: {len(registered)}/{DEFAULT_FRAMES} registered, {len(report['segments'])} "
            f"segment(s), {len(report['discarded_models'])} model(s) discarded"
        )
    print(f"\n[defaults] synth {built.seconds['synth']:.0f} s, run {built.seconds['run']:.0f} s")


def _check_clean(built: Built, cli) -> None:
    doc = json.loads(_ok(cli("check", built.root, "--json")))
    assert doc["ok"] and doc["problems"] == [], doc["problems"]


def test_check(built: Built, cli):
    """`howto3d check` (the workspace's invariants: frames.json, disjoint SfM segments, the alignment, nothing
    stale) exits 0 on a workspace made at the defaults."""
    _check_clean(built, cli)


def test_cameras_match_ground_truth(built: Built, cli):
    doc = json.loads(_ok(cli("cameras", built.root, "--scene", built.scene, "--json")))
    frames = doc["frames"]
    keys = [(f["video"], round(f["time"], 3)) for f in frames]
    assert len(keys) == len(set(keys)), "cameras --json lists a frame twice"
    assert {f["video"] for f in frames} == set(built.gt["videos"])
    # one Sim(3) of ALL camera centres (from the command's own JSON) to the true centres
    truth = [built.gt_frame(f["video"], f["time"])["cam_from_world"] for f in frames]
    est = np.array([_centre(f["cam_from_world"]) for f in frames])
    sim = pycolmap.estimate_sim3d(est, np.array([_centre(T) for T in truth]))
    err = np.linalg.norm(np.asarray(sim * est) - np.array([_centre(T) for T in truth]), axis=1)
    R_fit = sim.rotation.matrix()
    rot = np.array(
        [
            _angle_deg(np.asarray(f["cam_from_world"])[:, :3] @ R_fit.T, np.asarray(T)[:, :3])
            for f, T in zip(frames, truth, strict=True)
        ]
    )
    for v in sorted(built.gt["videos"]):
        sel = np.array([f["video"] == v for f in frames])
        print(
            f"\n[defaults] cameras {v}: {sel.sum()} frames, centre median {np.median(err[sel]) * 100:.2f} cm "
            f"max {err[sel].max() * 100:.2f} cm, rotation max {rot[sel].max():.2f} deg"
        )
        assert sel.sum() >= 0.9 * DEFAULT_FRAMES, v
        assert np.median(err[sel]) <= 0.02, (v, np.median(err[sel]))
        assert rot[sel].max() <= 2.0, (v, rot[sel].max())
        assert all(
            np.array(f["K"]).shape == (3, 3) and (f["width"], f["height"]) == SIZE
            for f, s in zip(frames, sel, strict=True)
            if s
        )


def _gt_clicks(built: Built, video: str, position, n: int = 4) -> list[dict]:
    """The true projection of a point in ``n`` frames of the video spread over all its frames (sampled or not,
    so the transfer localizes or interpolates the poses of the unsampled ones)."""
    v = built.gt["videos"][video]
    seen = []
    for f in v["frames"]:
        if f["cam_from_world"] is None:
            continue
        uv, depth = _project(f["K"], f["cam_from_world"], position)
        if depth > 0 and 10 <= uv[0] < v["width"] - 10 and 10 <= uv[1] < v["height"] - 10:
            seen.append({"time": f["time"], "xy": [float(uv[0]), float(uv[1])]})
    if len(seen) < 2:
        return []
    return [seen[i] for i in np.unique(np.linspace(0, len(seen) - 1, n).round().astype(int))]


def test_transfer_lands_on_the_truth_in_the_other_video(built: Built, cli, tmp_path):
    source, target = sorted(built.gt["videos"])[:2]
    keypoints = [
        {"name": lm["name"], "observations": obs}
        for lm in built.gt["landmarks"]
        if (obs := _gt_clicks(built, source, lm["position"]))
    ]
    assert len(keypoints) >= 4
    kp = tmp_path / "kp.json"
    kp.write_text(json.dumps({"keypoints": keypoints}))
    doc = json.loads(
        _ok(cli("transfer", built.root, "--scene", built.scene, "--source", source, "--keypoints", str(kp), "--json"))
    )
    truth = {lm["name"]: np.array(lm["position"]) for lm in built.gt["landmarks"]}
    assert len(doc["keypoints"]) >= len(keypoints) - 1, doc.get("skipped")
    err_3d, err_px, kinds = [], [], []
    for res in doc["keypoints"]:
        err_3d.append(
            float(
                np.linalg.norm(np.asarray(built.world_from_shared * np.array([res["point"]]))[0] - truth[res["name"]])
            )
        )
        keys = [(p["video"], round(p["time"], 3)) for p in res["projections"]]
        assert len(keys) == len(set(keys)), f"{res['name']}: a frame is listed twice in its projections"
        assert {p["video"] for p in res["projections"]} <= {target}, res["name"]  # empty: not in its view
        kinds += [o["pose"] for o in res["observations_used"]]
        for p in res["projections"]:
            f = built.gt_frame(p["video"], p["time"])
            uv, depth = _project(f["K"], f["cam_from_world"], truth[res["name"]])
            if depth > 0 and 0 <= uv[0] < SIZE[0] and 0 <= uv[1] < SIZE[1]:
                err_px.append(float(np.linalg.norm(np.asarray(p["xy"]) - uv)))
    err_3d, err_px = np.array(err_3d), np.array(err_px)
    print(
        f"\n[defaults] transfer: {len(err_3d)} keypoints, 3D median {np.median(err_3d) * 100:.2f} cm max "
        f"{err_3d.max() * 100:.2f} cm; {len(err_px)} projections in {target}: median {np.median(err_px):.1f} px, "
        f"95th pct {np.percentile(err_px, 95):.1f} px; clicked poses {sorted(kinds)}"
    )
    assert np.median(err_3d) <= 0.02 and err_3d.max() <= 0.05, err_3d
    assert len(err_px) >= 20 and np.median(err_px) <= 6 and np.percentile(err_px, 95) <= 20, err_px


def _filmed_parts(gt: dict) -> list[str]:
    return sorted({s["part"] for v in gt["videos"].values() for s in v["steps"]})


@pytest.fixture(scope="module")
def answers(built: Built) -> dict[str, dict]:
    """{part: `query --json` answer}, filled by test_query (serve checks it gives the same answers)."""
    return {}


def test_query_answers_near_the_true_part(built: Built, cli, tmp_path, answers):
    parts = _filmed_parts(built.gt)
    assert len(parts) >= 2
    batch = tmp_path / "queries.txt"
    batch.write_text("".join(f"where is the {p.replace('_', ' ')}\n" for p in parts))
    got = json.loads(
        _ok(cli("query", built.root, "--scene", built.scene, "--batch", str(batch), "--json", "--moments"))
    )
    got = got if isinstance(got, list) else [got]
    assert len(got) == len(parts)
    errors = {}
    for part, a in zip(parts, got, strict=True):
        assert a["scene"] == built.scene and a["text"] == f"where is the {part.replace('_', ' ')}"
        assert a["top"] and 0 <= a["score"] <= 1 + 1e-6
        world = np.asarray(built.world_from_shared * np.array([a["point"]]))[0]
        errors[part] = float(np.linalg.norm(world - np.array(built.gt["parts"][part])))
        answers[part] = a
        assert 1 <= len(a["moments"]) <= 5 and a["evidence"], a  # the clips and lines behind the answer
        for m in a["moments"]:
            video = built.gt["videos"][m["video"]]
            assert (
                m["start"] <= m["time"] <= m["end"]
                and 0 <= m["xy"][0] < video["width"]
                and 0 <= m["xy"][1] < video["height"]
            ), m
    # the best clip of a right answer is the camera dwelling on that part (ground truth, ±1 s)
    right = [(p, a["moments"][0]) for p, a in answers.items() if errors.get(p, 1.0) <= 0.10]
    on_part = [
        any(
            d["part"] == p and d["start"] - 1 <= m["time"] <= d["end"] + 1
            for d in built.gt["videos"][m["video"]]["dwells"]
        )
        for p, m in right
    ]
    print(f"[defaults] query: top moment on the part for {sum(on_part)} of {len(right)} right answers")
    assert sum(on_part) >= 0.5 * len(right), right
    spread = np.ptp(np.array(list(built.gt["parts"].values())), axis=0)
    print(
        "\n[defaults] query: errors (cm) "
        + ", ".join(f"{p} {e * 100:.1f}" for p, e in errors.items())
        + f"; parts spread {np.linalg.norm(spread) * 100:.0f} cm"
    )
    # a model that answers anywhere in the engine bay (≈ 1.2 m across) misses most parts by far more
    assert np.median(list(errors.values())) <= 0.10, errors
    assert max(errors.values()) <= 0.30, errors


def _overlay_part(built: Built, video: str) -> str:
    return next(s["part"] for s in built.gt["videos"][video]["steps"])


def _part_in_view(built: Built, video: str, t: float) -> tuple[str, np.ndarray]:
    """The filmed part nearest the centre of a frame (the scene's car: a photo has no video's variant), and its
    true projection there."""
    f = built.gt_frame(video, t)
    best, best_uv, best_d = None, None, np.inf
    for part in _filmed_parts(built.gt):
        uv, depth = _project(f["K"], f["cam_from_world"], built.gt["parts"][part])
        d = float(np.linalg.norm(uv - np.array(SIZE) / 2))
        if depth > 0 and 30 < uv[0] < SIZE[0] - 30 and 30 < uv[1] < SIZE[1] - 30 and d < best_d:
            best, best_uv, best_d = part, uv, d
    assert best is not None, f"no filmed part in view of {video} at {t} s"
    return best, best_uv


def test_overlay_video_draws_every_frame_with_the_truth_where_it_is(built: Built, cli, tmp_path):
    """`overlay --video`: one output frame per video frame, the video's size; the ground-truth dot
    (`--gt-part`) lands where the true camera sees the part, in registered and interpolated frames alike."""
    video = sorted(built.gt["videos"])[1]
    part = _overlay_part(built, video)
    out = tmp_path / "overlay.mp4"
    _ok(
        cli(
            "overlay",
            built.root,
            "--scene",
            built.scene,
            "--video",
            video,
            "--query",
            f"where is the {part.replace('_', ' ')}",
            "--out",
            str(out),
            "--gt-part",
            part,
        )
    )
    src = scenes.video(built.ws, built.scene, video).path
    n = probe(src).num_frames
    assert probe(out).num_frames == n
    raw = {i: rgb for i, _, rgb in read_frames(src)}
    truth = built.gt["videos"][video]
    errors, missing, red = [], [], 0
    for i, _, drawn in read_frames(out):
        assert (drawn.shape[1], drawn.shape[0]) == SIZE
        red += int(((drawn[..., 0].astype(float) - raw[i][..., 0]) > 60).sum() > 20)
        f = truth["frames"][i]
        uv, depth = _project(f["K"], f["cam_from_world"], truth["parts"][part])
        if depth <= 0 or not (15 < uv[0] < SIZE[0] - 15 and 15 < uv[1] < SIZE[1] - 15):
            continue
        c = _marker_centre(drawn, raw[i])
        if c is None:
            missing.append(i)
        else:
            errors.append(float(np.linalg.norm(c - uv)))
    errors = np.array(errors)
    print(
        f"\n[defaults] overlay --video {video}: {n} frames, GT dot in {len(errors)} frames: median "
        f"{np.median(errors):.1f} px, 95th pct {np.percentile(errors, 95):.1f} px, max {errors.max():.1f} px; "
        f"not found in {len(missing)}; heatmap drawn in {red} frames"
    )
    assert len(errors) >= 30 and len(missing) <= 0.05 * len(errors), missing
    assert np.median(errors) <= 4 and np.percentile(errors, 95) <= 12, errors
    assert red >= 0.2 * n


def test_localize_photos_within_2cm(built: Built, cli, photos):
    doc = json.loads(
        _ok(cli("localize", built.root, "--scene", built.scene, *[str(p) for p, _, _ in photos], "--json"))
    )
    assert [i["image"] for i in doc["images"]] == [str(p) for p, _, _ in photos]
    errors = []
    for (_, video, t), r in zip(photos, doc["images"], strict=True):
        assert r["status"] == "localized", r
        assert (r["width"], r["height"]) == SIZE
        errors.append(
            _pose_error(r["cam_from_world"], built.world_from_shared, built.gt_frame(video, t)["cam_from_world"])
        )
    print("\n[defaults] localize: " + ", ".join(f"{e[0] * 100:.2f} cm / {e[1]:.2f} deg" for e in errors))
    assert max(e[0] for e in errors) <= 0.02 and max(e[1] for e in errors) <= 1.0, errors


def test_overlay_image_puts_the_truth_on_the_part(built: Built, cli, photos, tmp_path):
    path, video, t = photos[-1]
    part, uv = _part_in_view(built, video, t)
    out = tmp_path / "lit.png"
    _ok(
        cli(
            "overlay",
            built.root,
            "--scene",
            built.scene,
            "--image",
            str(path),
            "--query",
            f"where is the {part.replace('_', ' ')}",
            "--out",
            str(out),
            "--gt-part",
            part,
        )
    )
    drawn = np.asarray(Image.open(out).convert("RGB"))
    photo = np.asarray(Image.open(path).convert("RGB"))
    assert drawn.shape == photo.shape == (SIZE[1], SIZE[0], 3)
    assert ((drawn[..., 0].astype(float) - photo[..., 0]) > 60).sum() > 20  # the heatmap, in red
    c = _marker_centre(drawn, photo)
    assert c is not None, f"no ground-truth dot drawn for {part}"
    print(f"\n[defaults] overlay --image ({part}): GT dot {np.linalg.norm(c - uv):.1f} px from the true projection")
    assert np.linalg.norm(c - uv) <= 4, (c, uv)


def test_overlay_image_draws_a_guide_step_on_its_part(built: Built, cli, photos, tmp_path):
    """``overlay --image --task T --step N``: the step's magenta dot lands near its part in the photo."""
    task, title = _guide_task(built)
    steps = read_task_file(find_task_file(built.ws.scene_dir(built.scene))).tasks[task].steps
    part_of = {s["step"]: s["part"] for r in built.gt["videos"].values() for s in r["steps"] if s["task"] == task}
    seen = []
    for path, video, t in photos:
        f = built.gt_frame(video, t)
        for n, step in enumerate(steps, 1):
            if step not in part_of:
                continue
            uv, depth = _project(f["K"], f["cam_from_world"], built.gt["parts"][part_of[step]])
            if depth > 0 and 30 < uv[0] < SIZE[0] - 30 and 30 < uv[1] < SIZE[1] - 30:
                seen.append((path, n, uv))
    assert seen, "no photo shows a part of the task"
    path, n, uv = seen[0]
    out = tmp_path / "step.png"
    r = cli(
        "overlay",
        built.root,
        "--scene",
        built.scene,
        "--image",
        str(path),
        "--task",
        title,
        "--step",
        "99",
        "--out",
        str(out),
    )
    assert r.returncode == 2 and "--step must be 1 to" in r.stderr and "Traceback" not in r.stderr, r
    _ok(
        cli(
            "overlay",
            built.root,
            "--scene",
            built.scene,
            "--image",
            str(path),
            "--task",
            title,
            "--step",
            str(n),
            "--out",
            str(out),
        )
    )
    drawn = np.asarray(Image.open(out).convert("RGB")).astype(int)
    ys, xs = np.nonzero((drawn[..., 0] > 220) & (drawn[..., 1] < 40) & (drawn[..., 2] > 220))
    assert len(xs) > 8, "no step dot drawn"
    off = float(np.linalg.norm([xs.mean() + 0.5 - uv[0], ys.mean() + 0.5 - uv[1]]))
    print(f"\n[defaults] overlay --image --task {task} --step {n}: dot {off:.1f} px from the part's true projection")
    assert off <= 60, off


def test_export_glb_and_ply_lie_on_the_true_surface(built: Built, cli, tmp_path):
    import open3d as o3d

    world = o3d.t.geometry.RaycastingScene()
    world.add_triangles(
        o3d.t.geometry.TriangleMesh.from_legacy(
            o3d.io.read_triangle_mesh(str(built.ws.scene_dir(built.scene) / "world.ply"))
        )
    )
    counts = {}
    for fmt in ("ply", "glb"):
        out = tmp_path / f"scene.{fmt}"
        _ok(
            cli(
                "export",
                built.root,
                "--scene",
                built.scene,
                "--format",
                fmt,
                "--query",
                "where is the dipstick",
                "--out",
                str(out),
            )
        )
        loaded = trimesh.load(out)
        if fmt == "ply":
            pts = np.asarray(loaded.vertices)
            counts[fmt] = len(pts)
        else:
            assert out.read_bytes()[:4] == b"glTF"
            clouds = [g for g in loaded.geometry.values() if isinstance(g, trimesh.PointCloud)]
            counts[fmt] = sum(len(c.vertices) for c in clouds)
    n = len(built.shared.points)
    assert counts["glb"] == n > 1000 and n < counts["ply"] <= n + 1000, (counts, n)  # points, then heatmap voxels
    # the exported scene points lie on the true world's surface (after the world fit)
    rng = np.random.default_rng(0)
    sample = pts[:n][rng.choice(n, min(n, 3000), replace=False)]
    dist = world.compute_distance(o3d.core.Tensor(np.asarray(built.world_from_shared * sample, np.float32))).numpy()
    print(
        f"\n[defaults] export: {n} points (ply {counts['ply']} with heatmap), distance to the true surface "
        f"median {np.median(dist) * 100:.2f} cm, 90th pct {np.percentile(dist, 90) * 100:.2f} cm"
    )
    assert np.median(dist) <= 0.01 and np.percentile(dist, 90) <= 0.03, np.percentile(dist, [50, 90])


def test_actionness(built: Built, cli):
    doc = json.loads(_ok(cli("actionness", built.root, "--scene", built.scene, "--json")))
    assert set(doc) == set(built.gt["videos"])
    inside, outside = [], []
    for v, r in doc.items():
        a = np.array(r["actionness"])
        duration = probe(scenes.video(built.ws, built.scene, v).path).duration
        assert abs(len(a) * r["clip_seconds"] - duration) <= r["clip_seconds"], (v, len(a), duration)
        assert np.isfinite(a).all() and a.std() > 0, v  # a score per clip (not a probability)
        t = (np.arange(len(a)) + 0.5) * r["clip_seconds"]
        step = np.zeros(len(a), bool)
        for s in built.gt["videos"][v]["steps"]:
            step |= (t >= s["start"]) & (t < s["end"])
        inside += a[step].tolist()
        outside += a[~step].tolist()
    print(f"\n[defaults] actionness: mean in GT steps {np.mean(inside):.3f}, outside {np.mean(outside):.3f}")
    assert np.mean(inside) > np.mean(outside), (np.mean(inside), np.mean(outside))


def _check_timeline(r: dict, duration: float) -> None:
    """Segments inside the video's clips, in order, never overlapping; the clips cover the video."""
    assert abs(r["clips"] * r["clip_seconds"] - duration) <= r["clip_seconds"], (r["clips"], duration)
    segs = [s for s in r["steps"] if s["start"] is not None]
    assert segs and all(0 <= s["start"] < s["end"] <= r["clips"] for s in segs), segs
    assert all(0 <= s["clip"] < r["clips"] for s in r["steps"])
    ordered = sorted(segs, key=lambda s: s["start"])
    assert all(a["end"] <= b["start"] for a, b in zip(ordered, ordered[1:], strict=False)), ordered


def test_steps_one_video(built: Built, cli):
    video = sorted(built.gt["videos"])[0]
    r = json.loads(_ok(cli("steps", built.root, "--scene", built.scene, "--video", video, "--json")))
    assert r["video"] == video and r["task_source"] != "discovered"
    _check_timeline(r, probe(scenes.video(built.ws, built.scene, video).path).duration)
    truth = {(s["task"], s["step"]) for s in built.gt["videos"][video]["steps"]}
    assert set(r["tasks"]) == {s["task"] for s in built.gt["videos"][video]["steps"]}, r["tasks"]
    # each predicted step's segment overlaps that step's true interval
    hits = sum(
        any(
            g["task"] == s["task"]
            and g["step"] == s["step"]
            and s["start"] is not None
            and s["start"] < g["end"]
            and g["start"] < s["end"]
            for g in built.gt["videos"][video]["steps"]
        )
        for s in r["steps"]
    )
    print(
        f"\n[defaults] steps {video}: {len(r['steps'])} steps over {r['clips']} clips, {hits} overlap their "
        f"true interval ({len(truth)} true steps)"
    )
    assert hits >= 0.4 * len(truth), (hits, len(truth))


def _guide_task(built: Built) -> tuple[str, str]:
    """(id, title) of the task the most videos perform, from the scene's task file."""
    tf = read_task_file(find_task_file(built.ws.scene_dir(built.scene)))
    counts = Counter(t for r in built.gt["videos"].values() for t in {s["task"] for s in r["steps"]})
    task = max(sorted(counts), key=counts.__getitem__)
    return task, tf.tasks[task].title


def _check_guide(built: Built, g: dict, task: str) -> dict:
    """The ``guide --json`` contract, and the guide against the truth (``evaluation.eval_guide``)."""
    assert g["scene"] == built.scene and g["task"] == task and g["task_source"] == "task file", g
    for st in g["steps"]:
        assert {"step", "point", "radius", "confidence", "moments", "narration"} <= set(st), st
        for m in st["moments"]:
            assert {"video", "start", "end", "time", "xy", "score"} <= set(m) and m["start"] <= m["time"] <= m["end"]
            w, h = built.gt["videos"][m["video"]]["width"], built.gt["videos"][m["video"]]["height"]
            assert 0 <= m["xy"][0] < w and 0 <= m["xy"][1] < h, m
        for n in st["narration"]:
            assert any(
                m["video"] == n["video"] and n["start"] < m["end"] and n["end"] > m["start"] for m in st["moments"]
            ), n
    r = evaluation.eval_guide(built.gt, built.world_from_shared, g)
    assert r["steps"], r
    return r


def test_guide(built: Built, cli):
    """Asked in the user's words, the guide finds the task, puts its steps on their parts and shows moments of
    the step being done."""
    task, title = _guide_task(built)
    g = json.loads(
        _ok(cli("guide", built.root, "--scene", built.scene, "--task", f"how do I {title.lower()}", "--json"))
    )
    r = _check_guide(built, g, task)
    print(
        f"\n[defaults] guide {task}: {len(r['steps'])} steps, placed ≤30 cm {r['placed']:.2f}, top moment shows "
        f"the part {r['moment_shows']:.2f}, inside the step {r['moment_inside']:.2f}"
    )
    assert r["placed"] >= 0.75 and r["moment_shows"] >= 0.75 and r["moment_inside"] >= 0.5, r


@pytest.fixture(scope="module")
def anchors_file(built: Built) -> dict:
    """The anchors `export --anchors` wrote (filled by its test; serve checks /anchors.json gives the same)."""
    return {}


def _glb_nodes(path: Path) -> dict[str, dict]:
    """The GLB's glTF nodes by name (its JSON chunk: the first after the 12-byte header)."""
    data = path.read_bytes()
    length = int.from_bytes(data[12:16], "little")
    return {n["name"]: n for n in json.loads(data[20 : 20 + length])["nodes"] if "name" in n}


def test_export_anchors_are_the_query_and_guide_points(built: Built, cli, tmp_path, anchors_file):
    """`export --anchors`: a node per asked part at its `query` point and per guide step at its `guide` point,
    the frame (units, up) on the anchors node; the anchors file beside the GLB holds the same."""
    task, _ = _guide_task(built)
    parts = [p.replace("_", " ") for p in _filmed_parts(built.gt)[:2]]
    names = tmp_path / "parts.txt"
    names.write_text(f"# parts\n{parts[1]}\n\n")
    out = tmp_path / "scene.glb"
    _ok(
        cli(
            "export",
            built.root,
            "--scene",
            built.scene,
            "--anchors",
            "--query",
            parts[0],
            "--queries",
            str(names),
            "--out",
            str(out),
        )
    )
    doc = json.loads(out.with_suffix(".anchors.json").read_text())
    batch = tmp_path / "queries.txt"
    batch.write_text("".join(f"{p}\n" for p in parts))
    q = json.loads(_ok(cli("query", built.root, "--scene", built.scene, "--batch", str(batch), "--json")))
    g = json.loads(_ok(cli("guide", built.root, "--scene", built.scene, "--task", task, "--json")))
    by_name = {a["name"]: a for a in doc["anchors"]}
    for a in q:
        assert by_name[a["text"]]["kind"] == "part" and by_name[a["text"]]["point"] == a["point"], a["text"]
    steps = {(a["task"], a["index"]): a for a in doc["anchors"] if a["kind"] == "step"}
    placed = [st for st in g["steps"] if st["point"] is not None]
    assert placed
    for st in placed:
        a = steps[(task, st["index"])]
        assert a["point"] == st["point"] and a["radius"] == st["radius"] and a["step"] == st["step"], (a, st)
    assert doc["units"] == g["units"] and np.isclose(np.linalg.norm(doc["up"]), 1, atol=1e-5)
    nodes = _glb_nodes(out)
    root = nodes["anchors"]
    assert np.allclose(np.array(root["matrix"]).reshape(4, 4).T, doc["gltf_from_shared"], atol=1e-6)
    assert root["extras"]["units"] == doc["units"] and root["extras"]["up"] == doc["up"]
    for a in doc["anchors"]:
        node = nodes[a["name"]]
        assert np.allclose(np.array(node["matrix"]).reshape(4, 4).T[:3, 3], a["point"], atol=1e-6), a["name"]
        assert node["extras"]["kind"] == a["kind"] and node["extras"]["point"] == a["point"]
    # the up the GLB's root turns to glTF's +Y is the world's up
    world_up = np.asarray(built.world_from_shared * np.array([[0, 0, 0], doc["up"]]))
    assert (world_up[1] - world_up[0])[2] / np.linalg.norm(world_up[1] - world_up[0]) > 0.99
    anchors_file.update(doc, parts=parts)
    print(f"\n[defaults] anchors: {len(doc['anchors'])} ({len(placed)} steps of {task}), units {doc['units']}")


def test_groundedness(built: Built, cli):
    doc = json.loads(_ok(cli("groundedness", built.root, "--scene", built.scene, "--json")))
    assert doc["scene"] == built.scene and set(doc["videos"]) == set(built.gt["videos"])
    for v, r in doc["videos"].items():
        lines = r["lines"]
        truth = built.gt["videos"][v]["narrations"]
        assert len(lines) == len(truth), v  # every subtitle line once, as narrated
        assert all(
            ln["text"] == n["text"] and abs(ln["start"] - n["start"]) < 2e-3 and abs(ln["end"] - n["end"]) < 2e-3
            for ln, n in zip(lines, truth, strict=True)
        ), v
        values = [ln["groundedness"] for ln in lines] + [r["auc"]]
        assert all(0 <= x <= 1 for x in values if x is not None), v


def test_view_screenshot_not_blank_and_shows_the_heatmap(built: Built, cli, tmp_path):
    plain, hot = tmp_path / "plain.png", tmp_path / "hot.png"
    _ok(cli("view", built.root, "--scene", built.scene, "--screenshot", str(plain)))
    _ok(cli("view", built.root, "--scene", built.scene, "--query", "where is the dipstick", "--screenshot", str(hot)))
    palette = heatmap_colors(np.linspace(0, 1, 64)) * 255

    def heat_pixels(im: np.ndarray) -> int:
        d = np.linalg.norm(im.reshape(-1, 1, 3).astype(float) - palette[None], axis=2).min(axis=1)
        return int((d < 12).sum())

    imgs = [np.asarray(Image.open(p).convert("RGB")) for p in (plain, hot)]
    for img in imgs:
        assert img.std() > 10 and len(np.unique(img.reshape(-1, 3), axis=0)) > 50
    print(f"\n[defaults] view: heat pixels {heat_pixels(imgs[0])} plain, {heat_pixels(imgs[1])} with the query")
    assert heat_pixels(imgs[1]) > heat_pixels(imgs[0]) + 20


def _annotation_clicks(built: Built, video: str) -> tuple[str, list[tuple[float, np.ndarray]]]:
    """A part of ``video`` (where that video's car has it) and three of its frames, seconds apart, that see it
    well inside the picture: (part, [(time, true pixel)])."""
    gt = built.gt["videos"][video]
    for part in _filmed_parts(built.gt):
        seen = []
        for f in gt["frames"]:
            uv, depth = _project(f["K"], f["cam_from_world"], gt["parts"][part])
            if depth > 0 and 40 < uv[0] < gt["width"] - 40 and 40 < uv[1] < gt["height"] - 40:
                seen.append((f["time"], uv))
        if len(seen) >= 3 and seen[-1][0] - seen[0][0] >= 6:
            return part, [seen[0], seen[len(seen) // 2], seen[-1]]
    raise AssertionError(f"no part seen long enough in {video}")


def _page_annotate(driver, url: str, built: Built, video: str, part: str, clicks: list, span: dict) -> None:
    """The page's annotation panel in headless Chromium: a keypoint named ``part`` clicked at the true pixels of
    ``clicks`` (time, pixel) and the step ``span`` (its text, start, end) marked on the timeline, both saved."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver.get(url + "/")
    wait = WebDriverWait(driver, 120)
    wait.until(lambda d: d.execute_script("return window.howto3d && window.howto3d.ready"))
    driver.find_element(By.CSS_SELECTOR, "#annotate summary").click()
    Select(driver.find_element(By.ID, "avideo")).select_by_value(video)
    wait.until(lambda d: d.execute_script(f"const a = window.howto3d.annotate; return a.ready && a.video == '{video}'"))
    driver.find_element(By.ID, "kpname").send_keys(part)
    el = driver.find_element(By.ID, "avid")
    gt = built.gt["videos"][video]
    for t, uv in clicks:
        # a quarter frame in: the frame shown is the one of time t (the page records the time it shows)
        driver.execute_script("return window.howto3d.annotate.seek(arguments[0])", t + 0.25 / gt["fps"])
        w, h = el.size["width"], el.size["height"]
        k = min(w / gt["width"], h / gt["height"])
        dx = (w - gt["width"] * k) / 2 + uv[0] * k - w / 2  # selenium offsets are from the element's centre
        dy = (h - gt["height"] * k) / 2 + uv[1] * k - h / 2
        ActionChains(driver).move_to_element_with_offset(el, round(dx), round(dy)).click().perform()
    driver.find_element(By.ID, "kpsave").click()
    wait.until(lambda d: d.execute_script("return window.howto3d.annotate.saved !== null"))
    driver.find_element(By.ID, "stepname").send_keys(span["step"])
    for t, button in ((span["start"], "stepstart"), (span["end"], "stepend")):
        driver.execute_script("return window.howto3d.annotate.seek(arguments[0])", t)
        driver.find_element(By.ID, button).click()
    driver.find_element(By.ID, "spansave").click()
    wait.until(lambda d: d.execute_script("return window.howto3d.annotate.savedSpans !== null"))
    assert not driver.execute_script("return window.howto3d.errors"), driver.execute_script(
        "return window.howto3d.errors"
    )


def _page_guide(driver, url: str, built: Built, task: str, title: str) -> tuple[float, float]:
    """The web page in headless Chromium: ask for the task's guide, click step 2. The marker's pixels lie where
    step 2's point projects (the page's own camera matrices, projected here), and the video panel plays inside
    step 2's best moment. Returns (marker distance to the projection in px, video time)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url + "/")
    wait = WebDriverWait(driver, 120)
    wait.until(lambda d: d.execute_script("return window.howto3d && window.howto3d.ready"))
    driver.find_element(By.ID, "task").send_keys(title)
    driver.find_element(By.CSS_SELECTOR, "#howto button").click()
    wait.until(lambda d: d.execute_script("return window.howto3d.guide !== null && window.howto3d.busy == 0"))
    g = driver.execute_script("return window.howto3d.guide")
    assert g["task"] == task and len(g["steps"]) >= 2, g
    step = g["steps"][1]
    assert step["point"] is not None and step["moments"], step
    driver.find_element(By.CSS_SELECTOR, '#steps li[data-index="2"] button').click()
    wait.until(lambda d: d.execute_script("return window.howto3d.marker !== null && !window.howto3d.animating"))
    time.sleep(0.3)  # a few frames drawn at the final view
    shot = np.asarray(Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")).astype(int)
    v = driver.execute_script("return window.howto3d.view()")
    M = (
        np.array(v["projection"]).reshape(4, 4).T
        @ np.array(v["view"]).reshape(4, 4).T
        @ np.array(v["frame"]).reshape(4, 4).T
    )  # three.js stores matrices column-major
    c = M @ np.r_[step["point"], 1.0]
    ndc = c[:3] / c[3]
    want = np.array([v["left"] + (ndc[0] + 1) / 2 * v["width"], v["top"] + (1 - ndc[1]) / 2 * v["height"]])
    canvas = shot[:, : int(v["left"] + v["width"])]
    ys, xs = np.nonzero((canvas[..., 0] > 230) & (canvas[..., 1] < 40) & (canvas[..., 2] > 230))
    assert len(xs) > 30, len(xs)  # the marker is drawn (pure magenta, over everything)
    off = float(np.linalg.norm([xs.mean(), ys.mean()] - want))
    m = step["moments"][0]
    wait.until(
        lambda d: d.execute_script(
            "const v = document.getElementById('video'); return v.readyState >= 2 && !v.seeking && v.currentTime > 0"
        )
    )
    t = driver.execute_script("return document.getElementById('video').currentTime")
    assert m["start"] - 0.05 <= t <= m["end"] + 0.25, (t, m)
    assert "Step 2 of" in driver.find_element(By.ID, "stepinfo").text
    assert driver.execute_script("return window.howto3d.errors") == []
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == [], severe
    return off, t


def test_serve_answers_every_route(built: Built, photos, answers, anchors_file, tmp_path, headless_chromium):
    port = _free_port()
    log = tmp_path / "serve.log"
    with open(log, "w") as f:
        proc = subprocess.Popen(
            [sys.executable, "-m", "howto3d", "serve", built.root, "--port", str(port), "--host", "127.0.0.1"],
            stdout=f,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        with httpx.Client(base_url=url, timeout=600) as c:
            deadline = time.monotonic() + 300
            while True:
                assert proc.poll() is None, log.read_text()[-4000:]
                assert time.monotonic() < deadline, "server did not start"
                try:
                    health = c.get("/health")
                    break
                except httpx.TransportError:
                    time.sleep(0.5)
            assert health.status_code == 200 and health.json()["status"] == "ok" and health.json()["grounding"]
            page = c.get("/")
            assert page.status_code == 200 and "importmap" in page.text
            assert c.get("/static/vendor/three/three.module.js").status_code == 200
            (s,) = c.get("/scenes").json()["scenes"]
            assert s["scene"] == built.scene and s["aligned"] and s["grounding"]
            assert set(s["videos"]) == set(built.gt["videos"])

            part = _filmed_parts(built.gt)[0]
            q = c.post("/query", json={"scene": built.scene, "text": f"where is the {part.replace('_', ' ')}"})
            assert q.status_code == 200, q.text
            world = np.asarray(built.world_from_shared * np.array([q.json()["point"]]))[0]
            err_q = float(np.linalg.norm(world - np.array(built.gt["parts"][part])))
            if part in answers:  # the CLI's answer (test_query), when it ran: the same point, evidence and clips
                assert np.allclose(q.json()["point"], answers[part]["point"], atol=1e-4)
                assert q.json()["moments"] == answers[part]["moments"]

            path, video, t = photos[0]
            r = c.post(
                "/localize", data={"scene": built.scene}, files={"image": (path.name, path.read_bytes(), "image/jpeg")}
            )
            assert r.status_code == 200, r.text
            (entry,) = r.json()["images"]
            assert entry["status"] == "localized", entry
            err_m, err_deg = _pose_error(
                entry["cam_from_world"], built.world_from_shared, built.gt_frame(video, t)["cam_from_world"]
            )

            seen, _ = _part_in_view(built, video, t)
            png = c.post(
                "/overlay",
                data={"scene": built.scene, "text": f"where is the {seen.replace('_', ' ')}"},
                files={"image": (path.name, path.read_bytes(), "image/jpeg")},
            )
            assert png.status_code == 200 and png.headers["content-type"] == "image/png", png.text[:500]
            drawn = np.asarray(Image.open(io.BytesIO(png.content)).convert("RGB")).astype(float)
            photo = np.asarray(Image.open(path).convert("RGB")).astype(float)
            assert drawn.shape == photo.shape and ((drawn - photo)[..., 0] > 60).sum() > 20

            task, title = _guide_task(built)
            g = c.get("/guide", params={"scene": built.scene, "task": title})
            assert g.status_code == 200, g.text
            rg = _check_guide(built, g.json(), task)
            assert rg["placed"] >= 0.75, rg
            assert c.get("/guide", params={"scene": built.scene, "task": " "}).status_code == 400
            video = sorted(built.gt["videos"])[0]
            part = c.get(f"/scene/{built.scene}/video/{video}", headers={"Range": "bytes=100-199"})
            whole = scenes.video(built.ws, built.scene, video).path.read_bytes()
            assert part.status_code == 206 and part.content == whole[100:200], part.status_code
            assert c.get(f"/scene/{built.scene}/video/nope").status_code == 404
            if headless_chromium is not None:
                px, t = _page_guide(headless_chromium(), url, built, task, title)
                print(f"\n[defaults] page: step 2's marker {px:.1f} px from its projection, video at {t:.2f} s")
                assert px <= 6.0, px
                # annotate on the page: the keypoint file `transfer` reads puts the part where it is
                source = sorted(built.gt["videos"])[1]
                kp_part, clicks = _annotation_clicks(built, source)
                span = built.gt["videos"][source]["steps"][0]
                _page_annotate(headless_chromium(), url, built, source, kp_part, clicks, span)
                saved = built.ws.annotations_dir(built.scene)
                doc = json.loads((saved / "keypoints" / f"{source}.json").read_text())
                (clicked,) = doc["keypoints"]
                assert clicked["name"] == kp_part and len(clicked["observations"]) == 3, doc
                moved = json.loads(
                    _ok(
                        _howto3d(
                            "transfer",
                            built.root,
                            "--scene",
                            built.scene,
                            "--source",
                            source,
                            "--keypoints",
                            str(saved / "keypoints" / f"{source}.json"),
                            "--json",
                            timeout=600,
                        )
                    )
                )
                (kp,) = moved["keypoints"]
                world = np.asarray(built.world_from_shared * np.array([kp["point"]]))[0]
                err_kp = float(np.linalg.norm(world - np.array(built.gt["videos"][source]["parts"][kp_part])))
                rows = (saved / "steps" / f"{source}.csv").read_text().splitlines()
                print(
                    f"\n[defaults] page annotation: {kp_part} clicked on 3 frames of {source} → transfer "
                    f"{err_kp * 100:.2f} cm from the truth; step span {rows[-1]}"
                )
                assert err_kp <= 0.02, err_kp
                assert kp["projections"], kp  # shown in the other video's frames
                step, start, end = rows[-1].split(",")
                assert rows[0] == "step,start,end" and step == span["step"], rows
                assert abs(float(start) - span["start"]) < 0.05 and abs(float(end) - span["end"]) < 0.05, rows

            if anchors_file:  # the CLI's anchors (test_export_anchors), when it ran: the same
                got = c.get(f"/scene/{built.scene}/anchors.json", params={"name": anchors_file["parts"]})
                assert got.status_code == 200, got.text
                want = {k: v for k, v in anchors_file.items() if k != "parts"}
                doc = got.json()
                assert {k: v for k, v in doc.items() if k != "anchors"} == {
                    k: v for k, v in want.items() if k != "anchors"
                }
                # the server's BERT runs on torch's kernels, the CLI's on NumPy: scores may differ in the 6th digit
                assert [a["name"] for a in doc["anchors"]] == [a["name"] for a in want["anchors"]]
                for a, b in zip(doc["anchors"], want["anchors"], strict=True):
                    assert a.keys() == b.keys() and np.allclose(a["point"], b["point"], atol=1e-6), (a, b)
                    assert abs(a["confidence"] - b["confidence"]) <= 1e-4 and a["radius"] == b["radius"], (a, b)
            glb = c.get(f"/scene/{built.scene}/export.glb")
            assert glb.status_code == 200 and glb.content[:4] == b"glTF"
            loaded = trimesh.load(io.BytesIO(glb.content), file_type="glb")
            n = sum(len(g.vertices) for g in loaded.geometry.values() if isinstance(g, trimesh.PointCloud))
            assert n == len(built.shared.points)
        print(
            f"\n[defaults] serve: /query {err_q * 100:.1f} cm from the truth, /localize {err_m * 100:.2f} cm / "
            f"{err_deg:.2f} deg"
        )
        assert err_q <= 0.30 and err_m <= 0.02 and err_deg <= 1.0, (err_q, err_m, err_deg)
    finally:
        proc.send_signal(signal.SIGINT)  # uvicorn's graceful stop
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert "Traceback" not in log.read_text(), log.read_text()[-4000:]


def test_discover(built: Built, cli):
    """After the commands that read the task file's timelines (``discover`` saves its own in their place)."""
    doc = json.loads(_ok(cli("discover", built.root, "--scene", built.scene, "--json")))
    assert set(doc) == set(built.gt["videos"])
    for v, r in doc.items():
        assert r["task_source"] == "discovered"
        _check_timeline(r, probe(scenes.video(built.ws, built.scene, v).path).duration)
        assert 1 <= len(r["steps"]) <= 7  # --k default


def test_check_after_every_command(built: Built, cli):
    """The commands above (actionness, steps, discover, groundedness wrote into the workspace) leave it clean."""
    _check_clean(built, cli)


def test_scale_makes_the_frame_metric(built: Built, cli, tmp_path):
    """On a copy (it moves the shared frame the grounding model was trained in): two landmarks clicked in one
    video and their true distance make the frame metric; the world fit afterwards has scale 1."""
    root = tmp_path / "ws"
    root.mkdir()
    shutil.copy(built.ws.root / "howto3d.toml", root)
    shutil.copytree(
        built.ws.scene_dir(built.scene), root / "scenes" / built.scene, ignore=shutil.ignore_patterns("temporal")
    )
    ws = Workspace.open(root)
    source = sorted(built.gt["videos"])[0]
    clicked = [
        (lm, obs)
        for lm in built.gt["landmarks"]
        if (obs := evaluation.clicks(built.gt, source, np.array(lm["position"]), built.shared.frames_of(source)))
    ]
    assert len(clicked) >= 2
    a = clicked[0][0]
    b = max((lm for lm, _ in clicked[1:]), key=lambda lm: np.linalg.norm(np.subtract(lm["position"], a["position"])))
    metres = float(np.linalg.norm(np.subtract(a["position"], b["position"])))
    kp = tmp_path / "kp.json"
    kp.write_text(json.dumps({"keypoints": [{"name": lm["name"], "observations": obs} for lm, obs in clicked]}))
    out = json.loads(
        _ok(
            cli(
                "scale",
                str(root),
                "--scene",
                built.scene,
                "--source",
                source,
                "--keypoints",
                str(kp),
                "--distance",
                a["name"],
                b["name"],
                f"{metres}",
                "--json",
            )
        )
    )
    assert out["units"] == "metres" and out["distances"][0]["after"] == pytest.approx(metres, rel=1e-3)
    frame = read_json(ws.align_dir(built.scene) / "transforms.json")["frame"]
    assert frame["units"] == "metres" and frame["metric_scale"] == pytest.approx(out["scale"])
    shared = scenes.shared_scene(ws, built.scene)
    keys = [(f.video, round(f.time, 3)) for f in shared.frames]
    assert len(keys) == len(set(keys))
    s = evaluation.fit_to_world(shared.frames, built.gt).scale
    print(
        f"\n[defaults] scale: {a['name']}–{b['name']} {metres:.3f} m; world fit scale afterwards {s:.4f} (1 = metric)"
    )
    assert abs(s - 1) <= 0.02, s
