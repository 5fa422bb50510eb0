"""Per-second clip features ``X[T, D]`` of a scene's own videos, from frames and the shared reconstruction.

No downloadable network: what a clip shows comes from a bag of visual words over SIFT (codebook learned on
the scene's own frames) and colour statistics; what the camera does comes from the registered poses
(speed, turn rate, where it is and points); *where* it looks comes from a 3D gaze descriptor (which cells
of the shared space project near the image centre). Clip ``t`` covers ``[t, t + 1)`` seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pycolmap
from PIL import Image
from safetensors import SafetensorError
from safetensors.numpy import load, save

from recon.config import choices
from recon.io import InputError, ProgressFn, atomic_write_bytes, atomic_write_json, read_json
from recon.retrieval import bow, learn_codebook
from recon.scene import RegisteredFrame, SharedScene, interpolate_poses
from recon.video import probe, read_frames

from .config import FeatureConfig

KINDS = choices(FeatureConfig, "kinds")
"""Feature groups: image content (bovw, color) and 3D (motion, gaze; zero for a video without poses)."""

CLIP_SECONDS = 1.0
"""Length of one clip: row ``t`` of every temporal array covers ``[t, t + 1)`` s (written into every artefact)."""

FEATURES_META, FEATURES_DATA = "features.json", "features.safetensors"

MapFn = Callable[[Callable, Iterable], Iterator]
"""``map(fn, jobs)`` with results in order: the built-in one, or a caller's over processes or machines."""

log = logging.getLogger(__name__)


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
        inside = (
            (z > 0) & (uv[..., 0] >= 0) & (uv[..., 0] < self.width) & (uv[..., 1] >= 0) & (uv[..., 1] < self.height)
        )
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


def gaze_features(
    cams: ClipCameras, T: int, points: np.ndarray, lo: np.ndarray, hi: np.ndarray, conf: FeatureConfig
) -> np.ndarray:
    """Per clip, the distribution of the camera's centre-weighted view over the cells of the scene's box."""
    d = conf.gaze_divisions
    ijk = np.clip(((points - lo) / np.maximum(hi - lo, 1e-9) * d).astype(int), 0, d - 1)
    cell = np.ravel_multi_index(ijk.T, (d, d, d))
    onehot = np.zeros((len(points), d**3))
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


@dataclass
class Decoded:
    """One video's samples: what the scene-wide codebook and the per-clip means need."""

    duration: float
    times: np.ndarray
    """(N,) sample times (s)."""
    clip: np.ndarray
    """(N,) clip index of each sample."""
    descs: list[np.ndarray]
    """Per sample, the SIFT descriptors of its frame."""
    colors: np.ndarray
    """(N, 22) colour statistics per sample."""

    @property
    def clips(self) -> int:
        return max(1, int(np.ceil(self.duration - 1e-6)))


def _sift(conf: FeatureConfig) -> pycolmap.FeatureExtractor:
    opts = pycolmap.FeatureExtractionOptions()
    opts.sift.max_num_features = conf.sift_features
    opts.sift.first_octave = 0  # no upsampled octave: 4x faster on small frames, enough words for a histogram
    opts.num_threads = 1
    return pycolmap.FeatureExtractor.create(opts, pycolmap.Device.cpu)


def _decode(video: Path, conf: FeatureConfig, sift: pycolmap.FeatureExtractor) -> Decoded:
    """Sample times and clips, per-sample SIFT descriptors and colour statistics of one video."""
    info = probe(video)
    times, clip = sample_times(info.duration, conf.samples_per_second)
    idx = np.minimum(np.searchsorted(info.times, times), info.num_frames - 1)
    uniq = np.unique(idx)
    scale = min(1.0, conf.max_side / max(info.width, info.height))
    size = (max(1, round(info.width * scale)), max(1, round(info.height * scale)))
    per_frame: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for i, _, rgb in read_frames(video, uniq):
        img = Image.fromarray(rgb).resize(size, Image.Resampling.BILINEAR) if scale < 1 else Image.fromarray(rgb)
        small = np.asarray(img)
        _, desc = sift.extract_from_uint8_array(np.ascontiguousarray(np.asarray(img.convert("L"))))
        per_frame[i] = (np.asarray(desc.data, np.float32), color_stats(small))
    missing = per_frame.get(int(uniq[-1])) or next(iter(per_frame.values()))
    descs = [per_frame.get(int(i), missing)[0] for i in idx]
    colors = np.stack([per_frame.get(int(i), missing)[1] for i in idx])
    return Decoded(info.duration, times, clip, descs, colors)


def decode_video(job: tuple[Path, FeatureConfig, str]) -> Decoded | str:
    """Job of :func:`scene_features`' map: one video file in, arrays out (so it can run on another machine);
    a video that cannot be read gives its one-line reason instead, and the scene's other videos go on. The
    job's ``str`` is the file as the user knows it (the path may be a worker's copy), named in that reason."""
    video, conf, shown = job
    if not log.isEnabledFor(logging.DEBUG):
        pycolmap.logging.minloglevel = 2  # COLMAP's INFO lines: noise here, and glog files in a worker's TMPDIR
    try:
        return _decode(video, conf, _sift(conf))
    except InputError as e:
        return str(e).replace(str(video), shown)


Geometry = tuple[np.ndarray, np.ndarray, np.ndarray]
"""A scene's point subsample and robust box (``scene_geometry``)."""


