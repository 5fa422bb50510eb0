"""Per-second clip features ``X[T, D]`` of a scene's own videos, from frames and the shared reconstruction.

No downloadable network: what a clip shows comes from a bag of visual words over SIFT (codebook learned on
the scene's own frames) and colour statistics; what the camera does comes from the registered poses
(speed, turn rate, where it is and points); *where* it looks comes from a 3D gaze descriptor (which cells
of the shared space project near the image centre). Clip ``t`` covers ``[t, t + 1)`` seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pycolmap
from PIL import Image
from safetensors import SafetensorError
from safetensors.numpy import load, save

from recon.io import InputError, ProgressFn, atomic_write_bytes, atomic_write_json, read_json
from recon.retrieval import bow, learn_codebook
from recon.scene import RegisteredFrame, SharedScene, interpolate_poses
from recon.video import probe, read_frames

KINDS = ("bovw", "color", "motion", "gaze")
"""Feature groups: image content (bovw, color) and 3D (motion, gaze; zero for a video without poses)."""

CLIP_SECONDS = 1.0
"""Length of one clip: row ``t`` of every temporal array covers ``[t, t + 1)`` s (written into every artefact)."""

FEATURES_META, FEATURES_DATA = "features.json", "features.safetensors"


@dataclass
class FeatureConfig:
    """Which per-second features, and how they are computed."""

    kinds: list[str] = field(default_factory=lambda: ["bovw", "color", "motion", "gaze"])
    """Feature groups concatenated per clip, from bovw, color, motion, gaze. All four: the only combination
    whose actionness beats chance and whose fused steps beat uniform on both benchmark worlds."""
    samples_per_second: int = 2
    """Frames decoded per one-second clip; the clip's feature is their mean."""
    max_side: int = 320
    """Frames are downscaled to this longest side before SIFT and colour statistics."""
    sift_features: int = 300
    """SIFT features per frame for the bag of words."""
    words: int = 64
    """Visual words (k-means centres over the scene's RootSIFT descriptors)."""
    gaze_divisions: int = 4
    """Cells per axis of the gaze grid over the scene's robust box (divisions³ cells)."""
    gaze_sigma: float = 0.35
    """Width of the image-centre weighting of the gaze, as a fraction of the half image diagonal."""
    max_points: int = 20000
    """Scene points used for the gaze (a seeded subsample)."""
    seed: int = 0
    """Seed of the codebook and the point subsample."""


