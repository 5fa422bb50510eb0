"""Keypoint transfer ([001] §5.3.5): triangulate clicked keypoints in one video, project them into the others.

Users click on whatever frame they paused on, so an observation may be at any time of the video. Its camera
is, in order: the registered frame at that time (within ``tolerance``); the frame itself localized against the
scene (``localize``: decoded, SIFT-matched to registered frames, PnP; see :class:`FrameLocalizer`); or the pose
interpolated between the two registered frames around it, only when those are consecutive among the frames
SfM was given (no sampled frame between them failed to register) and in the same segment (no cut between
them): elsewhere nothing is known about the camera, and a guessed pose would put the keypoint in the wrong
place without anyone noticing. Interpolation alone is coarse for hand-held video (synthetic 4 × 16 s world,
30 of 80 frames sampled: median 0.7°, up to 4° off), so keypoints clicked between sampled frames land
1.4 cm (median) and up to 6.3 cm off with it; localized, 0.19 cm (median) and at most 0.35 cm, as on
sampled frames (0.19 / 0.42 cm). Localizing costs a frame decode, SIFT and PnP per clicked frame.

Pixel coordinates, in and out, are in the displayed video at its own resolution (see
:attr:`recon.scene.RegisteredFrame.video_scale`), not in the downscaled frames SfM ran on.

Input/output follow the CLI contract (fields may be added, never changed)::

    in : {"keypoints": [{"name", "observations": [{"time", "xy": [u, v]}]}]}
    out: {"scene", "source",
          "keypoints": [{"name", "point": [x, y, z], "projections": [{"video", "time", "xy": [u, v]}],
                         "observations_used": [{"time", "pose": "registered"|"localized"|"interpolated"}],
                         "observations_unused": [{"time", "why"}]}],
          "skipped": [{"name", "why"}]}
"""

from __future__ import annotations

import dataclasses
import io
import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

import numpy as np
from PIL import Image

from recon.io import InputError
from recon.scene import RegisteredFrame, SharedScene, interpolate_poses, intersect_rays
from recon.types import JSONDict
from recon.video import probe, read_frames

if TYPE_CHECKING:  # a photo localizer is built by the caller; importing it here would load SIFT and PIL
    from recon.localize import Localizer

Localize = Callable[[float], RegisteredFrame | None]
"""The camera of the source video's frame at a time (video pixels), or None where it cannot be localized."""
Observed = tuple[float, RegisteredFrame, np.ndarray, str]
"""An observation with a known camera: (time, frame, xy in the camera's pixels, how its pose was found)."""

FORMAT = 'keypoints JSON must look like {"keypoints": [{"name", "observations": [{"time", "xy": [u, v]}]}]}'
FALLBACK_GAP = 1.5
"""Without the list of sampled frames (a scene built by hand), interpolate only across gaps up to this many
times the median spacing of the registered frames."""


def frame_at(frames: list[RegisteredFrame], time: float, tolerance: float) -> RegisteredFrame | None:
    """The registered frame nearest to ``time`` if it is within ``tolerance`` seconds."""
    if not frames:
        return None
    best = min(frames, key=lambda f: abs(f.time - time))
    return best if abs(best.time - time) <= tolerance else None


def pose_at(
    frames: list[RegisteredFrame], time: float, tolerance: float = 0.05, sampled: np.ndarray | None = None
) -> tuple[RegisteredFrame | None, str]:
    """The camera of one video at ``time``: ``(frame, "registered"|"interpolated")``, or ``(None, why not)``.

    ``frames`` are the video's registered frames; ``sampled`` the times of every frame SfM was given.
    """
    frames = sorted(frames, key=lambda f: f.time)
    if not frames:
        return None, "the video has no registered frame"
    near = frame_at(frames, time, tolerance)
    if near is not None:
        return near, "registered"
    times = np.array([f.time for f in frames])
    b = int(np.searchsorted(times, time))
    if b == 0 or b == len(frames):
        return None, (f"t={time:.3f} is outside the registered part of the video ({times[0]:.3f}–{times[-1]:.3f} s)")
    fa, fb = frames[b - 1], frames[b]
    if fa.segment != fb.segment:
        return None, f"t={time:.3f} falls in a cut between segments ({fa.time:.3f} s | {fb.time:.3f} s)"
    if sampled is not None and len(sampled):
        lost = sampled[(sampled > fa.time + 1e-6) & (sampled < fb.time - 1e-6)]
        if len(lost):
            return None, (
                f"t={time:.3f}: the sampled frame at {lost[0]:.3f} s between the registered frames "
                f"{fa.time:.3f} s and {fb.time:.3f} s did not register"
            )
    elif len(times) > 2 and fb.time - fa.time > FALLBACK_GAP * float(np.median(np.diff(times))):
        return None, f"t={time:.3f}: no registered frame between {fa.time:.3f} s and {fb.time:.3f} s"
    pose = interpolate_poses([fa, fb], np.array([time]))[0]
    nearest = fa if time - fa.time <= fb.time - time else fb
    return dataclasses.replace(nearest, time=float(time), cam_from_world=pose), "interpolated"


