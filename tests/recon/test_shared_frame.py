"""The upright, metric shared frame: gravity up from the cameras, scale from a known length."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from howto3d import evaluation, scenes
from howto3d.workspace import Workspace
from recon.io import InputError
from recon.shared_frame import fit_scale, upright


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.degrees(np.arccos(np.clip(a @ b / np.linalg.norm(a) / np.linalg.norm(b), -1, 1))))


def _look(eye: np.ndarray, target: np.ndarray, roll: float) -> np.ndarray:
    """cam_from_world looking from ``eye`` at ``target``, world z up, rolled about the optical axis."""
    z = (target - eye) / np.linalg.norm(target - eye)
    x = np.cross(z, [0, 0, 1.0])
    x /= np.linalg.norm(x)
    R = Rotation.from_rotvec([0, 0, roll]).as_matrix() @ np.stack([x, np.cross(z, x), z])
    return np.hstack([R, (-R @ eye)[:, None]])


def _rig(seed: int, roll_deg: float, portrait: float, headings_deg: float, n: int = 100):
    """Hand-held cameras looking down 30–70° at a flat-ish work area, the whole world turned by a random rotation
    (old_from_world): the cameras in the old frame, the points, and the true up in the old frame."""
    rng = np.random.default_rng(seed)
    G = Rotation.random(random_state=seed).as_matrix()
    cams = []
    for _ in range(n):
        az, el = np.radians(rng.uniform(-headings_deg / 2, headings_deg / 2)), np.radians(rng.uniform(30, 70))
        eye = rng.uniform(0.4, 1.5) * np.array([np.sin(az) * np.cos(el), -np.cos(az) * np.cos(el), np.sin(el)])
        roll = np.radians(rng.normal(0, roll_deg)) + (np.pi / 2 if rng.random() < portrait else 0.0)
        P = _look(eye, rng.normal(0, 0.05, 3), roll)
        cams.append(np.hstack([P[:, :3] @ G.T, P[:, 3:]]))
    points = (rng.normal(0, 0.3, (600, 3)) * [1, 1, 0.03] + [0.1, 0.2, -0.05]) @ G.T
    return cams, points, G @ [0, 0, 1.0]


@pytest.mark.parametrize("roll_deg, portrait", [(1.0, 0.0), (3.0, 0.0), (3.0, 0.2)])
def test_upright_rolled_pitched_cameras(roll_deg: float, portrait: float) -> None:
    """Pitch does not matter, roll averages out, a fifth of portrait (90° rolled) shots is ignored."""
    for seed in range(5):
        cams, points, true_up = _rig(seed, roll_deg, portrait, headings_deg=60)
        new_from_old, info = upright(cams, points)
        R = new_from_old.rotation.matrix()
        assert _angle(R[2], true_up) < 1.0 + roll_deg, info
        assert info["method"] == "cameras" and not info["ambiguous"]
        assert np.allclose(new_from_old * np.median(points, axis=0)[None], 0, atol=1e-9)  # origin at the median
        # the mean camera up leans with the pitch: it is not what gives up here
        assert _angle(-np.sum([c[1, :3] for c in cams], axis=0), true_up) > 20
        again, _ = upright(cams, points)
        assert np.array_equal(again.matrix(), new_from_old.matrix())


def test_upright_cameras_that_hardly_turn_use_the_plane() -> None:
    """Cameras that turn little compared with their roll leave up loose along their common heading; the dominant
    plane, level with their right axes, decides."""
    for seed in range(3):
        cams, points, true_up = _rig(seed, roll_deg=5.0, portrait=0.0, headings_deg=4)
        alone, info = upright(cams, None)
        assert info["method"] == "cameras" and info["ambiguous"]
        new_from_old, info = upright(cams, points)
        assert info["method"] == "plane" and info["plane"] == "used"
        error = _angle(new_from_old.rotation.matrix()[2], true_up)
        assert error < 1.0 and error < _angle(alone.rotation.matrix()[2], true_up)
        # a dominant plane the cameras face (a wall) is not taken for the ground
        wall = points @ Rotation.from_rotvec(np.radians(80) * np.cross(true_up, cams[0][2, :3])).as_matrix().T
        _, info = upright(cams, wall)
        assert info["method"] == "cameras"


def test_upright_on_synthetic_scene(pipeline_ws: tuple[Workspace, str]) -> None:
    """Real SfM cameras of the 4-video test world: up within 3° of the world's z (ground truth)."""
    ws, scene = pipeline_ws
    shared = scenes.shared_scene(ws, scene)
    world_from_shared = evaluation.world_from_shared(ws, scene, shared)
    true_up = world_from_shared.rotation.matrix().T @ [0, 0, 1.0]
    new_from_old, info = upright([f.cam_from_world for f in shared.frames], shared.points)
    assert _angle(new_from_old.rotation.matrix()[2], true_up) < 3.0, info
    assert info["cameras"] == len(shared.frames) and info["cameras_used"] > 0.8 * len(shared.frames)


def test_fit_scale() -> None:
    d = np.array([2.0, 5.0, 0.5])
    s, residual = fit_scale(d, 0.1 * d)
    assert s == pytest.approx(0.1) and residual == pytest.approx(0, abs=1e-12)
    s, residual = fit_scale(np.array([1.0, 1.0]), np.array([0.9, 1.1]))  # inconsistent: the mean, ±0.1 m
    assert s == pytest.approx(1.0) and residual == pytest.approx(0.1)
    for model, metres in (
        ([0.0], [1.0]),
        ([1.0], [0.0]),
        ([1.0], [-2.0]),
        ([], []),
        ([1.0, 2.0], [1.0]),
        ([np.nan], [1.0]),
    ):
        with pytest.raises(InputError):
            fit_scale(np.array(model), np.array(metres))


