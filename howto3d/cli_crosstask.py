"""``howto3d crosstask``: step localization, actionness and key-step discovery over a CrossTask-format folder, and
``export``, which writes a workspace scene as one.

Wiring only: the work is in :mod:`temporal.crosstask`; tables are in :mod:`howto3d.reports`; errors flow to
``howto3d.cli.main`` (bad input: one line, exit 2; programming errors keep their traceback).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, TypeVar

import typer

from howto3d import reports
from howto3d.progress import console, progress_bar
from recon.io import ProgressFn
from temporal import crosstask
from temporal.models import SHARE_MODES, TrainConfig
from temporal.order import OrderConfig
from temporal.procedure import BACKGROUND_MODES, ProcedureConfig
from temporal.synthetic_crosstask import SynthConfig

app = typer.Typer(
    help="Step localization, actionness and key-step discovery on CrossTask-format folders (per-clip features).",
    no_args_is_help=True,
)

Root = Annotated[Path, typer.Argument(help="CrossTask-format folder.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
Seed = Annotated[int, typer.Option(help="Random seed (same seed, same result).")]
R = TypeVar("R")


@contextlib.contextmanager
def _progress(as_json: bool) -> Iterator[ProgressFn | None]:
    """Progress bars on stderr unless the output is JSON for a script."""
    if as_json:
        yield None
        return
    with progress_bar() as bar:
        yield bar


def _emit(result: R, json_out: bool, table: Callable[[R], None]) -> None:
    if json_out:
        reports.print_json(result)
    else:
        table(result)


Share = StrEnum("Share", {m: m for m in SHARE_MODES})  # type: ignore[misc]  # members: SHARE_MODES, one source
"""``--share`` choices: the step model's sharing modes."""


class Mode(StrEnum):
    one = "one"
    contiguous = "contiguous"


Background = StrEnum("Background", {m: m for m in BACKGROUND_MODES})  # type: ignore[misc]  # as Share
"""``--background`` choices: ``[discover] background``'s."""


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Folder to write (CrossTask layout + coin.json).")],
    primary: Annotated[int, typer.Option(help="Annotated tasks.")] = 6,
    related: Annotated[int, typer.Option(help="Unannotated related tasks.")] = 6,
    unseen: Annotated[int, typer.Option(help="Test-only tasks for zero-shot transfer.")] = 0,
    train_videos: Annotated[int, typer.Option(help="Training videos per primary task.")] = 30,
    test_videos: Annotated[int, typer.Option(help="Test videos per primary task.")] = 20,
    related_videos: Annotated[int, typer.Option(help="Videos per related task.")] = 20,
    intro: Annotated[float, typer.Option(help="Probability of intro / outro blocks.")] = 0.0,
    distractors: Annotated[float, typer.Option(help="Distractor segments per minute.")] = 0.0,
    dim: Annotated[int, typer.Option(help="Feature dimension.")] = 64,
    seed: Seed = 0,
    json_out: JsonOpt = False,
) -> None:
    """Write a synthetic CrossTask-format dataset with known ground truth."""
    summary = crosstask.synth(
        out,
        SynthConfig(
            n_primary=primary,
            n_related=related,
            n_unseen=unseen,
            train_videos=train_videos,
            test_videos=test_videos,
            related_videos=related_videos,
            p_intro=intro,
            distractors_per_min=distractors,
            dim=dim,
            seed=seed,
        ),
    )
    if json_out:
        reports.print_json(summary)
    else:
        console.print(f"wrote {summary['videos']} videos of {summary['tasks']} tasks to {out}")


