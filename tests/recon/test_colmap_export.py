"""``howto3d export --format colmap``: one COLMAP model of the shared frame that pycolmap reads back with exactly the
cameras of ``cameras --json``, the frames beside it and points that project where they were observed."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pycolmap
import pytest

from howto3d.workspace import Workspace
from recon.colmap_export import build
from recon.scene import RegisteredFrame, SharedScene, cameras_json


def _one_line_error(r) -> str:
    lines = r.stderr.strip().splitlines()
    assert r.returncode != 0 and len(lines) == 1 and "Traceback" not in r.stderr, (r.returncode, r.stderr)
    return lines[0]


def _reprojection_errors(rec: pycolmap.Reconstruction) -> np.ndarray:
    """Pixels between every observation and its 3D point projected through the observing image's camera."""
    errors = []
    for image in rec.images.values():
        camera, pose = rec.cameras[image.camera_id], image.cam_from_world()
        obs = [(p.xy, rec.points3D[p.point3D_id].xyz) for p in image.points2D if p.has_point3D()]
        xy, xyz = np.array([o[0] for o in obs]), np.array([o[1] for o in obs])
        errors.append(np.linalg.norm(camera.img_from_cam(np.array([pose * x for x in xyz])) - xy, axis=1))
    return np.concatenate(errors)


def test_each_segment_keeps_its_own_camera_and_single_views_are_left_out():
    """Two segments of one video (a cut: each model has its own camera 1), frames downscaled for SfM (scale 2)."""
    rng = np.random.default_rng(0)
    points = rng.uniform(-1, 1, (6, 3)) + [0, 0, 6]
    frames = []
    for i, (segment, focal) in enumerate([(0, 300.0), (0, 300.0), (1, 420.0)]):
        camera = pycolmap.Camera(
            model="SIMPLE_RADIAL", width=320, height=180, params=[focal, 160, 90, 0.01], camera_id=1
        )
        P = np.c_[pycolmap.Rotation3d(np.array([0.0, 0.1 * i, 0.0])).matrix(), [0.3 * i, 0.0, 0.0]]
        seen = np.arange(6 if i == 0 else 5)  # point 5: one view only
        xy = camera.img_from_cam(points[seen] @ P[:, :3].T + P[:, 3])
        frames.append(
            RegisteredFrame(
                "video_00", f"video_00_{i:06d}.jpg", 0.5 * i, camera, P, xy, seen, segment, video_size=(640, 360)
            )
        )
    scene = SharedScene("s", ["video_00"], points, np.zeros((6, 3), np.uint8), np.zeros(6, int), frames)
    rec = build(scene)
    assert (rec.num_images(), rec.num_cameras(), rec.num_points3D()) == (3, 2, 5)
    for f in cameras_json(scene)["frames"]:
        image = rec.find_image_with_name(f"video_00/t{f['time']:08.3f}.jpg")
        np.testing.assert_allclose(image.cam_from_world().matrix(), f["cam_from_world"], atol=1e-9)
        K = rec.cameras[image.camera_id].calibration_matrix()
        np.testing.assert_allclose(np.diag([*f["scale"], 1.0]) @ K, f["K"], atol=1e-6)
        assert K[0, 0] == (420.0 if f["segment"] == 1 else 300.0)
    assert np.abs(_reprojection_errors(rec)).max() < 1e-6


@pytest.mark.slow
def test_colmap_export_reads_back_as_cameras_json(pipeline_ws, cli, tmp_path):
    ws, scene = pipeline_ws
    out = tmp_path / "colmap"
    r = cli("export", str(ws.root), "--scene", scene, "--format", "colmap", "--out", str(out))
    assert r.returncode == 0, r.stderr
    r_cams = cli("cameras", str(ws.root), "--scene", scene, "--json")
    assert r_cams.returncode == 0, r_cams.stderr
    frames = json.loads(r_cams.stdout)["frames"]

    rec = pycolmap.Reconstruction(out / "sparse" / "0")
    printed = re.sub(r"\s", "", r.stderr)  # the console (stderr) wraps a long path
    counts = re.search(rf"exported:{re.escape(str(out))}\((\d+)images,(\d+)points,(\d+)cameras\)", printed)
    assert counts and [int(x) for x in counts.groups()] == [rec.num_images(), rec.num_points3D(), rec.num_cameras()]
    assert rec.num_images() == rec.num_reg_images() == len(frames)
    assert "intruder" not in {f["video"] for f in frames}  # an unaligned video stays out of both

    pose_diff, video_of_camera = 0.0, {}
    for f in frames:
        name = f"{f['video']}/t{f['time']:08.3f}{Path(f['name']).suffix}"
        image = rec.find_image_with_name(name)
        assert image is not None, name
        P = np.array(f["cam_from_world"])
        pose_diff = max(
            pose_diff,
            np.abs(image.cam_from_world().matrix() - P).max(),
            np.abs(image.projection_center() - -P[:, :3].T @ P[:, 3]).max(),
        )
        camera = rec.cameras[image.camera_id]
        assert (camera.width, camera.height, camera.model.name) == (f["sfm_width"], f["sfm_height"], f["camera_model"])
        np.testing.assert_allclose(np.diag([*f["scale"], 1.0]) @ camera.calibration_matrix(), f["K"], atol=1e-6)
        shown = pycolmap.Camera(camera.todict())
        shown.rescale(f["width"], f["height"])
        np.testing.assert_allclose(shown.params, f["params"], atol=1e-6)
        assert video_of_camera.setdefault(image.camera_id, f["video"]) == f["video"]  # cameras are per video
        copied = out / "images" / name
        assert copied.read_bytes() == (ws.frames_dir(scene, f["video"]) / "images" / f["name"]).read_bytes()
    assert pose_diff < 1e-6
    assert set(video_of_camera) == set(rec.cameras)

    assert rec.num_points3D() > 1000
    assert min(len(p.track.elements) for p in rec.points3D.values()) >= 2
    errors = _reprojection_errors(rec)
    assert len(errors) == rec.compute_num_observations()
    assert np.median(errors) < 2.0, np.percentile(errors, [50, 90, 99])

    # exporting again replaces the export; a folder holding anything else is refused and left as it was
    assert cli("export", str(ws.root), "--scene", scene, "--format", "colmap", "--out", str(out)).returncode == 0
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    line = _one_line_error(
        cli("export", str(ws.root), "--scene", scene, "--format", "colmap", "--out", str(tmp_path / "mine"))
    )
    assert "not a COLMAP export" in line and "--out" in line
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


def test_colmap_export_refuses_a_scene_without_a_model_and_a_query(cli, tmp_path, make_video):
    ws = Workspace.init(tmp_path / "ws")
    make_video(tmp_path / "clip.mp4", n=5)
    ws.add_videos("civic", [tmp_path / "clip.mp4"])
    out = tmp_path / "civic_colmap"
    line = _one_line_error(cli("export", str(ws.root), "--scene", "civic", "--format", "colmap", "--out", str(out)))
    assert "howto3d reconstruct" in line
    line = _one_line_error(cli("export", str(ws.root), "--scene", "civic", "--format", "colmap", "--query", "oil"))
    assert "--format glb or ply" in line
    assert not out.exists()
