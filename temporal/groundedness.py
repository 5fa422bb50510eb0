"""Which narration is grounded: a clip–caption alignment model and its AUCs ([003]).

Narration is the only supervision of the 3D grounding model, and much of it is not about what the camera
shows (intros, "subscribe", a part named while the camera is elsewhere). Following 003, groundedness is
measured operationally: a joint embedding is trained on co-occurring (clip window, subtitle line) pairs and a
line is grounded as far as the model can find *its own* window among the other windows of its video
(segment-level AUC); the video's intra-video AUC says the same of all its lines together.

Model: the clip features of a fixed-length window centred on the line (max-pooled over its 1-s clips, as
003 max-pools) and the line's sentence embedding from the packaged BERT (frozen, mean-pooled: the sentence
encoder's native pooling; 003 max-pools word vectors of its own vocabulary) go through gated units
(Miech et al.) into a joint space; cosine similarity, hinge loss with margin 0.1 in both directions, negatives
half from the same video and half from other videos.

Lines are scored by a model that did not see their video (videos split into folds): trained on a line, a
model can memorise even "thanks for watching", so in-sample scores would call everything grounded.

A line's score ranks its own window, for its text, against the windows the scene's *other* videos show at the
same point of the video (``against = "same_time"``), not only against its own video's other windows (003's
segment-level AUC, kept as ``segment``): how-to videos open and close on similar views, so within its own video
an intro is the easiest line to place (003: start/end segments are easier) and scored above the step lines.
Against what every video shows at that moment, only a line that describes what *its* video shows ranks high.

``method = "neighbours"`` replaces the model with a non-parametric view of the same question (no training): a
line's expected window is the windows of the lines worded most like it in the scene's other videos.

Owns ``groundedness.json`` (:class:`GroundednessReport`); nothing else parses it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict

import numpy as np
import torch
from torch import nn

from recon.config import choices
from recon.io import InputError, ProgressFn, atomic_write_json, read_json
from temporal.config import GroundednessConfig

Line = tuple[str, float, float]
"""``(text, start_s, end_s)``: one subtitle line."""


class GatedEmbedding(nn.Module):
    """``y = W x``; ``y ⊙ σ(W' y)``; L2-normalised (the gated embedding unit of Miech et al.)."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.fc = nn.Linear(dim_in, dim_out)
        self.gate = nn.Linear(dim_out, dim_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(x)
        return nn.functional.normalize(y * torch.sigmoid(self.gate(y)), dim=-1)


class ClipCaptionModel(nn.Module):
    def __init__(self, clip_dim: int, text_dim: int, dim: int):
        super().__init__()
        self.clip = GatedEmbedding(clip_dim, dim)
        self.text = GatedEmbedding(text_dim, dim)

    def similarity(self, clips: torch.Tensor, texts: torch.Tensor) -> torch.Tensor:
        """Cosine similarity matrix ``[n_clips, n_texts]``."""
        return self.clip(clips) @ self.text(texts).T


def window_features(X: np.ndarray, centres: np.ndarray, seconds: float) -> np.ndarray:
    """Max-pooled clip features of fixed windows ``[c − s/2, c + s/2)`` (clip t covers ``[t, t+1)``)."""
    T = len(X)
    out = np.empty((len(centres), X.shape[1]), dtype=np.float32)
    for i, c in enumerate(centres):
        lo = int(np.clip(np.floor(c - seconds / 2), 0, T - 1))
        hi = int(np.clip(np.ceil(c + seconds / 2), lo + 1, T))
        out[i] = X[lo:hi].max(0)
    return out


def auc(pos: float, neg: np.ndarray) -> float:
    """P(positive > negative), ties 0.5; 0.5 without negatives."""
    neg = np.asarray(neg)
    if not len(neg):
        return 0.5
    return float((np.sum(pos > neg) + 0.5 * np.sum(pos == neg)) / len(neg))


@dataclass
class VideoGroundedness:
    auc: float
    """Intra-video AUC: aligned (window, line) pairs against mismatched pairs of the same video."""
    lines: list[float]
    """Groundedness of each line (``GroundednessConfig.against``): its window against the other windows, for
    its text."""
    segment: list[float]
    """003's segment-level AUC of each line: its window against its own video's other windows."""


def _train(
    clips: Sequence[np.ndarray], texts: Sequence[np.ndarray], conf: GroundednessConfig, rng: np.random.Generator
) -> ClipCaptionModel:
    """One model on the lines of some videos (``clips[v][i]`` is the window of ``texts[v][i]``)."""
    model = ClipCaptionModel(clips[0].shape[1], texts[0].shape[1], conf.dim)
    opt = torch.optim.Adam(model.parameters(), lr=conf.lr)
    C = torch.from_numpy(np.concatenate(clips))
    W = torch.from_numpy(np.concatenate(texts))
    vid = np.concatenate([np.full(len(c), v) for v, c in enumerate(clips)])
    n = len(C)
    same = [np.flatnonzero(vid == vid[i]) for i in range(n)]
    other = [np.flatnonzero(vid != vid[i]) for i in range(n)]
    if conf.shuffle:
        perm = np.concatenate([rng.permutation(s) for s in (np.flatnonzero(vid == v) for v in range(len(clips)))])
        C = C[torch.from_numpy(np.argsort(np.concatenate([np.flatnonzero(vid == v) for v in range(len(clips))]))[perm])]
    half = max(conf.negatives // 2, 1)
    for _ in range(conf.epochs):
        neg = np.empty((n, 2 * half), dtype=np.int64)
        for i in range(n):
            s = same[i][same[i] != i]
            pools = [s if len(s) else other[i], other[i] if len(other[i]) else s]
            if not len(pools[0]):
                pools = [np.array([i]), np.array([i])]
            neg[i] = np.concatenate([rng.choice(p, half) for p in pools])
        S = model.similarity(C, W)
        pos = S.diagonal()[:, None]
        idx = torch.from_numpy(neg)
        rows = torch.arange(n)[:, None]
        loss = (
            torch.clamp(conf.margin + S[rows, idx] - pos, min=0)  # wrong caption for the clip
            + torch.clamp(conf.margin + S.T[rows, idx] - pos, min=0)
        )  # wrong clip for the caption
        opt.zero_grad()
        loss.mean().backward()
        opt.step()
    return model


def _grid_windows(X: np.ndarray, seconds: float) -> tuple[np.ndarray, np.ndarray]:
    """Centres (s) and features of the window around every clip of a video."""
    grid = np.arange(len(X)) + 0.5
    return grid, window_features(X, grid, seconds)


Similarity = Callable[[np.ndarray], np.ndarray]
"""``sim(windows [n, D]) → [n, lines]``: how well each window fits each line of the video being scored."""


def _model_similarity(model: ClipCaptionModel, text: np.ndarray) -> Similarity:
    t = torch.from_numpy(text)

    @torch.no_grad()
    def sim(windows: np.ndarray) -> np.ndarray:
        return model.similarity(torch.from_numpy(windows), t).numpy()

    return sim


def _unit(x: np.ndarray) -> np.ndarray:
    return x / (np.linalg.norm(x, axis=-1, keepdims=True) + 1e-9)


def _neighbour_similarity(text: np.ndarray, other_text: np.ndarray, other_windows: np.ndarray, k: int) -> Similarity:
    """Each line's expected view: the windows of the ``k`` other-video lines with the most similar text, weighted
    by that (positive) similarity; a window fits a line as far as its cosine with that view."""
    T = _unit(text) @ _unit(other_text).T
    k = min(k, T.shape[1])
    top = np.argsort(-T, axis=1, kind="stable")[:, :k]
    w = np.maximum(np.take_along_axis(T, top, 1), 0) + 1e-6
    views = _unit(np.einsum("nk,nkd->nd", w / w.sum(1, keepdims=True), _unit(other_windows)[top]))
    return lambda windows: _unit(windows) @ views.T


def _score(
    sim: Similarity, v: str, Z: Mapping[str, np.ndarray], lines: Sequence[Line], conf: GroundednessConfig
) -> VideoGroundedness:
    """Scores of video ``v``'s lines; ``Z`` holds every video's standardised features (for ``same_time``)."""
    X = Z[v]
    mids = np.array([(s + e) / 2 for _, s, e in lines])
    grid, all_w = _grid_windows(X, conf.window_seconds)
    S_lines = sim(window_features(X, mids, conf.window_seconds))  # [window of line i, line j]
    S_grid = sim(all_w)  # [every window, line j]
    seg = [auc(S_lines[i, i], S_grid[np.abs(grid - m) >= conf.window_seconds / 2, i]) for i, m in enumerate(mids)]
    others = [u for u in sorted(Z) if u != v]
    if conf.against == "same_time" and others:
        S_other = {u: (g, sim(w)) for u, (g, w) in ((u, _grid_windows(Z[u], conf.window_seconds)) for u in others)}
        scores = []
        for i, m in enumerate(mids):
            r = m / len(X)  # relative time: videos differ in length
            neg = np.concatenate([S[np.abs(g - r * len(g)) <= conf.window_seconds / 2, i] for g, S in S_other.values()])
            scores.append(auc(S_lines[i, i], neg))
    else:
        scores = seg
    n = len(lines)
    mism = [(i, j) for i in range(n) for j in range(n) if i != j]
    if mism:
        neg = np.array([S_lines[i, j] for i, j in mism])
        intra = float(np.mean([auc(S_lines[i, i], neg) for i in range(n)]))
    else:
        intra = 0.5
    return VideoGroundedness(intra, scores, seg)


def groundedness(
    features: Mapping[str, np.ndarray],
    lines: Mapping[str, Sequence[Line]],
    embed: Callable[[Sequence[str]], np.ndarray],
    conf: GroundednessConfig | None = None,
    progress: ProgressFn | None = None,
) -> dict[str, VideoGroundedness]:
    """Groundedness (and 003's segment-level AUC) of every line, intra-video AUC of every video with lines.

    ``features[v]`` is ``X[T, D]`` (1-s clips), ``lines[v]`` its subtitle lines, ``embed(texts) → [n, E]``
    the sentence encoder. Features are standardised over the scene so no feature group dominates.
    """
    conf = conf or GroundednessConfig()
    against, methods = choices(GroundednessConfig, "against"), choices(GroundednessConfig, "method")
    if conf.against not in against or conf.method not in methods:
        raise ValueError(
            f"groundedness against = {conf.against!r}, method = {conf.method!r}: use one of "
            f"{', '.join(against)}, and one of {', '.join(methods)}"
        )
    torch.manual_seed(conf.seed)
    rng = np.random.default_rng(conf.seed)
    names = sorted(v for v in features if lines.get(v))
    if not names:
        return {}
    allX = np.concatenate([features[v] for v in names])
    mean, std = allX.mean(0), allX.std(0) + 1e-6
    Z = {v: ((features[v] - mean) / std).astype(np.float32) for v in names}
    texts = {v: np.asarray(embed([t for t, _, _ in lines[v]]), dtype=np.float32) for v in names}
    if conf.method == "neighbours":
        # Centred per video: a window is compared with windows of *other* videos, whose own light and colours
        # would otherwise make them closer to each other than to any window of this video.
        C = {v: Z[v] - Z[v].mean(0) for v in names}
        cw = {
            v: window_features(C[v], np.array([(s + e) / 2 for _, s, e in lines[v]]), conf.window_seconds)
            for v in names
        }
        out = {}
        for n, v in enumerate(names):
            others = [u for u in names if u != v] or [v]
            ow = np.concatenate([cw[u][rng.permutation(len(cw[u]))] if conf.shuffle else cw[u] for u in others])
            sim = _neighbour_similarity(texts[v], np.concatenate([texts[u] for u in others]), ow, conf.neighbours)
            out[v] = _score(sim, v, C, lines[v], conf)
            if progress:
                progress("groundedness", n + 1, len(names))
        return out
    clips = {
        v: window_features(Z[v], np.array([(s + e) / 2 for _, s, e in lines[v]]), conf.window_seconds) for v in names
    }
    folds = min(conf.folds, len(names))
    order = rng.permutation(len(names))
    fold_of = {names[i]: n % folds for n, i in enumerate(order)}
    out = {}
    for f in range(folds):
        held = [v for v in names if fold_of[v] == f]
        train = [v for v in names if fold_of[v] != f] or held
        model = _train([clips[v] for v in train], [texts[v] for v in train], conf, rng)
        model.eval()
        for v in held:
            out[v] = _score(_model_similarity(model, texts[v]), v, Z, lines[v], conf)
        if progress:
            progress("groundedness", f + 1, folds)
    return {v: out[v] for v in names}


# ----------------------------------------------------------------------------- the saved report

REPORT = "groundedness.json"


class LineScore(TypedDict):
    """One narration line of ``groundedness.json``."""

    start: float
    end: float
    text: str
    groundedness: float
    segment_auc: float


class VideoLines(TypedDict):
    """One video of ``groundedness.json``: its intra-video AUC and its lines."""

    auc: float
    lines: list[LineScore]


class GroundednessJSON(TypedDict):
    """``groundedness.json``, and ``howto3d groundedness --json``."""

    scene: str
    videos: dict[str, VideoLines]


@dataclass
class GroundednessReport:
    """``groundedness.json``: ``{"scene", "videos": {video: {"auc", "lines": [{"start", "end", "text",
    "groundedness", "segment_auc"}]}}}`` (the JSON contract of ``howto3d groundedness --json``;
    ``segment_auc``: 003's within-video score, for reference)."""

    scene: str
    videos: dict[str, VideoLines]

    @classmethod
    def of(
        cls,
        scene: str,
        lines: Mapping[str, Sequence[Line]],
        result: Mapping[str, VideoGroundedness],
    ) -> GroundednessReport:
        """The report of :func:`groundedness`'s ``result`` for these lines (videos without a result left out)."""
        return cls(
            scene,
            {
                v: {
                    "auc": round(r.auc, 4),
                    "lines": [
                        {"start": s, "end": e, "text": t, "groundedness": round(g, 4), "segment_auc": round(sg, 4)}
                        for (t, s, e), g, sg in zip(lines[v], r.lines, r.segment, strict=True)
                    ],
                }
                for v, r in sorted(result.items())
            },
        )

    def to_json(self) -> GroundednessJSON:
        return {"scene": self.scene, "videos": self.videos}

    def save(self, folder: Path) -> None:
        atomic_write_json(folder / REPORT, self.to_json())

    @classmethod
    def load(cls, folder: Path) -> GroundednessReport:
        data = read_json(folder / REPORT)
        if not isinstance(data, dict) or not isinstance(data.get("videos"), dict):
            raise InputError(f"{folder / REPORT}: no 'videos' object; delete it to recompute")
        return cls(data.get("scene", ""), data["videos"])

    @staticmethod
    def is_done(folder: Path) -> bool:
        return (folder / REPORT).is_file()

    def scores(self) -> dict[str, list[float]]:
        """Per-line groundedness per video."""
        return {v: [ln["groundedness"] for ln in r["lines"]] for v, r in self.videos.items()}

    def covers(self, lines: Mapping[str, Sequence[Line]]) -> bool:
        """Whether the report scores exactly these lines (every video with lines, same text and times)."""
        return all(
            v in self.videos
            and [(ln["text"], ln["start"], ln["end"]) for ln in self.videos[v]["lines"]] == [tuple(x) for x in ls]
            for v, ls in lines.items()
            if ls
        )