@app.command()
def export(
    ws: Annotated[Path, typer.Argument(help="Workspace folder.")],
    scene: Annotated[str, typer.Option("--scene", help="Scene name.")],
    out: Annotated[Path, typer.Option("--out", help="CrossTask-format folder to write.")],
    annotations: Annotated[
        Path | None,
        typer.Option(
            help="Your own labels: a folder of <video>.csv as `howto3d eval-steps --annotations` reads (default: "
            "the synthetic ground truth, else the saved step timelines)."
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Write a workspace scene (clip features, narration, constraints, step annotations) as a CrossTask-format
    folder, for these commands and CrossTask's reference code."""
    from howto3d import temporal_cmds
    from howto3d.workspace import Workspace

    w = Workspace.open(ws).lock("crosstask export")
    with _progress(json_out) as bar:
        result = temporal_cmds.crosstask_export(w, w.require_scene(scene), out, annotations, bar)
    if json_out:
        reports.print_json(result)
        return
    console.print(
        f"wrote {result['videos']} videos of {result['scene']} ({result['pairs']} task-video pairs, "
        f"{result['annotated']} annotated; {result['tasks']} tasks) to {result['root']}",
        markup=False,
    )
    console.print(f"annotations from {result['labels']}", markup=False)
    for note in result["notes"]:
        console.print(f"note: {note}", markup=False)


@app.command()
def stats(
    root: Root,
    order: Annotated[str, typer.Option(help="Order consistency: 'pairs' or 'lis'.")] = "pairs",
    json_out: JsonOpt = False,
) -> None:
    """Per-task statistics: videos, steps, length, missing steps, background, order consistency."""
    result = crosstask.stats(root, order)
    _emit(result, json_out, reports.print_crosstask_stats)


@app.command()
def train(
    root: Root,
    model_dir: Annotated[Path, typer.Option("--out", help="Where to save the model (safetensors + JSON).")],
    share: Annotated[Share, typer.Option(help="Sharing of step components.")] = Share("words"),
    constraints: Annotated[bool, typer.Option(help="Use narration constraints.")] = True,
    related: Annotated[bool, typer.Option(help="Also train on related tasks.")] = True,
    n_train: Annotated[int, typer.Option(min=1, help="Training videos per task.")] = 30,
    pretrain_epochs: Annotated[int, typer.Option(min=0, help="Epochs on random feasible assignments.")] = 30,
    epochs: Annotated[int, typer.Option(min=0, help="Epochs of DP assignment / gradient step.")] = 30,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 1e-3,
    seed: Seed = 0,
    json_out: JsonOpt = False,
) -> None:
    """Weakly supervised step classifiers from ordered step lists (and narration constraints)."""
    conf = TrainConfig(
        share=share.value, use_constraints=constraints, pretrain_epochs=pretrain_epochs, epochs=epochs, lr=lr, seed=seed
    )
    with _progress(json_out) as bar:
        result = crosstask.train(root, model_dir, conf, related, n_train, bar)
    _emit(result, json_out, reports.print_crosstask_train)


@app.command()
def localize(
    root: Root,
    model_dir: Annotated[Path, typer.Option("--model", help="Model from `crosstask train`.")],
    predictions: Annotated[Path, typer.Option("--out", help="Where to write predictions.")] = Path("predictions.json"),
    split: Annotated[str, typer.Option(help="'test' (videos_val.csv) or 'train' (videos.csv).")] = "test",
    actionness: Annotated[Path | None, typer.Option(help="Order-verification model to fuse (A5).")] = None,
    alpha: Annotated[float, typer.Option(help="Fusion weight of the actionness.")] = 0.2,
    json_out: JsonOpt = False,
) -> None:
    """One clip per step, in order (A1), for every video of a split; unseen tasks via components."""
    result = crosstask.localize(root, model_dir, predictions, split, actionness, alpha)
    _emit(result, json_out, reports.print_crosstask_localize)


@app.command()
def evaluate(
    root: Root,
    predictions: Annotated[Path, typer.Argument(help="predictions.json from `crosstask localize`.")],
    json_out: JsonOpt = False,
) -> None:
    """CrossTask step recall per task and mean, next to the uniform baseline."""
    result = crosstask.evaluate(root, predictions)
    _emit(result, json_out, reports.print_crosstask_evaluate)


@app.command("actionness")
def actionness_cmd(
    root: Root,
    model_dir: Annotated[Path, typer.Option("--out", help="Where to save the model.")],
    trim: Annotated[float, typer.Option(help="Fraction trimmed from both ends of training videos.")] = 0.3,
    m: Annotated[int, typer.Option("--M", min=2, help="Clips per sequence.")] = 5,
    window: Annotated[float | None, typer.Option(help="Sampling range in clips (default whole video).")] = None,
    epochs: Annotated[int, typer.Option(min=1, help="Training epochs.")] = 15,
    seed: Seed = 0,
    json_out: JsonOpt = False,
) -> None:
    """Train order-verification actionness on all training videos (no labels); AP per test task."""
    conf = OrderConfig(M=m, trim=trim, window=window, epochs=epochs, seed=seed)
    with _progress(json_out) as bar:
        result = crosstask.actionness(root, model_dir, conf, bar)
    _emit(result, json_out, reports.print_crosstask_actionness)


@app.command()
def dp(
    scores: Annotated[Path, typer.Argument(help="[T, K] .npy matrix of step scores (or costs).")],
    mode: Annotated[Mode, typer.Option(help="'one' clip per step (A1) or 'contiguous' runs (A2).")] = Mode.one,
    maximize: Annotated[bool, typer.Option("--maximize/--minimize", help="Scores (maximise) or costs.")] = True,
    bg_cost: Annotated[float, typer.Option(help="Background cost for --mode contiguous (in cost units).")] = 0.0,
    allow_shared: Annotated[bool, typer.Option(help="Let steps share clips when T < K (A1).")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Order-constrained DP on a score matrix: {"steps": [t_1..t_K]} or {"labels": [y_1..y_T]}."""
    result = crosstask.dp(scores, mode is Mode.contiguous, maximize, bg_cost, allow_shared)
    if json_out:
        reports.print_json(result)
    else:
        typer.echo(" ".join(map(str, result["labels"] if "labels" in result else result["steps"])))


@app.command()
def discover(
    root: Root,
    pred_path: Annotated[Path, typer.Option("--out", help="Where to write {video: [label per clip]}.")],
    k: Annotated[int, typer.Option("--k", min=1, help="Key steps per task.")] = 7,
    multi_task: Annotated[bool, typer.Option("--multi-task", help="One model for all tasks + task head.")] = False,
    split: Annotated[str, typer.Option(help="Videos to label: train, test or all.")] = "test",
    background: Annotated[
        Background, typer.Option(help="none (every clip a key step, the paper) or states.")
    ] = Background("none"),
    epochs: Annotated[int | None, typer.Option(min=1, help="Epochs (default: the paper's 5 / 2 multi-task).")] = None,
    seed: Seed = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print the evaluation as JSON.")] = False,
) -> None:
    """Discover k key steps per task from the videos and their task labels alone (no step lists), 004.

    Labels: 0 = background, 1..k = discovered key step. With annotations, prints frame recall / precision /
    F1 after a Hungarian mapping per task, next to the paper's Random baseline.
    """
    conf = ProcedureConfig(k=k, multi_task=multi_task, background=background.value, epochs=epochs, seed=seed)
    with _progress(json_out) as bar:
        result = crosstask.discover(root, pred_path, conf, split, bar)
    _emit(result, json_out, reports.print_crosstask_discover)
