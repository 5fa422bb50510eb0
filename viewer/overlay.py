"""AR-assistant preview: a query's heatmap drawn into every frame of a video, as the source's Fig. 5.5/5.8.

Heatmap voxels become red blobs whose opacity is their confidence (score over the best score) and whose
size is the voxel's projected size; optional markers (the ground-truth part in synthetic worlds) are dots.
Only some frames are registered, so a frame in between gets an interpolated pose (slerp of rotations,
linear camera centres); frames before the first or after the last registered one use the nearest pose.
Voxels behind the observed surface are drawn dimmer, using the depth of the points the nearest
registered frame observes.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from PIL import Image

from recon.io import InputError
from recon.scene import RegisteredFrame, SharedScene, interpolate_poses
from recon.video import probe, read_frames
from viewer.geometry import Heatmap, shown_heatmap

log = logging.getLogger(__name__)

Marker = tuple[np.ndarray, tuple[float, float, float]]
BLOB_COLOR = np.array([255.0, 32.0, 32.0])
MAX_ALPHA = 0.8
HIDDEN_DIM = 0.5
"""Opacity factor of voxels behind the observed surface: still visible (the part may be under a cover), but less."""
MAX_BLOBS = 400


def _nearest(frames: list[RegisteredFrame], t: float) -> RegisteredFrame:
    return min(frames, key=lambda f: abs(f.time - t))


def _surface_depth(
    scene: SharedScene,
    ref: RegisteredFrame,
    frame: RegisteredFrame,
    shape: tuple[int, int],
    scale: np.ndarray,
    cell: int = 16,
) -> np.ndarray:
    """Coarse (H/cell, W/cell) mean depth of the points ``ref`` observes, seen from ``frame`` (inf where none)."""
    h, w = shape
    grid = np.full(((h + cell - 1) // cell, (w + cell - 1) // cell), np.inf)
    if len(ref.point_index) == 0:
        return grid
    xy, depth = frame.project(scene.points[ref.point_index])
    xy = xy * scale
    ok = (depth > 0) & (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
    cells = (xy[ok, 1] // cell).astype(int) * grid.shape[1] + (xy[ok, 0] // cell).astype(int)
    count = np.bincount(cells, minlength=grid.size)
    total = np.bincount(cells, weights=depth[ok], minlength=grid.size)
    seen = count > 0
    grid.flat[np.flatnonzero(seen)] = total[seen] / count[seen]
    return grid


def blob_alpha(shape: tuple[int, int], xy: np.ndarray, radius: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """(H, W) opacity: each blob a soft disc, overlapping blobs combined by max so opacity stays a confidence."""
    h, w = shape
    out = np.zeros((h, w))
    for (x, y), r, a in zip(xy, radius, alpha, strict=True):
        x0, x1 = max(int(x - r), 0), min(int(x + r) + 2, w)
        y0, y1 = max(int(y - r), 0), min(int(y + r) + 2, h)
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        d2 = ((xx + 0.5 - x) ** 2 + (yy + 0.5 - y) ** 2) / (r * r)
        np.maximum(out[y0:y1, x0:x1], a * np.clip(1.0 - d2, 0.0, 1.0) ** 0.5, out=out[y0:y1, x0:x1])
    return out


def _draw_dot(img: np.ndarray, xy: np.ndarray, radius: float, color: tuple[float, float, float]) -> None:
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    d = np.hypot(xx + 0.5 - xy[0], yy + 0.5 - xy[1])
    img[d <= radius + 1.5] = 0
    img[d <= radius] = (np.asarray(color) * 255).astype(np.uint8)


def draw_frame(
    rgb: np.ndarray,
    scene: SharedScene,
    frame: RegisteredFrame,
    heatmap: Heatmap,
    markers: list[Marker] | None = None,
    ref: RegisteredFrame | None = None,
) -> np.ndarray:
    """One overlay image: ``frame`` gives the pose/intrinsics (at its camera's resolution, rescaled to ``rgb``)."""
    h, w = rgb.shape[:2]
    scale = np.array([w / frame.camera.width, h / frame.camera.height])
    hm = shown_heatmap(*heatmap, shrink=1.0)
    n = min(len(hm.scores), MAX_BLOBS)
    out = rgb.astype(float)
    if n:
        xy, depth = frame.project(hm.centers[:n])
        xy = xy * scale
        front = depth > 1e-6
        f = frame.K[0, 0] * scale[0]
        radius = np.maximum(2.0, 0.6 * f * float(np.mean(hm.size)) / np.where(front, depth, 1.0))
        alpha = MAX_ALPHA * hm.scores[:n]
        if ref is not None:
            grid = _surface_depth(scene, ref, frame, (h, w), scale)
            gy = np.clip((xy[:, 1] // 16).astype(int), 0, grid.shape[0] - 1)
            gx = np.clip((xy[:, 0] // 16).astype(int), 0, grid.shape[1] - 1)
            hidden = depth > grid[gy, gx] + 2.0 * float(np.max(hm.size))
            alpha = np.where(hidden, alpha * HIDDEN_DIM, alpha)
        a = blob_alpha((h, w), xy[front], radius[front], alpha[front])[..., None]
        out = out * (1 - a) + BLOB_COLOR * a
    out = out.round().astype(np.uint8)
    for xyz, color in markers or []:
        mxy, mdepth = frame.project(np.asarray(xyz, float).reshape(1, 3))
        if mdepth[0] > 0:
            _draw_dot(out, mxy[0] * scale, max(3.0, h / 80), color)
    return out


def overlay(
    scene: SharedScene,
    video_path: Path,
    video_name: str,
    heatmap: Heatmap,
    out: Path,
    markers: list[Marker] | None = None,
    every: int = 1,
) -> Path:
    """Write every ``every``-th frame of the video with the heatmap drawn in: an H.264 mp4, or PNGs in a folder."""
    frames = sorted(scene.frames_of(video_name), key=lambda f: f.time)
    if not frames:
        raise InputError(
            f"{scene.scene}/{video_name}: no camera of this video in the shared frame (it did not "
            "reconstruct or align; `howto3d check` says which); overlay one of "
            f"{', '.join(v for v in scene.videos if scene.frames_of(v)) or 'no video yet'}"
        )
    out = Path(out)
    info = probe(video_path)
    indices = np.arange(0, info.num_frames, max(1, every))
    as_mp4 = out.suffix.lower() == ".mp4"
    out.parent.mkdir(parents=True, exist_ok=True)
    if not as_mp4:
        out.mkdir(parents=True, exist_ok=True)
    container = stream = None
    start = time.perf_counter()
    try:
        for index, t, rgb in read_frames(video_path, indices):
            ref = _nearest(frames, t)
            frame = dataclasses.replace(ref, cam_from_world=interpolate_poses(frames, np.array([t]))[0])
            img = draw_frame(rgb, scene, frame, heatmap, markers, ref)
            if not as_mp4:
                Image.fromarray(img).save(out / f"{index:06d}.png", compress_level=1)
                continue
            if container is None:
                container = av.open(str(out), "w")
                rate = Fraction(info.fps / max(1, every)).limit_denominator(1001)
                stream = container.add_stream("libx264", rate=rate)
                stream.width, stream.height = img.shape[1] // 2 * 2, img.shape[0] // 2 * 2
                stream.pix_fmt = "yuv420p"
            assert stream is not None  # added with the container
            vf = av.VideoFrame.from_ndarray(img[: stream.height, : stream.width], format="rgb24")
            container.mux(stream.encode(vf))
        if container is not None and stream is not None:  # both made at the first frame
            container.mux(stream.encode())
    finally:
        if container is not None:
            container.close()
    seconds = time.perf_counter() - start
    log.info(
        "overlay of %s: %d frames in %.1fs (%.1f fps) -> %s",
        video_name,
        len(indices),
        seconds,
        len(indices) / max(seconds, 1e-9),
        out,
    )
    return out
