"""Temporal action proposals from an actionness curve: actionness grouping (TAG-style) + 1D NMS (spec §5)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .metrics import temporal_iou


def _runs(mask: np.ndarray) -> np.ndarray:
    """``[N, 2]`` (start, end) of the runs of True, end exclusive."""
    d = np.diff(np.r_[0, mask.astype(np.int8), 0])
    return np.stack([np.flatnonzero(d == 1), np.flatnonzero(d == -1)], 1)


def group(mask: np.ndarray, tolerance: float) -> list[tuple[int, int]]:
    """Merge consecutive above-threshold runs while the merged segment has at most ``tolerance``
    fraction of below-threshold clips."""
    runs = _runs(mask)
    if len(runs) == 0:
        return []
    csum = np.r_[0, np.cumsum(mask)]
    out = []
    s, e = runs[0]
    for ns, ne in runs[1:]:
        if 1 - (csum[ne] - csum[s]) / (ne - s) <= tolerance:
            e = ne
        else:
            out.append((int(s), int(e)))
            s, e = ns, ne
    out.append((int(s), int(e)))
    return out


def nms(proposals: np.ndarray, iou: float) -> np.ndarray:
    """Greedy 1D non-maximum suppression of ``[N, 3]`` (start, end, score)."""
    order = np.argsort(-proposals[:, 2], kind="stable")
    P = proposals[order]
    ious = temporal_iou(P[:, :2], P[:, :2])
    keep = np.ones(len(P), dtype=bool)
    for i in range(len(P)):
        if keep[i]:
            keep[i + 1:] &= ious[i, i + 1:] <= iou
    return P[keep]


def tag_proposals(actionness: np.ndarray, thresholds: Sequence[float] = tuple(np.arange(0.05, 1.0, 0.05)),
                  tolerances: Sequence[float] = (0.05, 0.1, 0.2, 0.3), nms_iou: float = 0.8,
                  clip: float = 1.0) -> np.ndarray:
    """Proposals ``[N, 3]`` (start_s, end_s, score): threshold the min-max normalised actionness at
    several levels, group runs at several tolerances, then NMS (IoU 0.8).

    The score is the mean actionness inside minus the mean in the flanks (a quarter of the length on
    each side), so a whole action outranks its own sub-segments.
    """
    a = np.asarray(actionness, dtype=np.float64)
    a = (a - a.min()) / max(a.max() - a.min(), 1e-12)
    csum = np.r_[0.0, np.cumsum(a)]
    segs = {seg for th in thresholds for tol in tolerances for seg in group(a >= th, tol)}
    if not segs:
        return np.zeros((0, 3))
    S = np.array(sorted(segs), dtype=np.float64)
    s, e = S[:, 0].astype(int), S[:, 1].astype(int)
    fl = np.maximum((e - s) // 4, 1)
    ls, re = np.maximum(s - fl, 0), np.minimum(e + fl, len(a))
    inner = (csum[e] - csum[s]) / (e - s)
    outer = (csum[s] - csum[ls] + csum[re] - csum[e]) / np.maximum(s - ls + re - e, 1)
    score = inner - outer
    return nms(np.c_[S * clip, score], nms_iou)
