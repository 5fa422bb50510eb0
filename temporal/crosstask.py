"""Folder-level step localization, actionness and key-step discovery on CrossTask-format data (``howto3d
crosstask``): each function reads a dataset folder, trains or evaluates, writes its model or predictions and
returns a JSON-able summary. Bad files are :class:`temporal.data.DataError` (one line, exit 2 in the CLI)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypedDict

import numpy as np

from recon.io import ProgressFn, atomic_write_bytes

from .annotations import to_intervals
from .config import StepsConfig
from .data import (
    CrossTask,
    DataError,
    Interval,
    Task,
    VideoEntry,
    dense_to_intervals,
    intervals_to_labels,
    read_npy,
    write_intervals,
    write_narration,
    write_tasks,
    write_videos,
)
from .dp import align_contiguous, align_one, fuse_actionness, steps_to_labels, uniform_steps
from .metrics import action_ap, chance_actionness, mean_over_tasks, step_recall
from .models import StepModel, StepVideo, TrainConfig, train_step_model
from .order import OrderConfig, OrderVerifier, train_order_verification
from .procedure import BACKGROUND_MODES, DiscoveryReport, ProcedureConfig, discover_crosstask
from .step_windows import constraint_mask
from .synthetic_crosstask import SynthConfig, generate
from .tasks import TaskFile, step_list
from .video_steps import Line, step_constraints

SPLITS = ("train", "test")


class SynthSummary(TypedDict):
    """``crosstask synth --json``."""

    root: str
    tasks: int
    videos: int
    kinds: dict[str, int]
    """Tasks per kind: primary, related, unseen."""


class ExportSummary(TypedDict):
    """What :func:`export` wrote (``crosstask export --json`` adds the scene, the labels' source and notes)."""

    root: str
    tasks: int
    videos: int
    pairs: int
    annotated: int
    notes: list[str]


class StatsReport(TypedDict):
    """``crosstask stats --json``: a :class:`temporal.data.TaskStats` per task (as JSON)."""

    tasks: list[dict[str, Any]]


class TrainSummary(TypedDict):
    """``crosstask train --json``."""

    model: str
    videos: dict[str, int]
    titles: dict[str, str]
    config: dict[str, Any]
    """The :class:`temporal.models.TrainConfig` trained with (as JSON)."""


class LocalizeSummary(TypedDict):
    """``crosstask localize --json``."""

    predictions: str
    videos: dict[str, int]
    titles: dict[str, str]


class RecallReport(TypedDict):
    """``crosstask evaluate --json``: step recall per task and mean, next to the uniform baseline."""

    recall: dict[str, float]
    mean_recall: float
    uniform: dict[str, float]
    mean_uniform: float
    videos: dict[str, int]
    titles: dict[str, str]


class ActionnessSummary(TypedDict):
    """``crosstask actionness --json``: per test task, AP of ``ours``, ``chance`` and ``trim``."""

    model: str
    ap: dict[str, dict[str, float]]


class DPResult(TypedDict, total=False):
    """``crosstask dp --json``: ``steps`` (A1) or ``labels`` (A2)."""

    steps: list[int]
    labels: list[int]


class DiscoverSummary(DiscoveryReport, total=False):
    """``crosstask discover --json``: where the labels went, and the evaluation when the split is annotated
    (``videos``: the evaluated ones then, else the labelled ones)."""

    out: str


def _write_json(path: Path, data: object) -> None:
    atomic_write_bytes(path, (json.dumps(data) + "\n").encode())


def synth(out: Path, conf: SynthConfig) -> SynthSummary:
    """Write a synthetic CrossTask-format dataset with known ground truth."""
    ds = generate(conf)
    ds.write(out)
    return {
        "root": str(out),
        "tasks": len(ds.tasks),
        "videos": len(ds.videos),
        "kinds": {k: sum(v == k for v in ds.kind.values()) for k in ("primary", "related", "unseen")},
    }


def _words(lines: Sequence[Line]) -> list[tuple[str, float]]:
    """Subtitle cues as CrossTask's narration ``[(word, time)]``: each cue's words spread evenly over it."""
    return [
        (w, start + (end - start) * i / len(ws))
        for text, start, end in lines
        for ws in [text.split()]
        for i, w in enumerate(ws)
    ]


def _mask_intervals(M: np.ndarray) -> list[Interval]:
    """A ``[T, K]`` allowed-clips mask as constraint intervals; a step free everywhere has none (CrossTask's
    reader then penalises it uniformly, which is no constraint)."""
    return [iv for k in range(M.shape[1]) if not M[:, k].all() for iv in dense_to_intervals(M[:, k] * (k + 1))]


def export(
    root: Path,
    task_file: TaskFile,
    features: Mapping[str, np.ndarray],
    lines: Mapping[str, Sequence[Line]],
    tasks: Mapping[str, list[str]],
    truth: Mapping[str, dict],
    conf: StepsConfig,
) -> ExportSummary:
    """Write a scene's videos as a CrossTask-format folder (:class:`temporal.data.CrossTask` and CrossTask's
    reference code read it), so its methods and numbers run on them.

    Every task of the task file is primary (``tasks_related.txt`` is empty). Each (task, video) pair of ``tasks``
    is a line of ``videos.csv``, the training pool, as the scene's own step model trains on all its videos
    (``videos_val.csv`` is empty: move lines there to hold videos out). Per video its features, its narration (each
    cue's words spread over the cue) and per pair the narration's step windows as ``steps`` makes them (an empty
    file when there are none: the reference code opens it); ``annotations/<task>_<video>.csv`` for every pair with a
    step labelled in ``truth`` (``{video: {"tasks", "steps"}}``; none for a pair without: an empty file would make
    its recall 0/0, and the reference code's mean recall NaN).
    """
    root = Path(root)
    for sub in ("annotations", "crosstask_constraints", "crosstask_features", "narration"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    notes = [
        f"task {t.id}: commas in its steps written as ';' (tasks_primary.txt separates steps with commas)"
        for t in task_file.tasks.values()
        if any("," in s for s in t.steps)
    ]
    write_tasks(
        root / "tasks_primary.txt",
        [
            Task(t.id, t.title, f"{task_file.path.name}#{t.id}", [s.replace(",", ";") for s in t.steps])
            for t in task_file.tasks.values()
        ],
    )
    write_tasks(root / "tasks_related.txt", [])
    entries, annotated = [], 0
    for v, vt in tasks.items():
        if "," in v:
            raise DataError(f"video {v!r}: CrossTask's videos.csv cannot hold a comma in a name; rename the video")
        X, spoken = features[v], lines.get(v, [])
        np.save(root / "crosstask_features" / f"{v}.npy", X)
        write_narration(root / "narration" / f"{v}.json", _words(spoken))
        M = step_constraints(spoken, [s for _, s in step_list(task_file, vt)], len(X), conf)
        labels = to_intervals(truth[v]["steps"], task_file) if v in truth else {}
        col = 0
        for t in vt:
            K = len(task_file.tasks[t].steps)
            write_intervals(
                root / "crosstask_constraints" / f"{t}_{v}.csv",
                [] if M is None else _mask_intervals(M[:, col : col + K]),
            )
            col += K
            if labels.get(t):
                write_intervals(root / "annotations" / f"{t}_{v}.csv", labels[t])
                annotated += 1
            entries.append(VideoEntry(t, v, v))
    write_videos(root / "videos.csv", entries)
    write_videos(root / "videos_val.csv", [])
    return {
        "root": str(root),
        "tasks": len(task_file.tasks),
        "videos": len(tasks),
        "pairs": len(entries),
        "annotated": annotated,
        "notes": notes,
    }


def stats(root: Path, order: str = "pairs") -> StatsReport:
    """Per-task statistics (``temporal.data.TaskStats``)."""
    if order not in ("pairs", "lis"):
        raise DataError(f"--order {order!r}: choose pairs or lis")
    return {"tasks": [asdict(r) for r in CrossTask.load(root).stats(order)]}


def train(
    root: Path,
    model_dir: Path,
    conf: TrainConfig,
    related: bool = True,
    n_train: int = 30,
    progress: ProgressFn | None = None,
) -> TrainSummary:
    """Weakly supervised step classifiers from ordered step lists (and narration constraints), saved."""
    data = CrossTask.load(root)
    tasks = data.tasks
    counts: dict[str, int] = {}
    videos = []
    for v in data.train:
        if (v.task_id not in data.primary and not related) or counts.get(v.task_id, 0) >= n_train:
            continue
        counts[v.task_id] = counts.get(v.task_id, 0) + 1
        X = data.features(v.video_id)
        cons = data.constraints(v.task_id, v.video_id) if conf.use_constraints else None
        videos.append(
            StepVideo(
                v.task_id, X, None if cons is None else constraint_mask(cons, len(X), len(tasks[v.task_id].steps))
            )
        )
    if not videos:
        raise DataError(f"{root / 'videos.csv'}: no training videos listed")
    model = train_step_model(videos, {t: tasks[t].steps for t in tasks}, conf, progress)
    model.save(model_dir)
    return {
        "model": str(model_dir),
        "videos": counts,
        "titles": {t: tasks[t].title for t in counts},
        "config": asdict(conf),
    }


def localize(
    root: Path,
    model_dir: Path,
    predictions: Path,
    split: str = "test",
    actionness: Path | None = None,
    alpha: float = 0.2,
) -> LocalizeSummary:
    """One clip per step, in order (A1), for every video of a split; unseen tasks via components. Writes
    ``predictions`` ``{task: {video: [clip per step]}}``."""
    if split not in SPLITS:
        raise DataError(f"--split {split!r}: choose {' or '.join(SPLITS)}")
    data = CrossTask.load(root)
    model = StepModel.load(model_dir)
    act = OrderVerifier.load(actionness) if actionness else None
    tasks = data.tasks
    model.add_tasks({t: tasks[t].steps for t in tasks if t not in model.A})
    pred: dict[str, dict[str, list[int]]] = {}
    for v in data.test if split == "test" else data.train:
        X = data.features(v.video_id)
        S = model.log_probs(X, v.task_id)
        if act is not None:
            S = fuse_actionness(S, act.actionness(X), alpha, normalize=True)
        pred.setdefault(v.task_id, {})[v.video_id] = align_one(S).tolist()
    _write_json(predictions, pred)
    return {
        "predictions": str(predictions),
        "videos": {t: len(v) for t, v in pred.items()},
        "titles": {t: tasks[t].title for t in pred},
    }


def evaluate(root: Path, predictions: Path) -> RecallReport:
    """CrossTask step recall per task and mean, next to the uniform baseline."""
    data = CrossTask.load(root)
    try:
        pred = json.loads(predictions.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{predictions}: not readable JSON ({e}); write it with `howto3d crosstask localize`") from None
    Yt: dict = {}
    Yp: dict = {}
    Yu: dict = {}
    for task, vids in pred.items():
        if task not in data.tasks:
            raise DataError(f"{predictions}: unknown task {task!r}; re-run `howto3d crosstask localize`")
        K = len(data.tasks[task].steps)
        for vid, steps in vids.items():
            ann = data.annotation(task, vid)
            if ann is None:
                continue
            T = data.length(vid)
            if len(steps) != K or min(steps) < 0 or max(steps) >= T:
                raise DataError(
                    f"{predictions}: video {vid} needs {K} clip indices in [0, {T}); "
                    "re-run `howto3d crosstask localize`"
                )
            Yt.setdefault(task, {})[vid] = intervals_to_labels(ann, T, K)
            Yp.setdefault(task, {})[vid] = steps_to_labels(np.array(steps), T)
            Yu.setdefault(task, {})[vid] = steps_to_labels(uniform_steps(T, K), T)
    rec, uni = step_recall(Yt, Yp), step_recall(Yt, Yu)
    return {
        "recall": rec,
        "mean_recall": mean_over_tasks(rec),
        "uniform": uni,
        "mean_uniform": mean_over_tasks(uni),
        "videos": {t: len(v) for t, v in Yt.items()},
        "titles": {t: data.tasks[t].title for t in Yt},
    }


def actionness(root: Path, model_dir: Path, conf: OrderConfig, progress: ProgressFn | None = None) -> ActionnessSummary:
    """Order-verification actionness trained on all training videos (no labels), saved; AP per test task next
    to chance and chance+trim (seeded by ``conf.seed``)."""
    data = CrossTask.load(root)
    X = [data.features(v.video_id) for v in data.train]
    if not X:
        raise DataError(f"{root / 'videos.csv'}: no training videos listed")
    model = train_order_verification(X, conf, progress)
    model.save(model_dir, conf)
    rng = np.random.default_rng(conf.seed)
    per: dict[str, dict[str, list]] = {}
    for v in data.test:
        ann = data.annotation(v.task_id, v.video_id)
        if ann is None:
            continue
        Xv = data.features(v.video_id)
        d = per.setdefault(v.task_id, {"ours": [], "chance": [], "trim": [], "ann": []})
        d["ours"].append(model.actionness(Xv))
        d["chance"].append(chance_actionness(len(Xv), rng))
        d["trim"].append(chance_actionness(len(Xv), rng, 0.3))
        d["ann"].append(ann)
    return {
        "model": str(model_dir),
        "ap": {t: {k: action_ap(d[k], d["ann"]) for k in ("ours", "chance", "trim")} for t, d in per.items()},
    }


def dp(
    scores: Path, contiguous: bool = False, maximize: bool = True, bg_cost: float = 0.0, allow_shared: bool = False
) -> DPResult:
    """Order-constrained DP on a ``[T, K]`` .npy matrix: ``{"steps": [t_1..t_K]}`` (A1) or ``{"labels": y}``
    (A2, ``contiguous``)."""
    S = read_npy(scores, "a [T, K] .npy array of step scores")
    if S.ndim != 2 or not np.issubdtype(S.dtype, np.number) or not np.isfinite(S).all():
        raise DataError(f"{scores}: expected a finite numeric [T, K] matrix, got shape {S.shape} dtype {S.dtype}")
    if contiguous:
        return {"labels": align_contiguous(-S if maximize else S, bg_cost=bg_cost).tolist()}
    return {"steps": align_one(S, maximize=maximize, allow_shared=allow_shared).tolist()}


def discover(
    root: Path, out: Path, conf: ProcedureConfig, split: str = "test", progress: ProgressFn | None = None
) -> DiscoverSummary:
    """Key steps per task from the videos and their task labels alone (004); writes ``out`` ``{video: [label per
    clip]}`` and returns the evaluation against the annotations (empty without any)."""
    if conf.background not in BACKGROUND_MODES:
        raise DataError(f"--background {conf.background!r}: choose {' or '.join(BACKGROUND_MODES)}")
    pred, report = discover_crosstask(CrossTask.load(root), conf, split, progress)
    _write_json(out, {v: y.tolist() for v, y in pred.items()})
    return {"out": str(out), "videos": len(pred), **report}
