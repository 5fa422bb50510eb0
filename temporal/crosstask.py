"""Folder-level step localization, actionness and key-step discovery on CrossTask-format data (``howto3d
crosstask``): each function reads a dataset folder, trains or evaluates, writes its model or predictions and
returns a JSON-able summary. Bad files are :class:`temporal.data.DataError` (one line, exit 2 in the CLI)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from recon.io import ProgressFn, atomic_write_bytes

from .data import CrossTask, DataError, intervals_to_labels, read_npy
from .dp import align_contiguous, align_one, fuse_actionness, steps_to_labels, uniform_steps
from .metrics import action_ap, chance_actionness, mean_over_tasks, step_recall
from .models import StepModel, StepVideo, TrainConfig, train_step_model
from .order import OrderConfig, OrderVerifier, train_order_verification
from .procedure import ProcedureConfig, discover_crosstask
from .step_windows import constraint_mask
from .synthetic_crosstask import SynthConfig, generate

SPLITS = ("train", "test")


def _write_json(path: Path, data: object) -> None:
    atomic_write_bytes(path, (json.dumps(data) + "\n").encode())


def synth(out: Path, conf: SynthConfig) -> dict:
    """Write a synthetic CrossTask-format dataset with known ground truth."""
    ds = generate(conf)
    ds.write(out)
    return {"root": str(out), "tasks": len(ds.tasks), "videos": len(ds.videos),
            "kinds": {k: sum(v == k for v in ds.kind.values()) for k in ("primary", "related", "unseen")}}


def stats(root: Path, order: str = "pairs") -> dict:
    """Per-task statistics (``temporal.data.TaskStats``)."""
    if order not in ("pairs", "lis"):
        raise DataError(f"--order {order!r}: choose pairs or lis")
    return {"tasks": [asdict(r) for r in CrossTask.load(root).stats(order)]}


def train(root: Path, model_dir: Path, conf: TrainConfig, related: bool = True, n_train: int = 30,
          progress: ProgressFn | None = None) -> dict:
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
        videos.append(StepVideo(v.task_id, X, None if cons is None else
                                constraint_mask(cons, len(X), len(tasks[v.task_id].steps))))
    if not videos:
        raise DataError(f"{root / 'videos.csv'}: no training videos listed")
    model = train_step_model(videos, {t: tasks[t].steps for t in tasks}, conf, progress)
    model.save(model_dir)
    return {"model": str(model_dir), "videos": counts, "titles": {t: tasks[t].title for t in counts},
            "config": asdict(conf)}


def localize(root: Path, model_dir: Path, predictions: Path, split: str = "test", actionness: Path | None = None,
             alpha: float = 0.2) -> dict:
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
    return {"predictions": str(predictions), "videos": {t: len(v) for t, v in pred.items()},
            "titles": {t: tasks[t].title for t in pred}}


def evaluate(root: Path, predictions: Path) -> dict:
    """CrossTask step recall per task and mean, next to the uniform baseline."""
    data = CrossTask.load(root)
    try:
        pred = json.loads(predictions.read_text())
    except (OSError, ValueError) as e:
        raise DataError(f"{predictions}: not readable JSON ({e}); write it with `howto3d crosstask localize`") \
            from None
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
                raise DataError(f"{predictions}: video {vid} needs {K} clip indices in [0, {T}); "
                                "re-run `howto3d crosstask localize`")
            Yt.setdefault(task, {})[vid] = intervals_to_labels(ann, T, K)
            Yp.setdefault(task, {})[vid] = steps_to_labels(np.array(steps), T)
            Yu.setdefault(task, {})[vid] = steps_to_labels(uniform_steps(T, K), T)
    rec, uni = step_recall(Yt, Yp), step_recall(Yt, Yu)
    return {"recall": rec, "mean_recall": mean_over_tasks(rec), "uniform": uni, "mean_uniform": mean_over_tasks(uni),
            "videos": {t: len(v) for t, v in Yt.items()}, "titles": {t: data.tasks[t].title for t in Yt}}


def actionness(root: Path, model_dir: Path, conf: OrderConfig, progress: ProgressFn | None = None) -> dict:
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
    return {"model": str(model_dir),
            "ap": {t: {k: action_ap(d[k], d["ann"]) for k in ("ours", "chance", "trim")} for t, d in per.items()}}


def dp(scores: Path, contiguous: bool = False, maximize: bool = True, bg_cost: float = 0.0,
       allow_shared: bool = False) -> dict:
    """Order-constrained DP on a ``[T, K]`` .npy matrix: ``{"steps": [t_1..t_K]}`` (A1) or ``{"labels": y}``
    (A2, ``contiguous``)."""
    S = read_npy(scores, "a [T, K] .npy array of step scores")
    if S.ndim != 2 or not np.issubdtype(S.dtype, np.number) or not np.isfinite(S).all():
        raise DataError(f"{scores}: expected a finite numeric [T, K] matrix, got shape {S.shape} dtype {S.dtype}")
    if contiguous:
        return {"labels": align_contiguous(-S if maximize else S, bg_cost=bg_cost).tolist()}
    return {"steps": align_one(S, maximize=maximize, allow_shared=allow_shared).tolist()}


def discover(root: Path, out: Path, conf: ProcedureConfig, split: str = "test",
             progress: ProgressFn | None = None) -> dict:
    """Key steps per task from the videos and their task labels alone (004); writes ``out`` ``{video: [label per
    clip]}`` and returns the evaluation against the annotations (empty without any)."""
    if conf.background not in ("none", "states"):
        raise DataError(f"--background {conf.background!r}: choose none or states")
    pred, report = discover_crosstask(CrossTask.load(root), conf, split, progress)
    _write_json(out, {v: y.tolist() for v, y in pred.items()})
    return {"out": str(out), "videos": len(pred), **report}
