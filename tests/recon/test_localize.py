"""Localizing new photos in the shared frame, against the synthetic world's exact ground truth.

The photos are frames of a video that was never added to the workspace: the same car model filmed by
"another person" (another per-video variant of the parts, another light, another camera path and focal).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.spatial.transform import Rotation

from howto3d import evaluation, scenes, viewer_cmds
from recon.localize import read_photo
from recon.video import read_frames
from synth import WorldConfig
from synth.camera import plan_path
from synth.generate import make_scene, make_variant
from synth.render import Renderer
from viewer.overlay import draw_frame

# Same world as the ``pipeline_ws`` fixture (tests/conftest.py): seed 0, scene 0, 640x360.
WORLD = WorldConfig(scenes=1, videos=4, seconds=16.0, seed=0, width=640, height=360, fps=5.0)
UNSEEN_VIDEO = 11
"""Video index of the unseen car: far beyond the 4 videos in the workspace."""


@dataclass
class Photo:
    path: Path
    K: np.ndarray
    cam_from_world: np.ndarray
    """Ground truth, world frame (metres)."""
    parts: dict[str, np.ndarray]
    """This car's true part positions (world frame)."""


def _exif_jpeg(path: Path, rgb: np.ndarray, focal_35mm: float | None) -> None:
    exif = Image.Exif()
    if focal_35mm is not None:
        exif.get_ifd(0x8769)[0xA405] = int(round(focal_35mm))
    Image.fromarray(rgb).save(path, quality=92, exif=exif)


@pytest.fixture(scope="module")
def unseen_photos(tmp_path_factory: pytest.TempPathFactory) -> list[Photo]:
    """10 frames of an unseen video of the workspace's car model; every other one carries its focal in EXIF."""
    out = tmp_path_factory.mktemp("photos")
    scene = make_scene(WORLD, 0)
    variant = make_variant(WORLD, 0, UNSEEN_VIDEO)
    renderer = Renderer(scene, variant)
    parts = {p: pos + variant.offset(p) for p, pos in scene.parts.items()}
    rng = np.random.default_rng(2024)
    f = WORLD.width * 0.8
    K = np.array([[f, 0, WORLD.width / 2], [0, f, WORLD.height / 2], [0, 0, 1]])
    path = plan_path(rng, renderer, parts, ["check_oil"], K, WORLD.seconds, WORLD.fps, (WORLD.width, WORLD.height))
    photos = []
    for n, i in enumerate(np.linspace(0, len(path.poses) - 1, 10).round().astype(int)):
        rgb = renderer.render(K, path.poses[i], WORLD.width, WORLD.height)
        p = out / f"photo_{n:02d}.jpg"
        _exif_jpeg(p, rgb, f / WORLD.width * 36.0 if n % 2 else None)
        photos.append(Photo(p, K, np.asarray(path.poses[i]), parts))
    return photos


@pytest.fixture(scope="module")
def localized(pipeline_ws, unseen_photos):
    """(workspace, scene, shared scene, world_from_shared Sim(3), localizer, results per photo)."""
    ws, scene = pipeline_ws
    shared = scenes.shared_scene(ws, scene)
    sim = evaluation.world_from_shared(ws, scene, shared)
    loc = viewer_cmds.localizer(ws, scene, shared)
    return ws, scene, shared, sim, loc, [loc.localize(p.path) for p in unseen_photos]


def _pose_error(cam_from_shared: np.ndarray, world_from_shared, truth: np.ndarray) -> tuple[float, float]:
    """Camera-centre error (m) and rotation error (deg) after the scene's Sim(3) to the world."""
    R, t = cam_from_shared[:, :3], cam_from_shared[:, 3]
    centre = world_from_shared * (-R.T @ t)
    R_world = R @ world_from_shared.rotation.matrix().T
    true_centre = -truth[:, :3].T @ truth[:, 3]
    angle = np.degrees(Rotation.from_matrix(R_world @ truth[:, :3].T).magnitude())
    return float(np.linalg.norm(centre - true_centre)), float(angle)


