"""Per-video structure from motion with pycolmap ([001] §5.3.1).

Each video is reconstructed on its own: O(N²) matching per video instead of O(n²N²) for a joint run.
Frames are matched only within a shot (footage between detected cuts), so a video with cuts (another view, an
inserted shot) gives several models; each one that registers at least
``min_model_frames`` frames no larger model registered is kept as a *segment*, aligned later like a video of its
own. Segments are shots, never copies: COLMAP's mapper may grow a later model over frames an earlier one already
holds (only its initial pair must be new), and such repeats are removed (:func:`keep_segments`), so a frame
belongs to at most one segment. Output folder::

    out_dir/model/{cameras,images,points3D,rigs,frames}.bin   segment 0: the largest COLMAP model
    out_dir/segments/<k>/*.bin                                 segments 1, 2...: the other kept models, by size
    out_dir/database.db                                         SIFT keypoints + descriptors (used by align)
    out_dir/report.json                                         what happened, with timings
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pycolmap

from recon.config import ReconstructConfig
from recon.io import InputError, atomic_dir, atomic_write_json, file_fingerprint, params_fingerprint, read_json
from recon.retrieval import learn_codebook, vlad
from recon.sampling import load as load_frames
from recon.types import JSONDict

log = logging.getLogger(__name__)


class Unreconstructable(InputError):
    """SfM produced no usable model for a video (too few features, no overlap, a cut every second...)."""


def _mapper_options(conf: ReconstructConfig) -> pycolmap.IncrementalPipelineOptions:
    """COLMAP's incremental mapper with its video preset (ModifyForVideoData), seeded, with cheaper bundle
    adjustments: each global BA skips points that add no coverage and refines at most twice (not five times),
    each local BA once (not twice). On 5 videos × 40 frames each change saved 3–5 s of 36 s at the same camera
    error (0.02–0.04 cm mean per video against ground truth). Global BA as often as before (when the model grew
    by 40 %): running it only when the model doubled saved 5 s more, but a long video with a cut came out
    3 cm / 5° off once in a test run."""
    opts = pycolmap.IncrementalPipelineOptions()
    opts.num_threads = conf.num_threads
    opts.random_seed = conf.seed
    opts.min_model_size = conf.min_model_frames
    opts.ba_global_frames_ratio = 1.4
    opts.ba_global_points_ratio = 1.4
    opts.ba_global_max_refinements = 2
    opts.ba_local_max_refinements = 1
    opts.mapper.ba_global_ignore_redundant_points3D = True
    opts.min_focal_length_ratio = 0.1
    opts.max_focal_length_ratio = 10.0
    opts.mapper.init_min_tri_angle /= 2
    opts.mapper.random_seed = conf.seed
    opts.extract_colors = True
    return opts


def global_options(conf: ReconstructConfig) -> pycolmap.GlobalPipelineOptions:
    """pycolmap's global (GLOMAP) pipeline, seeded, CPU only, keeping every model above the size floor."""
    opts = pycolmap.GlobalPipelineOptions()
    opts.num_threads = conf.num_threads
    opts.random_seed = conf.seed
    opts.min_model_size = conf.min_model_frames
    opts.multiple_models = True
    opts.mapper.num_threads = conf.num_threads
    opts.mapper.random_seed = conf.seed
    opts.mapper.global_positioning.use_gpu = False
    opts.mapper.bundle_adjustment.ceres.use_gpu = False
    return opts


