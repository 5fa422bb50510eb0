"""Actionness by action/background discrimination with video-text similarity cues ([000] ch. 3–4).

Two detectors of background clips that text-video step scores mistake for steps: a 4-d cue vector of
the step-probability distribution + linear SVM (E1), and a model ``d`` trained on visual features
with the step probabilities as an auxiliary input that is dropped at inference (E2). Their output
post-processes localization scores (alpha, E3).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from recon.io import ProgressFn

from .dp import align_one, fuse_actionness
from .io import load_model, save_model


def step_probabilities(S: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``a_x = softmax_k S(x, k) / temperature`` over all dataset step labels, ``[T, K_D]``."""
    z = np.asarray(S, dtype=np.float64) / temperature
    z = np.exp(z - z.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def _entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(np.clip(p, 1e-12, None))).sum(-1)


def cue_vector(a: np.ndarray) -> np.ndarray:
    """E1 cues ``r_x [T, 4]``: max prob, entropy, temporal entropy of the top class over x-1..x+1,
    and the entropy averaged over x-1..x+1 (edges replicate the border clip)."""
    a = np.asarray(a, dtype=np.float64)
    T = len(a)
    m = a.argmax(1)
    pad = np.r_[[0], np.arange(T), [T - 1]]
    nb = np.stack([pad[:-2], pad[1:-1], pad[2:]], 1)  # [T, 3] neighbour indices
    trip = a[nb, m[:, None]]
    trip = trip / np.maximum(trip.sum(1, keepdims=True), 1e-12)
    h = _entropy(a)
    return np.stack([a.max(1), h, _entropy(trip), h[nb].mean(1)], 1)


