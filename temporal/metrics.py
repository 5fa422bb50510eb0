"""Evaluation metrics (CrossTask [001] §3.6.1, [002], [004]): step recall as the CrossTask reference counts it,
actionness AP, frame precision / recall / F1, and repeated random splits."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
from sklearn.metrics import average_precision_score

from .data import Interval


def step_recall(
    Y_true: Mapping[str, Mapping[str, np.ndarray]], Y_pred: Mapping[str, Mapping[str, np.ndarray]]
) -> dict[str, float]:
    """Per-task recall exactly as the reference ``get_recalls``.

    ``Y_true[task][vid]`` is the dense ``[T, K]`` annotation, ``Y_pred[task][vid]`` the ``[T, K]``
    one-hot prediction. Per task: hits (sum of ``Y_true * Y_pred``) over the number of steps with at
    least one annotated clip, summed over the videos present in both.
    """
    out = {}
    for task, ys_true in Y_true.items():
        ys_pred = Y_pred.get(task, {})
        counts = [recall_counts(ys_true[vid], ys_pred[vid]) for vid in set(ys_true) & set(ys_pred)]
        hit, total = sum(h for h, _ in counts), sum(n for _, n in counts)
        out[task] = hit / total if total else float("nan")
    return out


def recall_counts(Y_true: np.ndarray, Y_pred: np.ndarray) -> tuple[int, int]:
    """CrossTask recall of one video as ``(hits, annotated steps)``: the one place recall is counted, so the
    CrossTask folders, the workspace's own videos and the benchmarks report the same number.

    ``Y_true[T, K]`` 0/1 annotation, ``Y_pred[T, K]`` one-hot prediction (``dp.steps_to_labels``).
    """
    T = min(len(Y_true), len(Y_pred))
    return int((Y_true[:T].astype(np.int64) * Y_pred[:T]).sum()), int((Y_true.sum(0) > 0).sum())


def mean_over_tasks(per_task: Mapping[str, float]) -> float:
    """Unweighted mean over tasks (tasks without annotated steps are skipped)."""
    vals = [v for v in per_task.values() if np.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


# ----------------------------------------------------------------------------- actionness AP


def segment_labels(intervals: Sequence[Interval], duration: float, seg: float = 0.2) -> np.ndarray:
    """Labels of the ``seg``-second segments of a video: 1 if the segment overlaps an annotated step."""
    n = int(np.ceil(duration / seg - 1e-9))
    a = np.arange(n) * seg
    b = a + seg
    lab = np.zeros(n, dtype=np.uint8)
    for _, s, e in intervals:
        lab[(a < e) & (b > s)] = 1
    return lab


def segment_scores(actionness: np.ndarray, seg: float = 0.2, clip: float = 1.0) -> np.ndarray:
    """Score of each ``seg``-second segment = actionness of the clip containing its centre."""
    n = int(np.ceil(len(actionness) * clip / seg - 1e-9))
    idx = np.minimum(((np.arange(n) + 0.5) * seg / clip).astype(np.int64), len(actionness) - 1)
    return np.asarray(actionness)[idx]


def action_ap(
    actionness: Sequence[np.ndarray], intervals: Sequence[Sequence[Interval]], seg: float = 0.2, clip: float = 1.0
) -> float:
    """Action-vs-background AP pooled over the 0.2 s segments of all videos ([002])."""
    labels, scores = [], []
    for a, ivs in zip(actionness, intervals, strict=True):
        s = segment_scores(a, seg, clip)
        labels.append(segment_labels(ivs, len(a) * clip, seg)[: len(s)])
        scores.append(s[: len(labels[-1])])
    y, s = np.concatenate(labels), np.concatenate(scores)
    return float(average_precision_score(y, s)) if y.any() else float("nan")


def chance_actionness(T: int, rng: np.random.Generator, trim: float = 0.0) -> np.ndarray:
    """Chance baseline (uniform random scores); ``trim`` sends the first/last fraction to background."""
    a = rng.random(T)
    cut = int(round(trim * T))
    if cut:
        a[:cut] = a[T - cut :] = -1.0
    return a


# ----------------------------------------------------------------------------- frame-level


def frame_prf(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float, float]:
    """Frame precision / recall / F1 over foreground clips (label != 0), counting intersecting frames."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    inter = float(((y_true == y_pred) & (y_true != 0)).sum())
    p = inter / max(int((y_pred != 0).sum()), 1)
    r = inter / max(int((y_true != 0).sum()), 1)
    return p, r, (2 * p * r / (p + r) if p + r > 0 else 0.0)


# ----------------------------------------------------------------------------- splits


def random_splits(
    videos_by_task: Mapping[str, Sequence[str]], n_train: int, n_runs: int, seed: int = 0
) -> Iterator[tuple[dict[str, list[str]], dict[str, list[str]]]]:
    """Zhukov protocol: per run, ``n_train`` random videos per task for training, the rest for test."""
    rng = np.random.default_rng(seed)
    for _ in range(n_runs):
        train, test = {}, {}
        for task, vids in videos_by_task.items():
            perm = [vids[i] for i in rng.permutation(len(vids))]
            train[task], test[task] = perm[:n_train], perm[n_train:]
        yield train, test


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std())