def sequential_pairs(db_path: Path, names: list[str], conf: ReconstructConfig) -> list[tuple[str, str]]:
    """Temporal neighbours plus VLAD-retrieved loop-closing pairs."""
    pairs = {
        (names[i], names[j])
        for i in range(len(names))
        for j in range(i + 1, min(len(names), i + 1 + conf.sequential_overlap))
    }
    if conf.loop_closure_neighbors > 0:
        db = pycolmap.Database.open(str(db_path))
        try:
            ids = {im.name: im.image_id for im in db.read_all_images()}
            descs = [db.read_descriptors(ids[n]).data for n in names]
        finally:
            db.close()
        codebook = learn_codebook(descs, sample=20_000, seed=conf.seed, n_init=1)  # one video: a rough one will do
        g = np.stack([vlad(d, codebook) for d in descs])
        sim = g @ g.T
        for i in range(len(names)):
            sim[i, max(0, i - conf.sequential_overlap) : i + conf.sequential_overlap + 1] = -np.inf
            for j in np.argsort(-sim[i])[: conf.loop_closure_neighbors]:
                if np.isfinite(sim[i, j]):
                    first, second = sorted((names[i], names[int(j)]))
                    pairs.add((first, second))
    return sorted(pairs)


def within_shots(pairs: list[tuple[str, str]], shot_of: dict[str, int]) -> list[tuple[str, str]]:
    """The pairs whose frames lie in the same shot: SfM never matches across a detected cut.

    Matched across a cut, the mapper can register both shots into one model that is bent at the cut (a 2-minute
    spliced video came out 3 cm mean / 8 cm max off, 6°, with one camera per shot). Each shot is then its own
    model (segment), aligned into the shared frame like a video of its own, where a bad link is rejected.
    """
    return [(a, b) for a, b in pairs if shot_of[a] == shot_of[b]]


def _summary(rec: pycolmap.Reconstruction) -> JSONDict:
    return {
        "registered": rec.num_reg_images(),
        "points3D": rec.num_points3D(),
        "mean_track_length": round(rec.compute_mean_track_length(), 3),
        "mean_reprojection_error": round(rec.compute_mean_reprojection_error(), 4),
    }


def registered_names(rec: pycolmap.Reconstruction) -> set[str]:
    """Names of the frames a model registered."""
    return {rec.images[i].name for i in rec.reg_image_ids()}


def keep_segments(
    models: list[pycolmap.Reconstruction],
    min_frames: int,
) -> tuple[list[pycolmap.Reconstruction], list[JSONDict], list[int]]:
    """Which of a video's models (largest first) become segments: ``(kept, discarded, repeats)``.

    COLMAP's mapper with several models only requires a new model's initial pair to be unregistered; it then
    registers frames an earlier model already holds, so a clip without any cut can come back with small extra
    models made of copies of the largest one's frames (seen on 30-s clips at 80 frames: 99 registrations of 80
    frames, the copies aligned 1–2 m off through weak edges). A frame belongs to the first (largest) model that
    registered it. A later model keeps only its new frames (the repeated ones are deregistered, which also drops
    the 3D points that only they observed), and only while those are at least ``min_frames``: a real shot after
    a cut. ``discarded`` says why each other model was dropped; ``repeats[k]`` counts the frames removed from
    kept model ``k``. Kept models are ranked again by what they keep.
    """
    kept: list[tuple[pycolmap.Reconstruction, int]] = []
    discarded: list[JSONDict] = []
    seen: set[str] = set()
    for rec in models:
        names = registered_names(rec)
        repeated = names & seen
        new = len(names) - len(repeated)
        if new < min_frames:
            why = (
                f"{len(repeated)} of its {len(names)} frames are registered in a larger model"
                if repeated
                else f"fewer than {min_frames} frames"
            )
            discarded.append({**_summary(rec), "repeated_frames": len(repeated), "why": why})
            continue
        if repeated:
            for image_id in list(rec.reg_image_ids()):
                if rec.images[image_id].name in repeated:
                    rec.deregister_frame(rec.images[image_id].frame_id)
            log.info("a model repeated %d frames of a larger one: kept its %d new frames", len(repeated), new)
        seen |= names
        kept.append((rec, len(repeated)))
    kept[1:] = sorted(kept[1:], key=lambda kr: (kr[0].num_reg_images(), kr[0].num_points3D()), reverse=True)
    return [r for r, _ in kept], discarded, [n for _, n in kept]


