"""Actionness learned by long-range temporal order verification ([002]).

A linear actionness ``S(x) = w.h + b`` decides which pairs of M sampled clips an antisymmetric order
score ``F(x, x') = a.(h - h')`` should look at: ``G(X) = sum_{i<j} W_ij F(x_i, x_j)`` with
``W = softmax over pairs of S(x_i) + S(x_j)``. Telling time-sorted from reversed sequences needs the
clips that carry order, i.e. actions, so ``S`` becomes an actionness score without any label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from recon.io import ProgressFn

from .io import load_model, save_model


@dataclass
class OrderConfig:
    """Proxy-task sampling and optimisation ([002] defaults unless noted)."""

    M: int = 5
    """Clips per sequence (M=3 often draws only background, M>5 hurts)."""
    trim: float = 0.3
    """Fraction cut from the start and the end of each training video (else intros/outros win)."""
    window: float | None = None
    """Range: sample each sequence inside a random window of this many clips (None = whole trimmed video)."""
    clip_len: int = 1
    """Clips of the sequence are means of this many consecutive per-second features."""
    sequences_per_video: int = 256
    """Sequences drawn per video and epoch (each used sorted and reversed)."""
    epochs: int = 15
    batch: int = 1024
    lr: float = 1e-2
    """Adam learning rate ([002]: 1e-4 on 1024-d I3D with large data; features are standardised here)."""
    lr_decay: float = 0.9
    """Learning rate multiplier per epoch."""
    seed: int = 0


class OrderVerifier(torch.nn.Module):
    """``S(x) = w.h + b`` and ``F(x, x') = a.(h - h')`` on standardised features."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.S = torch.nn.Linear(dim, 1)
        self.a = torch.nn.Linear(dim, 1, bias=False)
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def _norm(self, X: torch.Tensor) -> torch.Tensor:
        return (X - self.mean) / self.std

    def pair_weights(self, X: torch.Tensor) -> torch.Tensor:
        """``W[B, P]`` over the pairs ``i < j`` of ``X[B, M, D]``; each row sums to 1."""
        s = self.S(self._norm(X))[..., 0]
        i, j = torch.triu_indices(X.shape[1], X.shape[1], 1)
        return torch.softmax(s[:, i] + s[:, j], dim=1)

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        """``G(X)`` per sequence ``[B]``: positive means 'in temporal order'."""
        f = self.a(self._norm(X))[..., 0]
        i, j = torch.triu_indices(X.shape[1], X.shape[1], 1)
        return (self.pair_weights(X) * (f[:, i] - f[:, j])).sum(1)

    @torch.no_grad()
    def actionness(self, X: np.ndarray) -> np.ndarray:
        """``S(x_t)`` for every clip of an (untrimmed) video, ``[T]``."""
        return self.S(self._norm(torch.as_tensor(X, dtype=torch.float32)))[:, 0].numpy()

    @torch.no_grad()
    def flip_actionness(self) -> None:
        """Negate ``S``: order verification fixes which clips matter, not which sign means action."""
        self.S.weight.neg_()
        self.S.bias.neg_()

    @classmethod
    @torch.no_grad()
    def averaged(cls, models: Sequence[OrderVerifier], weights: Sequence[float]) -> OrderVerifier:
        """One verifier whose ``S`` is the weighted mean of the members' (``F``: their plain mean). Members trained
        on the same videos share the standardisation, so the mean of their scores is again linear."""
        out = cls(models[0].mean.shape[0])
        out.mean.copy_(models[0].mean)
        out.std.copy_(models[0].std)
        pairs = list(zip(models, weights, strict=True))
        out.S.weight.copy_(torch.stack([w * m.S.weight for m, w in pairs]).mean(0))
        out.S.bias.copy_(torch.stack([w * m.S.bias for m, w in pairs]).mean(0))
        out.a.weight.copy_(torch.stack([m.a.weight for m in models]).mean(0))
        return out

    def save(self, path: Path, conf: OrderConfig) -> None:
        save_model(path, "order_verifier", self.state_dict(), {"dim": self.mean.shape[0], "conf": asdict(conf)})

    @classmethod
    def load(cls, path: Path) -> OrderVerifier:
        w, cfg = load_model(path, "order_verifier", "train one with `howto3d crosstask actionness`")
        model = cls(cfg["dim"])
        model.load_state_dict(w)
        return model


def min_clips(conf: OrderConfig) -> int:
    """Shortest video (in clips) that yields ordered sequences of ``M`` clips once its ends are trimmed."""
    T = conf.M + conf.clip_len - 1
    while T - 2 * int(conf.trim * T) - conf.clip_len + 1 < conf.M:
        T += 1
    return T


def sample_sequences(videos: list[np.ndarray], conf: OrderConfig, rng: np.random.Generator) -> np.ndarray:
    """``[N, M, D]`` time-sorted clip sequences from the trimmed videos (vectorised per video)."""
    out = []
    n = conf.sequences_per_video
    for X in videos:
        T = len(X)
        lo, hi = int(conf.trim * T), T - int(conf.trim * T) - conf.clip_len + 1
        if hi - lo < conf.M:
            continue
        span = hi - lo if conf.window is None else min(int(conf.window), hi - lo)
        start = lo + rng.integers(0, hi - lo - span + 1, size=n)
        idx = np.sort(np.argsort(rng.random((n, span)), axis=1)[:, : conf.M], axis=1) + start[:, None]
        if conf.clip_len > 1:
            csum = np.concatenate([np.zeros((1, X.shape[1]), X.dtype), np.cumsum(X, 0)])
            out.append((csum[idx + conf.clip_len] - csum[idx]) / conf.clip_len)
        else:
            out.append(X[idx])
    if not out:
        raise ValueError(f"every video is shorter than M={conf.M} clips after trimming {conf.trim:.0%}")
    return np.concatenate(out).astype(np.float32)


def train_order_verification(
    videos: list[np.ndarray], conf: OrderConfig | None = None, progress: ProgressFn | None = None
) -> OrderVerifier:
    """Train on unlabeled videos ``X[T, D]``: sorted sequences are positives, reversed ones negatives."""
    conf = conf or OrderConfig()
    torch.manual_seed(conf.seed)
    rng = np.random.default_rng(conf.seed)
    model = OrderVerifier(videos[0].shape[1])
    allX = np.concatenate(videos)
    model.mean.copy_(torch.from_numpy(allX.mean(0)))
    model.std.copy_(torch.from_numpy(allX.std(0) + 1e-6))
    opt = torch.optim.Adam(model.parameters(), lr=conf.lr)
    sched = torch.optim.lr_scheduler.ExponentialLR(opt, conf.lr_decay)
    bce = torch.nn.BCEWithLogitsLoss()
    for epoch in range(conf.epochs):
        seq = torch.from_numpy(sample_sequences(videos, conf, rng))
        X = torch.cat([seq, seq.flip(1)])
        y = torch.cat([torch.ones(len(seq)), torch.zeros(len(seq))])
        perm = torch.randperm(len(X))
        for b in range(0, len(X), conf.batch):
            idx = perm[b : b + conf.batch]
            loss = bce(model(X[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
        if progress:
            progress("training order verification", epoch + 1, conf.epochs)
    return model