class CueSVM:
    """Standardised cue vector + LinearSVC (C=100, balanced); the decision value is the actionness."""

    def __init__(self, C: float = 100.0) -> None:
        self.clf = make_pipeline(StandardScaler(), LinearSVC(C=C, class_weight="balanced", max_iter=20000))

    def fit(self, probs: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> CueSVM:
        self.clf.fit(np.concatenate([cue_vector(a) for a in probs]), np.concatenate(labels))
        return self

    def actionness(self, a: np.ndarray) -> np.ndarray:
        return self.clf.decision_function(cue_vector(a))


def aux_window(a: np.ndarray, t: int) -> np.ndarray:
    """``a_x^(t)``: step probabilities of clips x-t..x+t concatenated (edges replicate), ``[T, (2t+1) K]``."""
    T = len(a)
    idx = np.clip(np.arange(T)[:, None] + np.arange(-t, t + 1)[None, :], 0, T - 1)
    return a[idx].reshape(T, -1)


@dataclass
class DiscrimConfig:
    """Discrimination model ``d`` ([000] §4.1.1)."""

    hidden: int = 512
    """Width of the projections ``W_v`` and ``W_a``."""
    aux_weight: float = 0.8
    """Weight of the auxiliary loss ``L_a`` (0 = visual only, ``d_v``)."""
    window: int = 3
    """``t``: auxiliary input covers clips x-t..x+t."""
    lr: float = 1e-3
    """Adam learning rate ([000]: 1e-5 on MIL-NCE features; inputs are standardised here)."""
    batch: int = 32
    max_epochs: int = 100
    patience: int = 10
    """Early stopping on the holdout loss of the visual path."""
    seed: int = 0


@dataclass
class DiscrimVideo:
    """Visual features ``V[T, Dv]``, step probabilities ``A[T, K_D]`` and action labels ``y[T]`` (0/1)."""

    V: np.ndarray
    A: np.ndarray
    y: np.ndarray


class Discriminator(torch.nn.Module):
    """``p = sigma(W_o . (W_v v) + b)`` and ``sigma(W_o . (W_a a) + b)`` with a shared output layer."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, dim_v: int, dim_a: int, hidden: int) -> None:
        super().__init__()
        self.Wv = torch.nn.Linear(dim_v, hidden, bias=False)
        self.Wa = torch.nn.Linear(dim_a, hidden, bias=False)
        self.out = torch.nn.Linear(hidden, 1)
        self.register_buffer("mean", torch.zeros(dim_v))
        self.register_buffer("std", torch.ones(dim_v))

    def visual_logit(self, V: torch.Tensor) -> torch.Tensor:
        return self.out(self.Wv((V - self.mean) / self.std))[:, 0]

    def aux_logit(self, A: torch.Tensor) -> torch.Tensor:
        return self.out(self.Wa(A))[:, 0]

    @torch.no_grad()
    def actionness(self, V: np.ndarray) -> np.ndarray:
        """``d(x)`` from visual features only, ``[T]`` in (0, 1)."""
        return torch.sigmoid(self.visual_logit(torch.as_tensor(V, dtype=torch.float32))).numpy()

    def save(self, path: Path, conf: DiscrimConfig) -> None:
        save_model(
            path,
            "discriminator",
            self.state_dict(),
            {"dim_v": self.Wv.in_features, "dim_a": self.Wa.in_features, "conf": asdict(conf)},
        )

    @classmethod
    def load(cls, path: Path) -> Discriminator:
        w, cfg = load_model(path, "discriminator", "train one with `temporal.discrim.train_discriminator`")
        model = cls(cfg["dim_v"], cfg["dim_a"], cfg["conf"]["hidden"])
        model.load_state_dict(w)
        return model


def train_discriminator(
    train: Sequence[DiscrimVideo],
    holdout: Sequence[DiscrimVideo],
    conf: DiscrimConfig | None = None,
    progress: ProgressFn | None = None,
) -> Discriminator:
    """Joint loss ``L_v + aux_weight * L_a``; keeps the epoch with the best holdout visual loss."""
    conf = conf or DiscrimConfig()
    torch.manual_seed(conf.seed)
    V = torch.as_tensor(np.concatenate([v.V for v in train]), dtype=torch.float32)
    A = torch.as_tensor(np.concatenate([aux_window(v.A, conf.window) for v in train]), dtype=torch.float32)
    y = torch.as_tensor(np.concatenate([v.y for v in train]), dtype=torch.float32)
    Vh = torch.as_tensor(np.concatenate([v.V for v in holdout]), dtype=torch.float32)
    yh = torch.as_tensor(np.concatenate([v.y for v in holdout]), dtype=torch.float32)
    model = Discriminator(V.shape[1], A.shape[1], conf.hidden)
    model.mean.copy_(V.mean(0))
    model.std.copy_(V.std(0) + 1e-6)
    opt = torch.optim.Adam(model.parameters(), lr=conf.lr)
    bce = torch.nn.BCEWithLogitsLoss()
    best, best_state, bad = np.inf, copy.deepcopy(model.state_dict()), 0
    for epoch in range(conf.max_epochs):
        model.train()
        for idx in torch.randperm(len(V)).split(conf.batch):
            loss = bce(model.visual_logit(V[idx]), y[idx])
            if conf.aux_weight:
                loss = loss + conf.aux_weight * bce(model.aux_logit(A[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            val = float(bce(model.visual_logit(Vh), yh))
        if progress:
            progress("training discrimination model", epoch + 1, conf.max_epochs)
        if val < best - 1e-5:
            best, best_state, bad = val, copy.deepcopy(model.state_dict()), 0
        else:
            bad += 1
            if bad >= conf.patience:
                break
    model.load_state_dict(best_state)
    model.eval()
    return model


# ----------------------------------------------------------------------------- post-processing (E3)


def tune_alpha(
    items: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]],
    alphas: Sequence[float] = tuple(np.round(np.linspace(0, 1, 21), 2)),
    normalize: bool = True,
) -> tuple[float, dict[float, float]]:
    """Pick the fusion weight maximising pooled step recall on holdout ``(S, d, Y_true)`` triples."""
    table = {}
    for alpha in alphas:
        hit = tot = 0
        for S, d, Y in items:
            steps = align_one(fuse_actionness(S, d, alpha, normalize))
            hit += int(Y[steps, np.arange(Y.shape[1])].sum())
            tot += int(Y.any(0).sum())
        table[float(alpha)] = hit / max(tot, 1)
    return max(table, key=lambda a: (table[a], -a)), table
