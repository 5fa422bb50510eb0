"""Named anchors for AR engines: the parts a user asks for and every guide step, each a point in the shared frame.

One builder for the three places that hand them out: ``export --format glb --anchors`` (empty GLB nodes named by
the anchor, its fields in ``extras``), the ``<out>.anchors.json`` written beside that GLB, and ``GET
/scene/{scene}/anchors.json`` of the server. A Unity or three.js app then finds "dipstick" or "check oil level /
2. pull out the dipstick" by name instead of by coordinates.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

import numpy as np

from howto3d import scenes as wscenes
from howto3d.workspace import Workspace
from recon.io import InputError, atomic_write_bytes

if TYPE_CHECKING:
    from grounding.query import Grounder
    from recon.scene import SharedScene
    from temporal.video_steps import Timeline

log = logging.getLogger("howto3d")


class Anchor(TypedDict, total=False):
    """One anchor: ``kind`` "part" (a query's answer) or "step" (a guide step's place)."""

    name: str
    kind: str
    point: list[float]
    """Shared-frame coordinates (the ``query``/``guide`` contract's ``point``)."""
    radius: float
    """How far around ``point`` the part or step lies (the answer's scoring ball), shared-frame units."""
    confidence: float
    uncertain: bool
    text: str
    task: str
    title: str
    step: str
    index: int


class AnchorsFile(TypedDict):
    """``<out>.anchors.json`` and ``GET /scene/{scene}/anchors.json`` (docs/cli.md): the frame and the anchors."""

    scene: str
    units: str
    """"metres" once the frame is scaled, else "model"."""
    up: list[float]
    """The shared frame's up."""
    gltf_from_shared: list[list[float]]
    """4x4: the GLB's ``anchors`` node transform, taking up to glTF's +Y."""
    axes: str
    anchors: list[Anchor]


def read_names(path: Path) -> list[str]:
    """Part names from a text file, one per line (blank lines and ``#`` comments skipped)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(
            f"{path}: cannot read the names ({e}); give a UTF-8 text file, one part name per line"
        ) from None
    return [s for line in lines if (s := line.split("#", 1)[0].strip())]


def part_anchors(grounder: Grounder, scene: str, names: list[str]) -> list[Anchor]:
    """Each name's query answer as an anchor."""
    radius = round(grounder.score_radius * float(np.mean(grounder.spaces[scene].size)), 6)
    return [
        Anchor(
            name=r["text"],
            kind="part",
            text=r["text"],
            point=r["point"],
            radius=radius,
            confidence=r["score"],
            uncertain=r["uncertain"],
        )
        for r in grounder.query(scene, names)
    ]


def step_anchors(
    ws: Workspace, scene: str, grounder: Grounder | None, shared: SharedScene, timelines: Mapping[str, Timeline]
) -> list[Anchor]:
    """Every placed step of every task (of the task file; the discovered key steps without one), named
    ``"<task title> / <n>. <step>"``; a task no video performs, or a step without a place, is logged and left out."""
    from howto3d import guide_cmds
    from temporal.tasks import find_task_file, read_task_file

    path = find_task_file(ws.scene_dir(scene))
    tasks = list(read_task_file(path).tasks) if path is not None else ["key steps"]
    narrations = wscenes.narrations(ws, scene)
    out: list[Anchor] = []
    for task in tasks:
        try:
            g = guide_cmds.guide(
                ws, scene, task, timelines=timelines, grounder=grounder, shared=shared, narrations=narrations
            )
        except InputError as e:
            log.warning("%s: no anchors for task %r (%s)", scene, task, e)
            continue
        for st in g["steps"]:
            if st["point"] is None or st["radius"] is None:
                log.warning("%s: %s step %d (%s) has no place: no anchor", scene, g["task"], st["index"], st["step"])
                continue
            out.append(
                Anchor(
                    name=f"{g['title']} / {st['index']}. {st['step']}",
                    kind="step",
                    task=g["task"],
                    title=g["title"],
                    step=st["step"],
                    index=st["index"],
                    point=st["point"],
                    radius=st["radius"],
                    confidence=st["confidence"],
                    uncertain=st["uncertain"],
                )
            )
    return out


def anchors(
    ws: Workspace,
    scene: str,
    names: list[str],
    grounder: Grounder | None = None,
    shared: SharedScene | None = None,
    timelines: Mapping[str, Timeline] | None = None,
) -> AnchorsFile:
    """The anchors file's content: the frame (units, up, the GLB root's transform) and the anchors.

    ``names`` need the grounding model; steps need the saved step timelines (``run``/``steps``), and are left out
    with a log line without them. A server passes what it holds loaded."""
    from howto3d import temporal_cmds
    from viewer.export import up_to_y
    from viewer.geometry import scene_up

    shared = shared or wscenes.shared_scene(ws, scene)
    if grounder is None:
        try:
            grounder = wscenes.grounder(ws, scene)
        except InputError as e:
            if names:
                raise
            log.warning("%s: steps are placed by where the cameras look, without their words (%s)", scene, e)
    timelines = temporal_cmds.load_steps(ws, scene) if timelines is None else timelines
    out = part_anchors(grounder, scene, names) if names and grounder is not None else []  # names: loaded above
    if timelines:
        out += step_anchors(ws, scene, grounder, shared, timelines)
    else:
        log.warning(
            "%s: no step timelines in %s: no step anchors; run `howto3d run`", scene, ws.temporal_dir(scene) / "steps"
        )
    up = scene_up(shared)
    return {
        "scene": scene,
        "units": wscenes.frame_state(ws, scene)["units"],
        "up": np.round(up, 6).tolist(),
        "gltf_from_shared": np.round(up_to_y(up), 9).tolist(),
        "axes": "points are shared-frame coordinates (the query/guide contract); the GLB's anchors node turns "
        "them by gltf_from_shared so that 'up' is glTF's +Y",
        "anchors": out,
    }


def export(ws: Workspace, scene: str, out: Path, query: str | None, names: list[str]) -> tuple[Path, AnchorsFile]:
    """``export --format glb --anchors``: the GLB with anchor nodes, and the same anchors in ``<out>.anchors.json``
    (what ``GET /scene/{scene}/anchors.json`` answers)."""
    from howto3d import viewer_cmds

    shared = wscenes.shared_scene(ws, scene)
    found = anchors(ws, scene, names, shared=shared)
    path = viewer_cmds.export(ws, scene, "glb", query, out, found, shared)
    atomic_write_bytes(anchors_path(path), json.dumps(found, indent=1).encode())
    log.info("%s: %d anchors -> %s", scene, len(found["anchors"]), anchors_path(path))
    return path, found


def anchors_path(glb: Path) -> Path:
    """``scene.glb`` → ``scene.anchors.json``, beside it."""
    return Path(glb).with_suffix(".anchors.json")
