"""Settings of the recon stage (sections ``[frames]``, ``[reconstruct]``, ``[align]``, ``[localize]`` of
``howto3d.toml``).

Plain dataclasses with no third-party imports: reading a workspace's configuration (every CLI command does)
must not pay for pycolmap, scipy or scikit-learn, which the stage modules that use these settings import.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, Literal


def choices(config: Any, name: str) -> tuple[str, ...]:
    """The values a setting allows, as its field declares them (``metadata["choices"]``): ``howto3d.toml`` is
    checked against them when read, and stage code given a config directly checks the same tuple."""
    return tuple(next(f for f in fields(config) if f.name == name).metadata["choices"])


@dataclass
class FramesConfig:
    """How frames are sampled from each video."""

    num_frames: int = field(default=80, metadata={"range": (1, None)})
    """Frames sampled per video (the source samples a fixed number; 80 suits 30–120 s videos). Under 'motion'
    sampling the least a video gets: long or busy videos get more, up to ``max_frames``."""
    sampling: Literal["auto", "motion", "uniform", "random"] = "auto"
    """'motion' spreads frames evenly in how much the view changed (a hover costs few frames, a quick swing many;
    it also detects cuts); 'uniform' spreads them evenly in time; 'random' draws them at random (seeded) as in the
    source; 'auto' (default): 'motion' for videos longer than ``auto_motion_seconds``, else 'uniform'."""
    auto_motion_seconds: float = 120.0
    """'auto': videos longer than this are sampled by motion (short clips keep evenly spaced frames, which gave
    better 3D-grounded step timelines on 16–20-s clips)."""
    max_frames: int = 400
    """'motion': the most frames a video gets however long or busy it is (bounds SfM cost); ≤ num_frames keeps
    exactly num_frames."""
    base_fps: float = 3.0
    """'motion': candidate frames decoded per second to measure the motion (raised for short videos so
    there are at least twice ``num_frames`` candidates)."""
    swing_motion: float = 0.05
    """'motion': a break in overlap next to faster camera motion than this (median keypoint displacement between
    candidates, as a fraction of the image diagonal) is a quick swing between parts, not a cut: it keeps the
    shot's camera (a cut starts a new self-calibrated one)."""
    motion_measure: Literal["displacement", "match_ratio"] = "displacement"
    """'motion': how view change is measured between candidates: median SIFT keypoint displacement, or the
    share of keypoints that stop matching."""
    motion_step: float = 0.2
    """'motion': view change that earns one frame — median displacement as a fraction of the image diagonal
    (or, for 'match_ratio', the share of keypoints lost); 0.2 leaves ~75% overlap between kept frames."""
    max_gap: float = 6.0
    """'motion': seconds of a still view that earn one frame (hovering still gets frames for its narration)."""
    blur_ratio: float = 0.5
    """'motion': a candidate whose sharpness (variance of the Laplacian) is below this fraction of the median
    of its neighbours (±3 candidates) is not kept (motion blur)."""
    max_side: int = field(default=1024, metadata={"range": (1, None)})
    """Frames larger than this (longest side, pixels) are downscaled: SIFT gains little above it."""
    jpeg_quality: int = field(default=95, metadata={"range": (1, 100)})
    """JPEG quality of the stored frames."""
    seed: int = 0
    """Seed of random sampling."""


@dataclass
class ReconstructConfig:
    """How each video is reconstructed."""

    camera_model: str = "SIMPLE_RADIAL"
    """COLMAP camera model shared by all frames of a shot (self-calibrated; a video without detected cuts is
    one shot)."""
    max_num_features: int = field(default=4096, metadata={"range": (1, None)})
    """SIFT features per frame."""
    matching: Literal["auto", "exhaustive", "sequential"] = "auto"
    """'exhaustive' matches all frame pairs (O(N²)); 'sequential' matches neighbours in time plus retrieved
    loop-closing pairs (O(N): ~10 per frame); 'auto' is exhaustive up to ``exhaustive_max_frames`` frames."""
    exhaustive_max_frames: int = field(default=30, metadata={"range": (1, None)})
    """Largest frame count matched exhaustively under 'auto': a short clip's 435 pairs are cheap and the most
    robust; at 40 frames sequential matching (5 successors + 5 loop closures) took 25 s instead of 47 s for 5
    videos, at the same camera error."""
    mapper: Literal["incremental", "global"] = "incremental"
    """'incremental': COLMAP's incremental mapper (video preset); 'global': pycolmap's global mapper (GLOMAP:
    rotation averaging + global positioning + bundle adjustment)."""
    sequential_overlap: int = field(default=5, metadata={"range": (1, None)})
    """Frames after each frame matched under 'sequential' (motion sampling leaves ~75 % overlap between
    neighbours, so the fifth still overlaps; 10 gave the same cameras for 1.8× the pairs)."""
    loop_closure_neighbors: int = 5
    """Retrieved (VLAD) frames per frame matched under 'sequential' to close loops: the camera comes back to a
    part after minutes, and they are what ties the shots on both sides of a cut into one model (0 disables)."""
    min_model_frames: int = field(default=6, metadata={"range": (1, None)})
    """Models with fewer registered frames are discarded (cuts and edits give small side models)."""
    num_threads: int = field(default=-1, metadata={"range": (-1, None)})
    """Threads for pycolmap (-1: all cores)."""
    seed: int = 0
    """Seed of the mapper's random choices."""