def _scene_copy(pipeline_ws: tuple[Workspace, str], tmp_path: Path) -> tuple[Workspace, str]:
    """The reconstructed, aligned test scene without what later stages added (grounding, temporal, state)."""
    ws, scene = pipeline_ws
    root = tmp_path / "ws"
    root.mkdir()
    shutil.copy(ws.root / "howto3d.toml", root)
    shutil.copytree(ws.scene_dir(scene), root / "scenes" / scene, ignore=shutil.ignore_patterns("temporal"))
    return Workspace.open(root), scene


def _true_centres(shared, gt: dict) -> tuple[np.ndarray, np.ndarray]:
    truth = {v: evaluation._gt_frames(gt, v) for v in shared.videos}
    pairs = [
        (f.center, -P[:, :3].T @ P[:, 3])
        for f in shared.frames
        if (P := truth[f.video].get(round(f.time, 3))) is not None
    ]
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


@pytest.mark.slow
def test_scale_command_makes_the_frame_metric(pipeline_ws, tmp_path: Path, cli) -> None:
    """Two ground-truth landmarks clicked in one video and their true distance: afterwards the cameras match the
    truth after a *rigid* fit (no scale) within 1 % of the scene size, and z is within 3° of the world's up."""
    ws, scene = _scene_copy(pipeline_ws, tmp_path)
    shared = scenes.shared_scene(ws, scene)
    gt = json.loads(ws.ground_truth_path(scene).read_text())
    source = shared.videos[0]
    clicked = [
        (lm, evaluation.clicks(gt, source, np.array(lm["position"]), shared.frames_of(source)))
        for lm in gt["landmarks"]
    ]
    clicked = [(lm, obs) for lm, obs in clicked if obs]
    (a, _), (b, _) = (
        clicked[0],
        max(clicked[1:], key=lambda c: np.linalg.norm(np.subtract(c[0]["position"], clicked[0][0]["position"]))),
    )
    metres = float(np.linalg.norm(np.subtract(a["position"], b["position"])))
    kp = tmp_path / "kp.json"
    kp.write_text(json.dumps({"keypoints": [{"name": lm["name"], "observations": obs} for lm, obs in clicked]}))
    base = ["scale", str(ws.root), "--scene", scene, "--source", source, "--keypoints", str(kp)]

    # bad input first: one line naming the file and the fix, nothing written
    before = (ws.align_dir(scene) / "transforms.json").read_bytes()
    r = cli(*base, "--distance", a["name"], "nowhere", "0.3")
    assert r.returncode == 2 and str(kp) in r.stderr and "no keypoint named 'nowhere'" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = cli(*base, "--distance", a["name"], b["name"], "-0.3")
    assert r.returncode == 2 and "positive" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert (ws.align_dir(scene) / "transforms.json").read_bytes() == before

    r = cli(*base, "--distance", a["name"], b["name"], f"{metres}", "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["units"] == "metres" and out["scene"] == scene and out["residual"] == pytest.approx(0, abs=1e-9)
    assert out["distances"][0]["after"] == pytest.approx(metres, rel=1e-4)
    frame = json.loads((ws.align_dir(scene) / "transforms.json").read_text())["frame"]
    assert frame["units"] == "metres" and frame["metric_scale"] == pytest.approx(out["scale"])

    shared = scenes.shared_scene(ws, scene)
    est, true = _true_centres(shared, gt)
    rot, _ = Rotation.align_vectors(true - true.mean(axis=0), est - est.mean(axis=0))
    err = np.linalg.norm(rot.apply(est - est.mean(axis=0)) + true.mean(axis=0) - true, axis=1)
    size = float(np.linalg.norm(true.max(axis=0) - true.min(axis=0)))
    assert err.mean() < 0.01 * size, (err.mean(), size)
    assert _angle(rot.apply([0, 0, 1.0]), np.array([0, 0, 1.0])) < 3.0

    # a second, consistent length refines nothing; an inconsistent one shows in the residual
    r = cli(
        *base,
        "--distance",
        a["name"],
        b["name"],
        f"{metres}",
        "--distance",
        a["name"],
        b["name"],
        f"{1.2 * metres}",
        "--json",
    )
    out2 = json.loads(r.stdout)
    assert out2["factor"] == pytest.approx(1.1, rel=1e-3) and out2["residual"] == pytest.approx(0.1 * metres, rel=1e-2)


def test_scale_needs_an_alignment(tmp_path: Path, cli, make_video) -> None:
    video = tmp_path / "clip.mp4"
    make_video(video)
    ws = Workspace.init(tmp_path / "ws")
    ws.add_videos("s", [video])
    kp = tmp_path / "kp.json"
    kp.write_text('{"keypoints": []}')
    r = cli(
        "scale", str(ws.root), "--scene", "s", "--source", "clip", "--keypoints", str(kp), "--distance", "a", "b", "1"
    )
    assert r.returncode == 2 and "run `howto3d align" in r.stderr and len(r.stderr.strip().splitlines()) == 1
