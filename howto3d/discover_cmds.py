"""Workspace adapter of ``howto3d discover``: step timelines without a task list ([004]).

The stage code is ``temporal.procedure.named_timelines``; this module finds its inputs and runs it through
:meth:`Workspace.run_step`. Writes (through the stage's artefact types) under ``WS/scenes/<scene>/temporal/``::

    steps/<video>.json        discovered key steps, ``"task_source": "discovered"`` (same shape as ``steps``)
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace

import numpy as np
import torch

from howto3d import scenes
from howto3d.temporal_cmds import (
    arrays_fingerprint,
    features_of,
    load_timelines,
    narration_lines,
    save_timelines,
)
from howto3d.workspace import StepSpec, Workspace
from recon.io import ProgressFn
from temporal.procedure import ProcedureConfig, named_timelines
from temporal.tasks import find_task_file, read_task_file
from temporal.video_steps import Timeline, Timelines

log = logging.getLogger("howto3d")


# ----------------------------------------------------------------------------- discover


def _video_tasks(ws: Workspace, scene: str, videos: Sequence[str]) -> dict[str, str]:
    """Each video's task: the task file's ``videos`` table when it has one, else one task for the whole scene."""
    path = find_task_file(ws.scene_dir(scene))
    table = read_task_file(path).videos if path is not None else {}
    return {v: "+".join(table[v]) if table.get(v) else scene for v in videos}


def procedure_conf(ws: Workspace, k: int | None = None, conf: ProcedureConfig | None = None) -> ProcedureConfig:
    """Key-step discovery's settings: ``conf`` (default: the workspace's ``[discover]``), with ``k`` key steps
    when given."""
    conf = conf or ws.config.discover
    return replace(conf, k=k) if k is not None else conf


def discover_step(ws: Workspace, scene: str, features: Mapping[str, np.ndarray], conf: ProcedureConfig) -> StepSpec:
    """Discovered timelines from these features, the subtitles (they name the steps) and the task file."""
    inputs = {
        "features": arrays_fingerprint(features),
        **scenes.subtitle_inputs(ws, scene),
        "tasks": find_task_file(ws.scene_dir(scene)),
    }
    return StepSpec("discover", scene, inputs, asdict(conf))


def discover(
    ws: Workspace,
    scene: str,
    k: int | None = None,
    progress: ProgressFn | None = None,
    conf: ProcedureConfig | None = None,
    features: dict[str, np.ndarray] | None = None,
) -> dict[str, Timeline]:
    """Named key-step timelines of every video of the scene from the videos (and task labels) alone; redone
    only when the features, the subtitles (they name the steps), the task file or the settings change."""
    feats = features if features is not None else features_of(ws, scene, progress=progress)
    names = sorted(feats)
    tasks = _video_tasks(ws, scene, names)
    conf = procedure_conf(ws, k, conf)
    folder = ws.temporal_dir(scene) / "steps"

    def compute() -> dict[str, Timeline]:
        torch.set_num_threads(1)
        out = named_timelines(conf, feats, tasks, narration_lines(ws, scene), scene, progress)
        save_timelines(ws, scene, Timelines(out))
        log.info(
            "%s: discovered %d key steps per task for %d videos (tasks: %s)",
            scene,
            conf.k,
            len(names),
            ", ".join(sorted(set(tasks.values()))),
        )
        return out

    return ws.run_step(
        *discover_step(ws, scene, feats, conf), compute, load=lambda: load_timelines(folder, names, discovered=True)
    )