def _write_segments(
    folder: Path, kept: list[pycolmap.Reconstruction], repeats: list[int], times: dict[str, float]
) -> list[JSONDict]:
    """Write kept models as ``model/`` (segment 0) and ``segments/<k>/``; return their report entries."""
    segments = []
    for k, (rec, repeated) in enumerate(zip(kept, repeats, strict=True)):
        out = folder / ("model" if k == 0 else f"segments/{k}")
        out.mkdir(parents=True)
        rec.write_binary(str(out))
        t_reg = sorted(times[rec.images[i].name] for i in rec.reg_image_ids())
        segments.append(
            {"segment": k, **_summary(rec), "start": t_reg[0], "end": t_reg[-1], "repeated_frames_removed": repeated}
        )
    return segments


def main(conf: ReconstructConfig, frames_dir: Path, out_dir: Path) -> JSONDict:
    """Reconstruct one video's sampled frames into ``out_dir`` (atomically); return its report.

    Raises :class:`Unreconstructable` when no model reaches ``conf.min_model_frames`` frames.
    """
    if not log.isEnabledFor(logging.DEBUG):
        pycolmap.logging.minloglevel = 2  # COLMAP's per-step INFO lines drown the progress bars
    frames = load_frames(frames_dir)
    names = [f["name"] for f in frames["frames"]]
    image_dir = Path(frames_dir) / "images"
    timings: dict[str, float] = {}
    with atomic_dir(out_dir) as tmp:
        db_path = tmp / "database.db"
        t = time.perf_counter()
        extraction = pycolmap.FeatureExtractionOptions()
        extraction.num_threads = conf.num_threads
        extraction.sift.max_num_features = conf.max_num_features
        reader = pycolmap.ImageReaderOptions()
        reader.camera_model = conf.camera_model
        shots: dict[int, list[str]] = {}
        for f in frames["frames"]:
            shots.setdefault(f.get("shot", 0), []).append(f["name"])
        for shot_names in shots.values():  # one self-calibrated camera per shot: a cut may change the zoom
            pycolmap.extract_features(
                db_path,
                image_dir,
                image_names=shot_names,
                camera_mode=pycolmap.CameraMode.SINGLE,
                reader_options=reader,
                extraction_options=extraction,
                device=pycolmap.Device.cpu,
            )
        timings["extract"] = time.perf_counter() - t

        t = time.perf_counter()
        matching = pycolmap.FeatureMatchingOptions()
        matching.num_threads = conf.num_threads
        matching.sift.cross_check = True  # mutual nearest neighbours, as in the source
        exhaustive = conf.matching == "exhaustive" or (
            conf.matching == "auto" and len(names) <= conf.exhaustive_max_frames
        )
        shot_of = {name: shot for shot, shot_names in shots.items() for name in shot_names}
        if exhaustive and len(shots) == 1:
            pycolmap.match_exhaustive(db_path, matching_options=matching, device=pycolmap.Device.cpu)
        else:
            pairs = (
                [(a, b) for i, a in enumerate(names) for b in names[i + 1 :]]
                if exhaustive
                else sequential_pairs(db_path, names, conf)
            )
            pairs_path = tmp / "pairs.txt"
            pairs_path.write_text("".join(f"{a} {b}\n" for a, b in within_shots(pairs, shot_of)))
            pairing = pycolmap.ImportedPairingOptions()
            pairing.match_list_path = str(pairs_path)
            pycolmap.match_image_pairs(
                db_path, matching_options=matching, pairing_options=pairing, device=pycolmap.Device.cpu
            )
        timings["match"] = time.perf_counter() - t

        t = time.perf_counter()
        (tmp / "mapper").mkdir()
        if conf.mapper == "global":
            models = pycolmap.global_mapping(db_path, image_dir, tmp / "mapper", options=global_options(conf))
        else:
            models = pycolmap.incremental_mapping(db_path, image_dir, tmp / "mapper", options=_mapper_options(conf))
        timings["map"] = time.perf_counter() - t
        ranked = sorted(models.values(), key=lambda r: (r.num_reg_images(), r.num_points3D()), reverse=True)
        if not ranked or ranked[0].num_reg_images() < conf.min_model_frames:
            best = ranked[0].num_reg_images() if ranked else 0
            raise Unreconstructable(
                f"{frames['video']}: no model with at least {conf.min_model_frames} frames (largest: {best} of "
                f"{len(names)}); the video may lack texture or overlap between frames — try more frames (--frames)"
            )
        kept, discarded, repeats = keep_segments(ranked, conf.min_model_frames)
        times = {f["name"]: f["time"] for f in frames["frames"]}
        segments = _write_segments(tmp, kept, repeats, times)
        shutil.rmtree(tmp / "mapper")
        registered = sum(r.num_reg_images() for r in kept)
        report = {
            "video": frames["video"],
            "frames_sampled": len(names),
            **_summary(kept[0]),
            "registered_all_segments": registered,
            "registered_ratio": round(registered / len(names), 4),
            "matching": "exhaustive" if exhaustive else "sequential+retrieval",
            "shots": len(shots),
            "mapper": conf.mapper,
            "segments": segments,
            "discarded_models": discarded,
            "seconds": {k: round(v, 2) for k, v in timings.items()},
            "config": asdict(conf),
        }
        atomic_write_json(tmp / "report.json", report)
    log.info(
        "%s: registered %d/%d frames in %d segment(s), %d points in the largest",
        frames["video"],
        registered,
        len(names),
        len(segments),
        report["points3D"],
    )
    return report


