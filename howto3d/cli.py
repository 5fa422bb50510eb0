"""The ``howto3d`` command line: the contract every stage fills in.

Errors a user can fix (bad files, unknown scenes, missing stages) print one readable line and exit non-zero.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Annotated

import typer

from howto3d import cli_temporal, evaluation, grounding_cmds, pipeline, temporal_cmds, viewer_cmds
from howto3d.progress import console, progress_bar, setup_logging
from howto3d.workspace import Workspace
from recon import transfer as transfer_stage
from recon.io import InputError, read_json
from recon.scene import cameras_json

log = logging.getLogger("howto3d")
app = typer.Typer(help="Turn narrated how-to videos into a shared 3D space you can ask questions of.",
                  no_args_is_help=True, pretty_exceptions_enable=False, add_completion=False)

WS = Annotated[Path, typer.Argument(help="Workspace folder.")]
SceneOpt = Annotated[str | None, typer.Option("--scene", help="Only this scene (default: all scenes).")]
Scene = Annotated[str, typer.Option("--scene", help="Scene name.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]


def _print_json(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, indent=1) + "\n")


app.add_typer(cli_temporal.app, name="temporal")


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False) -> None:
    setup_logging(verbose)


@app.command()
def init(ws: WS) -> None:
    """Create a workspace with a documented howto3d.toml."""
    Workspace.init(ws)
    console.print(f"workspace ready: {ws} (edit {ws / 'howto3d.toml'} to change settings)")


@app.command()
def add(ws: WS, scene: Scene,
        videos: Annotated[list[Path], typer.Argument(help="Videos; same-stem .srt/.vtt/.json subtitles come along.")],
        ) -> None:
    """Copy videos (and their sidecar subtitles) into a scene of the workspace."""
    w = Workspace.init(ws)
    added = w.add_videos(scene, videos)
    for v in added:
        note = f"subtitles {v.subtitles.name}" if v.subtitles else "no subtitles (grounding will skip it)"
        console.print(f"added {scene}/{v.name}: {note}")
    console.print(f"{len(added)} new video(s) in scene {scene!r} ({len(videos) - len(added)} already there)")


@app.command()
def reconstruct(ws: WS, scene: SceneOpt = None,
                frames: Annotated[int | None, typer.Option("--frames", help="Frames sampled per video.")] = None,
                workers: Annotated[int | None, typer.Option(help="Videos reconstructed in parallel.")] = None,
                force: Annotated[bool, typer.Option(help="Redo videos that finished or failed before.")] = False,
                ) -> None:
    """Reconstruct every video on its own with pycolmap (resumable)."""
    w = Workspace.open(ws)
    with progress_bar() as progress:
        summary = pipeline.reconstruct(w, scene, frames=frames, workers=workers, force=force, progress=progress)
    pipeline.print_reconstruct_summary(summary)


@app.command()
def align(ws: WS, scene: SceneOpt = None,
          force: Annotated[bool, typer.Option(help="Realign even if nothing changed.")] = False) -> None:
    """Align each scene's reconstructions into one shared frame (alignment graph)."""
    w = Workspace.open(ws)
    with progress_bar() as progress:
        results = pipeline.align(w, scene, force=force, progress=progress)
    pipeline.print_align_summary(results)


@app.command()
def train(ws: WS, epochs: Annotated[int | None, typer.Option(help="Maximum training epochs.")] = None) -> None:
    """Train the text→voxel grounding model from the narrations (one BERT for all scenes)."""
    w = Workspace.open(ws)
    with progress_bar() as progress:
        summary = grounding_cmds.train(w, epochs, progress)
    grounding_cmds.print_train_summary(summary)


