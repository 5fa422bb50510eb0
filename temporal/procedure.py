"""Procedure learning without step lists: key-step discovery by subset selection ([004]).

Per-clip features ``X[T, D]`` and one task label per video are all it sees. ``M`` latent states come from
(mini-batch) k-means over the attention features; per task, greedy subset selection picks the ``k`` states
that best cover the task's videos (``J(S)``); the nearest selected state of every clip is its pseudo-label;
a 1D fully convolutional key-step network (KLN) learns to reproduce them with a ranking loss, and in the
multi-task setting a task-classification network (TCN) over key-step pooled features adds ``λ`` · cross
entropy. Subset selection and the network alternate once per epoch; k-means restarts from the previous
centres so state ``m`` stays state ``m``.

Regions: the paper attends over 7×7 conv regions of a frame. Our clips have no regions, so the substitute
is attention over the clip's *feature groups* (e.g. visual words, colour, motion, gaze): one tanh-MLP score
per group, softmax over groups, each group scaled by ``G·α_g``. Without groups (a plain ``[T, D]`` array)
there is nothing to attend over and the features pass unchanged (the paper's "no attention" variant).

Background: the paper gives every clip a key step. Ours are mostly background, so ``background="states"``
reads the ``M`` states as the paper describes them (key steps *and* background sub-actions): a clip whose
nearest state overall is not among the task's ``k`` selected ones is background (label 0).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, TypedDict

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import MiniBatchKMeans
from sklearn.feature_extraction.text import TfidfVectorizer
from torch import nn

from recon.config import choices
from recon.io import ProgressFn
from temporal.config import ProcedureConfig

from .data import CrossTask, DataError, intervals_to_labels, labels_to_dense
from .features import CLIP_SECONDS
from .io import save_model
from .video_steps import StepSegment, Timeline

BACKGROUND_MODES = choices(ProcedureConfig, "background")
SPLITS = ("train", "test", "all")


class TaskPRF(TypedDict):
    """One task's frame precision / recall / F1 after the Hungarian mapping ``[key step, true step]``."""

    precision: float
    recall: float
    f1: float
    mapping: list[list[int]]


class DiscoveryEval(TypedDict):
    """Per-task :class:`TaskPRF` and their unweighted means (:func:`evaluate`)."""

    tasks: dict[str, TaskPRF]
    precision: float
    recall: float
    f1: float


class DiscoveryReport(TypedDict, total=False):
    """Key-step discovery on a CrossTask folder's annotated split (:func:`discover_crosstask`; empty when none is
    annotated)."""

    k: int
    multi_task: bool
    background: str
    videos: int
    ours: DiscoveryEval
    random: DiscoveryEval
    """The paper's Random baseline."""
    task_accuracy: float
    """Multi-task: how often the task head names the video's task."""


# ----------------------------------------------------------------------------- subset selection


def subset_cost(features: Sequence[np.ndarray], centres: np.ndarray, selected: Sequence[int]) -> float:
    """``J(S) = Σ_videos (1/T) Σ_t min_{i∈S} ||f_t − x_i||`` (eq. 2)."""
    sel = centres[list(selected)]
    return float(sum(np.linalg.norm(F[:, None] - sel[None], axis=2).min(1).mean() for F in features))


def greedy_selection(features: Sequence[np.ndarray], centres: np.ndarray, k: int) -> list[int]:
    """Greedy minimisation of ``J(S)`` with ``|S| ≤ k``: each round adds the state with the largest decrease.

    Returns state indices in the order they were chosen (the first covers the task best), so the selection
    for ``k`` is a prefix of the one for ``k + 1`` and ``J`` never increases with ``k``.
    """
    F = np.concatenate(features)
    w = np.concatenate([np.full(len(f), 1.0 / max(len(f), 1)) for f in features])
    D = np.sqrt(np.maximum((F * F).sum(1)[:, None] - 2 * F @ centres.T + (centres * centres).sum(1)[None], 0))
    cur = np.full(len(F), np.inf)
    chosen: list[int] = []
    for _ in range(min(k, len(centres))):
        cost = (w[:, None] * np.minimum(cur[:, None], D)).sum(0)
        cost[chosen] = np.inf
        j = int(np.argmin(cost))
        chosen.append(j)
        cur = np.minimum(cur, D[:, j])
    return chosen


def pseudo_labels(F: np.ndarray, centres: np.ndarray, selected: Sequence[int], background: str) -> np.ndarray:
    """State index ``r_t`` per clip (into the M states): the nearest selected state, or with
    ``background="states"`` the nearest state overall (an unselected one marks a background clip)."""
    D = np.linalg.norm(F[:, None] - centres[None], axis=2)
    if background == "states":
        return D.argmin(1)
    sel = np.asarray(selected)
    return sel[D[:, sel].argmin(1)]


