"""Frame sampling: a video → N image files + their exact timestamps (the input of SfM).

Output folder layout::

    out_dir/images/<video>_<index:06d>.jpg
    out_dir/frames.json   {"video", "width", "height" (SfM frames), "video_width", "video_height" (displayed video),
                           "fps", "num_frames", "duration",
                           "selection": {"candidates", "kept", ...} (how 'motion' sampling chose),
                           "frames": [{"name", "index", "time", "shot"}]}   shot: footage between detected cuts
"""

from __future__ import annotations

import itertools
import logging
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pycolmap
from PIL import Image
from scipy.ndimage import laplace, median_filter

from recon.config import FramesConfig
from recon.io import atomic_dir, atomic_write_json, read_json
from recon.retrieval import mutual_matches
from recon.types import JSONDict
from recon.video import VideoInfo, probe, read_frames, sample_indices

log = logging.getLogger(__name__)


def main(conf: FramesConfig, video: Path, out_dir: Path) -> JSONDict:
    """Sample ``conf.num_frames`` frames of ``video`` into ``out_dir`` (written atomically); return frames.json."""
    info = probe(video)
    shots: dict[int, int] = {}
    sampling = conf.sampling
    if sampling == "auto":
        sampling = "motion" if info.duration > conf.auto_motion_seconds else "uniform"
    if sampling == "motion":
        indices, stats = motion_indices(conf, video, info)
        shots = dict(zip(indices.tolist(), stats.pop("shots"), strict=True))
    else:
        indices = sample_indices(info.num_frames, conf.num_frames, sampling, conf.seed)
        stats = {"candidates": len(indices), "kept": len(indices)}
    scale = min(1.0, conf.max_side / max(info.width, info.height))
    frames = []
    with atomic_dir(out_dir) as tmp:
        (tmp / "images").mkdir()
        for index, time, rgb in read_frames(video, indices):
            image = Image.fromarray(rgb)
            if scale < 1.0:
                image = image.resize((round(info.width * scale), round(info.height * scale)), Image.Resampling.LANCZOS)
            name = f"{Path(video).stem}_{index:06d}.jpg"
            image.save(tmp / "images" / name, quality=conf.jpeg_quality)
            frames.append({"name": name, "index": index, "time": round(time, 6), "shot": shots.get(index, 0)})
        meta = {
            "video": Path(video).name,
            "width": round(info.width * scale),
            "height": round(info.height * scale),
            "video_width": info.width,  # displayed size: user-facing pixel coordinates refer to it
            "video_height": info.height,
            "fps": info.fps,
            "num_frames": info.num_frames,
            "duration": info.duration,
            "config": asdict(conf),
            "selection": {"sampling": sampling, **stats},
            "frames": frames,
        }
        atomic_write_json(tmp / "frames.json", meta)
    return meta


_MOTION_SIDE = 256  # px: motion and sharpness are measured on small grayscale copies (cheap, robust to noise)


def _small_gray(rgb: np.ndarray) -> np.ndarray:
    h, w = rgb.shape[:2]
    s = min(1.0, _MOTION_SIDE / max(h, w))
    image = Image.fromarray(rgb).convert("L")
    if s < 1.0:
        image = image.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BILINEAR)
    return np.asarray(image)


_CUT_LOST = 0.85  # share of keypoints without a match beyond which two views have nothing in common


def view_change(
    a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], diagonal: float
) -> tuple[float, float]:
    """How much the view changed between two frames' (keypoints, descriptors): (median displacement of mutually
    matched keypoints as a fraction of the image diagonal, share of the smaller keypoint set left unmatched).

    Views with (almost) nothing in common give (1, 1): the few matches left are chance, their motion noise.
    """
    (ka, da), (kb, db) = a, b
    m = mutual_matches(da, db, 0.8)
    lost = 1.0 - len(m) / max(1, min(len(da), len(db)))
    if len(m) < 8 or lost >= _CUT_LOST:
        return 1.0, 1.0
    return float(min(1.0, np.median(np.linalg.norm(kb[m[:, 1], :2] - ka[m[:, 0], :2], axis=1)) / diagonal)), lost


def _fill(chosen: list[int], free: np.ndarray, clock: np.ndarray, n: int) -> np.ndarray:
    """Add unused candidates until ``n`` are kept, each splitting the widest clock gap between kept frames.

    Levels collide when the view moved more than one frame's worth between two candidates (a quick swing,
    a cut); the extra frames belong there, not spread in time over the hovers.
    """

    def at(j: int) -> float:
        return float(clock[min(max(j, 0), len(clock) - 1)])

    while len(chosen) < n and len(free):
        width, lo, hi = max(
            (at(b) - at(a), a, b)
            for a, b in itertools.pairwise([-1, *chosen, len(clock)])
            if ((free > a) & (free < b)).any()
        )
        inside = free[(free > lo) & (free < hi)]
        pick = int(inside[np.abs(clock[inside] - (at(lo) + at(hi)) / 2).argmin()])
        chosen = sorted([*chosen, pick])
        free = free[free != pick]
    return np.array(chosen, int)


