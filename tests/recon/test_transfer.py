"""Clicks and coordinates as the user sees them: keypoints clicked on any frame, rotated phone videos, video pixels."""

from __future__ import annotations

import dataclasses
from fractions import Fraction

import av
import numpy as np
import pytest

from howto3d import scenes
from howto3d.evaluation import fit_to_world
from recon.io import InputError, read_json
from recon.sampling import FramesConfig
from recon.sampling import main as sample_frames
from recon.scene import SharedScene, cameras_json
from recon.transfer import FrameLocalizer, pose_at
from recon.transfer import main as transfer
from recon.video import probe, read_frames

# ---- rotation metadata -------------------------------------------------------------------------------------------


def _upright(i: int) -> np.ndarray:
    """A 96x64 picture that looks different under every rotation: coloured corners, a bar that moves with i."""
    img = np.full((64, 96, 3), 40, np.uint8)
    img[:24, :24] = (230, 40, 40)
    img[:24, -24:] = (40, 230, 40)
    img[-24:, :24] = (40, 40, 230)
    img[28:36, 30 + 2 * i : 40 + 2 * i] = 250
    return img


def _write(path, degrees: int | None, n: int = 6) -> None:
    """H.264 file showing ``_upright`` frames; with ``degrees`` the pixels are stored sideways, as a phone does,
    and a display matrix says to turn them ``degrees`` counter-clockwise."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        k = 0 if degrees is None else degrees // 90
        stream.width, stream.height = (64, 96) if k % 2 else (96, 64)
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = Fraction(1, 10)
        if degrees is not None:
            stream.set_display_rotation(degrees if degrees <= 180 else degrees - 360)
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.rot90(_upright(i), -k)), format="rgb24")
            frame.pts = i
            out.mux(stream.encode(frame))
        out.mux(stream.encode())


@pytest.mark.parametrize("degrees", [90, 180, 270])
def test_rotated_phone_video_decodes_upright_with_its_displayed_size(tmp_path, degrees):
    plain, rotated = tmp_path / "plain.mp4", tmp_path / "phone.mp4"
    _write(plain, None)
    _write(rotated, degrees)
    info = probe(rotated)
    assert (info.width, info.height, info.rotation) == (96, 64, degrees)
    for (_, _, a), (_, _, b), i in zip(read_frames(plain), read_frames(rotated), range(6), strict=True):
        assert a.shape == b.shape == (64, 96, 3)
        assert np.abs(b.astype(int) - _upright(i)).mean() < 4  # upright, not just the same as the other file
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 4
    meta = sample_frames(FramesConfig(num_frames=3, max_side=48), rotated, tmp_path / "frames")
    assert (meta["video_width"], meta["video_height"], meta["width"], meta["height"]) == (96, 64, 48, 32)


# ---- clicks on any frame ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scene_and_truth(pipeline_ws) -> tuple[SharedScene, dict]:
    ws, scene = pipeline_ws
    return scenes.shared_scene(ws, scene), read_json(ws.ground_truth_path(scene))


def _clicks_on_unsampled_frames(shared: SharedScene, gt: dict, video: str, X: np.ndarray, n: int = 4) -> list[dict]:
    """True projections of X in ``n`` well-spread video frames that SfM never saw (between registered ones)."""
    sampled = shared.sampled_times[video]
    frames = shared.frames_of(video)
    w, h = gt["videos"][video]["width"], gt["videos"][video]["height"]
    seen = []
    for f in gt["videos"][video]["frames"]:
        t = f["time"]
        if np.min(np.abs(sampled - t)) < 0.05 or pose_at(frames, t, sampled=sampled)[1] != "interpolated":
            continue
        P, K = np.array(f["cam_from_world"]), np.array(f["K"])
        Xc = P[:, :3] @ X + P[:, 3]
        u, v = (K @ (Xc / Xc[2]))[:2]
        if Xc[2] > 0 and 0 <= u < w and 0 <= v < h:
            seen.append({"time": t, "xy": [float(u), float(v)]})
    if len(seen) < min(n, 2):
        return []
    return [seen[i] for i in np.unique(np.linspace(0, len(seen) - 1, min(n, len(seen))).round().astype(int))]


def test_keypoints_clicked_on_unsampled_frames_transfer_within_2cm(pipeline_ws, scene_and_truth):
    from howto3d.viewer_cmds import localizer

    ws, scene = pipeline_ws
    shared, gt = scene_and_truth
    source = shared.videos[0]
    clicks = {
        lm["name"]: _clicks_on_unsampled_frames(shared, gt, source, np.array(lm["position"]), n=10**6)
        for lm in gt["landmarks"]
    }
    # Three landmarks clicked on the same three paused frames (as a user would; and 3 frames to localize, not 9).
    names = sorted(clicks, key=lambda k: -len(clicks[k]))[:3]
    shared_times = sorted(set.intersection(*({o["time"] for o in clicks[k]} for k in names)))
    assert len(shared_times) >= 3
    picked = [shared_times[i] for i in np.linspace(0, len(shared_times) - 1, 3).round().astype(int)]
    keypoints = [{"name": k, "observations": [o for o in clicks[k] if o["time"] in picked]} for k in names]
    first = min(f.time for f in shared.frames_of(source))
    keypoints.append(
        {
            "name": "seen_once",
            "observations": [keypoints[0]["observations"][0], {"time": first - 1.0, "xy": [10.0, 10.0]}],
        }
    )
    request = {"keypoints": keypoints}
    world_from_shared = fit_to_world(shared.frames, gt)
    truth = {lm["name"]: np.array(lm["position"]) for lm in gt["landmarks"]}

    def errors(out: dict) -> list[float]:
        return [
            float(np.linalg.norm(world_from_shared * np.array([kp["point"]]) - truth[kp["name"]]))
            for kp in out["keypoints"]
        ]

    # Interpolated poses only: every keypoint transferred, but hand-held motion between samples costs accuracy.
    coarse = transfer(shared, source, request)
    assert [s["name"] for s in coarse["skipped"]] == ["seen_once"]
    assert "outside the registered part" in coarse["skipped"][0]["why"]
    assert len(errors(coarse)) == 3 and max(errors(coarse)) < 0.10
    assert all(o["pose"] == "interpolated" for kp in coarse["keypoints"] for o in kp["observations_used"])
    # The clicked frames localized against the scene: within 2 cm of the truth.
    video = ws.scene_dir(scene) / "videos" / f"{source}.mp4"
    out = transfer(shared, source, request, localize=FrameLocalizer(localizer(ws, scene, shared), video, source))
    assert [s["name"] for s in out["skipped"]] == ["seen_once"]
    assert max(errors(out)) < 0.02, errors(out)
    for kp in out["keypoints"]:
        assert [o["pose"] for o in kp["observations_used"]] == ["localized"] * 3
        assert kp["projections"] and kp["observations_unused"] == []


def test_no_pose_across_an_unregistered_frame_or_a_cut(scene_and_truth):
    shared, _ = scene_and_truth
    frames = shared.frames_of(shared.videos[0])
    a, lost, b = frames[10:13]
    between = (a.time + lost.time) / 2
    frame, kind = pose_at(frames, between, sampled=shared.sampled_times[shared.videos[0]])
    assert kind == "interpolated" and np.allclose(frame.center, (a.center + lost.center) / 2, atol=1e-6)
    without = frames[:11] + frames[12:]  # the middle frame failed to register: SfM knows nothing about that time
    frame, why = pose_at(without, between, sampled=shared.sampled_times[shared.videos[0]])
    assert frame is None and "did not register" in why
    cut = frames[:11] + [dataclasses.replace(f, segment=1) for f in frames[11:]]
    frame, why = pose_at(cut, (a.time + lost.time) / 2)
    assert frame is None and "cut" in why
    assert pose_at(frames, a.time + 0.01)[1] == "registered"


@pytest.mark.parametrize(
    "bad",
    [
        {"time": "x", "xy": [1, 2]},
        {"time": 1.0},
        {"time": float("nan"), "xy": [1, 2]},
        {"time": 1.0, "xy": [1, None]},
        {"time": 1.0, "xy": [1, 2, 3]},
    ],
)
def test_malformed_keypoints_give_one_error_naming_the_keypoint(scene_and_truth, bad):
    shared, _ = scene_and_truth
    request = {"keypoints": [{"name": "dipstick", "observations": [{"time": 1.0, "xy": [5, 5]}, bad]}]}
    with pytest.raises(InputError, match="keypoint 'dipstick', observation 1"):
        transfer(shared, shared.videos[0], request)


def test_pixels_are_those_of_the_displayed_video_when_sfm_frames_are_smaller(scene_and_truth):
    """A 2x larger video than the SfM frames: clicks and projections scale, K doubles, the 3D point does not move."""
    shared, gt = scene_and_truth
    source = shared.videos[0]
    obs = next(
        o for lm in gt["landmarks"] if (o := _clicks_on_unsampled_frames(shared, gt, source, np.array(lm["position"])))
    )
    f0 = shared.frames[0]
    big = dataclasses.replace(
        shared,
        frames=[dataclasses.replace(f, video_size=(2 * f.camera.width, 2 * f.camera.height)) for f in shared.frames],
    )
    small_out = transfer(shared, source, {"keypoints": [{"name": "k", "observations": obs}]})
    big_obs = [{"time": o["time"], "xy": [2 * o["xy"][0], 2 * o["xy"][1]]} for o in obs]
    big_out = transfer(big, source, {"keypoints": [{"name": "k", "observations": big_obs}]})
    assert np.allclose(small_out["keypoints"][0]["point"], big_out["keypoints"][0]["point"], atol=1e-5)
    for p, q in zip(small_out["keypoints"][0]["projections"], big_out["keypoints"][0]["projections"], strict=True):
        assert np.allclose(np.array(p["xy"]) * 2, q["xy"], atol=0.02)
    cam = cameras_json(big)["frames"][0]
    assert (cam["width"], cam["height"], cam["sfm_width"], cam["sfm_height"]) == (
        2 * f0.camera.width,
        2 * f0.camera.height,
        f0.camera.width,
        f0.camera.height,
    )
    assert np.allclose(cam["K"], np.diag([2, 2, 1]) @ f0.K, atol=1e-4) and cam["scale"] == [2.0, 2.0]
    assert np.allclose(cam["params"][:3], 2 * np.asarray(f0.camera.params[:3]), atol=1e-4)
