"""3D-grounded step scores: a step happens where its phrase grounds, so it happens *when* the camera looks there.

For step k the grounding model turns its phrase into a heatmap ``p_k`` over the scene's voxels; clip t's
score is the heatmap mass the camera sees, each voxel weighted by how close to the image centre it projects
(``S[t, k] = sum_v p_k(v) w_t(v)``, averaged over the clip's samples). Each step's scores are centred, so a
step whose part is in view all video long does not outrank one whose part appears only when it is worked on,
and scaled by one factor for all steps: steps whose heatmaps cannot be told apart (several steps on one part)
keep flat scores instead of having their noise blown up to unit variance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .features import ClipCameras, clip_mean


@dataclass
class GroundedConfig:
    """How heatmaps become per-clip step scores."""

    sigma: float = 0.35
    """Image-centre weighting of a voxel, as a fraction of the half image diagonal (large = whole frame)."""
    contrast: bool = True
    """Subtract the mean heatmap of the video's steps first: what sets a step apart, not the shared layout."""


def view_weights(cams: ClipCameras, centers: np.ndarray, T: int, sigma: float) -> np.ndarray:
    """``W[T, V]``: per clip the mean centre-weighted visibility of every voxel centre."""
    return clip_mean(cams.centrality(np.asarray(centers, float), sigma), cams.clip, T)


def seen_mass(
    heatmaps: np.ndarray, centers: np.ndarray, cams: ClipCameras, T: int, conf: GroundedConfig | None = None
) -> np.ndarray:
    """``M[T, K]``: per clip the share of each step's heatmap ``[K, V]`` (probabilities over voxels with
    ``centers[V, 3]``) the camera looks at, centre-weighted: *whether* a video shows a step's place at all
    (which task it does, :func:`temporal.tasks.look_scores`), and through :func:`from_seen` *when*."""
    conf = conf or GroundedConfig()
    return view_weights(cams, centers, T, conf.sigma) @ np.asarray(heatmaps, float).T


def from_seen(M: np.ndarray, conf: GroundedConfig | None = None) -> np.ndarray:
    """``S[T, K]`` grounded step scores from the seen mass ``M[T, K]`` of the video's steps (the contrast of
    heatmaps is linear, so subtracting the steps' mean heatmap is subtracting their mean seen mass)."""
    conf = conf or GroundedConfig()
    S = np.asarray(M, float)
    if conf.contrast and S.shape[1] > 1:
        S = S - S.mean(1, keepdims=True)
    S = S - S.mean(0)
    return S / (S.std() + 1e-12)


def grounded_scores(
    heatmaps: np.ndarray, centers: np.ndarray, cams: ClipCameras, T: int, conf: GroundedConfig | None = None
) -> np.ndarray:
    """``S[T, K]`` from step heatmaps ``[K, V]`` (probabilities over voxels with ``centers[V, 3]``)."""
    return from_seen(seen_mass(heatmaps, centers, cams, T, conf), conf)
