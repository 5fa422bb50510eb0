"""Segments are shots, never copies: a frame belongs to at most one of a video's models, and every reader of a
video's frames takes what a workspace can hold (repeats, any order, one frame, interleaved segments)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pycolmap
import pytest
from scipy.spatial.transform import Rotation

from howto3d import recon_cmds, scenes
from howto3d.workspace import Workspace
from recon import reconstruct
from recon.io import InputError, read_json
from recon.scene import RegisteredFrame, cameras_json, interpolate_poses


def _frame(t: float, centre: tuple[float, float, float], yaw_deg: float = 0.0, segment: int = 0) -> RegisteredFrame:
    R = Rotation.from_euler("y", yaw_deg, degrees=True).as_matrix()
    cam = pycolmap.Camera.create_from_model_name(1, "SIMPLE_PINHOLE", 500.0, 640, 360)
    return RegisteredFrame(
        video="v",
        name=f"{t:.3f}.jpg",
        time=t,
        camera=cam,
        cam_from_world=np.c_[R, -R @ np.asarray(centre, float)],
        xy=np.zeros((0, 2)),
        point_index=np.zeros(0, int),
        segment=segment,
    )


def _centres(P: np.ndarray) -> np.ndarray:
    return -np.einsum("nji,nj->ni", P[:, :, :3], P[:, :, 3])


def test_poses_are_interpolated_whatever_the_order_and_repeats():
    a, b, c = _frame(0.0, (0, 0, 0), 0), _frame(1.0, (1, 0, 0), 20), _frame(2.0, (2, 0, 0), 40)
    copy = _frame(1.0, (5, 5, 5), 90, segment=1)  # the same time again, from a smaller model: never used
    P = interpolate_poses([c, copy, a, b, b], [0.5, 1.0, 1.5, 3.0])
    np.testing.assert_allclose(_centres(P), [[0.5, 0, 0], [1, 0, 0], [1.5, 0, 0], [2, 0, 0]], atol=1e-9)
    yaw = Rotation.from_matrix(P[:, :, :3]).as_euler("xyz", degrees=True)[:, 1]
    np.testing.assert_allclose(yaw, [10, 20, 30, 40], atol=1e-6)


def test_one_frame_and_interleaved_segments():
    P = interpolate_poses([_frame(3.0, (1, 2, 3))], [0.0, 9.0])
    np.testing.assert_allclose(_centres(P), [[1, 2, 3], [1, 2, 3]], atol=1e-9)
    # segment 1 sits inside segment 0's time span (an insert): between frames of different segments, the nearest
    frames = [
        _frame(0, (0, 0, 0)),
        _frame(1, (9, 0, 0), segment=1),
        _frame(2, (9, 1, 0), segment=1),
        _frame(3, (3, 0, 0)),
    ]
    C = _centres(interpolate_poses(frames, [0.2, 0.9, 1.5, 2.6]))
    np.testing.assert_allclose(C, [[0, 0, 0], [9, 0, 0], [9, 0.5, 0], [3, 0, 0]], atol=1e-9)
    with pytest.raises(ValueError, match="no registered frames"):
        interpolate_poses([], [0.0])


def _registered(rec: pycolmap.Reconstruction) -> list[str]:
    return sorted(reconstruct.registered_names(rec))


def _keep_only(rec: pycolmap.Reconstruction, keep: set[str]) -> pycolmap.Reconstruction:
    for image_id in list(rec.reg_image_ids()):
        if rec.images[image_id].name not in keep:
            rec.deregister_frame(rec.images[image_id].frame_id)
    return rec


@pytest.mark.slow
def test_a_model_keeps_only_frames_no_larger_model_registered(pipeline_ws):
    ws, scene = pipeline_ws
    sfm = ws.sfm_dir(scene, "video_00")
    names = _registered(reconstruct.load_model(sfm))
    big = _keep_only(reconstruct.load_model(sfm), set(names[:20]))
    tail = _keep_only(reconstruct.load_model(sfm), set(names[14:]))  # 6 repeated, 10 new: a shot after a cut
    copy = _keep_only(reconstruct.load_model(sfm), set(names[2:12]))  # every frame repeated: a copy
    kept, discarded, repeats = reconstruct.keep_segments([big, copy, tail], min_frames=6)
    assert [_registered(r) for r in kept] == [names[:20], names[20:]]
    assert repeats == [0, 6]
    assert [(d["repeated_frames"], d["why"]) for d in discarded] == [
        (10, "10 of its 10 frames are registered in a larger model")
    ]
    assert all(r.points3D[p].track.length() >= 2 for r in kept for p in r.points3D)  # no point lost its views


@pytest.mark.slow
def test_align_refuses_segments_that_repeat_frames(pipeline_ws, tmp_path):
    """A workspace reconstructed by an earlier release: video_00's model written again, moved 1 m away, as a
    segment repeating 12 of its frames. Readers leave the repeats out; `align` refuses in one line that says to
    reconstruct again."""
    ws0, scene = pipeline_ws
    ws = Workspace(shutil.copytree(ws0.root, tmp_path / "ws"))
    sfm = ws.sfm_dir(scene, "video_00")
    names = _registered(reconstruct.load_model(sfm))
    copy = _keep_only(reconstruct.load_model(sfm), set(names[5:17]))
    copy.transform(pycolmap.Sim3d(1.0, pycolmap.Rotation3d(), [1.0, 0.0, 0.0]))
    (sfm / "segments" / "1").mkdir(parents=True)
    copy.write_binary(str(sfm / "segments" / "1"))

    path = ws.align_dir(scene) / "transforms.json"  # ... and aligned (the earlier release aligned such copies)
    transforms = read_json(path)
    transforms["shared_from_segment"]["video_00"]["1"] = transforms["shared_from_segment"]["video_00"]["0"]
    path.write_text(json.dumps(transforms))

    before = scenes.shared_scene(ws0, scene)
    shared = scenes.shared_scene(ws, scene)  # readers leave the repeats out
    keys = [(f["video"], f["time"]) for f in cameras_json(shared)["frames"]]
    assert len(keys) == len(set(keys))
    assert [(f.name, f.segment) for f in shared.frames] == [(f.name, f.segment) for f in before.frames]

    with pytest.raises(
        InputError,
        match=rf"its segments repeat frames .*; run `howto3d reconstruct {ws.root} "
        rf"--scene {scene} --force`",
    ):
        recon_cmds.align(ws, scene)
    assert (sfm / "segments" / "1").exists()  # nothing changed behind the user's back


def test_frames_are_matched_only_within_their_shot():
    """Matched across a detected cut, both shots could be bent into one model: SfM gets no pair that crosses it."""
    shot_of = {"a": 0, "b": 0, "c": 1, "d": 1, "e": 2}
    pairs = [(x, y) for i, x in enumerate(shot_of) for y in list(shot_of)[i + 1 :]]
    assert reconstruct.within_shots(pairs, shot_of) == [("a", "b"), ("c", "d")]
