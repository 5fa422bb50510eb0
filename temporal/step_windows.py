"""Narration -> per-step constraint intervals ([001] App. A.1.1) and their quality report.

Sliding windows of ``w`` subtitle words and the step descriptions are embedded by a pluggable
``Embedder`` (``list[str] -> [N, D]``; TF-IDF by default, the project's BERT encoder can be passed
instead), matched in order with the A1 DP (maximising cosine similarity), and each selected window's
time span becomes that step's interval.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from .data import Interval, intervals_to_labels
from .dp import align_one

Embedder = Callable[[list[str]], np.ndarray]
"""Maps texts to row vectors; called once with the windows followed by the steps."""

STOPWORDS = frozenset(
    [
        "a",
        "an",
        "the",
        "of",
        "to",
        "in",
        "on",
        "into",
        "onto",
        "with",
        "and",
        "or",
        "for",
        "from",
        "your",
        "you",
        "some",
        "it",
        "its",
        "at",
        "by",
        "is",
        "are",
        "be",
        "this",
        "that",
        "as",
    ]
)


def stem(word: str) -> str:
    """Light suffix stemmer (-ing, -ed, -es, -s) so inflections share a component; no external data."""
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def tokens(text: str) -> list[str]:
    """Lower-cased, stop-word-free, stemmed words: the components of a step description."""
    return [stem(w) for w in re.findall(r"[a-z]+", text.lower()) if w not in STOPWORDS]


def tfidf_embed(texts: list[str]) -> np.ndarray:
    """TF-IDF fitted on the given texts (windows and steps of one video) with the stemming tokenizer."""
    vec = TfidfVectorizer(analyzer=tokens)
    try:
        return vec.fit_transform(texts).toarray()
    except ValueError:  # no token in any text
        return np.zeros((len(texts), 1))


@dataclass
class NarrationConfig:
    """How narration becomes constraint intervals."""

    window: int = 10
    """Words per sliding window (``w``; unspecified in the thesis)."""
    min_duration: float = 9.0
    """Intervals shorter than this are widened around their centre (reference constraints average 9 s)."""
    min_sim: float = 0.0
    """A step whose matched window has similarity <= this gets no constraint row (unconstrained)."""


def constraints_from_narration(
    words: Sequence[tuple[str, float]],
    steps: Sequence[str],
    conf: NarrationConfig | None = None,
    embedder: Embedder | None = None,
) -> list[Interval]:
    """Ordered matching of step descriptions to narration windows -> ``[(step, start, end)]``."""
    conf = conf or NarrationConfig()
    embedder = embedder or tfidf_embed
    if not words or not steps:
        return []
    texts = [w for w, _ in words]
    times = np.array([t for _, t in words], dtype=np.float64)
    w = min(conf.window, len(texts))
    L = len(texts) - w + 1
    windows = [" ".join(texts[i : i + w]) for i in range(L)]
    E = np.asarray(embedder(windows + list(steps)), dtype=np.float64)
    E = E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)
    sim = E[:L] @ E[L:].T
    pos = align_one(sim, maximize=True, allow_shared=True)
    out = []
    for k, i in enumerate(pos):
        if sim[i, k] <= conf.min_sim:
            continue
        s, e = times[i], times[i + w - 1]
        if e - s < conf.min_duration:
            c = 0.5 * (s + e)
            s, e = c - conf.min_duration / 2, c + conf.min_duration / 2
        out.append((k + 1, max(float(s), 0.0), float(e)))
    return out


def constraint_mask(intervals: Sequence[Interval], T: int, K: int) -> np.ndarray:
    """Allowed region ``M[T, K]``; steps without a row stay all-zero (uniform penalty = unconstrained)."""
    return intervals_to_labels(list(intervals), T, K)


def constraint_report(
    constraints: Sequence[Sequence[Interval]],
    truths: Sequence[Sequence[Interval]],
    lengths: Sequence[int],
    K: Sequence[int],
) -> dict[str, float]:
    """Clip-level precision / recall / IoU of constraints vs ground truth, pooled over videos, and the
    fraction of constrained ground-truth steps lying fully outside their interval (spec Table A.1)."""
    inter = n_c = n_g = union = outside = n_steps = 0
    for c, g, T, k in zip(constraints, truths, lengths, K, strict=True):
        Mc, Mg = constraint_mask(c, T, k).astype(bool), intervals_to_labels(list(g), T, k).astype(bool)
        inter += int((Mc & Mg).sum())
        union += int((Mc | Mg).sum())
        n_c += int(Mc.sum())
        n_g += int(Mg.sum())
        both = Mc.any(0) & Mg.any(0)
        n_steps += int(both.sum())
        outside += int((both & ~(Mc & Mg).any(0)).sum())
    return {
        "precision": inter / max(n_c, 1),
        "recall": inter / max(n_g, 1),
        "iou": inter / max(union, 1),
        "outside": outside / max(n_steps, 1),
    }