@dataclass(frozen=True)
class Model:
    """A video's SfM folder as :func:`main` writes it — the one reader of its layout: ``model/`` (segment 0,
    the largest), ``segments/<k>/`` (other kept models), ``database.db`` (SIFT), ``report.json``."""

    dir: Path

    @staticmethod
    def is_done(sfm_dir: Path) -> bool:
        """A reconstruction finished (written atomically, so a partial one never looks done)."""
        return (Path(sfm_dir) / "model" / "images.bin").is_file()

    @property
    def database(self) -> Path:
        """SIFT keypoints and descriptors of every frame: alignment and photo localization match against them."""
        return Path(self.dir) / "database.db"

    def segments(self) -> dict[int, Path]:
        return segment_dirs(self.dir)

    def load(self, segment: int = 0) -> pycolmap.Reconstruction:
        return load_model(self.dir, segment)

    def report(self) -> JSONDict:
        report: JSONDict = read_json(Path(self.dir) / "report.json")
        return report

    def fingerprint(self) -> str:
        """Content of every kept model's points: what alignment and everything after it depend on."""
        return params_fingerprint({str(k): file_fingerprint(d / "points3D.bin") for k, d in self.segments().items()})


def segment_dirs(sfm_dir: Path) -> dict[int, Path]:
    """A video's kept models by segment: 0 is ``model/`` (the largest), then ``segments/<k>/``.

    A video with one segment has ``model/`` only.
    """
    sfm_dir = Path(sfm_dir)
    out = {0: sfm_dir / "model"} if (sfm_dir / "model" / "images.bin").exists() else {}
    if (sfm_dir / "segments").is_dir():
        for d in (sfm_dir / "segments").iterdir():
            if d.name.isdigit() and (d / "images.bin").exists():
                out[int(d.name)] = d
    return dict(sorted(out.items()))


def load_model(sfm_dir: Path, segment: int = 0) -> pycolmap.Reconstruction:
    """Read one of a video's kept models (COLMAP binary); segment 0 is the largest."""
    sfm_dir = Path(sfm_dir)
    return pycolmap.Reconstruction(str(sfm_dir / "model" if segment == 0 else sfm_dir / "segments" / str(segment)))


def read_features(db: pycolmap.Database, image_id: int) -> tuple[np.ndarray, np.ndarray]:
    """One image's SIFT keypoints ``(n, 2)`` and L2-normalised float32 descriptors from a video's database.

    Alignment and photo localization match against the features SfM already extracted: never recomputed.
    """
    kp = db.read_keypoints(image_id)[:, :2].astype(np.float64)
    d = db.read_descriptors(image_id).data.astype(np.float32)
    d /= np.linalg.norm(d, axis=1, keepdims=True) + 1e-8
    return kp, d