class FrameLocalizer:
    """Localizes the source video's own frame at a clicked time (``recon.localize.Localizer``: the frame is
    matched to the scene's registered frames and its pose found by PnP), decoding each frame once."""

    def __init__(self, localizer: Localizer, video_path: Path, video: str):
        self.localizer, self.path, self.video = localizer, Path(video_path), video
        info = probe(self.path)
        self.times, self.half_frame = info.times, 0.5 / info.fps
        self.cache: dict[int, RegisteredFrame | None] = {}

    def __call__(self, time: float) -> RegisteredFrame | None:
        index = int(np.argmin(np.abs(self.times - time)))
        if abs(self.times[index] - time) > self.half_frame:
            return None  # no frame of the video shows that time
        if index not in self.cache:
            self.cache[index] = None
            for _, t, rgb in read_frames(self.path, [index]):
                png = io.BytesIO()
                Image.fromarray(rgb).save(png, format="PNG", compress_level=1)
                found = self.localizer.localize(png.getvalue(), f"{self.video}@{t:.3f}").frame
                if found is not None:  # its camera is at the decoded frame's size: video pixels
                    self.cache[index] = dataclasses.replace(
                        found, video=self.video, time=t, video_size=(found.camera.width, found.camera.height)
                    )
        return self.cache[index]


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InputError(f"{what} must be a finite number, got {value!r}; {FORMAT}")
    return float(value)


def parse_observations(observations: Any, name: str) -> list[tuple[float, np.ndarray]]:
    """``[(time, xy)]`` of one keypoint (``observations``: its JSON as given), or an :class:`InputError` naming
    the keypoint and the bad field."""
    if not isinstance(observations, list):
        raise InputError(f"keypoint {name!r}: 'observations' must be a list; {FORMAT}")
    out = []
    for j, obs in enumerate(observations):
        where = f"keypoint {name!r}, observation {j}"
        if not isinstance(obs, dict) or "time" not in obs or "xy" not in obs:
            raise InputError(f"{where}: needs 'time' and 'xy'; {FORMAT}")
        xy = obs["xy"]
        if not isinstance(xy, list | tuple) or len(xy) != 2:
            raise InputError(f"{where}: 'xy' must be [u, v] in video pixels, got {xy!r}")
        out.append((_number(obs["time"], f"{where}: 'time'"), np.array([_number(c, f"{where}: 'xy'") for c in xy])))
    return out


def parse_keypoints(request: Any) -> list[tuple[str, list[tuple[float, np.ndarray]]]]:
    """``[(name, [(time, xy)])]`` of a keypoints document (the ``transfer`` input, JSON as given), or one
    :class:`InputError`."""
    if not isinstance(request, dict) or not isinstance(request.get("keypoints"), list):
        raise InputError(FORMAT)
    parsed = []
    for i, kp in enumerate(request["keypoints"]):
        if not isinstance(kp, dict):
            raise InputError(f"keypoint {i} is not an object; {FORMAT}")
        name = str(kp.get("name", f"keypoint_{i}"))
        parsed.append((name, parse_observations(kp.get("observations", []), name)))
    return parsed


def observe(
    scene: SharedScene,
    video: str,
    observations: list[tuple[float, np.ndarray]],
    tolerance: float = 0.05,
    localize: Localize | None = None,
) -> tuple[list[Observed], list[JSONDict]]:
    """Cameras of the observations: ``([(time, frame, xy in camera pixels, pose kind)], [{"time", "why"}])``."""
    frames = scene.frames_of(video)
    sampled = scene.sampled_times.get(video)
    used: list[Observed] = []
    unused: list[JSONDict] = []
    for time, xy in observations:
        frame, kind = pose_at(frames, time, tolerance, sampled)
        if kind != "registered" and localize is not None and (found := localize(time)) is not None:
            frame, kind = found, "localized"
        if frame is None:
            unused.append({"time": time, "why": kind})
        else:
            used.append((time, frame, xy / frame.video_scale, kind))
    return used, unused


