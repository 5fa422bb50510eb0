"""Keypoint transfer (source §5.3.5): triangulate clicked keypoints in one video, project them into the others.

Input/output follow the CLI contract::

    in : {"keypoints": [{"name", "observations": [{"time", "xy": [u, v]}]}]}
    out: {"keypoints": [{"name", "point": [x, y, z], "projections": [{"video", "time", "xy": [u, v]}]}]}
"""

from __future__ import annotations

import numpy as np

from recon.io import InputError
from recon.scene import RegisteredFrame, SharedScene, intersect_rays


def frame_at(frames: list[RegisteredFrame], time: float, tolerance: float) -> RegisteredFrame | None:
    """The registered frame nearest to ``time`` if it is within ``tolerance`` seconds."""
    if not frames:
        return None
    best = min(frames, key=lambda f: abs(f.time - time))
    return best if abs(best.time - time) <= tolerance else None


def triangulate(scene: SharedScene, video: str, observations: list[dict], tolerance: float = 0.05,
                name: str = "keypoint") -> np.ndarray:
    """3D point (shared frame) seen at pixels ``xy`` in frames of ``video`` at the given times."""
    frames = scene.frames_of(video)
    origins, dirs, missing = [], [], []
    for obs in observations:
        f = frame_at(frames, float(obs["time"]), tolerance)
        if f is None:
            missing.append(float(obs["time"]))
            continue
        origins.append(f.center)
        dirs.append(f.ray(np.array([obs["xy"]], float))[0])
    if len(origins) < 2:
        times = ", ".join(f"{f.time:.3f}" for f in frames[:: max(1, len(frames) // 12)])
        raise InputError(f"keypoint {name!r}: needs observations in at least 2 registered frames of {video!r} "
                         f"(no registered frame near t={missing}); registered times include {times}")
    try:
        return intersect_rays(np.array(origins), np.array(dirs))
    except ValueError as e:
        raise InputError(f"keypoint {name!r}: {e}") from None


def project_everywhere(scene: SharedScene, X: np.ndarray, skip_video: str | None = None) -> list[dict]:
    """Projections of a shared-frame point into every registered frame (in front of the camera, inside the image)."""
    out = []
    for f in scene.frames:
        if f.video == skip_video:
            continue
        xy, depth = f.project(X[None])
        u, v = xy[0]
        if depth[0] > 0 and 0 <= u < f.camera.width and 0 <= v < f.camera.height:
            out.append({"video": f.video, "time": f.time, "xy": [round(float(u), 2), round(float(v), 2)]})
    return out


def main(scene: SharedScene, source: str, request: dict, tolerance: float = 0.05) -> dict:
    """Answer a transfer request (contract JSON) for keypoints observed in ``source``."""
    if source not in scene.videos:
        raise InputError(f"video {source!r} is not aligned in scene {scene.scene!r}; "
                         f"aligned: {', '.join(scene.videos)}")
    if not isinstance(request, dict) or not isinstance(request.get("keypoints"), list):
        raise InputError('keypoints JSON must look like {"keypoints": [{"name", "observations": [{"time", "xy"}]}]}')
    out = []
    for i, kp in enumerate(request["keypoints"]):
        name = str(kp.get("name", f"keypoint_{i}"))
        X = triangulate(scene, source, kp.get("observations", []), tolerance, name)
        out.append({"name": name, "point": [round(float(x), 6) for x in X],
                    "projections": project_everywhere(scene, X, skip_video=source)})
    return {"scene": scene.scene, "source": source, "keypoints": out}