@dataclass
class ClipCameras:
    """Interpolated cameras of one video at its sample times (empty when the video has no registered frame)."""

    times: np.ndarray
    """(N,) sample times (s)."""
    clip: np.ndarray
    """(N,) clip index of each sample."""
    R: np.ndarray
    """(N, 3, 3) world-to-camera rotations in the shared frame."""
    C: np.ndarray
    """(N, 3) camera centres in the shared frame."""
    K: np.ndarray
    """(3, 3) intrinsics (one camera per video)."""
    width: int
    height: int

    def project(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Pixels (N, P, 2) and depths (N, P) of world points ``X`` (P, 3) in every sample's camera."""
        Xc = np.einsum("nij,npj->npi", self.R, X[None] - self.C[:, None])
        z = Xc[..., 2]
        uv = Xc[..., :2] / np.where(np.abs(z) < 1e-9, 1e-9, z)[..., None]
        return uv * np.diag(self.K)[:2] + self.K[:2, 2], z

    def centrality(self, X: np.ndarray, sigma: float) -> np.ndarray:
        """(N, P) weight of each point in each sample: 0 behind or outside the image, else a Gaussian of its
        distance to the image centre (in half diagonals); what the camera "looks at"."""
        uv, z = self.project(X)
        inside = (z > 0) & (uv[..., 0] >= 0) & (uv[..., 0] < self.width) & (uv[..., 1] >= 0) & \
            (uv[..., 1] < self.height)
        r = np.linalg.norm(uv - [self.width / 2, self.height / 2], axis=-1) / (0.5 * np.hypot(self.width, self.height))
        return np.where(inside, np.exp(-0.5 * (r / sigma) ** 2), 0.0)


def sample_times(duration: float, per_second: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample times inside each one-second clip and their clip index (clips cover the whole video)."""
    T = max(1, int(np.ceil(duration - 1e-6)))
    clip = np.repeat(np.arange(T), per_second)
    times = clip + (np.tile(np.arange(per_second), T) + 0.5) / per_second
    keep = times < duration
    keep[::per_second] = True  # at least one sample per clip, even in a short last clip
    return np.minimum(times[keep], duration), clip[keep]


def clip_cameras(frames: Sequence[RegisteredFrame], times: np.ndarray, clip: np.ndarray) -> ClipCameras | None:
    """Poses at ``times`` by slerp/lerp between a video's registered frames (nearest outside their range)."""
    if not frames:
        return None
    P = interpolate_poses(list(frames), times)
    R = P[:, :, :3]
    C = -np.einsum("nji,nj->ni", R, P[:, :, 3])
    cam = frames[0].camera
    return ClipCameras(times, clip, R, C, cam.calibration_matrix(), int(cam.width), int(cam.height))


def clip_mean(values: np.ndarray, clip: np.ndarray, T: int) -> np.ndarray:
    """``[T, D]`` mean of per-sample ``values[N, D]`` over each clip's samples (0 for a clip without any)."""
    out = np.zeros((T, values.shape[1]))
    np.add.at(out, clip, values)
    return out / np.maximum(np.bincount(clip, minlength=T), 1)[:, None]


def color_stats(rgb: np.ndarray) -> np.ndarray:
    """Mean/std per RGB channel, a saturation-weighted 12-bin hue histogram and a 4-bin value histogram (22)."""
    x = rgb.reshape(-1, 3).astype(np.float64) / 255
    hsv = np.asarray(Image.fromarray(rgb).convert("HSV")).reshape(-1, 3).astype(np.float64) / 255
    hue = np.bincount(np.minimum((hsv[:, 0] * 12).astype(int), 11), weights=hsv[:, 1], minlength=12)
    val = np.bincount(np.minimum((hsv[:, 2] * 4).astype(int), 3), minlength=4)
    return np.r_[x.mean(0), x.std(0), hue / max(hue.sum(), 1e-9), val / len(x)]


def motion_features(cams: ClipCameras, T: int, scale: float, centre: np.ndarray) -> np.ndarray:
    """Per clip: speed (scene sizes/s), turn rate (rad/s), normalised position (3) and optical axis (3)."""
    axis = cams.R[:, 2, :]
    if len(cams.times) > 1:
        dt = np.maximum(np.diff(cams.times), 1e-6)
        speed = np.linalg.norm(np.diff(cams.C, axis=0), axis=1) / dt / scale
        turn = np.arccos(np.clip((axis[1:] * axis[:-1]).sum(1), -1, 1)) / dt
        speed, turn = np.r_[speed, speed[-1]], np.r_[turn, turn[-1]]
    else:
        speed = turn = np.zeros(1)
    per = np.c_[speed, turn, (cams.C - centre) / scale, axis]
    return clip_mean(per, cams.clip, T)


def gaze_features(cams: ClipCameras, T: int, points: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                  conf: FeatureConfig) -> np.ndarray:
    """Per clip, the distribution of the camera's centre-weighted view over the cells of the scene's box."""
    d = conf.gaze_divisions
    ijk = np.clip(((points - lo) / np.maximum(hi - lo, 1e-9) * d).astype(int), 0, d - 1)
    cell = np.ravel_multi_index(ijk.T, (d, d, d))
    onehot = np.zeros((len(points), d ** 3))
    onehot[np.arange(len(points)), cell] = 1.0
    w = cams.centrality(points, conf.gaze_sigma)
    hist = w @ onehot
    hist /= np.maximum(hist.sum(1, keepdims=True), 1e-9)
    return clip_mean(hist, cams.clip, T)


def scene_geometry(scene: SharedScene, conf: FeatureConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A seeded subsample of the scene's points and their robust box (2nd–98th percentile)."""
    pts = scene.points
    if len(pts) > conf.max_points:
        pts = pts[np.sort(np.random.default_rng(conf.seed).choice(len(pts), conf.max_points, replace=False))]
    lo, hi = np.percentile(pts, [2, 98], axis=0)
    return pts, lo, hi


def _decode(video: Path, conf: FeatureConfig, sift: pycolmap.FeatureExtractor,
            ) -> tuple[float, np.ndarray, np.ndarray, list, np.ndarray]:
    """Duration, sample times and clips, per-sample SIFT descriptors and colour statistics of one video."""
    info = probe(video)
    times, clip = sample_times(info.duration, conf.samples_per_second)
    idx = np.minimum(np.searchsorted(info.times, times), info.num_frames - 1)
    uniq = np.unique(idx)
    scale = min(1.0, conf.max_side / max(info.width, info.height))
    size = (max(1, round(info.width * scale)), max(1, round(info.height * scale)))
    per_frame: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for i, _, rgb in read_frames(video, uniq):
        img = Image.fromarray(rgb).resize(size, Image.BILINEAR) if scale < 1 else Image.fromarray(rgb)
        small = np.asarray(img)
        _, desc = sift.extract_from_uint8_array(np.ascontiguousarray(np.asarray(img.convert("L"))))
        per_frame[i] = (np.asarray(desc.data, np.float32), color_stats(small))
    missing = per_frame.get(int(uniq[-1])) or next(iter(per_frame.values()))
    descs = [per_frame.get(int(i), missing)[0] for i in idx]
    colors = np.stack([per_frame.get(int(i), missing)[1] for i in idx])
    return info.duration, times, clip, descs, colors


def scene_features(videos: dict[str, Path], scene: SharedScene | None, conf: FeatureConfig | None = None,
                   progress: ProgressFn | None = None) -> dict[str, np.ndarray]:
    """``X[T, D]`` per video of one scene; the bag-of-words codebook is shared by the scene's videos.

    ``scene`` gives poses and points for motion/gaze; videos it does not register get zeros there.
    """
    conf = conf or FeatureConfig()
    bad = [k for k in conf.kinds if k not in KINDS]
    if bad or not conf.kinds:
        raise ValueError(f"unknown feature kinds {bad}; choose from {', '.join(KINDS)}")
    opts = pycolmap.FeatureExtractionOptions()
    opts.sift.max_num_features = conf.sift_features
    opts.sift.first_octave = 0  # no upsampled octave: 4x faster on small frames, enough words for a histogram
    opts.num_threads = 1
    sift = pycolmap.FeatureExtractor.create(opts, pycolmap.Device.cpu)
    decoded = {}
    for n, (name, path) in enumerate(sorted(videos.items()), 1):
        decoded[name] = _decode(path, conf, sift)
        if progress:
            progress("clip features: decoding", n, len(videos))
    codebook = None
    if "bovw" in conf.kinds:
        codebook = learn_codebook([d for *_, descs, _ in decoded.values() for d in descs], k=conf.words,
                                  seed=conf.seed)
    geom = scene_geometry(scene, conf) if scene is not None and len(scene.points) else None
    out = {}
    for name, (duration, times, clip, descs, colors) in decoded.items():
        T = max(1, int(np.ceil(duration - 1e-6)))
        frames = scene.frames_of(name) if scene is not None else []
        cams = clip_cameras(frames, times, clip) if geom else None
        parts = []
        for kind in conf.kinds:
            if kind == "bovw":
                hist = np.stack([bow(d, codebook) for d in descs])
                hist = np.pad(hist, ((0, 0), (0, conf.words - hist.shape[1])))  # tiny data: fewer centres
                parts.append(clip_mean(np.sqrt(hist / np.maximum(hist.sum(1, keepdims=True), 1)), clip, T))
            elif kind == "color":
                parts.append(clip_mean(colors, clip, T))
            elif kind == "motion":
                if cams is None:
                    parts.append(np.zeros((T, 8)))
                else:
                    pts, lo, hi = geom
                    parts.append(motion_features(cams, T, float(np.linalg.norm(hi - lo)), (lo + hi) / 2))
            elif kind == "gaze":
                parts.append(np.zeros((T, conf.gaze_divisions ** 3)) if cams is None
                             else gaze_features(cams, T, *geom, conf))
        out[name] = np.concatenate(parts, 1).astype(np.float32)
    return out


def select(X: np.ndarray, conf: FeatureConfig, kinds: Sequence[str]) -> np.ndarray:
    """The columns of ``kinds`` from features computed with ``conf.kinds`` (to compare combinations cheaply)."""
    bad = [k for k in kinds if k not in conf.kinds]
    if bad or not kinds:
        raise ValueError(f"feature kinds {list(kinds)}: choose from {', '.join(conf.kinds)}")
    dims = {"bovw": conf.words, "color": 22, "motion": 8, "gaze": conf.gaze_divisions ** 3}
    cols, start = [], 0
    for k in conf.kinds:
        if k in kinds:
            cols.append(np.arange(start, start + dims[k]))
        start += dims[k]
    return X[:, np.concatenate(cols)]


# ----------------------------------------------------------------------------- the saved artefact


def save_features(folder: Path, features: dict[str, np.ndarray], conf: FeatureConfig) -> None:
    """``features.safetensors`` (``X[T, D]`` per video, every kind of ``conf``) + ``features.json`` (settings,
    clips per video), the JSON written last so a folder with it has the arrays too."""
    atomic_write_bytes(folder / FEATURES_DATA, save({k: np.ascontiguousarray(v) for k, v in features.items()}))
    atomic_write_json(folder / FEATURES_META, {"config": asdict(conf), "clip_seconds": CLIP_SECONDS,
                                               "clips": {v: len(x) for v, x in features.items()}})


def load_features(folder: Path) -> tuple[dict[str, np.ndarray], FeatureConfig]:
    """The saved features and the settings they were computed with (an input error when absent or unreadable)."""
    meta = read_json(folder / FEATURES_META)
    try:
        feats = load((folder / FEATURES_DATA).read_bytes())
    except (OSError, SafetensorError) as e:
        raise InputError(f"{folder / FEATURES_DATA}: unreadable clip features ({e}); delete it to recompute") from None
    if set(feats) != set(meta["clips"]):
        raise InputError(f"{folder}: {FEATURES_META} and {FEATURES_DATA} disagree; delete both to recompute")
    return feats, FeatureConfig(**meta["config"])