def triangulate(
    scene: SharedScene,
    video: str,
    observations: list[JSONDict],
    tolerance: float = 0.05,
    name: str = "keypoint",
    localize: Localize | None = None,
) -> np.ndarray:
    """3D point (shared frame) seen at video pixels ``xy`` at the given times of ``video``."""
    X, _, _ = _triangulate(scene, video, parse_observations(observations, name), tolerance, name, localize)
    return X


def _triangulate(
    scene: SharedScene,
    video: str,
    observations: list[tuple[float, np.ndarray]],
    tolerance: float,
    name: str,
    localize: Localize | None = None,
) -> tuple[np.ndarray, list[Observed], list[JSONDict]]:
    used, unused = observe(scene, video, observations, tolerance, localize)
    if len(used) < 2:
        why = "; ".join(u["why"] for u in unused) or "fewer than 2 observations given"
        raise InputError(
            f"keypoint {name!r}: needs at least 2 observations with a known camera in {video!r}, "
            f"has {len(used)} ({why})"
        )
    origins = np.array([f.center for _, f, _, _ in used])
    dirs = np.array([f.ray(xy[None])[0] for _, f, xy, _ in used])
    try:
        return intersect_rays(origins, dirs), used, unused
    except ValueError as e:
        raise InputError(f"keypoint {name!r}: {e}") from None


def project_everywhere(scene: SharedScene, X: np.ndarray, skip_video: str | None = None) -> list[JSONDict]:
    """Projections (video pixels) of a shared-frame point into every registered frame where it is in view."""
    out = []
    for f in scene.frames:
        if f.video == skip_video:
            continue
        xy, depth = f.project(X[None])
        u, v = xy[0]
        if depth[0] > 0 and 0 <= u < f.camera.width and 0 <= v < f.camera.height:
            u, v = xy[0] * f.video_scale
            out.append({"video": f.video, "time": f.time, "xy": [round(float(u), 2), round(float(v), 2)]})
    return out


class Observation(TypedDict):
    """A click that placed the keypoint: its frame time and how that frame's pose was known."""

    time: float
    pose: str


class TransferredKeypoint(TypedDict):
    """One keypoint of ``transfer --json``: its shared-frame point and where it projects in the other videos."""

    name: str
    point: list[float]
    projections: list[JSONDict]
    observations_used: list[Observation]
    observations_unused: list[JSONDict]


class SkippedKeypoint(TypedDict):
    name: str
    why: str


class TransferJSON(TypedDict):
    """``transfer --json`` (docs/cli.md)."""

    scene: str
    source: str
    keypoints: list[TransferredKeypoint]
    skipped: list[SkippedKeypoint]


def main(
    scene: SharedScene, source: str, request: Any, tolerance: float = 0.05, localize: Localize | None = None
) -> TransferJSON:
    """Answer a transfer request (contract JSON) for keypoints observed in ``source``.

    ``localize`` (e.g. a :class:`FrameLocalizer` of the source video) poses clicked frames SfM did not register;
    without it they get interpolated poses.

    A keypoint without two observations of known camera (or with rays that do not intersect) is listed in
    ``skipped`` with the reason; the others are transferred. Malformed JSON raises :class:`InputError`.
    """
    if source not in scene.videos:
        raise InputError(
            f"video {source!r} is not aligned in scene {scene.scene!r}; aligned: {', '.join(scene.videos)}"
        )
    parsed = parse_keypoints(request)
    out: list[TransferredKeypoint] = []
    skipped: list[SkippedKeypoint] = []
    for name, observations in parsed:
        try:
            X, used, unused = _triangulate(scene, source, observations, tolerance, name, localize)
        except InputError as e:
            skipped.append({"name": name, "why": str(e)})
            continue
        out.append(
            {
                "name": name,
                "point": [round(float(x), 6) for x in X],
                "projections": project_everywhere(scene, X, skip_video=source),
                "observations_used": [{"time": t, "pose": kind} for t, _, _, kind in used],
                "observations_unused": unused,
            }
        )
    return {"scene": scene.scene, "source": source, "keypoints": out, "skipped": skipped}
