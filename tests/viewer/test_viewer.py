"""Viewer stage on a tiny synthetic world and its oracle reconstruction (exact geometry, seconds to build)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import trimesh
from PIL import Image

from grounding.narration import Narration
from recon.scene import interpolate_poses
from recon.video import read_frames
from viewer.export import export
from viewer.geometry import heatmap_colors, shown_voxels
from viewer.overlay import draw_frame, overlay
from viewer.screenshot import render_image
from viewer.timeline import plot_timeline, plot_timelines


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """One scene, one 3 s video at 320x180: the smallest world that has every input the viewer draws."""
    from synth import WorldConfig, generate_world

    out = tmp_path_factory.mktemp("viewer_world")
    generate_world(out, WorldConfig(scenes=1, videos=1, seconds=3.0, seed=0, width=320, height=180, fps=10.0))
    return next((out / "scenes").iterdir())


@pytest.fixture(scope="module")
def oracle(world):
    from synth.oracle import oracle_scene

    return oracle_scene(world)


@pytest.fixture(scope="module")
def gt(world) -> dict:
    return json.loads((world / "ground_truth.json").read_text())


def _blob(center: np.ndarray, step: float = 0.02) -> tuple[np.ndarray, np.ndarray, float]:
    """A heatmap concentrated at ``center``: a voxel grid with Gaussian scores."""
    g = np.stack(np.meshgrid(*[np.arange(-4, 5) * step] * 3, indexing="ij"), -1).reshape(-1, 3) + center
    s = np.exp(-np.sum((g - center) ** 2, 1) / (2 * step**2))
    return g, s / s.sum(), step


def _visible_part(gt: dict, video: str, frame: dict) -> tuple[str, np.ndarray]:
    """A part whose GT projection lies well inside the frame, and that projection (GT camera, not ours)."""
    K, P = np.array(frame["K"]), np.array(frame["cam_from_world"])
    w, h = gt["videos"][video]["width"], gt["videos"][video]["height"]
    for name, xyz in sorted(gt["videos"][video]["parts"].items()):
        x = K @ (P[:, :3] @ np.array(xyz) + P[:, 3])
        uv = x[:2] / x[2]
        if x[2] > 0 and 30 < uv[0] < w - 30 and 30 < uv[1] < h - 30:
            return name, uv
    pytest.skip("no part projects inside the test frame")


def test_screenshot_not_blank_and_shows_heatmap(oracle, gt):
    top_part = max(gt["parts"].values(), key=lambda xyz: xyz[2])  # seen from above, not hidden in a housing
    heatmap = _blob(np.array(top_part), step=0.03)
    img = render_image(oracle, heatmap, 320, 180)
    plain = render_image(oracle, None, 320, 180)
    assert img.shape == (180, 320, 3)
    assert img.std() > 10 and len(np.unique(img.reshape(-1, 3), axis=0)) > 50
    palette = heatmap_colors(np.linspace(0, 1, 64)) * 255

    def heat_pixels(im: np.ndarray) -> int:
        d = np.linalg.norm(im.reshape(-1, 1, 3).astype(float) - palette[None], axis=2).min(axis=1)
        return int((d < 12).sum())

    assert heat_pixels(img) > heat_pixels(plain) + 20


def test_interpolated_pose_matches_registered_and_lies_between(oracle):
    frames = oracle.frames_of(oracle.videos[0])
    a, b = frames[1], frames[2]
    assert np.allclose(interpolate_poses(frames, [a.time])[0], a.cam_from_world, atol=1e-9)
    mid = interpolate_poses(frames, [(a.time + b.time) / 2])[0]
    c = -mid[:, :3].T @ mid[:, 3]
    assert np.allclose(c, (a.center + b.center) / 2, atol=1e-9)

    def angle(R1, R2):
        return np.arccos(np.clip((np.trace(R1.T @ R2) - 1) / 2, -1, 1))

    full = angle(a.cam_from_world[:, :3], b.cam_from_world[:, :3])
    assert angle(a.cam_from_world[:, :3], mid[:, :3]) == pytest.approx(full / 2, abs=1e-5)  # GT rotations are rounded
    assert np.allclose(interpolate_poses(frames, [-5.0])[0], frames[0].cam_from_world)
    assert np.allclose(interpolate_poses(frames, [1e3])[0], frames[-1].cam_from_world)


def test_overlay_hottest_pixels_at_gt_part(world, oracle, gt, tmp_path):
    video = oracle.videos[0]
    index = 4  # not registered (the oracle keeps every 3rd frame): the pose is interpolated
    gt_frame = gt["videos"][video]["frames"][index]
    part, uv = _visible_part(gt, video, gt_frame)
    path = world / gt["videos"][video]["file"]
    out = overlay(oracle, path, video, _blob(np.array(gt["videos"][video]["parts"][part])), tmp_path / "ov", every=2)
    drawn = np.asarray(Image.open(out / f"{index:06d}.png")).astype(float)
    raw = next(rgb for i, _, rgb in read_frames(path, np.array([index]))).astype(float)
    change = np.abs(drawn - raw).sum(axis=2)
    assert change.max() > 60
    ys, xs = np.nonzero(change >= 0.9 * change.max())
    assert np.hypot(xs.mean() + 0.5 - uv[0], ys.mean() + 0.5 - uv[1]) < 4.0
    assert len(list(out.glob("*.png"))) == 15

    mp4 = overlay(
        oracle, path, video, _blob(np.array(gt["videos"][video]["parts"][part])), tmp_path / "ov.mp4", every=3
    )
    assert sum(1 for _ in read_frames(mp4)) == 10


def test_overlay_of_a_video_without_cameras_is_one_clear_line(world, oracle, gt, tmp_path):
    """A video that did not reconstruct (no frame in the shared frame) is an input error naming the videos that
    can be overlaid, not a traceback; nothing is written."""
    from dataclasses import replace as dc_replace

    from recon.io import InputError

    lost = oracle.videos[0]
    scene = dc_replace(oracle, frames=[f for f in oracle.frames if f.video != lost])
    others = [v for v in oracle.videos if v != lost] or ["no video yet"]
    with pytest.raises(InputError, match=f"{lost}: no camera of this video in the shared frame.*{others[0]}"):
        overlay(scene, world / gt["videos"][lost]["file"], lost, _blob(np.zeros(3)), tmp_path / "ov")
    assert not (tmp_path / "ov").exists()


def test_marker_drawn_at_its_projection(oracle):
    frame = oracle.frames[0]
    target = oracle.points[frame.point_index[len(frame.point_index) // 2]]
    rgb = np.zeros((frame.camera.height, frame.camera.width, 3), np.uint8)
    img = draw_frame(rgb, oracle, frame, (np.zeros((0, 3)), np.zeros(0), 0.02), [(target, (0.0, 1.0, 0.0))])
    ((u, v),) = frame.project(target[None])[0]
    assert tuple(img[int(v), int(u)]) == (0, 255, 0)


def test_glb_export_reloads_with_points_cameras_heatmap(oracle, gt, tmp_path):
    heatmap = _blob(np.array(next(iter(gt["parts"].values()))))
    out = export(oracle, tmp_path / "scene.glb", "glb", heatmap)
    loaded = trimesh.load(out)
    points = loaded.geometry["points"]
    assert len(points.vertices) == len(oracle.points)
    assert np.array_equal(np.asarray(points.colors)[:, :3], oracle.colors)
    assert np.allclose(points.vertices, oracle.points, atol=1e-5)
    assert len(loaded.geometry["cameras"].vertices) == 5 * len(oracle.frames)
    cubes = loaded.geometry["heatmap"]
    assert len(cubes.vertices) == 8 * len(shown_voxels(heatmap[1]))
    assert np.allclose(cubes.visual.vertex_colors[:8, :3], heatmap_colors(np.array([1.0]))[0] * 255, atol=1)
    # the scene's up (synthetic worlds: +z) is glTF's +y in the displayed scene
    up = loaded.graph["points"][0][:3, :3] @ np.array([0.0, 0.0, 1.0])
    assert up[1] > 0.95


def test_ply_export_has_points_and_heatmap(oracle, tmp_path):
    import open3d as o3d

    heatmap = _blob(oracle.points[0])
    pc = o3d.io.read_point_cloud(str(export(oracle, tmp_path / "scene.ply", "ply", heatmap)))
    assert len(pc.points) == len(oracle.points) + len(shown_voxels(heatmap[1]))


def test_timeline_png_not_blank(tmp_path):
    t = np.linspace(0, 10, 50)
    kwargs = dict(
        duration=10.0,
        narrations=[Narration("open the hood and find the dipstick", 1.0, 3.5)],
        steps=[{"label": "remove dipstick", "start": 2.0, "end": 5.0}],
        gt_steps=[{"label": "remove dipstick", "start": 2.5, "end": 5.5}],
        actionness=(t, t / 10),
    )
    img = np.asarray(Image.open(plot_timeline(tmp_path / "t.png", title="v", **kwargs)).convert("RGB"))
    assert img.std() > 10 and len(np.unique(img.reshape(-1, 3), axis=0)) > 20
    both = Image.open(plot_timelines(tmp_path / "all.png", {"a": kwargs, "b": {"duration": 5.0}}))
    assert both.height > img.shape[0]


GUI_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    from synth.oracle import oracle_scene
    from viewer.app import run_viewer
    scene = oracle_scene(sys.argv[1])
    heatmap = (scene.points[:50], np.linspace(0, 1, 50), 0.03)
    up = run_viewer(scene, heatmap, query_fn=lambda text: heatmap,
                    timeline={scene.videos[0]: {"duration": 3.0}}, close_after=1.0)
    print(f"STARTUP {up:.3f}")
""")


def test_gui_starts_and_closes_under_xvfb(world):
    if os.environ.get("DISPLAY"):
        cmd = [sys.executable, "-c", GUI_SCRIPT, str(world)]
    elif shutil.which("xvfb-run"):
        cmd = ["xvfb-run", "-a", sys.executable, "-c", GUI_SCRIPT, str(world)]
    else:
        pytest.skip("no DISPLAY and no xvfb-run to make one; install xvfb")
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    startup = float(proc.stdout.split("STARTUP")[1])
    assert startup < 10.0
    assert time.perf_counter() - start < 60
