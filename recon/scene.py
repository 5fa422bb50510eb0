"""The shared-frame view of a scene that later stages consume: points, and every registered frame.

Grounding back-projects narrated frames through it, the viewer draws it, ``cameras --json`` prints it.
Poses are OpenCV world-to-camera (x right, y down, z forward) in the scene's shared frame; a video's model
is brought there by its Sim(3) ``shared_from_video`` (the identity for a scene's reference video).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

import numpy as np
import pycolmap
from scipy.spatial.transform import Rotation, Slerp

from recon.io import InputError
from recon.reconstruct import load_model, segment_dirs
from recon.sampling import load as load_frames
from recon.types import FloatArray

log = logging.getLogger(__name__)


@dataclass
class RegisteredFrame:
    """One registered video frame: its camera in the shared frame and the 3D points it observes."""

    video: str
    name: str
    time: float
    """Exact presentation time of the frame in its video (seconds)."""
    camera: pycolmap.Camera
    cam_from_world: np.ndarray
    """3x4 rigid world-to-camera transform in the shared frame."""
    xy: np.ndarray
    """(M, 2) pixel positions of the keypoints that observe 3D points."""
    point_index: np.ndarray
    """(M,) index into :attr:`SharedScene.points` of each observed point."""
    segment: int = 0
    """Which of the video's models (segments: footage between cuts) the frame belongs to; poses are never
    interpolated across segments."""
    video_size: tuple[int, int] | None = None
    """Displayed (width, height) of the video, which user-facing pixel coordinates refer to; the camera is at the
    (possibly downscaled) SfM frames' size. ``None``: the same as the camera's."""

    @property
    def video_scale(self) -> np.ndarray:
        """(sx, sy): video pixels per SfM-frame pixel (``xy_video = xy_sfm * video_scale``)."""
        if self.video_size is None:
            return np.ones(2)
        return np.array([self.video_size[0] / self.camera.width, self.video_size[1] / self.camera.height])

    @property
    def K(self) -> np.ndarray:
        return self.camera.calibration_matrix()

    @property
    def center(self) -> np.ndarray:
        R, t = self.cam_from_world[:, :3], self.cam_from_world[:, 3]
        centre: FloatArray = -R.T @ t
        return centre

    @property
    def axis(self) -> np.ndarray:
        """Unit optical axis (camera +z) in the shared frame."""
        axis: FloatArray = self.cam_from_world[2, :3] / np.linalg.norm(self.cam_from_world[2, :3])
        return axis

    def project(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixels (N, 2) of world points (N, 3) with the camera's distortion, and their depths (N,)."""
        Xc = np.asarray(X, float) @ self.cam_from_world[:, :3].T + self.cam_from_world[:, 3]
        depth = Xc[:, 2]
        safe = np.where(np.abs(depth) < 1e-9, 1e-9, depth)
        return self.camera.img_from_cam(Xc / safe[:, None])[:, :2], depth

    def ray(self, xy: np.ndarray) -> np.ndarray:
        """Unit viewing rays (N, 3) in the shared frame through pixels ``xy`` (N, 2)."""
        cam = self.camera.cam_from_img(np.asarray(xy, float).reshape(-1, 2))
        d = np.c_[cam, np.ones(len(cam))] @ self.cam_from_world[:, :3]
        rays: FloatArray = d / np.linalg.norm(d, axis=1, keepdims=True)
        return rays


@dataclass
class SharedScene:
    """All aligned videos of a scene in one frame."""

    scene: str
    videos: list[str]
    points: np.ndarray
    """(N, 3) 3D points of every aligned video's model, in the shared frame."""
    colors: np.ndarray
    """(N, 3) uint8 colours of the points."""
    point_video: np.ndarray
    """(N,) index into :attr:`videos` of the model each point comes from."""
    frames: list[RegisteredFrame]
    sampled_times: dict[str, np.ndarray] = field(default_factory=dict)
    """Per video, the times of every frame given to SfM, registered or not: poses are not interpolated across a
    sampled frame that failed to register (nothing is known about the camera there)."""

    def frames_of(self, video: str) -> list[RegisteredFrame]:
        return [f for f in self.frames if f.video == video]