def motion_indices(conf: FramesConfig, video: Path, info: VideoInfo) -> tuple[np.ndarray, JSONDict]:
    """Frame indices spread evenly along a "motion clock": view change since the previous candidate in units
    of ``motion_step``, plus elapsed time in units of ``max_gap``; blurry candidates are passed over.

    A frame per clock unit is what the issue asks ("keep a frame when the view changed enough since the
    last one"); spreading a fixed count along the clock instead of thresholding keeps ``num_frames`` and
    ``max_frames`` exact bounds. A cut (nothing matches) costs one full unit, so both sides get frames.
    """
    rate = min(info.fps, max(conf.base_fps, 2 * conf.num_frames / max(info.duration, 1e-6)))
    grid = np.arange(0.0, info.times[-1] + 1e-9, 1.0 / rate)
    candidates = np.unique(np.clip(np.searchsorted(info.times, grid - 0.5 / info.fps), 0, info.num_frames - 1))
    if len(candidates) <= conf.num_frames:
        return candidates, {"candidates": len(candidates), "kept": len(candidates), "shots": [0] * len(candidates)}
    options = pycolmap.FeatureExtractionOptions()
    options.num_threads = 1
    options.sift.max_num_features = 400
    with warnings.catch_warnings():  # FeatureExtractor.create, its successor, returns keypoints as objects
        warnings.simplefilter("ignore", DeprecationWarning)
        sift = pycolmap.Sift(options, pycolmap.Device.cpu)
    times: list[float] = []
    feats: list[tuple[np.ndarray, np.ndarray]] = []
    sharpness: list[float] = []
    diagonal = 1.0
    for _, t, rgb in read_frames(video, candidates):
        gray = _small_gray(rgb)
        diagonal = float(np.hypot(*gray.shape))
        kp, desc = sift.extract(gray)
        feats.append((kp, desc / (np.linalg.norm(desc, axis=1, keepdims=True) + 1e-8)))
        sharpness.append(float(laplace(gray.astype(np.float32)).var()))
        times.append(t)
    candidates = candidates[: len(times)]
    pairs = np.array([(0.0, 0.0)] + [view_change(feats[i - 1], feats[i], diagonal) for i in range(1, len(feats))])
    change = pairs[:, 0 if conf.motion_measure == "displacement" else 1]
    sharp = np.array(sharpness)
    sharp_ok = sharp >= conf.blur_ratio * median_filter(sharp, size=7, mode="nearest")
    unit = change / conf.motion_step + np.diff(np.array(times), prepend=times[0]) / conf.max_gap
    clock = np.cumsum(unit)
    # A cut: nothing in common with the previous candidate nor the one after (a blurred frame matches its
    # neighbours again); each shot gets its own camera in SfM, as a cut may change the zoom.
    # A quick swing between two parts breaks overlap too, but the camera moves fast into or out of it, while the
    # footage on both sides of a cut is as steady as the rest of the shot.
    cut = np.zeros(len(feats), bool)
    for i in np.nonzero(pairs[:, 1] >= 1.0)[0]:
        after = view_change(feats[i - 1], feats[i + 1], diagonal)[1] if i + 1 < len(feats) else 1.0
        around = [pairs[j, 0] for j in (i - 1, i + 1) if 0 < j < len(pairs)]
        swing = max(around, default=0.0) >= conf.swing_motion
        cut[i] = after >= 1.0 and sharp_ok[i - 1] and sharp_ok[i] and not swing
    cap = max(conf.num_frames, conf.max_frames)
    n = int(np.clip(np.ceil(clock[-1]), conf.num_frames, cap))
    levels = (np.arange(n) + 0.5) * clock[-1] / n
    pool = np.nonzero(sharp_ok)[0] if sharp_ok.any() else np.arange(len(clock))
    chosen = pool[np.abs(clock[pool][None, :] - levels[:, None]).argmin(axis=1)]
    chosen = _fill(list(np.unique(chosen)), np.setdiff1d(pool, chosen), clock, n)
    stats = {
        "candidates": len(candidates),
        "kept": len(chosen),
        "motion_units": round(float(clock[-1]), 2),
        "blurry_skipped": int((~sharp_ok).sum()),
        "rate": round(rate, 3),
        "cuts": [round(times[i], 6) for i in np.nonzero(cut)[0]],
        "shots": np.cumsum(cut)[chosen].tolist(),
    }
    log.info(
        "%s: %d of %d candidate frames kept (%.1f motion units, %d blurry passed over)",
        Path(video).name,
        len(chosen),
        len(candidates),
        clock[-1],
        stats["blurry_skipped"],
    )
    return candidates[chosen], stats


def is_done(frames_dir: Path) -> bool:
    """Frames were sampled (written atomically, so a partial folder never looks done)."""
    return (Path(frames_dir) / "frames.json").is_file()


def load(frames_dir: Path) -> JSONDict:
    """Read a frames folder's ``frames.json``."""
    frames: JSONDict = read_json(Path(frames_dir) / "frames.json")
    return frames