@app.command()
def query(ws: WS, scene: Scene,
          text: Annotated[str | None, typer.Argument(help="What to look for.")] = None,
          batch: Annotated[Path | None, typer.Option("--batch", help="File with one query per line.")] = None,
          heatmap: Annotated[Path | None, typer.Option("--heatmap", help="Write the heatmap as PLY.")] = None,
          json_out: JsonOpt = False) -> None:
    """Where is it? Text → 3D heatmap and point in the scene's shared frame."""
    texts = [text] if text is not None else []
    if batch is not None:
        if not batch.is_file():
            raise InputError(f"{batch}: query file not found")
        texts += [line.strip() for line in batch.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not texts:
        raise InputError('give a query ("where is the dipstick") or --batch FILE')
    results = grounding_cmds.query(Workspace.open(ws), scene, texts, heatmap)
    if json_out:
        _print_json(results[0] if len(results) == 1 else results)
    else:
        grounding_cmds.print_query_results(results)


@app.command("eval-grounding")
def eval_grounding(ws: WS, plot: Annotated[Path | None, typer.Option(help="Write the PCK curves as PNG.")] = None,
                   json_out: JsonOpt = False) -> None:
    """Synthetic worlds: PCK of held-out instruction queries against the true part positions."""
    report = grounding_cmds.eval_grounding(Workspace.open(ws), plot)
    if json_out:
        _print_json(report)
    else:
        grounding_cmds.print_eval_report(report)


@app.command("eval-transfer")
def eval_transfer(ws: WS, scene: Scene, json_out: JsonOpt = False) -> None:
    """Synthetic worlds: camera accuracy and keypoint-transfer PCK (graph vs direct edges) against ground truth."""
    w = Workspace.open(ws)
    shared = pipeline.shared_scene(w, scene)
    gt = evaluation.load_gt(w.ground_truth_path(scene))
    report = {"cameras": evaluation.camera_errors(shared, gt),
              "transfer": evaluation.eval_transfer(shared, gt, w.align_dir(scene))}
    if json_out:
        _print_json(report)
    else:
        evaluation.print_report(report)


@app.command("actionness")
def actionness_cmd(ws: WS, scene: Scene,
                   video: Annotated[str | None, typer.Option(help="Only save this video (default: all).")] = None,
                   json_out: JsonOpt = False) -> None:
    """Per-clip actionness (order verification trained on the scene's videos), saved in the workspace."""
    w = Workspace.open(ws)
    with progress_bar() as progress:
        act = temporal_cmds.actionness(w, w.require_scene(scene), video, progress)
    out = {v: {"clip_seconds": 1.0, "actionness": [round(float(x), 4) for x in a]} for v, a in act.items()}
    if json_out:
        _print_json(out)
    else:
        for v, a in act.items():
            console.print(f"{scene}/{v}: {len(a)} clips, most action at {int(a.argmax())}–{int(a.argmax()) + 1} s "
                          f"→ {w.temporal_dir(scene) / 'actionness' / (v + '.json')}")


@app.command("steps")
def steps_cmd(ws: WS, scene: Scene, video: Annotated[str, typer.Option(help="Video name.")],
              task: Annotated[str | None, typer.Option(help="Task id(s), comma-separated (default: task file "
                                                       "entry, else the narration's best match).")] = None,
              json_out: JsonOpt = False) -> None:
    """Step segments of a video: DP over learned + 3D-grounded step scores, narration constraints, actionness."""
    w = Workspace.open(ws)
    tasks = [t.strip() for t in task.split(",") if t.strip()] if task else None
    with progress_bar() as progress:
        results = temporal_cmds.steps(w, w.require_scene(scene), video, tasks, progress)
    if video not in results:
        raise InputError(f"{scene}/{video}: no task for this video; pass --task (ids in the scene's task file)")
    if json_out:
        _print_json(results[video])
    else:
        temporal_cmds.print_steps(results)


@app.command("eval-steps")
def eval_steps(ws: WS, scene: SceneOpt = None, json_out: JsonOpt = False) -> None:
    """Synthetic worlds: step recall, frame F1 and actionness AP of the saved timelines vs ground truth."""
    report = temporal_cmds.eval_steps(Workspace.open(ws), scene)
    if json_out:
        _print_json(report)
    else:
        temporal_cmds.print_eval(report)


@app.command()
def cameras(ws: WS, scene: Scene, json_out: JsonOpt = False) -> None:
    """Every registered frame's camera in the scene's shared frame."""
    shared = pipeline.shared_scene(Workspace.open(ws), scene)
    out = cameras_json(shared)
    if json_out:
        _print_json(out)
    else:
        for v in shared.videos:
            times = [f["time"] for f in out["frames"] if f["video"] == v]
            console.print(f"{v}: {len(times)} registered frames, t = {min(times):.2f}–{max(times):.2f} s")


@app.command()
def transfer(ws: WS, scene: Scene,
             source: Annotated[str, typer.Option(help="Video whose frames the keypoints were clicked in.")],
             keypoints: Annotated[Path, typer.Option(help="Keypoints JSON.")], json_out: JsonOpt = False) -> None:
    """Transfer keypoints clicked in one video to every frame of the others."""
    shared = pipeline.shared_scene(Workspace.open(ws), scene)
    out = transfer_stage.main(shared, source, read_json(keypoints))
    if json_out:
        _print_json(out)
    else:
        for kp in out["keypoints"]:
            console.print(f"{kp['name']}: point {kp['point']}, seen in {len(kp['projections'])} frames of other videos")


@app.command()
def view(ws: WS, scene: Scene, query: Annotated[str | None, typer.Option(help="Show this query's heatmap.")] = None,
         screenshot: Annotated[Path | None, typer.Option(help="Render headless to this PNG instead.")] = None) -> None:
    """Open the 3D viewer (points, cameras, heatmaps, timelines); --screenshot renders it headless."""
    out = viewer_cmds.view(Workspace.open(ws), scene, query, screenshot)
    if out is not None:
        console.print(f"screenshot: {out}")


@app.command()
def overlay(ws: WS, scene: Scene, video: Annotated[str, typer.Option(help="Video name.")],
            query: Annotated[str, typer.Option(help="What to show.")],
            out: Annotated[Path, typer.Option(help="out.mp4, or a folder for PNGs.")],
            gt_part: Annotated[str | None, typer.Option(help="Synthetic worlds: draw this part's truth.")] = None,
            ) -> None:
    """Draw a query's heatmap over every frame of a video (the AR-assistant preview)."""
    console.print(f"overlay: {viewer_cmds.overlay(Workspace.open(ws), scene, video, query, out, gt_part)}")


@app.command()
def export(ws: WS, scene: Scene, fmt: Annotated[str, typer.Option("--format", help="glb or ply.")] = "glb",
           query: Annotated[str | None, typer.Option(help="Include this query's heatmap.")] = None,
           out: Annotated[Path | None, typer.Option(help="Output file.")] = None) -> None:
    """Export points, cameras and a heatmap as GLB (AR apps, Blender) or PLY."""
    if fmt not in ("glb", "ply"):
        raise InputError(f"--format {fmt!r}: use glb or ply")
    path = viewer_cmds.export(Workspace.open(ws), scene, fmt, query, out or Path(f"{scene}.{fmt}"))
    console.print(f"exported: {path}")


@app.command()
def run(ws: WS, frames: Annotated[int | None, typer.Option("--frames", help="Frames sampled per video.")] = None
        ) -> None:
    """Every stage in order: reconstruct, align, train, actionness + steps (each skips what is already done)."""
    pipeline.run_all(Workspace.open(ws), frames=frames)


@app.command()
def synth(out: Annotated[Path, typer.Argument(help="Folder of the new synthetic workspace.")],
          scenes: Annotated[int, typer.Option(help="Scenes (car models).")] = 2,
          videos: Annotated[int, typer.Option(help="Videos per scene.")] = 4,
          seconds: Annotated[float, typer.Option(help="Length of each video.")] = 30.0,
          seed: Annotated[int, typer.Option(help="Random seed (same seed, same world).")] = 0) -> None:
    """Render a synthetic narrated engine-bay world as a ready workspace (with ground truth)."""
    with progress_bar() as progress:
        pipeline.make_synthetic_workspace(out, scenes=scenes, videos=videos, seconds=seconds, seed=seed,
                                          progress=progress)
    console.print(f"synthetic workspace ready: {out}")


@app.command()
def demo(out: Annotated[Path, typer.Option(help="Demo folder.")] = Path("demo")) -> None:
    """Synthetic world → every stage → report. The README's main command."""
    from howto3d import demo as demo_mod

    demo_mod.main(out)


def main() -> None:
    """Console entry point: readable one-line errors instead of tracebacks."""
    try:
        rc = app(standalone_mode=False)
    except InputError as e:
        console.print(f"[red]error:[/red] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)
    except (typer.Exit, typer.Abort) as e:
        sys.exit(getattr(e, "exit_code", 1))
    except Exception as e:  # click usage errors carry their own message and exit code
        import click

        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        raise
    sys.exit(rc if isinstance(rc, int) else 0)
