"""Weakly supervised step classifiers with shared components (CrossTask, [001] §3.4 and App. A).

A linear layer scores ``M`` components per clip; a task's step scores are the column-normalised
step-to-component matrix applied to them (Eq. 3.1), so tasks that share words share classifiers and
unseen tasks can be scored by recombining components. Training alternates DP-projected assignments
(one clip per step, in order, inside narration constraints) with gradient steps (App. A.1.3).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from recon.io import ProgressFn

from .dp import MASK_PENALTY, align_one, steps_to_labels
from .io import load_model, save_model
from .step_windows import tokens

SHARE_MODES = ("none", "task_words", "steps", "words")
"""Reference ``share``: task-specific steps, components shared within a task, shared step strings,
shared words (the component model)."""


def step_components(task: str, step: str, share: str) -> list[str]:
    """The component names of one step under a sharing mode (stemmed, stop words removed)."""
    words = tokens(step) or [step.strip().lower()]
    if share == "words":
        return sorted(set(words))
    if share == "task_words":
        return sorted({f"{task}/{w}" for w in words})
    if share == "steps":
        return [" ".join(words)]
    if share == "none":
        return [f"{task}/{step}"]
    raise ValueError(f"unknown share mode {share!r}; use one of {', '.join(SHARE_MODES)}")


def component_matrices(
    task_steps: dict[str, list[str]], share: str = "words", components: list[str] | None = None
) -> tuple[list[str], dict[str, np.ndarray]]:
    """Component list and binary step-to-component matrices ``A[task]`` of shape ``[M, K]``.

    With ``components`` given (a trained model's), components outside it are dropped: this is how an
    unseen task is expressed in the components a model already knows.
    """
    comps = {t: [step_components(t, s, share) for s in steps] for t, steps in task_steps.items()}
    if components is None:
        components = sorted({c for steps in comps.values() for cs in steps for c in cs})
    index = {c: i for i, c in enumerate(components)}
    A = {}
    for t, steps in comps.items():
        A[t] = np.zeros((len(components), len(steps)), dtype=np.float32)
        for k, cs in enumerate(steps):
            A[t][[index[c] for c in cs if c in index], k] = 1.0
    return components, A


class StepModel(torch.nn.Module):
    """Linear component classifiers ``g(x)`` + per-task step-to-component matrices."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(
        self,
        dim: int,
        components: list[str],
        task_steps: dict[str, list[str]],
        share: str = "words",
        dropout: float = 0.7,
    ) -> None:
        super().__init__()
        self.share, self.components = share, list(components)
        self.task_steps: dict[str, list[str]] = {}
        self.dropout = torch.nn.Dropout(dropout)
        self.linear = torch.nn.Linear(dim, len(components))
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.A: dict[str, torch.Tensor] = {}
        self.add_tasks(task_steps)

    def add_tasks(self, task_steps: dict[str, list[str]]) -> None:
        """Register (possibly unseen) tasks by expressing their steps in the known components."""
        _, A = component_matrices(task_steps, self.share, self.components)
        for t, a in A.items():
            self.A[t] = torch.from_numpy(a / np.maximum(a.sum(0, keepdims=True), 1.0))
            self.task_steps[t] = list(task_steps[t])

    def forward(self, X: torch.Tensor, task: str) -> torch.Tensor:
        """Step scores ``O[T, K]`` (logits over the task's steps)."""
        return self.linear(self.dropout((X - self.mean) / self.std)) @ self.A[task]

    @torch.no_grad()
    def log_probs(self, X: np.ndarray, task: str) -> np.ndarray:
        """``log_softmax_k f(x_t)`` in eval mode, ``[T, K]``."""
        was = self.training
        self.eval()
        out = torch.log_softmax(self(torch.as_tensor(X, dtype=torch.float32), task), 1).numpy()
        self.train(was)
        return out

    def localize(self, X: np.ndarray, task: str, mask: np.ndarray | None = None) -> np.ndarray:
        """A1 on ``-log_softmax``: one clip per step, ``[K]``."""
        return align_one(-self.log_probs(X, task), maximize=False, mask=mask)

    def save(self, path: Path) -> None:
        """``model.safetensors`` (weights, normalisation, A) + ``config.json`` (components, tasks)."""
        save_model(
            path,
            "step_model",
            {"weight": self.linear.weight, "bias": self.linear.bias, "mean": self.mean, "std": self.std},
            {
                "dim": self.linear.in_features,
                "share": self.share,
                "dropout": self.dropout.p,
                "components": self.components,
                "task_steps": self.task_steps,
            },
        )

    @classmethod
    def load(cls, path: Path) -> StepModel:
        w, cfg = load_model(path, "step_model", "train one with `howto3d crosstask train`")
        model = cls(cfg["dim"], cfg["components"], cfg["task_steps"], cfg["share"], cfg["dropout"])
        with torch.no_grad():
            model.linear.weight.copy_(w["weight"])
            model.linear.bias.copy_(w["bias"])
            model.mean.copy_(w["mean"])
            model.std.copy_(w["std"])
        return model


