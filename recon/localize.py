"""Localize a new photo in a scene's shared frame: the first half of the AR loop.

An assistant works on the user's own camera, not on the reconstructed videos. For each photo: retrieve the
most similar registered frames (VLAD, as the alignment does), match SIFT to them (mutual nearest neighbours
+ ratio test, ``recon.retrieval.mutual_matches``), lift the frames' keypoints to the 3D points they observe in
the shared frame, and estimate the absolute pose with pycolmap's LO-RANSAC PnP + refinement. The focal
length comes from EXIF (35 mm equivalent) when the photo has it, otherwise the RANSAC estimates it; it is
refined either way. A photo that does not match the scene (another car, a blurred frame) is reported as not
localized with the reason.

The index only needs the shared scene's registered frames (``SharedScene.frames``: keypoints that observe
3D points) and each video's COLMAP database for the frames' SIFT descriptors.
"""

from __future__ import annotations

import io
import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypedDict

import numpy as np
import pycolmap
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy.spatial import cKDTree

from recon.config import LocalizeConfig
from recon.io import ProgressFn
from recon.reconstruct import read_features
from recon.retrieval import learn_codebook, mutual_matches, vlad
from recon.scene import RegisteredFrame, SharedScene
from recon.types import JSONDict

log = logging.getLogger(__name__)


@dataclass
class FrameIndex:
    """A registered frame's SIFT features and the 3D point (index into the scene's points) of each keypoint."""

    frame: RegisteredFrame
    keypoints: np.ndarray
    descriptors: np.ndarray
    """(n, 128) L2-normalised float32."""
    point_index: np.ndarray
    """(n,) index into :attr:`SharedScene.points`, -1 where the keypoint observes no 3D point."""


@dataclass
class Localization:
    """One photo's result: the ``localize --json`` entry plus the photo as a frame for drawing."""

    image: str
    status: str
    width: int = 0
    height: int = 0
    reason: str | None = None
    frame: RegisteredFrame | None = None
    """The photo as a registered frame (camera, pose, inlier observations); None when not localized."""
    info: JSONDict = field(default_factory=dict)

    def to_json(self) -> JSONDict:
        f = self.frame
        out = {
            "image": self.image,
            "cam_from_world": np.round(f.cam_from_world, 9).tolist() if f is not None else None,
            "K": np.round(f.K, 6).tolist() if f is not None else None,
            "width": self.width,
            "height": self.height,
            "inliers": int(self.info.get("inliers", 0)),
            "status": self.status,
        }
        if f is not None:
            out["center"] = np.round(f.center, 9).tolist()
        if self.reason:
            out["reason"] = self.reason
        return out | {k: v for k, v in self.info.items() if k != "inliers"}


