"""The ``howto3d`` command line: the contract every stage fills in.

Errors a user can fix (bad files, unknown scenes, missing stages) print one readable line and exit non-zero.
"""

from __future__ import annotations

import errno
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, NoReturn

import typer
from rich.text import Text
from typer.core import TyperGroup

from grounding.narration import subtitle_language
from howto3d import reports
from howto3d.progress import console, progress_bar, setup_logging
from howto3d.workspace import Workspace, release_locks
from recon.io import InputError, read_json

if TYPE_CHECKING:  # the types of typer's vendored click, for the overrides below (nothing imported at run time)
    from typer._click import Command as ClickCommand
    from typer._click import Context as ClickContext

# Start-up time: this module imports only what every command needs (typer, rich, the workspace and its config);
# each command imports its stage adapter inside its function, so a cold `howto3d query` pays for torch and
# nothing else (no pycolmap, Open3D, scikit-learn, networkx; tests/cli/test_startup.py keeps it so).

log = logging.getLogger("howto3d")
app = typer.Typer(
    help="Turn narrated how-to videos into a shared 3D space you can ask questions of.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

WS = Annotated[Path, typer.Argument(help="Workspace folder.")]
SceneOpt = Annotated[str | None, typer.Option("--scene", help="Only this scene (default: all scenes).")]
Scene = Annotated[str, typer.Option("--scene", help="Scene name.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON on stdout.")]
ExecutorOpt = Annotated[
    Literal["local", "ray"] | None,
    typer.Option(
        "--executor",
        help="local: worker processes here; ray: Ray tasks on [run] ray_address, RAY_ADDRESS, else a "
        "local Ray cluster. Saved in howto3d.toml.",
    ),
]


class _CrossTaskGroup(TyperGroup):
    """``howto3d crosstask`` whose commands (torch, scikit-learn) are imported only when one of them runs or its
    own help is shown, not by every other command."""

    def _load(self) -> None:
        if not self.commands:
            from howto3d import cli_crosstask

            self.commands.update(typer.main.get_group(cli_crosstask.app).commands)

    def list_commands(self, ctx: ClickContext) -> list[str]:
        self._load()
        return super().list_commands(ctx)

    def get_command(self, ctx: ClickContext, cmd_name: str) -> ClickCommand | None:
        self._load()
        return super().get_command(ctx, cmd_name)


_crosstask = typer.Typer(cls=_CrossTaskGroup, no_args_is_help=True)
_CROSSTASK_HELP = (
    "Step localization, actionness and key-step discovery on CrossTask-format folders "
    "(per-clip features)."
)  # as cli_crosstask.app says; shown without importing it
app.add_typer(_crosstask, name="crosstask", help=_CROSSTASK_HELP)


@app.callback()
def _main(verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging.")] = False) -> None:
    setup_logging(verbose)


@app.command()
def init(ws: WS) -> None:
    """Create a workspace with a documented howto3d.toml."""
    Workspace.init(ws)
    console.print(f"workspace ready: {ws} (edit {ws / 'howto3d.toml'} to change settings)")


@app.command()
def add(
    ws: WS,
    scene: Scene,
    videos: Annotated[list[Path], typer.Argument(help="Videos; same-stem .srt/.vtt/.json subtitles come along.")],
) -> None:
    """Copy videos (and their sidecar subtitles) into a scene of the workspace."""
    w = Workspace.init(ws).lock("add")
    added = w.add_videos(scene, videos)
    for v in added:
        note = "no subtitles (grounding will skip it)"
        if v.subtitles is not None:
            lang = subtitle_language(v.subtitles, v.path)
            note = f"subtitles {v.subtitles.name}" + (f" (language {lang})" if lang else "")
        console.print(f"added {scene}/{v.name}: {note}")
    console.print(
        f"{len(added)} new or changed video(s) in scene {scene!r} ({len(videos) - len(added)} already there, unchanged)"
    )


@app.command()
def reconstruct(
    ws: WS,
    scene: SceneOpt = None,
    frames: Annotated[int | None, typer.Option("--frames", min=1, help="Frames sampled per video.")] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Videos reconstructed in parallel.")] = None,
    force: Annotated[bool, typer.Option(help="Redo videos that finished or failed before.")] = False,
    executor: ExecutorOpt = None,
) -> None:
    """Reconstruct every video on its own with pycolmap (resumable)."""
    from howto3d import recon_cmds

    w = Workspace.open(ws).lock("reconstruct")
    if executor is not None:
        w.remember("run", "executor", executor)
    if frames is not None:
        w.remember("frames", "num_frames", frames)
    with progress_bar() as progress:
        summary = recon_cmds.reconstruct(w, scene, workers=workers, force=force, progress=progress)
    reports.print_reconstruct_summary(summary)
    failed = [r for r in summary if r["status"] != "done"]
    if summary and len(failed) == len(summary):
        _fail(f"every video failed to reconstruct ({len(failed)} of {len(summary)}); see the reasons above", 1)


@app.command()
def align(
    ws: WS,
    scene: SceneOpt = None,
    force: Annotated[bool, typer.Option(help="Realign even if nothing changed.")] = False,
    reanchor: Annotated[
        bool,
        typer.Option(
            help="Create the shared frame anew (new reference video and up; every pair matched again). "
            "Without it the frame stays put when videos are added or removed."
        ),
    ] = False,
    executor: ExecutorOpt = None,
) -> None:
    """Align each scene's reconstructions into one shared frame (alignment graph)."""
    from howto3d import recon_cmds

    w = Workspace.open(ws).lock("align")
    if executor is not None:
        w.remember("run", "executor", executor)
    with progress_bar() as progress:
        results = recon_cmds.align(w, scene, force=force, reanchor=reanchor, progress=progress)
    reports.print_align_summary(results)


@app.command()
def train(
    ws: WS,
    epochs: Annotated[int | None, typer.Option(min=1, help="Maximum training epochs.")] = None,
    force: Annotated[bool, typer.Option(help="Retrain even if nothing changed.")] = False,
) -> None:
    """Train the text→voxel grounding model from the narrations (one BERT for all scenes; skipped when nothing
    changed)."""
    from howto3d import run as run_stages

    w = Workspace.open(ws).lock("train")
    if epochs is not None:
        w.remember("grounding", "epochs", epochs)
    with progress_bar() as progress:
        summary = run_stages.train(w, epochs, progress, force=force)
    reports.print_train_summary(summary)


@app.command()
def query(
    ws: WS,
    scene: Scene,
    text: Annotated[str | None, typer.Argument(help="What to look for.")] = None,
    batch: Annotated[Path | None, typer.Option("--batch", help="File with one query per line.")] = None,
    heatmap: Annotated[Path | None, typer.Option("--heatmap", help="Write the heatmap as PLY.")] = None,
    moments: Annotated[
        bool,
        typer.Option(
            "--moments",
            help="List the video clips that show each answer (loads the scene's cameras: about a second more).",
        ),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Where is it? Text → 3D heatmap and point in the scene's shared frame."""
    from howto3d import grounding_cmds

    texts = [text] if text is not None else []
    if batch is not None:
        if not batch.is_file():
            raise InputError(f"{batch}: query file not found")
        texts += grounding_cmds.gquery.read_queries(batch)
    if not texts:
        raise InputError('give a query ("where is the dipstick") or --batch FILE')
    results = grounding_cmds.query(Workspace.open(ws), scene, texts, heatmap, moments)
    if json_out:
        reports.print_json(results[0] if len(results) == 1 else results)
    else:
        reports.print_query_results(results)


@app.command()
def guide(
    ws: WS,
    scene: Scene,
    task: Annotated[
        str,
        typer.Option(
            help="Task id or title from the scene's task file, or what you want to do "
            "('how do I check the oil'); without a task file the discovered "
            "key steps are followed."
        ),
    ],
    json_out: JsonOpt = False,
) -> None:
    """A task's steps in order: where each happens in 3D, the video moments that show it and what was said."""
    from howto3d import guide_cmds

    w = Workspace.open(ws).lock("guide")
    with progress_bar() as progress:
        result = guide_cmds.guide(w, w.require_scene(scene), task, progress)
    reports.show(result, json_out, reports.print_guide)


@app.command("eval-grounding")
def eval_grounding(
    ws: Annotated[list[Path], typer.Argument(help="Workspace folder(s); several are pooled.")],
    plot: Annotated[Path | None, typer.Option(help="Write the PCK curves as PNG.")] = None,
    queries: Annotated[
        str,
        typer.Option(
            help="Query set: paraphrase (worded unlike the narration) or heldout (wikiHow-style instructions)."
        ),
    ] = "paraphrase",
    json_out: JsonOpt = False,
    scene: Annotated[str | None, typer.Option(help="With --parts: the scene they are in.")] = None,
    parts: Annotated[
        Path | None,
        typer.Option(
            help="Your own scene: part positions JSON (points in "
            "the shared frame or clicks); --queries is then a "
            "JSON file {part: [texts]}."
        ),
    ] = None,
) -> None:
    """PCK@10/@30cm of queries against part positions, per part: synthetic worlds' truth (pooled over worlds), or
    your own scene's parts and queries (--scene S --parts PARTS.json --queries QUERIES.json)."""
    from howto3d import grounding_cmds

    if parts is None:
        report = grounding_cmds.eval_grounding([Workspace.open(w) for w in ws], plot, queries)
        reports.show(report, json_out, reports.print_eval_report)
        return
    from howto3d import scenes, viewer_cmds

    if len(ws) != 1 or scene is None or not queries.endswith(".json"):
        raise InputError("with --parts give one workspace, --scene S and --queries QUERIES.json ({part: [texts]})")
    w = Workspace.open(ws[0])
    locate = viewer_cmds.frame_localizers(w, scene, scenes.shared_scene(w, scene))
    user_report = grounding_cmds.eval_user_grounding(w, scene, parts, Path(queries), plot, localize_for=locate)
    reports.show(
        user_report,
        json_out,
        lambda r: console.print(
            f"{r['scene']}: {len(r['queries'])} queries, PCK@{r['at_fine']:g} {r['pck_fine']:.2f} "
            f"(chance {r['chance_fine']:.2f}), PCK@{r['at']:g} {r['pck_at']:.2f} (chance {r['chance_at']:.2f}), "
            f"median error {r['median_error_m']:.3f} ({'m' if r['units'] == 'metres' else 'scene sizes'})"
        ),
    )


@app.command("eval-transfer")
def eval_transfer(
    ws: WS,
    scene: Scene,
    json_out: JsonOpt = False,
    annotations: Annotated[
        list[Path] | None,
        typer.Option(
            help="Your own videos: a folder of <video>.json (or files), each the `transfer` input format "
            "of one video's clicked keypoints."
        ),
    ] = None,
    thresholds: Annotated[
        str | None,
        typer.Option(
            help="With --annotations: comma-separated PCK thresholds (cm in a metric frame, else model "
            "units; default 1–20 cm or 0.5–15 % of the scene size)."
        ),
    ] = None,
) -> None:
    """Keypoint-transfer PCK: synthetic worlds against ground truth (camera accuracy, graph vs direct edges), or
    your own videos from keypoints you clicked in several videos (--annotations)."""
    from howto3d import evaluation, scenes

    w = Workspace.open(ws)
    shared = scenes.shared_scene(w, scene)
    if annotations:
        from howto3d import viewer_cmds

        try:
            ths = [float(t) for t in thresholds.split(",")] if thresholds else None
        except ValueError:
            raise InputError(f"--thresholds {thresholds!r}: give numbers separated by commas, e.g. 2,5,10") from None
        report = evaluation.eval_user_transfer(
            shared,
            evaluation.read_annotations(annotations, shared.videos),
            scenes.frame_state(w, scene)["units"],
            ths,
            localize_for=viewer_cmds.frame_localizers(w, scene, shared),
        )
        reports.show(
            report,
            json_out,
            lambda r: console.print(
                f"{r['scene']}: {r['pairs']} keypoint pairs, PCK ({r['error_units']}) "
                + ", ".join(f"@{t}: {p:.2f}" for t, p in r["pck"].items())
                + "; reprojection PCK (px) "
                + ", ".join(f"@{t}: {p:.2f}" for t, p in r["pixels"]["pck"].items())
                + "".join(f"\nskipped {x.get('video', '')} {x['name']}: {x['why']}" for x in r["skipped"]),
                markup=False,
            ),
        )
        return
    gt = evaluation.load_gt(w.ground_truth_path(scene))
    accuracy: evaluation.AlignmentAccuracy = {
        "cameras": evaluation.camera_errors(shared, gt),
        "transfer": evaluation.eval_transfer(shared, gt, w.align_dir(scene)),
    }
    reports.show(accuracy, json_out, reports.print_alignment_accuracy)


@app.command("actionness")
def actionness_cmd(
    ws: WS,
    scene: Scene,
    video: Annotated[str | None, typer.Option(help="Only save this video (default: all).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Per-clip actionness (order verification trained on the scene's videos), saved in the workspace."""
    from howto3d import temporal_cmds

    w = Workspace.open(ws).lock("actionness")
    with progress_bar() as progress:
        act = temporal_cmds.actionness(w, w.require_scene(scene), video, progress)
    if json_out:
        reports.print_json(temporal_cmds.actionness_json(act))
    else:
        reports.print_actionness(scene, act, w.temporal_dir(scene) / "actionness")


@app.command("steps")
def steps_cmd(
    ws: WS,
    scene: Scene,
    video: Annotated[str, typer.Option(help="Video name.")],
    task: Annotated[
        str | None,
        typer.Option(help="Task id(s), comma-separated (default: task file entry, else the narration's best match)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Step segments of a video: DP over learned + 3D-grounded step scores, narration constraints, actionness."""
    from howto3d import temporal_cmds

    w = Workspace.open(ws).lock("steps")
    tasks = [t.strip() for t in task.split(",") if t.strip()] if task else None
    with progress_bar() as progress:
        results = temporal_cmds.steps(w, w.require_scene(scene), video, tasks, progress)
    if video not in results:
        raise InputError(f"{scene}/{video}: no task for this video; pass --task (ids in the scene's task file)")
    if json_out:
        reports.print_json(results[video])
    else:
        reports.print_steps(results)


@app.command("discover")
def discover_cmd(
    ws: WS,
    scene: Scene,
    k: Annotated[int | None, typer.Option("--k", min=1, help="Key steps per task (default 7).")] = None,
    json_out: JsonOpt = False,
) -> None:
    """Step timelines without a task list: key steps discovered from the videos, named from their narration."""
    from howto3d import discover_cmds

    w = Workspace.open(ws).lock("discover")
    with progress_bar() as progress:
        results = discover_cmds.discover(w, w.require_scene(scene), k, progress)
    reports.show(results, json_out, reports.print_steps)


@app.command("groundedness")
def groundedness_cmd(ws: WS, scene: Scene, json_out: JsonOpt = False) -> None:
    """How well each narration line is localized in its own video (segment-level AUC; 0.5 = not at all)."""
    from howto3d import groundedness_cmds

    w = Workspace.open(ws).lock("groundedness")
    with progress_bar() as progress:
        report = groundedness_cmds.groundedness(w, w.require_scene(scene), progress)
    reports.show(report, json_out, reports.print_groundedness)


@app.command("eval-steps")
def eval_steps(
    ws: WS,
    scene: SceneOpt = None,
    annotations: Annotated[
        Path | None,
        typer.Option(
            help="Your own labels (one scene: give --scene): a folder of <video>.csv, rows step,start,end"
            "[,task] (CrossTask's shape; step: number or text), instead of a synthetic world's ground "
            "truth."
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Step recall, frame F1 and actionness AP of the saved timelines vs ground truth (synthetic worlds) or your
    own labels (--annotations)."""
    from howto3d import temporal_cmds

    report = temporal_cmds.eval_steps(Workspace.open(ws), scene, annotations)
    reports.show(report, json_out, reports.print_eval)


@app.command()
def cameras(ws: WS, scene: Scene, json_out: JsonOpt = False) -> None:
    """Every registered frame's camera in the scene's shared frame."""
    from howto3d import scenes
    from recon.scene import cameras_json

    shared = scenes.shared_scene(Workspace.open(ws), scene)
    out = cameras_json(shared)
    if json_out:
        reports.print_json(out)
    else:
        for v in shared.videos:
            times = [f["time"] for f in out["frames"] if f["video"] == v]
            console.print(f"{v}: {len(times)} registered frames, t = {min(times):.2f}–{max(times):.2f} s")


@app.command()
def transfer(
    ws: WS,
    scene: Scene,
    source: Annotated[str, typer.Option(help="Video whose frames the keypoints were clicked in.")],
    keypoints: Annotated[Path, typer.Option(help="Keypoints JSON.")],
    json_out: JsonOpt = False,
) -> None:
    """Transfer keypoints clicked in one video to every frame of the others."""
    from howto3d import scenes, viewer_cmds
    from recon import transfer as transfer_stage
    from recon.transfer import FrameLocalizer

    w = Workspace.open(ws)
    shared = scenes.shared_scene(w, scene)
    video = scenes.video(w, scene, source).path if source in shared.videos else None
    localize = FrameLocalizer(viewer_cmds.localizer(w, scene, shared), video, source) if video else None
    out = transfer_stage.main(shared, source, read_json(keypoints), localize=localize)
    if json_out:
        reports.print_json(out)
    else:
        for kp in out["keypoints"]:
            console.print(f"{kp['name']}: point {kp['point']}, seen in {len(kp['projections'])} frames of other videos")
        for skipped in out.get("skipped", []):
            console.print(f"{skipped['name']}: skipped ({skipped['why']})")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def scale(
    ctx: typer.Context,
    ws: WS,
    scene: Scene,
    source: Annotated[str, typer.Option(help="Video whose frames the keypoints were clicked in.")],
    keypoints: Annotated[
        Path,
        typer.Option(help='Keypoints JSON (the `transfer` input; may also hold "distances": [{"a", "b", "metres"}]).'),
    ],
    distance: Annotated[
        list[str] | None,
        typer.Option(
            metavar="NAME_A NAME_B METRES",
            help="A known length between two keypoints; repeatable (least-squares scale).",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Make the scene's shared frame metric from a known length ("this battery is 0.24 m wide")."""
    from howto3d import recon_cmds, viewer_cmds

    w = Workspace.open(ws).lock("scale")
    out = recon_cmds.scale(
        w,
        scene,
        source,
        keypoints,
        _distances(distance or [], ctx.args),
        lambda shared: viewer_cmds.frame_localizers(w, scene, shared)(source),
    )
    reports.show(
        out,
        json_out,
        lambda r: console.print(
            f"{r['scene']}: shared frame now in metres (scale {r['scale']:.6g}, "
            f"RMS residual {r['residual'] * 100:.2f} cm over {len(r['distances'])} length(s))"
        ),
    )


def _distances(first: list[str], rest: list[str]) -> list[tuple[str, str, float]]:
    """``--distance A B METRES`` (repeatable): typer takes one value per option, the other two arrive in order
    among the extra arguments."""
    usage = "give each length as --distance NAME_A NAME_B METRES"
    if len(rest) != 2 * len(first):
        raise InputError(f"unexpected arguments {' '.join(rest)!r}; {usage}")
    out = []
    for i, a in enumerate(first):
        b, metres = rest[2 * i : 2 * i + 2]
        try:
            out.append((a, b, float(metres)))
        except ValueError:
            raise InputError(f"--distance {a} {b} {metres}: METRES must be a number; {usage}") from None
    return out


@app.command()
def view(
    ws: WS,
    scene: Scene,
    query: Annotated[str | None, typer.Option(help="Show this query's heatmap.")] = None,
    screenshot: Annotated[Path | None, typer.Option(help="Render headless to this PNG instead.")] = None,
) -> None:
    """Open the 3D viewer (points, cameras, heatmaps, timelines); --screenshot renders it headless."""
    from howto3d import viewer_cmds

    out = viewer_cmds.view(Workspace.open(ws), scene, query, screenshot)
    if out is not None:
        console.print(f"screenshot: {out}")


@app.command()
def overlay(
    ws: WS,
    scene: Scene,
    out: Annotated[Path, typer.Option(help="out.mp4, or a folder for PNGs (out.png with --image).")],
    query: Annotated[str | None, typer.Option(help="What to show (or --task and --step).")] = None,
    task: Annotated[
        str | None, typer.Option(help="Show a step of this task's guide (id, title or 'how do I ...'), with --step.")
    ] = None,
    step: Annotated[int | None, typer.Option(help="Which step of --task (1 = the first).")] = None,
    video: Annotated[str | None, typer.Option(help="Video name.")] = None,
    image: Annotated[Path | None, typer.Option(help="A new photo: localized, then drawn on.")] = None,
    gt_part: Annotated[str | None, typer.Option(help="Synthetic worlds: draw this part's truth.")] = None,
) -> None:
    """Draw a query's heatmap, or where a guide step happens, over every frame of a video or over your own photo
    (the AR-assistant preview)."""
    from howto3d import viewer_cmds

    if (video is None) == (image is None):
        raise InputError("give either --video NAME (a video of the workspace) or --image PHOTO (a new photo)")
    if step is not None and task is None:
        raise InputError("--step needs --task (the task whose guide it numbers)")
    if (query is None) == (task is None):
        raise InputError("give either --query TEXT or --task TASK --step N")
    w = Workspace.open(ws)
    target = None
    if task is not None:
        from howto3d import guide_cmds

        w = w.lock("overlay")  # the guide may redo stale step timelines
        target = guide_cmds.step_target(w, w.require_scene(scene), task, step)
    if image is not None:
        console.print(f"overlay: {viewer_cmds.photo_overlay(w, scene, image, query, out, gt_part, target)}")
        return
    assert video is not None  # exactly one of --video and --image (checked above)
    console.print(f"overlay: {viewer_cmds.overlay(w, scene, video, query, out, gt_part, target=target)}")


@app.command()
def localize(
    ws: WS,
    scene: Scene,
    images: Annotated[list[Path], typer.Argument(help="Photos (JPEG/PNG) of the scene.")],
    json_out: JsonOpt = False,
) -> None:
    """Find where each photo's camera is in the scene's shared frame (retrieval + SIFT + PnP)."""
    from howto3d import viewer_cmds

    with progress_bar() as progress:
        out = viewer_cmds.localize(Workspace.open(ws), scene, images, progress)
    if json_out:
        reports.print_json(out)
        return
    for r in out["images"]:
        if r["cam_from_world"] is None:
            console.print(f"{r['image']}: not localized ({r['reason']})")
        else:
            c = r["center"]
            console.print(
                f"{r['image']}: localized, {r['inliers']} inliers, camera at "
                f"({c[0]:.3f}, {c[1]:.3f}, {c[2]:.3f}), focal {r['K'][0][0]:.0f} px"
            )


@app.command()
def serve(
    ws: WS,
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    host: Annotated[str, typer.Option(help="Interface to listen on (0.0.0.0: the whole network).")] = "127.0.0.1",
    localize_workers: Annotated[int, typer.Option(min=1, help="Processes localizing photos.")] = 1,
) -> None:
    """HTTP API for AR clients (query, localize, overlay, GLB export) and a web page at /."""
    from howto3d.server import serve as run_server  # FastAPI/uvicorn: only `serve` pays for their import

    run_server(ws, host, port, localize_workers)


@app.command()
def export(
    ws: WS,
    scene: Scene,
    fmt: Annotated[str, typer.Option("--format", help="glb, ply or colmap.")] = "glb",
    query: Annotated[
        list[str] | None,
        typer.Option(
            help="A part: its heatmap is drawn (the first --query); with --anchors each is an anchor. Repeatable."
        ),
    ] = None,
    with_anchors: Annotated[
        bool,
        typer.Option(
            "--anchors",
            help="glb: add named anchor nodes (each --query, every guide step) and write <out>.anchors.json beside.",
        ),
    ] = False,
    queries: Annotated[
        Path | None, typer.Option(help="With --anchors: a text file of part names, one per line.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output file; a folder for colmap.")] = None,
) -> None:
    """Export points, cameras and a heatmap as GLB (AR apps, Blender) or PLY; with --anchors, named parts and guide
    steps as GLB nodes; or every registered frame, its camera and the points as one COLMAP model with the frames
    (splatting/NeRF trainers, COLMAP's GUI)."""
    from howto3d import viewer_cmds

    if fmt not in ("glb", "ply", "colmap"):
        raise InputError(f"--format {fmt!r}: use glb, ply or colmap")
    if (with_anchors or queries is not None) and fmt != "glb":
        raise InputError(f"--anchors and --queries: anchors are GLB nodes; use --format glb (not {fmt})")
    if queries is not None and not with_anchors:
        raise InputError("--queries names anchors: add --anchors")
    if fmt == "colmap":
        if query:
            raise InputError("--query draws a heatmap, which a COLMAP model cannot hold: use --format glb or ply")
        out = out or Path(f"{scene}_colmap")
        rec = viewer_cmds.export_colmap(Workspace.open(ws), scene, out)
        console.print(
            f"exported: {out} ({rec.num_images()} images, {rec.num_points3D()} points, {rec.num_cameras()} cameras)"
        )
        return
    out = out or Path(f"{scene}.{fmt}")
    heatmap = query[0] if query else None
    if with_anchors:
        from howto3d import anchors_cmds

        names = list(dict.fromkeys([*(query or []), *(anchors_cmds.read_names(queries) if queries else [])]))
        path, found = anchors_cmds.export(Workspace.open(ws), scene, out, heatmap, names)
        console.print(f"exported: {path} with {len(found['anchors'])} anchors ({anchors_cmds.anchors_path(path)})")
        return
    path = viewer_cmds.export(Workspace.open(ws), scene, fmt, heatmap, out)
    console.print(f"exported: {path}")


@app.command()
def run(
    ws: WS,
    frames: Annotated[int | None, typer.Option("--frames", min=1, help="Frames sampled per video.")] = None,
    executor: ExecutorOpt = None,
) -> None:
    """Every stage in order: reconstruct, align, train, actionness + steps (each skips what is already done), then
    `check`: exit 1 when the workspace breaks a promise (one line each, with its fix)."""
    from howto3d import run as run_stages

    w = Workspace.open(ws).lock("run")
    if frames is not None:
        w.remember("frames", "num_frames", frames)
    if executor is not None:
        w.remember("run", "executor", executor)
    if run_stages.run_all(w):
        raise typer.Exit(1)


@app.command()
def check(ws: WS, scene: SceneOpt = None, json_out: JsonOpt = False) -> None:
    """Verify what the stages promise each other: frames.json, SfM segments, the alignment, and that nothing
    downstream is stale. One line per problem (file, what is wrong, the command that fixes it); exit 1 if any."""
    from howto3d import check as checks

    w = Workspace.open(ws)
    problems = checks.check(w, scene)
    if json_out:
        reports.print_json(checks.report(problems))
    else:
        reports.print_lines([p.line() for p in problems] or [checks.summary(w, scene)])
    if problems:
        raise typer.Exit(1)


@app.command()
def synth(
    out: Annotated[Path, typer.Argument(help="Folder of the new synthetic workspace.")],
    scenes: Annotated[int | None, typer.Option(min=1, help="Scenes (car models); 2 unless a preset says.")] = None,
    videos: Annotated[int | None, typer.Option(min=1, help="Videos per scene; 4 unless a preset says.")] = None,
    seconds: Annotated[
        float | None, typer.Option(min=1.0, help="Length of each video; 30 unless a preset says.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same world).")] = 0,
    preset: Annotated[
        str,
        typer.Option(
            help="default | long (150-s downloads: 20-30 s dwells with hands, "
            "jump cut, insert, YouTube auto-captions) | degraded (blur, lens "
            "distortion, exposure jumps, hands, jump cuts)."
        ),
    ] = "default",
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Any other world setting as KEY=VALUE, "
            "repeatable: cuts=2, inserts=1, caption_vtt_share=0.5, "
            "motion_blur=0.5, distortion_k1=-0.1, hands=true, fps=5 "
            "(all: synth.WorldConfig).",
        ),
    ] = None,
) -> None:
    """Render a synthetic narrated engine-bay world as a ready workspace (with ground truth)."""
    from howto3d import synth_cmds

    with progress_bar() as progress:
        synth_cmds.make_synthetic_workspace(
            out,
            scenes=scenes,
            videos=videos,
            seconds=seconds,
            seed=seed,
            progress=progress,
            preset=preset,
            settings=set_ or [],
        )
    console.print(f"synthetic workspace ready: {out}")


@app.command()
def demo(out: Annotated[Path, typer.Option(help="Demo folder.")] = Path("demo")) -> None:
    """Synthetic world → every stage → report. The README's main command."""
    from howto3d import demo as demo_run

    demo_run.main(out)


_OS_FIXES = {
    errno.ENOSPC: "the disk is full; free space there and rerun (finished work is kept)",
    errno.EDQUOT: "the disk quota is exhausted; free space there and rerun (finished work is kept)",
    errno.EROFS: "the file system is read-only; copy the workspace to a writable disk or remount it",
    errno.EACCES: "permission denied; make the folder writable for you (or run as its owner)",
    errno.EPERM: "permission denied; make the folder writable for you (or run as its owner)",
    errno.ENAMETOOLONG: "the file name is too long; rename the file (or the scene/video) shorter",
}


def _fail(message: str, code: int) -> NoReturn:
    """One plain line on stderr (never rich markup: paths may contain brackets) and a non-zero exit."""
    console.print(Text.assemble(("error: ", "red"), message), highlight=False, soft_wrap=True)
    sys.exit(code)


def os_error_message(e: OSError) -> str:
    """One line for an OS failure: which file, what happened, how to fix it."""
    where = e.filename or "the workspace"
    fix = _OS_FIXES.get(e.errno or 0, "check the path and its permissions, then rerun")
    return f"{where}: {e.strerror or e}; {fix}"


def main() -> None:
    """Console entry point: every user mistake (bad files, usage, a full or read-only disk) is one line, never a
    traceback; programming errors keep theirs (``--verbose`` adds it for OS errors too)."""
    try:
        rc = app(standalone_mode=False)
    except InputError as e:
        _fail(str(e), getattr(e, "exit_code", 2))  # a stale artefact (work to redo) exits 1
    except typer.TyperException as e:
        # typer 0.29 (pinned) vendors click, whose exceptions derive from the public `typer.TyperException`; its
        # maintainers advise against importing `typer._click`, so usage mistakes are caught through the base class
        # and help for a bare command is told by name, as typer's own rich_utils does (tests/cli/test_bad_input.py
        # pins both: one line and exit 2, or the help and exit 0).
        if type(e).__name__ == "NoArgsIsHelpError":  # rich help is already printed; plain help is the message
            if e.format_message().strip():
                typer.echo(e.format_message(), err=True)
            sys.exit(0)
        ctx = getattr(e, "ctx", None)
        where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        _fail(" ".join(e.format_message().split()) + where, e.exit_code)
    except (typer.Exit, typer.Abort) as e:
        sys.exit(getattr(e, "exit_code", 1))
    except KeyboardInterrupt:
        _fail("interrupted; rerun the same command to resume (finished work is kept)", 130)
    except OSError as e:
        log.debug("OS error", exc_info=True)
        _fail(os_error_message(e), 1)
    finally:
        release_locks()
    sys.exit(rc if isinstance(rc, int) else 0)
