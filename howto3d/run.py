"""Commands that chain stages: ``howto3d run`` (every stage, skipping finished work) and ``train``'s optional
groundedness filter (a temporal result feeding the grounding stage)."""

from __future__ import annotations

import logging

from howto3d import check, discover_cmds, groundedness_cmds, grounding_cmds, recon_cmds, reports, scenes, temporal_cmds
from howto3d.progress import progress_bar
from howto3d.workspace import Workspace
from recon.io import InputError, ProgressFn
from temporal.tasks import find_task_file

log = logging.getLogger("howto3d")


def train(ws: Workspace, epochs: int | None = None, progress: ProgressFn | None = None, force: bool = False) -> dict:
    """Train grounding; with ``grounding.min_groundedness`` > 0 the lines each video localizes poorly in its own
    frames are left out first (``howto3d groundedness``), and the choice is saved next to the model."""
    threshold = ws.config.grounding.min_groundedness
    if threshold <= 0:
        return grounding_cmds.train(ws, epochs, progress, force=force)
    names = grounding_cmds.trainable_scenes(ws)
    narrations = {s: scenes.narrations(ws, s) for s in names}
    weights = {s: groundedness_cmds.groundedness_weights(ws, s, narrations[s], threshold, progress) for s in names}
    summary = grounding_cmds.train(ws, epochs, progress, line_weights=weights, force=force)
    for s in names:
        groundedness_cmds.write_line_record(ws, s, narrations[s], threshold)
    return summary


def timelines(ws: Workspace, progress: ProgressFn | None = None) -> dict[str, dict]:
    """Actionness and step timelines of every scene with a reconstructed video: from the scene's task file, or
    discovered key steps when it has none. A scene's groundedness report, once made (`howto3d groundedness`), is
    kept current too: `run` leaves nothing stale behind (its closing check would say so)."""
    done = {}
    for s in ws.select_scenes(None):
        if not scenes.reconstructed_videos(ws, s):
            log.warning("%s: temporal skipped: no reconstructed video yet", s)
            continue
        if find_task_file(ws.scene_dir(s)) is not None:
            done[s] = temporal_cmds.steps(ws, s, progress=progress)  # features and actionness first, inside
        else:
            log.warning(
                "%s: no tasks.json/tasks.toml in %s: key steps discovered from the videos instead (`howto3d discover`)",
                s,
                ws.scene_dir(s),
            )
            feats = temporal_cmds.features_of(ws, s, progress=progress)
            temporal_cmds.actionness(ws, s, None, progress, feats)
            done[s] = discover_cmds.discover(ws, s, progress=progress, features=feats)
        if s in ws.record("groundedness").items:
            try:
                groundedness_cmds.groundedness(ws, s, progress=progress)  # skipped when current
            except InputError as e:
                log.warning("%s: groundedness report not redone: %s", s, e)
    return done


def run_all(ws: Workspace) -> list[check.Problem]:
    """reconstruct → align → train → actionness + steps with the workspace's settings, printing each stage's
    summary; stages skip finished work. ``[run] executor`` (``run --executor`` saves it) sends every stage's
    per-video and per-pair work (frames + SfM, alignment pairs, clip features) to Ray. Ends with ``howto3d check``:
    its problems are printed and returned (none after a run that went well)."""
    with progress_bar() as progress:
        summary = recon_cmds.reconstruct(ws, None, progress=progress)
    reports.print_reconstruct_summary(summary)
    with progress_bar() as progress:
        results = recon_cmds.align(ws, None, progress=progress)
    reports.print_align_summary(results)
    with progress_bar() as progress:
        trained = train(ws, None, progress)
    reports.print_train_summary(trained)
    with progress_bar() as progress:
        done = timelines(ws, progress)
    for results in done.values():
        reports.print_steps(results)
    problems = check.check(ws)
    reports.print_lines([p.line() for p in problems] or [check.summary(ws)])
    return problems