@pytest.mark.slow
def test_unseen_car_photos_localize_within_2cm_and_1deg(localized, unseen_photos):
    _, _, _, sim, _, results = localized
    assert sim is not None
    errors = []
    for photo, r in zip(unseen_photos, results, strict=True):
        if r.frame is not None:
            err_m, err_deg = _pose_error(r.frame.cam_from_world, sim, photo.cam_from_world)
            errors.append((err_m, err_deg, abs(r.frame.K[0, 0] / photo.K[0, 0] - 1)))
    good = [e for e in errors if e[0] < 0.02 and e[1] < 1.0]
    assert len(good) >= 0.8 * len(unseen_photos), (errors, [r.reason for r in results])
    # the focal length is recovered too (EXIF-seeded or estimated, then refined)
    assert max(e[2] for e in good) < 0.03
    j = results[0].to_json()
    assert set(j) >= {"image", "cam_from_world", "K", "width", "height", "inliers", "status"}
    assert (j["width"], j["height"]) == (640, 360) and np.asarray(j["cam_from_world"]).shape == (3, 4)


@pytest.mark.slow
def test_other_car_and_garbage_are_not_localized(localized, tmp_path):
    ws, scene, _, _, loc, _ = localized
    intruder = next(v.path for v in ws.videos(scene) if v.name == "intruder")
    _, _, rgb = next(iter(read_frames(intruder, [20])))
    other = tmp_path / "other_car.jpg"
    Image.fromarray(rgb).save(other, quality=92)
    r = loc.localize(other)
    assert r.status == "not localized" and r.frame is None and "does not show this scene" in r.reason
    assert r.to_json()["cam_from_world"] is None
    bad = loc.localize(b"not an image", "upload.jpg")
    assert bad.status == "not localized" and "cannot read the image" in bad.reason
    missing = loc.localize(tmp_path / "nope.jpg")
    assert missing.status == "not localized" and "file not found" in missing.reason


@pytest.mark.slow
def test_photo_overlay_puts_the_hot_voxel_on_the_part(localized, unseen_photos):
    """A heatmap whose best voxel is the true dipstick lands within a few pixels of its true projection."""
    _, _, shared, sim, _, results = localized
    checked = 0
    for photo, r in zip(unseen_photos, results, strict=True):
        if r.frame is None:
            continue
        part = photo.parts["dipstick"]
        xc = photo.cam_from_world[:, :3] @ part + photo.cam_from_world[:, 3]
        uv = (photo.K @ xc)[:2] / xc[2]
        if xc[2] <= 0 or not (20 < uv[0] < 620 and 20 < uv[1] < 340):
            continue
        centre = np.asarray(sim.inverse() * part.reshape(1, 3)).reshape(3)
        far = centre + 10.0  # a second, cold voxel so scores normalise
        heatmap = (np.stack([centre, far]), np.array([1.0, 0.0]), np.full(3, 0.02))
        rgb = read_photo(photo.path)[0]
        drawn = draw_frame(rgb, shared, r.frame, heatmap, None, r.frame).astype(float)
        change = np.abs(drawn - rgb.astype(float)).sum(axis=2)
        assert change.max() > 50
        ys, xs = np.nonzero(change > 0.5 * change.max())
        w = change[ys, xs]
        hot = np.array([np.average(xs + 0.5, weights=w), np.average(ys + 0.5, weights=w)])
        assert np.linalg.norm(hot - uv) < 4.0, (photo.path.name, hot, uv)
        checked += 1
    assert checked >= 3


@pytest.mark.slow
def test_cli_localize_json_and_photo_overlay(trained_ws, unseen_photos, tmp_path, cli):
    ws, scene, _ = trained_ws
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"\x00" * 100)
    r = cli("localize", str(ws.root), "--scene", scene, str(unseen_photos[3].path), str(garbage), "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert doc["scene"] == scene and [i["image"] for i in doc["images"]] == [str(unseen_photos[3].path), str(garbage)]
    assert doc["images"][0]["status"] == "localized" and doc["images"][0]["inliers"] >= 30
    assert doc["images"][1]["status"] == "not localized" and doc["images"][1]["cam_from_world"] is None

    png = tmp_path / "overlay.png"
    r = cli(
        "overlay",
        str(ws.root),
        "--scene",
        scene,
        "--image",
        str(unseen_photos[3].path),
        "--query",
        "where is the dipstick",
        "--out",
        str(png),
    )
    assert r.returncode == 0, r.stderr
    drawn = np.asarray(Image.open(io.BytesIO(png.read_bytes())).convert("RGB")).astype(float)
    original = read_photo(unseen_photos[3].path)[0].astype(float)
    assert drawn.shape == original.shape
    assert (drawn - original)[..., 0].max() > 60  # heatmap blobs are drawn in red

    r = cli("overlay", str(ws.root), "--scene", scene, "--query", "dipstick", "--out", str(png))
    assert r.returncode == 2 and "--video NAME" in r.stderr and "Traceback" not in r.stderr
