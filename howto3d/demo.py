"""``howto3d demo``: a synthetic narrated world through every stage, with a report a newcomer can open."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from howto3d import evaluation, grounding_cmds, reports, run, scenes, synth_cmds, temporal_cmds, viewer_cmds
from howto3d.progress import console, progress_bar
from howto3d.workspace import Workspace


@dataclass
class DemoConfig:
    """Size of the demo world. Only the world is chosen here: the pipeline runs the product's defaults (80 frames
    per video, the matching and mapping every user gets), so the demo takes the code paths users take."""

    scenes: int = 2
    """Car models."""
    videos: int = 3
    """Videos per car model."""
    seconds: float = 30.0
    """Length of each video (a short clip, as users download them)."""
    fps: float = 5.0
    """Frame rate of the rendered videos (the pipeline samples its default number of frames from them)."""
    query: str = "where is the dipstick"
    """The question shown in the screenshot and the overlay."""
    query_part: str = "dipstick"
    """Its true answer (drawn as a green dot)."""
    seed: int = 0
    """World seed."""


def main(out: Path, conf: DemoConfig | None = None) -> dict:
    conf = conf or DemoConfig()
    out = Path(out)
    ws_root = out / "workspace"
    if (ws_root / "scenes").is_dir() and any((ws_root / "scenes").iterdir()):
        console.print(f"reusing the synthetic world in {ws_root} (delete it for a new one)")
        ws = Workspace.open(ws_root)
    else:
        with progress_bar() as progress:
            ws = synth_cmds.make_synthetic_workspace(
                ws_root,
                scenes=conf.scenes,
                videos=conf.videos,
                seconds=conf.seconds,
                seed=conf.seed,
                fps=conf.fps,
                progress=progress,
            )
    run.run_all(ws)
    for scene in ws.scenes():
        shared = scenes.shared_scene(ws, scene)
        gt = evaluation.load_gt(ws.ground_truth_path(scene))
        console.rule(f"alignment of {scene} vs ground truth")
        reports.print_alignment_accuracy(
            {
                "cameras": evaluation.camera_errors(shared, gt),
                "transfer": evaluation.eval_transfer(shared, gt, ws.align_dir(scene)),
            }
        )
    console.rule("grounding: questions worded unlike the narration vs true part positions")
    report = grounding_cmds.eval_grounding(ws, out / "pck.png")
    reports.print_eval_report(report)
    scene = ws.scenes()[0]
    results = grounding_cmds.query(ws, scene, [conf.query])
    reports.print_query_results(results)
    console.rule("step timelines vs ground truth")
    steps_report = temporal_cmds.eval_steps(ws)
    reports.print_eval(steps_report)
    steps, actionness = temporal_cmds.timeline_inputs(ws, scene)
    pictures = viewer_cmds.demo_outputs(
        ws, scene, conf.query, out, gt_part=conf.query_part, steps=steps, actionness=actionness
    )
    pictures["pck"] = out / "pck.png"
    console.rule("open these")
    for name, path in pictures.items():
        console.print(f"{name:>10}: {path}")
    return {"pck": report, "steps": steps_report, "pictures": pictures}