class Localizer:
    """A scene's registered frames indexed for retrieval and matching; built once, then used per photo."""

    def __init__(self, scene: SharedScene, frames: list[FrameIndex], codebook: np.ndarray, conf: LocalizeConfig):
        self.scene = scene
        self.frames = frames
        self.codebook = codebook
        self.conf = conf
        self.globals = np.stack([vlad(f.descriptors, codebook) for f in frames]) if frames else np.zeros((0, 1))

    def localize(self, image: bytes | Path | str, name: str | None = None) -> Localization:
        """Localize one photo (a path or encoded bytes); every failure is a ``not localized`` result."""
        name = name if name is not None else str(image)
        t0 = time.perf_counter()
        try:
            rgb, focal_exif = read_photo(image, self.conf.max_photo_mp)
        except PhotoTooLarge as e:
            return Localization(name, "not localized", reason=str(e))
        except (OSError, UnidentifiedImageError, ValueError) as e:
            return Localization(name, "not localized", reason=f"cannot read the image ({e}); give a JPEG or PNG photo")
        result = self._localize(rgb, focal_exif, name)
        result.info["seconds"] = round(time.perf_counter() - t0, 3)
        return result

    def _localize(self, rgb: np.ndarray, focal_exif: float | None, name: str) -> Localization:
        conf = self.conf
        h, w = rgb.shape[:2]
        out = Localization(name, "not localized", width=w, height=h)
        if not self.frames:
            out.reason = "the scene has no registered frame to match against"
            return out
        scale = min(1.0, conf.max_side / max(w, h))
        keypoints, descriptors = extract_sift(rgb, scale, conf.max_num_features)
        out.info["features"] = len(keypoints)
        if len(keypoints) < conf.min_inliers:
            out.reason = f"only {len(keypoints)} SIFT features in the photo (blurred, dark or featureless?)"
            return out
        retrieved = self._retrieve(vlad(descriptors, self.codebook))
        pairs: set[tuple[int, int]] = set()
        for j in retrieved:
            f = self.frames[j]
            m = mutual_matches(descriptors, f.descriptors, conf.ratio)
            pid = f.point_index[m[:, 1]] if len(m) else np.zeros(0, int)
            ok = pid >= 0
            pairs.update(zip(m[ok, 0].tolist(), pid[ok].tolist(), strict=True))
        out.info["matches_2d3d"] = len(pairs)
        out.info["retrieved"] = [f"{self.frames[j].frame.video}/{self.frames[j].frame.name}" for j in retrieved]
        if len(pairs) < conf.min_inliers:
            out.reason = (
                f"{len(pairs)} 2D-3D matches to the scene's frames (need {conf.min_inliers}): "
                "the photo does not show this scene"
            )
            return out
        q, p = np.array(sorted(pairs)).T
        xy = keypoints[q] / scale  # back to the photo's full resolution
        xyz = self.scene.points[p]
        fit, focal_source = self._pnp(xy, xyz, w, h, focal_exif)
        n = int(fit["num_inliers"]) if fit is not None else 0
        out.info |= {"inliers": n, "focal_source": focal_source}
        if fit is None or n < conf.min_inliers or n < conf.min_inlier_ratio * len(xy):
            out.reason = (
                f"{n} PnP inliers of {len(xy)} 2D-3D matches (need {conf.min_inliers} and "
                f"{conf.min_inlier_ratio:.0%}): the photo does not show this scene"
            )
            return out
        mask = np.asarray(fit["inlier_mask"], bool)
        camera = fit["camera"]
        out.status = "localized"
        out.frame = RegisteredFrame(
            video="photo",
            name=name,
            time=0.0,
            camera=camera,
            cam_from_world=fit["cam_from_world"].matrix(),
            xy=xy[mask],
            point_index=p[mask],
        )
        return out

    def _retrieve(self, g: np.ndarray) -> list[int]:
        """The most similar frames overall, plus the best ``per_video`` frames of every video.

        Parts move between videos (every car is a little different), and a close-up photo may be dominated
        by one part. Matches from one video alone can then pull the pose onto that video's copy of the part;
        with frames from several videos each copy disagrees while the static structure agrees, so RANSAC
        keeps the static structure (the same reason the alignment refines over all neighbours).
        """
        sim = self.globals @ g
        best = list(np.argsort(-sim, kind="stable")[: self.conf.retrieved_frames])
        for video in self.scene.videos:
            own = np.array([k for k, f in enumerate(self.frames) if f.frame.video == video], int)
            best += list(own[np.argsort(-sim[own], kind="stable")[: self.conf.per_video]])
        return [int(j) for j in dict.fromkeys(best)]

    def _pnp(
        self, xy: np.ndarray, xyz: np.ndarray, w: int, h: int, focal_exif: float | None
    ) -> tuple[JSONDict | None, str]:
        """LO-RANSAC PnP + refinement of pose and focal length; the focal starts from EXIF or is estimated."""
        focal = focal_exif or 1.2 * max(w, h)
        camera = pycolmap.Camera(model="SIMPLE_PINHOLE", width=w, height=h, params=[focal, w / 2, h / 2])
        est = pycolmap.AbsolutePoseEstimationOptions()
        est.estimate_focal_length = focal_exif is None
        est.ransac.max_error = self.conf.max_error * max(w, h)
        est.ransac.random_seed = self.conf.seed
        ref = pycolmap.AbsolutePoseRefinementOptions()
        ref.refine_focal_length = True
        fit = pycolmap.estimate_and_refine_absolute_pose(xy, xyz, camera, est, ref)
        if fit is not None:
            fit["camera"] = camera  # refined in place
        return fit, "exif" if focal_exif else "estimated"


class PhotoTooLarge(ValueError):
    """The photo declares more pixels than the limit (found from its header: nothing was decoded)."""


def open_photo(image: bytes | Path | str, max_mp: float | None = None) -> Image.Image:
    """The photo opened lazily (only its header is read); more than ``max_mp`` megapixels raises
    :class:`PhotoTooLarge`, so a decompression bomb costs microseconds, not the decoding of its pixels."""
    source: io.BytesIO | Path
    if isinstance(image, bytes | bytearray):
        source = io.BytesIO(image)
    else:
        source = Path(image)
        if not source.is_file():
            raise OSError(f"{source}: file not found")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # the size is checked just below
            im = Image.open(source)
    except Image.DecompressionBombError:  # Pillow's own guard (about 179 MP) fires before ours
        size = f"more than {2 * (Image.MAX_IMAGE_PIXELS or 0) / 1e6:.0f} MP"
    else:
        w, h = im.size
        if max_mp is None or w * h <= max_mp * 1e6:
            return im
        im.close()
        size = f"{w} x {h} pixels ({w * h / 1e6:.0f} MP)"
    limit = f"{max_mp:g}-megapixel" if max_mp is not None else "decoder's"
    raise PhotoTooLarge(f"{size}, over the {limit} limit; send a smaller photo")