# ----------------------------------------------------------------------------- networks


class GroupAttention(nn.Module):
    """Attention over a clip's feature groups (our stand-in for the paper's spatial attention)."""

    def __init__(self, groups: Sequence[tuple[int, int]]):
        super().__init__()
        self.groups = [tuple(g) for g in groups]
        self.score = nn.ModuleList(
            nn.Sequential(nn.Linear(b - a, b - a), nn.Tanh(), nn.Linear(b - a, 1)) for a, b in self.groups
        )

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        if len(self.groups) < 2:
            return X
        parts = [X[:, a:b] for a, b in self.groups]
        alpha = torch.softmax(torch.cat([s(p) for s, p in zip(self.score, parts, strict=True)], 1), 1)
        return torch.cat([len(parts) * alpha[:, g : g + 1] * p for g, p in enumerate(parts)], 1)


class KeyStepNet(nn.Module):
    """1D FCN (conv / pool / deconv, FCN-style skip) ``[T, D] → [T, M]`` scores, and the key-step pooled
    task classifier."""

    def __init__(self, dim: int, states: int, tasks: int, hidden: int, groups: Sequence[tuple[int, int]]):
        super().__init__()
        self.attention = GroupAttention(groups)
        self.enc1 = nn.Sequential(nn.Conv1d(dim, hidden, 3, padding=1), nn.ReLU())
        self.enc2 = nn.Sequential(nn.MaxPool1d(2), nn.Conv1d(hidden, hidden, 3, padding=1), nn.ReLU())
        self.enc3 = nn.Sequential(nn.MaxPool1d(2), nn.Conv1d(hidden, hidden, 3, padding=1), nn.ReLU())
        self.up3 = nn.ConvTranspose1d(hidden, hidden, 2, stride=2)
        self.up2 = nn.ConvTranspose1d(hidden, hidden, 2, stride=2)
        self.head = nn.Conv1d(hidden, states, 1)
        self.pool_score = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 1))
        self.classify = nn.Linear(dim, max(tasks, 1))

    def features(self, X: torch.Tensor) -> torch.Tensor:
        return self.attention(X)

    def forward(self, F: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attention features ``F[T, D]`` → state scores ``s[T, M]`` and task logits."""
        T = F.shape[0]
        pad = (-T) % 4
        x = nn.functional.pad(F.T[None], (0, pad), mode="replicate" if T > 1 else "constant")
        e1 = self.enc1(x)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        d2 = torch.relu(self.up3(e3) + e2)
        d1 = torch.relu(self.up2(d2) + e1)
        s = self.head(d1)[0, :, :T].T
        p = torch.softmax(s, 1)
        # h_m (eq. 4) normalised by the state's mass: the mean feature of its clips, whatever T and state size
        h = p.T @ F / (p.sum(0)[:, None] + 1e-3)
        beta = torch.softmax(self.pool_score(h)[:, 0], 0)
        return s, self.classify(beta @ h)


def ranking_loss(s: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    """``(1/T) Σ_t Σ_{m≠r_t} max(0, 1 − s_{r_t,t} + s_{m,t})`` (eq. 7)."""
    pos = s.gather(1, r[:, None])
    hinge = torch.clamp(1 - pos + s, min=0)
    hinge = hinge.scatter(1, r[:, None], 0.0)
    return hinge.sum(1).mean()


# ----------------------------------------------------------------------------- model


@dataclass
class Discovered:
    """A trained discovery model: per-task selected states, k-means centres and the network."""

    conf: ProcedureConfig
    tasks: list[str]
    selected: dict[str, list[int]]
    centres: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    net: KeyStepNet
    groups: list[tuple[int, int]]

    def _attended(self, X: np.ndarray) -> torch.Tensor:
        Z = torch.from_numpy(((X - self.mean) / self.std).astype(np.float32))
        return self.net.features(Z)

    @torch.no_grad()
    def scores(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-clip state probabilities ``p[T, M]`` and task probabilities."""
        self.net.eval()
        s, logits = self.net(self._attended(X))
        return torch.softmax(s, 1).numpy(), torch.softmax(logits, 0).numpy()

    def classify(self, X: np.ndarray) -> str:
        return self.tasks[int(np.argmax(self.scores(X)[1]))]

    def labels(self, X: np.ndarray, task: str) -> np.ndarray:
        """Key step per clip: 0 = background, 1..k in the order subset selection chose the states."""
        p, _ = self.scores(X)
        sel = np.asarray(self.selected[task])
        y = sel[p[:, sel].argmax(1)]
        lookup = np.zeros(p.shape[1], dtype=np.int64)
        lookup[sel] = np.arange(1, len(sel) + 1)
        out = lookup[y]
        if self.conf.background == "states":
            out[~np.isin(p.argmax(1), sel)] = 0
        return out

    def save(self, folder: Path) -> None:
        """safetensors weights + JSON (no pickle)."""
        tensors = {f"net.{k}": v for k, v in self.net.state_dict().items()}
        tensors |= {
            "centres": torch.from_numpy(self.centres.astype(np.float32)),
            "mean": torch.from_numpy(self.mean.astype(np.float32)),
            "std": torch.from_numpy(self.std.astype(np.float32)),
        }
        save_model(
            folder,
            "key_step_discovery",
            tensors,
            {"config": asdict(self.conf), "tasks": self.tasks, "selected": self.selected, "groups": self.groups},
            weights="procedure.safetensors",
            meta_name="procedure.json",
        )


def discover(
    videos: Sequence[tuple[str, np.ndarray]],
    conf: ProcedureConfig | None = None,
    groups: Sequence[tuple[int, int]] | None = None,
    progress: ProgressFn | None = None,
) -> Discovered:
    """Train on ``(task, X[T, D])`` pairs (task labels only, no step lists).

    ``groups`` are column ranges of feature groups to attend over (None: no attention).
    """
    conf = (conf or ProcedureConfig()).resolved()
    if conf.background not in BACKGROUND_MODES:
        raise ValueError(f"background = {conf.background!r}; choose from {', '.join(BACKGROUND_MODES)}")
    if not videos:
        raise ValueError("procedure discovery needs at least one video")
    torch.manual_seed(conf.seed)
    rng = np.random.default_rng(conf.seed)
    tasks = sorted({t for t, _ in videos})
    task_idx = {t: i for i, t in enumerate(tasks)}
    allX = np.concatenate([X for _, X in videos])
    mean, std = allX.mean(0), allX.std(0) + 1e-6
    assert conf.states is not None and conf.lam is not None and conf.epochs is not None  # resolved() sets them
    groups = [(int(a), int(b)) for a, b in (groups or [])]
    net = KeyStepNet(allX.shape[1], conf.states, len(tasks), conf.hidden, groups)
    opt = torch.optim.RMSprop(net.parameters(), lr=conf.lr, weight_decay=conf.weight_decay)
    model = Discovered(conf, tasks, {}, np.zeros((0, allX.shape[1])), mean, std, net, groups)
    Z = [torch.from_numpy(((X - mean) / std).astype(np.float32)) for _, X in videos]
    y_task = [task_idx[t] for t, _ in videos]
    centres = None
    for epoch in range(conf.epochs):
        with torch.no_grad():
            net.eval()
            F = [net.features(z).numpy() for z in Z]
        centres = _states(np.concatenate(F), conf, centres)
        selected = {
            t: greedy_selection([f for f, (tt, _) in zip(F, videos, strict=True) if tt == t], centres, conf.k)
            for t in tasks
        }
        r = [
            torch.from_numpy(pseudo_labels(f, centres, selected[t], conf.background))
            for f, (t, _) in zip(F, videos, strict=True)
        ]
        net.train()
        for n, i in enumerate(rng.permutation(len(Z))):
            s, logits = net(net.features(Z[i]))
            loss = ranking_loss(s, r[i])
            if conf.lam > 0 and len(tasks) > 1:
                loss = loss + conf.lam * nn.functional.cross_entropy(logits[None], torch.tensor([y_task[i]]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            if progress and (n % 20 == 0 or n == len(Z) - 1):
                progress(f"key-step discovery: epoch {epoch + 1}/{conf.epochs}", n + 1, len(Z))
        model.selected, model.centres = selected, centres
    return model


def _states(F: np.ndarray, conf: ProcedureConfig, previous: np.ndarray | None) -> np.ndarray:
    """M latent states by mini-batch k-means; later rounds start from the previous centres (stable indices)."""
    assert conf.states is not None  # discover() resolved the config
    M = min(conf.states, len(F))
    init = previous if previous is not None and len(previous) == M else "k-means++"
    km = MiniBatchKMeans(M, init=init, n_init=1, random_state=conf.seed, batch_size=1024, max_iter=50)
    return km.fit(F).cluster_centers_


# ----------------------------------------------------------------------------- evaluation


def hungarian_prf(y_true: Sequence[np.ndarray], y_pred: Sequence[np.ndarray]) -> TaskPRF:
    """Frame precision / recall / F1 of one task's videos after a one-to-one (Hungarian) mapping of discovered
    key steps to ground-truth steps that maximises the intersecting frames (label 0 = background on both sides).
    """
    yt, yp = np.concatenate(y_true).astype(int), np.concatenate(y_pred).astype(int)
    K, k = int(yt.max(initial=0)), int(yp.max(initial=0))
    overlap = np.zeros((k + 1, K + 1))
    np.add.at(overlap, (yp, yt), 1)
    rows, cols = linear_sum_assignment(overlap[1:, 1:], maximize=True) if k and K else ([], [])
    inter = float(sum(overlap[1 + i, 1 + j] for i, j in zip(rows, cols, strict=True)))
    p = inter / max(int((yp > 0).sum()), 1)
    r = inter / max(int((yt > 0).sum()), 1)
    return {
        "precision": p,
        "recall": r,
        "f1": 2 * p * r / (p + r) if p + r > 0 else 0.0,
        "mapping": [[int(i) + 1, int(j) + 1] for i, j in zip(rows, cols, strict=True)],
    }


def evaluate(truth: Mapping[str, tuple[str, np.ndarray]], pred: Mapping[str, np.ndarray]) -> DiscoveryEval:
    """Per-task Hungarian P/R/F1 (``truth``: video → (task, labels)) and their unweighted means over tasks."""
    by_task: dict[str, tuple[list, list]] = {}
    for vid, (task, y) in truth.items():
        if vid in pred:
            a, b = by_task.setdefault(task, ([], []))
            a.append(np.asarray(y))
            b.append(np.asarray(pred[vid])[: len(y)])
    per = {t: hungarian_prf(a, b) for t, (a, b) in sorted(by_task.items())}

    def mean(m: Literal["precision", "recall", "f1"]) -> float:
        return float(np.mean([r[m] for r in per.values()])) if per else float("nan")

    return {"tasks": per, "precision": mean("precision"), "recall": mean("recall"), "f1": mean("f1")}


def random_labels(T: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """The paper's Random baseline: a key step drawn uniformly from 1..k for every clip."""
    return rng.integers(1, k + 1, T)


# ----------------------------------------------------------------------------- CrossTask-format folders


def discover_crosstask(
    data: CrossTask, conf: ProcedureConfig, split: str = "test", progress: ProgressFn | None = None
) -> tuple[dict[str, np.ndarray], DiscoveryReport]:
    """Train on the folder's videos with their task labels only and label the videos of ``split``.

    Training uses ``videos.csv`` (single-task: one model per task of the split); a task with no training
    video is learnt from its own split videos (nothing is annotated at training time either way).
    Annotations are read afterwards, for the evaluation only. Returns predictions and the evaluation
    (empty when no video of the split is annotated).
    """
    if split not in SPLITS:
        raise DataError(f"--split {split!r}: choose from {', '.join(SPLITS)}")
    out_videos = {"train": data.train, "test": data.test, "all": data.train + data.test}[split]
    if not out_videos:
        raise DataError(f"{data.root}: no videos in split {split!r} (videos.csv / videos_val.csv)")
    pool = list(data.train)
    trained_tasks = {v.task_id for v in pool}
    pool += [v for v in out_videos if v.task_id not in trained_tasks and v not in pool]
    feats = {v.video_id: data.features(v.video_id) for v in {v.video_id: v for v in pool + out_videos}.values()}
    pred: dict[str, np.ndarray] = {}
    task_pred: dict[str, str] = {}
    if conf.multi_task:
        model = discover([(v.task_id, feats[v.video_id]) for v in pool], conf, progress=progress)
        for v in out_videos:
            pred[v.video_id] = model.labels(feats[v.video_id], v.task_id)
            task_pred[v.video_id] = model.classify(feats[v.video_id])
    else:
        for task in sorted({v.task_id for v in out_videos}):
            model = discover([(task, feats[v.video_id]) for v in pool if v.task_id == task], conf, progress=progress)
            pred.update({v.video_id: model.labels(feats[v.video_id], task) for v in out_videos if v.task_id == task})
    truth = {}
    for v in out_videos:
        ann = data.annotation(v.task_id, v.video_id)
        if ann is not None:
            Y = intervals_to_labels(ann, len(feats[v.video_id]), len(data.tasks[v.task_id].steps))
            truth[v.video_id] = (v.task_id, labels_to_dense(Y))
    report: DiscoveryReport = {}
    if truth:
        rng = np.random.default_rng(conf.seed)
        report = {
            "k": conf.k,
            "multi_task": conf.multi_task,
            "background": conf.background,
            "videos": len(truth),
            "ours": evaluate(truth, pred),
            "random": evaluate(truth, {v: random_labels(len(y), conf.k, rng) for v, (_, y) in truth.items()}),
        }
        if task_pred:
            report["task_accuracy"] = float(np.mean([task_pred[v] == t for v, (t, _) in truth.items()]))
    return pred, report


# ----------------------------------------------------------------------------- a scene's own videos

Line = tuple[str, float, float]


def step_names(
    lines: Sequence[Line], segments: Mapping[int, Sequence[tuple[float, float]]], words: int = 3
) -> dict[int, str]:
    """A readable name per key step: its most distinctive narration words.

    The lines overlapping a key step's segments form one document per key step; words are ranked by TF-IDF
    across the task's key steps (English stop words dropped), so words every step shares ("now", "oil") lose
    to the ones that single this step out. A key step with no narration is "key step N".
    """
    docs = {
        j: " ".join(t for t, s, e in lines if any(s < b and e > a for a, b in segs)) for j, segs in segments.items()
    }
    names = {j: f"key step {j}" for j in segments}
    spoken = [j for j, d in docs.items() if d.strip()]
    if not spoken:
        return names
    try:
        tfidf = TfidfVectorizer(stop_words="english", token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b")
        M = tfidf.fit_transform([docs[j] for j in spoken]).toarray()
    except ValueError:  # only stop words
        return names
    vocab = tfidf.get_feature_names_out()
    for row, j in zip(M, spoken, strict=True):
        top = [vocab[i] for i in np.argsort(-row, kind="stable")[:words] if row[i] > 0]
        if top:
            names[j] = " ".join(top)
    return names


def label_runs(y: np.ndarray) -> list[tuple[int, int, int]]:
    """``(label, start, end)`` runs of non-zero labels."""
    change = np.flatnonzero(np.diff(y)) + 1
    starts, ends = np.r_[0, change], np.r_[change, len(y)]
    return [(int(y[s]), int(s), int(e)) for s, e in zip(starts, ends, strict=True) if y[s] != 0]


def named_timelines(
    conf: ProcedureConfig,
    features: Mapping[str, np.ndarray],
    tasks: Mapping[str, str],
    lines: Mapping[str, Sequence[Line]],
    scene: str = "",
    progress: ProgressFn | None = None,
) -> dict[str, Timeline]:
    """Key-step timelines of a scene's videos without a step list, in the shape of ``video_steps.Timelines``.

    ``tasks`` is each video's task (one model over several tasks gets the task head). Key steps are named from
    the narration over all of a task's videos at once, so one key step has one name in every video.
    """
    names = sorted(features)
    conf = ProcedureConfig(**{**asdict(conf), "multi_task": len(set(tasks.values())) > 1})
    model = discover([(tasks[v], features[v]) for v in names], conf, progress=progress)
    labels = {v: model.labels(features[v], tasks[v]) for v in names}
    out: dict[str, Timeline] = {}
    for task in sorted(set(tasks.values())):
        vids = [v for v in names if tasks[v] == task]
        runs = {v: label_runs(labels[v]) for v in vids}
        # one document per key step over all of the task's videos (offset apart in time), so names agree
        task_lines = [(t, s + 1e6 * n, e + 1e6 * n) for n, v in enumerate(vids) for t, s, e in lines.get(v, [])]
        segs = {
            j: [(a + 1e6 * n, b + 1e6 * n) for n, v in enumerate(vids) for lab, a, b in runs[v] if lab == j]
            for j in range(1, conf.k + 1)
        }
        named = step_names(task_lines, segs)
        for v in vids:
            found: list[tuple[float, StepSegment]] = []
            for j in range(1, conf.k + 1):
                mine = [(a, b) for lab, a, b in runs[v] if lab == j]
                if not mine:
                    continue
                a, b = max(mine, key=lambda r: r[1] - r[0])
                found.append(
                    (
                        float(a),
                        {
                            "task": task,
                            "step": named[j],
                            "label": named[j],
                            "key_step": j,
                            "clip": int((a + b - 1) // 2),
                            "start": float(a),
                            "end": float(b),
                            "segments": [[float(s), float(e)] for s, e in mine],
                        },
                    )
                )
            steps = [st for _, st in sorted(found, key=lambda f: f[0])]
            out[v] = {
                "video": v,
                "scene": scene,
                "tasks": [task],
                "task_source": "discovered",
                "clip_seconds": CLIP_SECONDS,
                "clips": len(labels[v]),
                "k": conf.k,
                "steps": steps,
                "methods": {"discovered": {"labels": labels[v].tolist()}},
            }
    return out