@dataclass
class StepVideo:
    """One training video: task, features, optional constraint mask and (for ``supervised``) labels."""

    task: str
    X: np.ndarray
    mask: np.ndarray | None = None
    Y: np.ndarray | None = None


@dataclass
class TrainConfig:
    """Weakly supervised training (reference defaults unless noted)."""

    share: str = "words"
    """Component sharing: ``none`` (task-specific), ``task_words``, ``steps`` (shared step), ``words``."""
    use_constraints: bool = True
    """Restrict each step's clip to its narration constraint interval."""
    pretrain_epochs: int = 30
    """Epochs on random feasible assignments ``dp(rand + C)``."""
    epochs: int = 30
    """Epochs of alternating DP projection / gradient step."""
    lr: float = 1e-3
    """Adam learning rate (reference 1e-5 on raw 3200-d CrossTask features; inputs are standardised here)."""
    dropout: float = 0.7
    """Input dropout of the component classifiers."""
    lam: float = MASK_PENALTY
    """Cost outside a constraint interval."""
    delta: float = 0.0
    """Weight of the ``-(delta/2) ||grad F||^2`` term of the projected step (0 = reference code)."""
    supervised: bool = False
    """Train on ground-truth labels instead (upper reference)."""
    seed: int = 0


def _grad_norm2(P: torch.Tensor, A: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """``||grad_theta F_tk||^2 = ||A (p_t - e_k)||^2 (||x_t||^2 + 1)`` for the linear model."""
    AP = P @ A.T
    c2 = (AP * AP).sum(1, keepdim=True) - 2 * AP @ A + (A * A).sum(0, keepdim=True)
    return c2 * ((X * X).sum(1, keepdim=True) + 1)


def train_step_model(
    videos: list[StepVideo],
    task_steps: dict[str, list[str]],
    conf: TrainConfig | None = None,
    progress: ProgressFn | None = None,
) -> StepModel:
    """Train component classifiers on ordered step lists only (plus constraints / labels per ``conf``)."""
    conf = conf or TrainConfig()
    if not videos:
        raise ValueError("no training videos")
    torch.manual_seed(conf.seed)
    rng = np.random.default_rng(conf.seed)
    used = {v.task for v in videos}
    comps, _ = component_matrices({t: task_steps[t] for t in used}, conf.share)
    model = StepModel(videos[0].X.shape[1], comps, task_steps, conf.share, conf.dropout)
    allX = np.concatenate([v.X for v in videos])
    model.mean.copy_(torch.from_numpy(allX.mean(0)))
    model.std.copy_(torch.from_numpy(allX.std(0) + 1e-6))
    opt = torch.optim.Adam(model.linear.parameters(), lr=conf.lr)
    data = [
        (v.task, torch.as_tensor(v.X, dtype=torch.float32), v.mask if conf.use_constraints else None, v.Y)
        for v in videos
    ]
    n_pre = 0 if conf.supervised else conf.pretrain_epochs
    total = n_pre + conf.epochs
    model.train()
    for epoch in range(total):
        for i in rng.permutation(len(data)):
            task, X, mask, Ylab = data[i]
            logp = torch.log_softmax(model(X, task), 1)
            T, K = logp.shape
            if conf.supervised:
                if Ylab is None:
                    raise ValueError("supervised training needs labels Y for every video")
                Y = Ylab
            elif epoch < n_pre:
                Y = steps_to_labels(align_one(rng.random((T, K)), maximize=False, mask=mask, lam=conf.lam), T)
            else:
                cost = -logp.detach()
                if conf.delta:
                    Xn = (X - model.mean) / model.std
                    cost = cost - conf.delta / 2 * _grad_norm2(logp.detach().exp(), model.A[task], Xn)
                Y = steps_to_labels(align_one(cost.numpy(), maximize=False, mask=mask, lam=conf.lam), T)
            loss = -(torch.as_tensor(Y, dtype=torch.float32) * logp).sum() / T
            opt.zero_grad()
            loss.backward()
            opt.step()
        if progress:
            progress("training step model", epoch + 1, total)
    model.eval()
    return model