def read_photo(image: bytes | Path | str, max_mp: float | None = None) -> tuple[np.ndarray, float | None]:
    """RGB pixels (EXIF orientation applied) and the EXIF focal length in pixels when the photo carries one."""
    with open_photo(image, max_mp) as im:
        exif = im.getexif()
        im = ImageOps.exif_transpose(im)
        rgb = np.asarray(im.convert("RGB"))
    f35 = exif.get_ifd(0x8769).get(0xA405) if exif else None  # FocalLengthIn35mmFilm
    focal = float(f35) / 36.0 * max(rgb.shape[:2]) if f35 else None
    return rgb, focal


def extract_sift(rgb: np.ndarray, scale: float, max_num_features: int) -> tuple[np.ndarray, np.ndarray]:
    """SIFT keypoints (at ``scale`` of the photo) and L2-normalised descriptors, as the reconstruction extracts them."""
    im = Image.fromarray(rgb).convert("L")
    if scale < 1.0:
        im = im.resize((round(im.width * scale), round(im.height * scale)), Image.Resampling.LANCZOS)
    opts = pycolmap.FeatureExtractionOptions()
    opts.sift.max_num_features = max_num_features
    opts.num_threads = 1
    extractor = pycolmap.FeatureExtractor.create(opts, device=pycolmap.Device.cpu)
    kp, features = extractor.extract_from_uint8_array(np.ascontiguousarray(np.asarray(im)))
    desc = features.data.astype(np.float32)
    desc /= np.linalg.norm(desc, axis=1, keepdims=True) + 1e-8
    return np.array([[k.x, k.y] for k in kp], np.float64).reshape(-1, 2), desc


def index_frames(scene: SharedScene, databases: dict[str, Path], radius: float) -> list[FrameIndex]:
    """Each registered frame's SIFT (from its video's database) with the 3D point of every keypoint.

    The frame's observed keypoints carry their 3D points; a keypoint without one takes the point of the
    nearest observed keypoint within ``radius`` pixels (as the alignment lifts matches).
    """
    out = []
    for video in scene.videos:
        frames = scene.frames_of(video)
        if not frames:
            continue
        db = pycolmap.Database.open(str(databases[video]))
        try:
            by_name = {im.name: im.image_id for im in db.read_all_images()}
            for f in frames:
                if f.name not in by_name:
                    log.warning("%s: frame %s is not in %s; skipped", video, f.name, databases[video])
                    continue
                kp, d = read_features(db, by_name[f.name])
                pid = np.full(len(kp), -1, np.int64)
                if len(f.xy) and len(kp):
                    dist, j = cKDTree(f.xy).query(kp, distance_upper_bound=max(radius, 1e-6))
                    ok = np.isfinite(dist)
                    pid[ok] = f.point_index[j[ok]]
                out.append(FrameIndex(f, kp, d, pid))
        finally:
            db.close()
    return out


class LocalizeJSON(TypedDict):
    """``localize --json``: per photo ``image``, ``status``, ``cam_from_world``, ``K``, ``width``, ``height``,
    ``inliers`` (+ ``center``, ``reason`` and the match statistics; ``Localization.to_json``)."""

    scene: str
    images: list[JSONDict]


def main(
    conf: LocalizeConfig,
    scene: SharedScene,
    databases: dict[str, Path],
    images: list[Path],
    progress: ProgressFn | None = None,
) -> LocalizeJSON:
    """Localize ``images`` (paths) in ``scene``: the ``localize --json`` contract."""
    localizer = build(conf, scene, databases)
    results = []
    for n, image in enumerate(images):
        r = localizer.localize(Path(image), str(image))
        log.info("%s: %s%s", r.image, r.status, f" ({r.reason})" if r.reason else f", {r.info['inliers']} inliers")
        results.append(r.to_json())
        if progress:
            progress("localizing photos", n + 1, len(images))
    return {"scene": scene.scene, "images": results}


def build(conf: LocalizeConfig, scene: SharedScene, databases: dict[str, Path]) -> Localizer:
    """Index a scene for localization: frame features and a VLAD codebook learned on them (seeded)."""
    frames = index_frames(scene, databases, conf.lift_radius_px)
    descs = [f.descriptors for f in frames if len(f.descriptors)]
    codebook = learn_codebook(descs, k=conf.codebook_size, seed=conf.seed) if descs else np.zeros((1, 128), np.float32)
    return Localizer(scene, frames, codebook, conf)