def interpolate_poses(frames: list[RegisteredFrame], times: np.ndarray) -> np.ndarray:
    """(N, 3, 4) cam_from_world at ``times`` between one video's registered frames: slerp of the rotations,
    linear centres; the nearest registered pose outside their time range (videos are sampled, not tracked) and
    between two frames of different segments (a cut: the camera jumps, it does not travel in between).

    Takes frames as a workspace may hold them: in any order, segments interleaved in time, one frame, or two
    frames at one time (then the one of the lowest segment, the largest model, is used).
    """
    frames = [f for f in frames if np.isfinite(f.time) and np.isfinite(f.cam_from_world).all()]
    if not frames:
        raise ValueError("no registered frames to interpolate between")
    frames = sorted(frames, key=lambda f: (f.time, f.segment))
    ft = np.array([f.time for f in frames])
    first = np.r_[True, np.diff(ft) > 0]
    frames, ft = [f for f, keep in zip(frames, first, strict=True) if keep], ft[first]
    q = np.clip(np.asarray(times, float).reshape(-1), ft[0], ft[-1])
    rots = Rotation.from_matrix(np.stack([f.cam_from_world[:, :3] for f in frames]))
    centres = np.stack([f.center for f in frames])
    if len(frames) == 1:
        R, C = np.repeat(rots.as_matrix(), len(q), 0), np.repeat(centres, len(q), 0)
    else:
        R = Slerp(ft, rots)(q).as_matrix()
        C = np.stack([np.interp(q, ft, centres[:, i]) for i in range(3)], 1)
        seg = np.array([f.segment for f in frames])
        b = np.clip(np.searchsorted(ft, q, side="right"), 1, len(ft) - 1)
        a = b - 1
        cut = seg[a] != seg[b]
        nearest = np.where(q - ft[a] <= ft[b] - q, a, b)[cut]
        R[cut], C[cut] = rots[nearest].as_matrix(), centres[nearest]
    return np.concatenate([R, -np.einsum("nij,nj->ni", R, C)[..., None]], axis=2)


def load_shared_scene(
    scene: str,
    sfm_dirs: dict[str, Path],
    frames_dirs: dict[str, Path],
    shared_from_video: dict[str, pycolmap.Sim3d | dict[int, pycolmap.Sim3d]],
) -> SharedScene:
    """Load the aligned videos' models and bring them into the shared frame (videos without a Sim(3) are left out).

    A video's entry is its segment 0's Sim(3), or a ``{segment: Sim(3)}`` of every aligned segment; each
    frame records its segment, a video's frames are in time order across its segments.
    """
    points, colors, owner, frames, sampled = [], [], [], [], {}
    videos = sorted(v for v in shared_from_video if v in sfm_dirs)
    offset = 0
    for vi, video in enumerate(videos):
        meta = load_frames(frames_dirs[video])
        times = {f["name"]: f["time"] for f in meta["frames"]}
        sampled[video] = np.sort(np.array(list(times.values()), float))
        if "video_width" not in meta:
            raise InputError(
                f"{frames_dirs[video] / 'frames.json'}: written by an earlier release (no video size); "
                f"run `howto3d reconstruct WS --scene {scene} --force`"
            )
        video_size = (meta["video_width"], meta["video_height"])
        transforms = shared_from_video[video]
        video_frames = []
        seen: set[str] = set()
        models = segment_dirs(sfm_dirs[video])
        for segment, sim in sorted((transforms if isinstance(transforms, dict) else {0: transforms}).items()):
            if segment not in models:
                raise InputError(
                    f"{sfm_dirs[video]}: segment {segment} of video {video} has a transform in the "
                    "scene's alignment but no model; align the scene again (`--force`)"
                )
            rec = load_model(sfm_dirs[video], segment)
            rec.transform(sim)
            ids = sorted(rec.points3D)
            index = {pid: offset + i for i, pid in enumerate(ids)}
            points.append(np.array([rec.points3D[p].xyz for p in ids]).reshape(-1, 3))
            colors.append(np.array([rec.points3D[p].color for p in ids], np.uint8).reshape(-1, 3))
            owner.append(np.full(len(ids), vi))
            offset += len(ids)
            repeated = 0
            for image_id in rec.reg_image_ids():
                image = rec.images[image_id]
                if image.name in seen or image.name not in times:
                    repeated += 1
                    continue
                seen.add(image.name)
                obs = [(p.xy, index[p.point3D_id]) for p in image.points2D if p.has_point3D()]
                video_frames.append(
                    RegisteredFrame(
                        video=video,
                        name=image.name,
                        time=times[image.name],
                        camera=rec.cameras[image.camera_id],
                        cam_from_world=image.cam_from_world().matrix(),
                        xy=np.array([o[0] for o in obs]).reshape(-1, 2),
                        point_index=np.array([o[1] for o in obs], int),
                        segment=segment,
                        video_size=video_size,
                    )
                )
            if repeated:
                log.warning(
                    "%s/%s: segment %d registers %d frame(s) that a larger segment already holds or that "
                    "the video's frames.json does not list: left out (a model from an earlier release; "
                    "reconstruct the scene again with --force)",
                    scene,
                    video,
                    segment,
                    repeated,
                )
        frames.extend(sorted(video_frames, key=lambda f: f.time))
    return SharedScene(
        scene,
        videos,
        np.concatenate(points) if points else np.zeros((0, 3)),
        np.concatenate(colors) if colors else np.zeros((0, 3), np.uint8),
        np.concatenate(owner) if owner else np.zeros(0, int),
        frames,
        sampled,
    )


