"""``howto3d temporal``: step localization and actionness over a CrossTask-format folder."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import asdict
from enum import StrEnum
from pathlib import Path

import numpy as np
import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from temporal.data import CrossTask, DataError, intervals_to_labels
from temporal.dp import align_contiguous, align_one, fuse_actionness, steps_to_labels, uniform_steps
from temporal.metrics import action_ap, chance_actionness, mean_over_tasks, step_recall
from temporal.models import SHARE_MODES, StepModel, StepVideo, TrainConfig, train_step_model
from temporal.narration import constraint_mask
from temporal.order import OrderConfig, OrderVerifier, train_order_verification
from temporal.synthetic import SynthConfig, generate

app = typer.Typer(help="Step localization and actionness on per-clip features (CrossTask format).",
                  no_args_is_help=True)
out = Console(markup=False)
err = Console(stderr=True, markup=False)


@contextlib.contextmanager
def _readable_errors() -> Iterator[None]:
    """Bad input -> one line naming the file and the fix, exit code 2, no traceback."""
    try:
        yield
    except (DataError, ValueError, KeyError, FileNotFoundError) as e:
        msg = (e.args[0] if isinstance(e, KeyError) and e.args else str(e)) or type(e).__name__
        err.print(Text.assemble(("error: ", "red"), msg), soft_wrap=True, highlight=False)
        raise typer.Exit(2) from None


@contextlib.contextmanager
def _progress(enabled: bool) -> Iterator:
    if not enabled:
        yield None
        return
    from howto3d.progress import progress_bar
    with progress_bar() as bar:
        yield bar


def _emit(data: object, table: Table | None, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(data, indent=1))
    elif table is not None:
        out.print(table)


def _pct(x: float) -> str:
    return "-" if not np.isfinite(x) else f"{100 * x:.1f}"


@app.command()
def synth(out_dir: Path = typer.Argument(..., help="Folder to write (CrossTask layout + coin.json)."),
          primary: int = typer.Option(6, help="Annotated tasks."),
          related: int = typer.Option(6, help="Unannotated related tasks."),
          unseen: int = typer.Option(0, help="Test-only tasks for zero-shot transfer."),
          train_videos: int = typer.Option(30, help="Training videos per primary task."),
          test_videos: int = typer.Option(20, help="Test videos per primary task."),
          related_videos: int = typer.Option(20, help="Videos per related task."),
          intro: float = typer.Option(0.0, help="Probability of intro / outro blocks."),
          distractors: float = typer.Option(0.0, help="Distractor segments per minute."),
          dim: int = typer.Option(64, help="Feature dimension."),
          seed: int = typer.Option(0),
          as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON.")) -> None:
    """Write a synthetic CrossTask-format dataset with known ground truth."""
    conf = SynthConfig(n_primary=primary, n_related=related, n_unseen=unseen, train_videos=train_videos,
                       test_videos=test_videos, related_videos=related_videos, p_intro=intro,
                       distractors_per_min=distractors, dim=dim, seed=seed)
    ds = generate(conf)
    ds.write(out_dir)
    summary = {"root": str(out_dir), "tasks": len(ds.tasks), "videos": len(ds.videos),
               "kinds": {k: sum(v == k for v in ds.kind.values()) for k in ("primary", "related", "unseen")}}
    if as_json:
        _emit(summary, None, True)
    else:
        out.print(f"wrote {summary['videos']} videos of {summary['tasks']} tasks to {out_dir}")


@app.command()
def stats(root: Path = typer.Argument(..., help="CrossTask-format folder."),
          order: str = typer.Option("pairs", help="Order consistency: 'pairs' or 'lis'."),
          as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON.")) -> None:
    """Per-task statistics: videos, steps, length, missing steps, background, order consistency."""
    with _readable_errors():
        rows = CrossTask.load(root).stats(order)
    table = Table("task", "title", "videos", "steps", "avg len (s)", "missing %", "background %", "order")
    for r in rows:
        table.add_row(r.task_id, r.title, str(r.videos), str(r.steps), f"{r.avg_len_s:.0f}",
                      _pct(r.missing_steps), _pct(r.background), f"{r.order_consistency:.2f}")
    _emit({"tasks": [asdict(r) for r in rows]}, table, as_json)


@app.command()
def train(root: Path = typer.Argument(..., help="CrossTask-format folder."),
          model_dir: Path = typer.Option(..., "--out", help="Where to save the model (safetensors + JSON)."),
          share: str = typer.Option("words", help=f"Sharing: {', '.join(SHARE_MODES)}."),
          constraints: bool = typer.Option(True, help="Use narration constraints."),
          related: bool = typer.Option(True, help="Also train on related tasks."),
          n_train: int = typer.Option(30, help="Training videos per task."),
          pretrain_epochs: int = typer.Option(30), epochs: int = typer.Option(30),
          lr: float = typer.Option(1e-3), seed: int = typer.Option(0),
          as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON.")) -> None:
    """Weakly supervised step classifiers from ordered step lists (and narration constraints)."""
    if share not in SHARE_MODES:
        raise typer.BadParameter(f"--share must be one of {', '.join(SHARE_MODES)}")
    conf = TrainConfig(share=share, use_constraints=constraints, pretrain_epochs=pretrain_epochs, epochs=epochs,
                       lr=lr, seed=seed)
    with _readable_errors():
        data = CrossTask.load(root)
        tasks = data.tasks
        counts: dict[str, int] = {}
        videos = []
        for v in data.train:
            if v.task_id not in data.primary and not related:
                continue
            if counts.get(v.task_id, 0) >= n_train:
                continue
            counts[v.task_id] = counts.get(v.task_id, 0) + 1
            X = data.features(v.video_id)
            K = len(tasks[v.task_id].steps)
            cons = data.constraints(v.task_id, v.video_id) if constraints else None
            videos.append(StepVideo(v.task_id, X, None if cons is None else constraint_mask(cons, len(X), K)))
        if not videos:
            raise DataError(f"{root / 'videos.csv'}: no training videos listed")
        with _progress(not as_json) as bar:
            model = train_step_model(videos, {t: tasks[t].steps for t in tasks}, conf, bar)
        model.save(model_dir)
    table = Table("task", "title", "training videos")
    for t, n in counts.items():
        table.add_row(t, tasks[t].title, str(n))
    _emit({"model": str(model_dir), "videos": counts, "config": asdict(conf)}, table, as_json)
    if not as_json:
        out.print(f"saved model to {model_dir}")


def _load_model(path: Path, kind: type) -> StepModel | OrderVerifier:
    if not (path / "config.json").is_file():
        raise DataError(f"{path}: no model here (config.json missing); train one with `howto3d temporal "
                        f"{'train' if kind is StepModel else 'actionness'}`")
    return kind.load(path)


@app.command()
def localize(root: Path = typer.Argument(..., help="CrossTask-format folder."),
             model_dir: Path = typer.Option(..., "--model", help="Model from `temporal train`."),
             predictions: Path = typer.Option(Path("predictions.json"), "--out", help="Where to write predictions."),
             split: str = typer.Option("test", help="'test' (videos_val.csv) or 'train' (videos.csv)."),
             actionness: Path | None = typer.Option(None, help="Order-verification model to fuse (A5)."),
             alpha: float = typer.Option(0.2, help="Fusion weight of the actionness."),
             as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON.")) -> None:
    """One clip per step, in order (A1), for every video of a split; unseen tasks via components."""
    with _readable_errors():
        data = CrossTask.load(root)
        model = _load_model(model_dir, StepModel)
        act = _load_model(actionness, OrderVerifier) if actionness else None
        tasks = data.tasks
        model.add_tasks({t: tasks[t].steps for t in tasks if t not in model.A})
        pred: dict[str, dict[str, list[int]]] = {}
        for v in data.test if split == "test" else data.train:
            X = data.features(v.video_id)
            S = model.log_probs(X, v.task_id)
            if act is not None:
                S = fuse_actionness(S, act.actionness(X), alpha, normalize=True)
            pred.setdefault(v.task_id, {})[v.video_id] = align_one(S).tolist()
    predictions.write_text(json.dumps(pred))
    table = Table("task", "title", "videos localized")
    for t, vids in pred.items():
        table.add_row(t, tasks[t].title, str(len(vids)))
    _emit({"predictions": str(predictions), "videos": {t: len(v) for t, v in pred.items()}}, table, as_json)


@app.command()
def evaluate(root: Path = typer.Argument(..., help="CrossTask-format folder."),
             predictions: Path = typer.Argument(..., help="predictions.json from `temporal localize`."),
             as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON.")) -> None:
    """CrossTask step recall per task and mean, next to the uniform baseline."""
    with _readable_errors():
        data = CrossTask.load(root)
        try:
            pred = json.loads(predictions.read_text())
        except (OSError, ValueError) as e:
            raise DataError(f"{predictions}: not readable JSON ({e}); write it with `temporal localize`") from None
        Yt: dict = {}
        Yp: dict = {}
        Yu: dict = {}
        for task, vids in pred.items():
            K = len(data.tasks[task].steps)
            for vid, steps in vids.items():
                ann = data.annotation(task, vid)
                if ann is None:
                    continue
                T = data.length(vid)
                if len(steps) != K or min(steps) < 0 or max(steps) >= T:
                    raise DataError(f"{predictions}: video {vid} needs {K} clip indices in [0, {T}); "
                                    "re-run `temporal localize`")
                Yt.setdefault(task, {})[vid] = intervals_to_labels(ann, T, K)
                Yp.setdefault(task, {})[vid] = steps_to_labels(np.array(steps), T)
                Yu.setdefault(task, {})[vid] = steps_to_labels(uniform_steps(T, K), T)
    rec, uni = step_recall(Yt, Yp), step_recall(Yt, Yu)
    table = Table("task", "title", "videos", "recall %", "uniform %")
    for t in rec:
        table.add_row(t, data.tasks[t].title, str(len(Yt[t])), _pct(rec[t]), _pct(uni[t]))
    table.add_row("mean", "", "", _pct(mean_over_tasks(rec)), _pct(mean_over_tasks(uni)))
    _emit({"recall": rec, "mean_recall": mean_over_tasks(rec), "uniform": uni,
           "mean_uniform": mean_over_tasks(uni)}, table, as_json)


@app.command("actionness")
def actionness_cmd(root: Path = typer.Argument(..., help="CrossTask-format folder."),
                   model_dir: Path = typer.Option(..., "--out", help="Where to save the model."),
                   trim: float = typer.Option(0.3, help="Fraction trimmed from both ends of training videos."),
                   m: int = typer.Option(5, "--M", help="Clips per sequence."),
                   window: float | None = typer.Option(None, help="Sampling range in clips (default whole video)."),
                   epochs: int = typer.Option(15), seed: int = typer.Option(0),
                   as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON.")) -> None:
    """Train order-verification actionness on all training videos (no labels); AP per test task."""
    conf = OrderConfig(M=m, trim=trim, window=window, epochs=epochs, seed=seed)
    with _readable_errors():
        data = CrossTask.load(root)
        X = [data.features(v.video_id) for v in data.train]
        if not X:
            raise DataError(f"{root / 'videos.csv'}: no training videos listed")
        with _progress(not as_json) as bar:
            model = train_order_verification(X, conf, bar)
        model.save(model_dir, conf)
        rng = np.random.default_rng(seed)
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
    res = {t: {k: action_ap(d[k], d["ann"]) for k in ("ours", "chance", "trim")} for t, d in per.items()}
    table = Table("task", "AP ours %", "chance %", "chance+trim %")
    for t, r in res.items():
        table.add_row(t, _pct(r["ours"]), _pct(r["chance"]), _pct(r["trim"]))
    _emit({"model": str(model_dir), "ap": res}, table, as_json)


class Mode(StrEnum):
    one = "one"
    contiguous = "contiguous"


@app.command()
def dp(scores: Path = typer.Argument(..., help="[T, K] .npy matrix of step scores (or costs)."),
       mode: Mode = typer.Option(Mode.one, help="'one' clip per step (A1) or 'contiguous' runs (A2)."),
       maximize: bool = typer.Option(True, "--maximize/--minimize", help="Scores (maximise) or costs."),
       bg_cost: float = typer.Option(0.0, help="Background cost for --mode contiguous (in cost units)."),
       allow_shared: bool = typer.Option(False, help="Let steps share clips when T < K (A1)."),
       as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON.")) -> None:
    """Order-constrained DP on a score matrix: {"steps": [t_1..t_K]} or {"labels": [y_1..y_T]}."""
    with _readable_errors():
        if not scores.is_file():
            raise DataError(f"{scores}: file not found (expected a [T, K] .npy array)")
        try:
            S = np.load(scores, allow_pickle=False)
        except (ValueError, OSError) as e:
            raise DataError(f"{scores}: not a readable .npy array ({e}); save it with numpy.save") from None
        if S.ndim != 2 or not np.issubdtype(S.dtype, np.number) or not np.isfinite(S).all():
            raise DataError(f"{scores}: expected a finite numeric [T, K] matrix, got shape {S.shape} "
                            f"dtype {S.dtype}")
        if mode is Mode.one:
            result = {"steps": align_one(S, maximize=maximize, allow_shared=allow_shared).tolist()}
        else:
            result = {"labels": align_contiguous(-S if maximize else S, bg_cost=bg_cost).tolist()}
    if as_json:
        _emit(result, None, True)
    else:
        out.print(" ".join(map(str, next(iter(result.values())))))


@app.command()
def discover(root: Path = typer.Argument(..., help="CrossTask-format folder."),
             pred_path: Path = typer.Option(..., "--out", help="Where to write {video: [label per clip]}."),
             k: int = typer.Option(7, "--k", min=1, help="Key steps per task."),
             multi_task: bool = typer.Option(False, "--multi-task", help="One model for all tasks + task head."),
             split: str = typer.Option("test", help="Videos to label: train, test or all."),
             background: str = typer.Option("none", help="none (every clip a key step, the paper) or states."),
             epochs: int | None = typer.Option(None, help="Epochs (default: the paper's 5 / 2 multi-task)."),
             seed: int = typer.Option(0),
             as_json: bool = typer.Option(False, "--json", help="Print the evaluation as JSON.")) -> None:
    """Discover k key steps per task from the videos and their task labels alone (no step lists), 004.

    Labels: 0 = background, 1..k = discovered key step. With annotations, prints frame recall / precision /
    F1 after a Hungarian mapping per task, next to the paper's Random baseline.
    """
    from recon.io import atomic_write_bytes
    from temporal.procedure import ProcedureConfig, discover_crosstask

    with _readable_errors():
        conf = ProcedureConfig(k=k, multi_task=multi_task, background=background, epochs=epochs, seed=seed)
        if background not in ("none", "states"):
            raise DataError(f"--background {background!r}: choose none or states")
        data = CrossTask.load(root)
        with _progress(not as_json) as bar:
            pred, report = discover_crosstask(data, conf, split, bar)
        atomic_write_bytes(pred_path, (json.dumps({v: y.tolist() for v, y in pred.items()}) + "\n").encode())
    if not report:
        if as_json:
            _emit({"out": str(pred_path), "videos": len(pred)}, None, True)
        else:
            out.print(f"wrote key steps of {len(pred)} videos to {pred_path} (no annotations to evaluate)")
        return
    table = Table("task", "recall %", "precision %", "F1 %", "random F1 %")
    for t, r in report["ours"]["tasks"].items():
        table.add_row(t, _pct(r["recall"]), _pct(r["precision"]), _pct(r["f1"]),
                      _pct(report["random"]["tasks"][t]["f1"]))
    table.add_row("mean", _pct(report["ours"]["recall"]), _pct(report["ours"]["precision"]),
                  _pct(report["ours"]["f1"]), _pct(report["random"]["f1"]))
    _emit({"out": str(pred_path), **report}, table, as_json)
    if not as_json and "task_accuracy" in report:
        out.print(f"task classification accuracy: {_pct(report['task_accuracy'])} %")