@dataclass
class AlignConfig:
    """How videos of a scene are aligned into one shared frame."""

    frame_pairs: int = field(default=30, metadata={"range": (1, None)})
    """Top-N_M retrieved frame pairs matched per video pair."""
    codebook_size: int = field(default=64, metadata={"range": (1, None)})
    """VLAD codebook size (learned on the scene's own SIFT descriptors)."""
    ratio: float = field(default=0.85, metadata={"range": (0, 1)})
    """Lowe ratio test on SIFT matches (lower is stricter)."""
    fundamental_max_error: float = 4.0
    """RANSAC threshold (pixels) of the fundamental-matrix check on each frame pair."""
    min_pair_matches: int = field(default=15, metadata={"range": (1, None)})
    """Frame pairs with fewer geometrically verified matches are dropped."""
    lift_radius_px: float = 3.0
    """A matched keypoint without a 3D point takes the 3D point of the nearest observed keypoint within this radius."""
    inlier_threshold: float = 0.03
    """Sim(3) RANSAC inlier threshold, as a fraction of the target model's robust size (median point spread)."""
    min_inliers: int = field(default=40, metadata={"range": (1, None)})
    """An alignment needs at least this many 3D–3D inliers to become an edge."""
    min_inlier_ratio: float = field(default=0.25, metadata={"range": (0, 1)})
    """... and at least this inlier ratio."""
    refine_threshold: float = 0.01
    """Inlier threshold of the graph-wide refinement, as a fraction of the reference model's robust size.

    Parts that moved between videos can outnumber the static structure in one video pair, so a pair's
    own Sim(3) may follow them; across all of a video's neighbours only the static structure agrees."""
    refine_sweeps: int = 5
    """Sweeps of the graph-wide refinement (0: keep the composed shortest-path transforms)."""
    video_pairs_per_node: int = 5
    """Node pairs matched per node: each node's top-k most similar nodes by mean-VLAD retrieval, plus a maximum
    spanning tree of that similarity so the candidates connect every node, plus, for a node left unlinked, its
    next k candidates towards the aligned ones; 0 matches every pair. Pairs grow as O(n·k) instead of O(n²); with
    k = 5 a scene of up to 6 nodes still matches every pair (as before), and redundant edges beyond the top few
    add little to the graph-wide refinement."""
    joint_refine: bool = False
    """After the graph-wide refinement, bundle-adjust all aligned models together (the points the accepted edges
    matched fused into one track each where the transforms agree on them; poses, points, focal and distortion
    refined under a robust loss) and refit each node's Sim(3) to its adjusted cameras. Self-calibrated models
    differ by a little more than a Sim(3), and a fit on their points misplaces the other video's cameras.
    Off by default, by measurement (per-video median camera error): 4 × 150-s degraded videos 0.95–2.15 →
    0.72–1.95 cm (+6 s), but a clean 3 × 30-s world 0.07–0.13 → 0.07–0.16 cm (+15–19 s on a 10-s alignment:
    490k observations, one solver thread). What keeps degraded footage above 1 cm is parts that moved between
    videos (their matches outnumber the static ones in some pairs), which no adjustment undoes; with only static
    matches it gives 0.76 → 0.52 cm."""
    joint_intrinsics: Literal["shot", "video", "fixed"] = "shot"
    """Intrinsics in the joint adjustment: 'shot' refines each model's own cameras, 'video' one lens per video (its
    shots and segments share it), 'fixed' holds them. On the 4 × 150-s world 'shot' and 'video' tie (1.11 vs 1.09 cm
    mean of the per-video medians), 'fixed' 1.13 cm; 'shot' assumes nothing about zoom between shots."""
    seed: int = 0
    """Seed of the codebook and of RANSAC."""
    upright: bool = True
    """When the shared frame is created (first alignment, ``--reanchor``), rotate it so z points up (gravity from
    how the cameras are held, refined by a dominant horizontal plane) with its origin at the points' median.
    Turn it off to keep the reference video's own SfM frame: footage shot with the phone rolled or upside down,
    a scene filmed from straight above, or a frame another tool already uses. A kept frame is never re-rotated."""


@dataclass
class LocalizeConfig:
    """How a new photo is localized in a scene's shared frame."""

    retrieved_frames: int = 8
    """Registered frames retrieved (VLAD) and matched per photo."""
    per_video: int = 2
    """... plus this many of every video's most similar frames: parts that moved between videos then disagree."""
    codebook_size: int = 64
    """VLAD codebook size (learned on the scene's registered frames)."""
    ratio: float = field(default=0.85, metadata={"range": (0, 1)})
    """Lowe ratio test on SIFT matches (lower is stricter)."""
    lift_radius_px: float = 3.0
    """A matched frame keypoint without a 3D point takes the nearest observed keypoint's point within this radius."""
    max_error: float = 0.005
    """PnP RANSAC inlier threshold as a fraction of the photo's longer side (3.2 px at 640 px).

    Tight on purpose: parts that moved between cars fit a wrong pose/focal loosely, and at 0.01 they pulled
    close-ups 9-12 cm off; at 0.005 the static structure wins (0.1-0.3 cm)."""
    min_inliers: int = 30
    """A pose needs at least this many 2D–3D inliers ..."""
    min_inlier_ratio: float = field(default=0.15, metadata={"range": (0, 1)})
    """... and at least this fraction of the 2D–3D matches as inliers; below either, the photo is not localized."""
    max_side: int = 1024
    """Photos larger than this (longer side, pixels) are downscaled for SIFT; the pose is reported at full size."""
    max_photo_mp: float = 40.0
    """Photos of more megapixels than this (read from the file's header) are refused before any pixel is decoded:
    a PNG of a few kilobytes can declare 12000 x 12000 pixels (a decompression bomb: seconds and gigabytes)."""
    max_num_features: int = 4096
    """SIFT features extracted from the photo (the reconstruction's default)."""
    seed: int = 0
    """Seed of the codebook and of RANSAC."""