def video_camera(frame: RegisteredFrame) -> pycolmap.Camera:
    """The frame's camera rescaled to the displayed video (SfM ran on downscaled frames)."""
    if frame.video_size is None:
        return frame.camera
    camera = pycolmap.Camera(frame.camera.todict())
    camera.rescale(*frame.video_size)
    return camera


class CameraRecord(TypedDict):
    """One registered frame of ``cameras --json`` (pixels of the displayed video unless named ``sfm_``)."""

    video: str
    name: str
    time: float
    segment: int
    cam_from_world: list[list[float]]
    """3×4 world-to-camera matrix in the shared frame."""
    K: list[list[float]]
    width: int
    height: int
    sfm_width: int
    sfm_height: int
    scale: list[float]
    """Video pixels per SfM pixel (x, y)."""
    camera_model: str
    params: list[float]


class CamerasJSON(TypedDict):
    """``cameras --json``: the scene and every registered frame's camera, each ``(video, time)`` once."""

    scene: str
    frames: list[CameraRecord]


def cameras_json(scene: SharedScene) -> CamerasJSON:
    """The ``cameras --json`` contract: every registered frame's camera in the shared frame.

    ``K``, ``params``, ``width``/``height`` are in pixels of the displayed video (what a user clicks on);
    ``sfm_width``/``sfm_height`` are the frames SfM ran on and ``scale`` = video pixels per SfM pixel (x, y).
    """
    out: list[CameraRecord] = []
    for f in scene.frames:
        camera, s = video_camera(f), f.video_scale
        out.append(
            {
                "video": f.video,
                "name": f.name,
                "time": f.time,
                "segment": f.segment,
                "cam_from_world": np.round(f.cam_from_world, 9).tolist(),
                "K": np.round(np.diag([s[0], s[1], 1.0]) @ f.K, 6).tolist(),
                "width": camera.width,
                "height": camera.height,
                "sfm_width": f.camera.width,
                "sfm_height": f.camera.height,
                "scale": [round(float(x), 9) for x in s],
                "camera_model": camera.model.name,
                "params": [round(float(p), 9) for p in camera.params],
            }
        )
    return {"scene": scene.scene, "frames": out}


def intersect_rays(origins: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """Least-squares intersection point of 3D lines (origin + s·dir): the point closest to all of them.

    Used to triangulate clicked keypoints and to find where a run of frames keeps looking (gaze).
    Raises ``ValueError`` when the lines are (nearly) parallel, i.e. the point is not determined.
    """
    d = np.asarray(dirs, float)
    d = d / np.linalg.norm(d, axis=1, keepdims=True)
    proj = np.eye(3)[None] - d[:, :, None] * d[:, None, :]
    A = proj.sum(0)
    b = np.einsum("nij,nj->i", proj, np.asarray(origins, float))
    if len(d) < 2 or np.linalg.cond(A) > 1e8:
        raise ValueError("rays are (nearly) parallel: observe the point from frames further apart")
    return np.linalg.solve(A, b)