def view_features(job: tuple[ClipCameras, int, Geometry, FeatureConfig]) -> dict[str, np.ndarray]:
    """Job of :func:`scene_features`' map: one video's motion and gaze features (of ``conf.kinds``) from its
    interpolated cameras and the scene's points; arrays in, arrays out."""
    cams, T, (pts, lo, hi), conf = job
    out = {}
    if "motion" in conf.kinds:
        out["motion"] = motion_features(cams, T, float(np.linalg.norm(hi - lo)), (lo + hi) / 2)
    if "gaze" in conf.kinds:
        out["gaze"] = gaze_features(cams, T, pts, lo, hi, conf)
    return out


def scene_features(
    videos: dict[str, Path],
    scene: SharedScene | None,
    conf: FeatureConfig | None = None,
    progress: ProgressFn | None = None,
    map_videos: MapFn | None = None,
) -> dict[str, np.ndarray]:
    """``X[T, D]`` per video of one scene; the bag-of-words codebook is shared by the scene's videos.

    ``scene`` gives poses and points for motion/gaze; videos it does not register get zeros there. The
    per-video work (decoding + SIFT, then motion + gaze) runs through ``map_videos(fn, jobs)`` (default: the
    built-in ``map``), so a caller can spread it over processes or machines: a job is one video file or arrays.
    A video that cannot be decoded is left out with a warning; the others go on.
    """
    conf = conf or FeatureConfig()
    bad = [k for k in conf.kinds if k not in KINDS]
    if bad or not conf.kinds:
        raise ValueError(f"unknown feature kinds {bad}; choose from {', '.join(KINDS)}")
    run = map_videos or map
    names = sorted(videos)
    decoded: dict[str, Decoded] = {}
    failed = []
    results = run(decode_video, [(videos[v], conf, str(videos[v])) for v in names])
    for n, (name, d) in enumerate(zip(names, results, strict=True), 1):
        if isinstance(d, str):
            log.warning("%s: no clip features (%s)", name, d)
            failed.append(d)
        else:
            decoded[name] = d
        if progress:
            progress("clip features: decoding", n, len(names))
    if not decoded:
        raise InputError(f"no video of the scene could be decoded ({failed[0] if failed else 'no videos'})")
    codebook = None
    if "bovw" in conf.kinds:
        codebook = learn_codebook([x for d in decoded.values() for x in d.descs], k=conf.words, seed=conf.seed)
    views: dict[str, dict[str, np.ndarray]] = {}
    if scene is not None and len(scene.points) and {"motion", "gaze"} & set(conf.kinds):
        geom = scene_geometry(scene, conf)
        cams = {v: clip_cameras(scene.frames_of(v), d.times, d.clip) for v, d in decoded.items()}
        posed = [v for v in decoded if cams[v] is not None]
        jobs = [(cams[v], decoded[v].clips, geom, conf) for v in posed]
        for n, (name, view) in enumerate(zip(posed, run(view_features, jobs), strict=True), 1):
            views[name] = view
            if progress:
                progress("clip features: camera motion and gaze", n, len(posed))
    dims = {"motion": 8, "gaze": conf.gaze_divisions**3}
    out = {}
    for name, d in decoded.items():
        T = d.clips
        parts = []
        for kind in conf.kinds:
            if kind == "bovw":
                assert codebook is not None  # learned above: "bovw" is one of conf.kinds
                hist = np.stack([bow(x, codebook) for x in d.descs])
                hist = np.pad(hist, ((0, 0), (0, conf.words - hist.shape[1])))  # tiny data: fewer centres
                parts.append(clip_mean(np.sqrt(hist / np.maximum(hist.sum(1, keepdims=True), 1)), d.clip, T))
            elif kind == "color":
                parts.append(clip_mean(d.colors, d.clip, T))
            else:
                parts.append(views[name][kind] if name in views else np.zeros((T, dims[kind])))
        out[name] = np.concatenate(parts, 1).astype(np.float32)
    return out


def select(X: np.ndarray, conf: FeatureConfig, kinds: Sequence[str]) -> np.ndarray:
    """The columns of ``kinds`` from features computed with ``conf.kinds`` (to compare combinations cheaply)."""
    bad = [k for k in kinds if k not in conf.kinds]
    if bad or not kinds:
        raise ValueError(f"feature kinds {list(kinds)}: choose from {', '.join(conf.kinds)}")
    dims = {"bovw": conf.words, "color": 22, "motion": 8, "gaze": conf.gaze_divisions**3}
    cols, start = [], 0
    for k in conf.kinds:
        if k in kinds:
            cols.append(np.arange(start, start + dims[k]))
        start += dims[k]
    return X[:, np.concatenate(cols)]


# ----------------------------------------------------------------------------- the saved artefact


def save_features(
    folder: Path, features: dict[str, np.ndarray], conf: FeatureConfig, frame: dict | None = None
) -> None:
    """``features.safetensors`` (``X[T, D]`` per video, every kind of ``conf``) + ``features.json`` (settings,
    clips per video, and ``frame``: the caller's record of the shared frame the gaze was computed in), the JSON
    written last so a folder with it has the arrays too."""
    atomic_write_bytes(folder / FEATURES_DATA, save({k: np.ascontiguousarray(v) for k, v in features.items()}))
    atomic_write_json(
        folder / FEATURES_META,
        {
            "config": asdict(conf),
            "clip_seconds": CLIP_SECONDS,
            "clips": {v: len(x) for v, x in features.items()},
            **({"frame": frame} if frame is not None else {}),
        },
    )


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
