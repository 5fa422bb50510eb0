"""Per-video structure from motion with pycolmap (source §5.3.1).

Each video is reconstructed on its own: O(N²) matching per video instead of O(n²N²) for a joint run.
Output folder::

    out_dir/model/{cameras,images,points3D,rigs,frames}.bin   the kept (largest) COLMAP model
    out_dir/database.db                                         SIFT keypoints + descriptors (used by align)
    out_dir/report.json                                         what happened, with timings
"""

from __future__ import annotations

import logging
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pycolmap

from recon.frames import load as load_frames
from recon.io import InputError, atomic_dir, atomic_write_json
from recon.retrieval import learn_codebook, vlad

log = logging.getLogger(__name__)


class Unreconstructable(InputError):
    """SfM produced no usable model for a video (too few features, no overlap, a cut every second...)."""


@dataclass
class ReconstructConfig:
    """How each video is reconstructed."""

    camera_model: str = "SIMPLE_RADIAL"
    """COLMAP camera model shared by all frames of a video (self-calibrated)."""
    max_num_features: int = 4096
    """SIFT features per frame."""
    matching: Literal["auto", "exhaustive", "sequential"] = "auto"
    """'exhaustive' matches all frame pairs (O(N²)); 'sequential' matches neighbours in time plus retrieved
    loop-closing pairs; 'auto' is exhaustive up to ``exhaustive_max_frames`` frames."""
    exhaustive_max_frames: int = 100
    """Largest frame count matched exhaustively under 'auto'."""
    sequential_overlap: int = 10
    """Frames after each frame matched under 'sequential'."""
    loop_closure_neighbors: int = 5
    """Retrieved (VLAD) frames per frame matched under 'sequential' to close loops (0 disables)."""
    min_model_frames: int = 6
    """Models with fewer registered frames are discarded (cuts and edits give small side models)."""
    num_threads: int = -1
    """Threads for pycolmap (-1: all cores)."""
    seed: int = 0
    """Seed of the mapper's random choices."""


def _mapper_options(conf: ReconstructConfig) -> pycolmap.IncrementalPipelineOptions:
    """COLMAP's incremental mapper with its video preset (ModifyForVideoData), seeded."""
    opts = pycolmap.IncrementalPipelineOptions()
    opts.num_threads = conf.num_threads
    opts.random_seed = conf.seed
    opts.min_model_size = conf.min_model_frames
    opts.ba_global_frames_ratio = 1.4
    opts.ba_global_points_ratio = 1.4
    opts.min_focal_length_ratio = 0.1
    opts.max_focal_length_ratio = 10.0
    opts.mapper.init_min_tri_angle /= 2
    opts.mapper.random_seed = conf.seed
    opts.extract_colors = True
    return opts


def _sequential_pairs(db_path: Path, names: list[str], conf: ReconstructConfig) -> list[tuple[str, str]]:
    """Temporal neighbours plus VLAD-retrieved loop-closing pairs."""
    pairs = {(names[i], names[j]) for i in range(len(names))
             for j in range(i + 1, min(len(names), i + 1 + conf.sequential_overlap))}
    if conf.loop_closure_neighbors > 0:
        db = pycolmap.Database.open(str(db_path))
        try:
            ids = {im.name: im.image_id for im in db.read_all_images()}
            descs = [db.read_descriptors(ids[n]).data for n in names]
        finally:
            db.close()
        codebook = learn_codebook(descs, seed=conf.seed)
        g = np.stack([vlad(d, codebook) for d in descs])
        sim = g @ g.T
        for i in range(len(names)):
            sim[i, max(0, i - conf.sequential_overlap): i + conf.sequential_overlap + 1] = -np.inf
            for j in np.argsort(-sim[i])[: conf.loop_closure_neighbors]:
                if np.isfinite(sim[i, j]):
                    pairs.add(tuple(sorted((names[i], names[int(j)]))))
    return sorted(pairs)


def _summary(rec: pycolmap.Reconstruction) -> dict:
    return {
        "registered": rec.num_reg_images(),
        "points3D": rec.num_points3D(),
        "mean_track_length": round(rec.compute_mean_track_length(), 3),
        "mean_reprojection_error": round(rec.compute_mean_reprojection_error(), 4),
    }


def main(conf: ReconstructConfig, frames_dir: Path, out_dir: Path) -> dict:
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
        pycolmap.extract_features(db_path, image_dir, image_names=names, camera_mode=pycolmap.CameraMode.SINGLE,
                                  reader_options=reader, extraction_options=extraction, device=pycolmap.Device.cpu)
        timings["extract"] = time.perf_counter() - t

        t = time.perf_counter()
        matching = pycolmap.FeatureMatchingOptions()
        matching.num_threads = conf.num_threads
        matching.sift.cross_check = True  # mutual nearest neighbours, as in the source
        exhaustive = conf.matching == "exhaustive" or (
            conf.matching == "auto" and len(names) <= conf.exhaustive_max_frames)
        if exhaustive:
            pycolmap.match_exhaustive(db_path, matching_options=matching, device=pycolmap.Device.cpu)
        else:
            pairs_path = tmp / "pairs.txt"
            pairs_path.write_text("".join(f"{a} {b}\n" for a, b in _sequential_pairs(db_path, names, conf)))
            pairing = pycolmap.ImportedPairingOptions()
            pairing.match_list_path = str(pairs_path)
            pycolmap.match_image_pairs(db_path, matching_options=matching, pairing_options=pairing,
                                       device=pycolmap.Device.cpu)
        timings["match"] = time.perf_counter() - t

        t = time.perf_counter()
        (tmp / "mapper").mkdir()
        models = pycolmap.incremental_mapping(db_path, image_dir, tmp / "mapper", options=_mapper_options(conf))
        timings["map"] = time.perf_counter() - t
        ranked = sorted(models.values(), key=lambda r: r.num_reg_images(), reverse=True)
        if not ranked or ranked[0].num_reg_images() < conf.min_model_frames:
            best = ranked[0].num_reg_images() if ranked else 0
            raise Unreconstructable(
                f"{frames['video']}: no model with at least {conf.min_model_frames} frames (largest: {best} of "
                f"{len(names)}); the video may lack texture or overlap between frames — try more frames (--frames)")
        best = ranked[0]
        (tmp / "model").mkdir()
        best.write_binary(str(tmp / "model"))
        shutil.rmtree(tmp / "mapper")
        report = {
            "video": frames["video"],
            "frames_sampled": len(names),
            **_summary(best),
            "registered_ratio": round(best.num_reg_images() / len(names), 4),
            "matching": "exhaustive" if exhaustive else "sequential+retrieval",
            "discarded_models": [_summary(r) for r in ranked[1:]],
            "seconds": {k: round(v, 2) for k, v in timings.items()},
            "config": asdict(conf),
        }
        atomic_write_json(tmp / "report.json", report)
    log.info("%s: registered %d/%d frames, %d points", frames["video"], report["registered"], len(names),
             report["points3D"])
    return report


def load_model(sfm_dir: Path) -> pycolmap.Reconstruction:
    """Read a video's kept model (COLMAP binary)."""
    return pycolmap.Reconstruction(str(Path(sfm_dir) / "model"))
