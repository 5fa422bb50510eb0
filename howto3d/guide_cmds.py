"""``howto3d guide``: a task's steps in order, each where it happens in 3D, with the video moments that show it.

Joins what the workspace already holds: the step timelines (``steps``, from the scene's task file, or the
discovered key steps without one), the registered cameras in the shared frame, the narration, and the grounding
model's heatmap of each step's words. The placing itself is ``grounding.guide``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Hashable, Mapping
from typing import TYPE_CHECKING, TypedDict

import numpy as np

from grounding.guide import GuideConfig, Said, Segment, Spans, step_answer
from grounding.query import neighbourhood
from howto3d import scenes as wscenes
from howto3d.workspace import Workspace
from recon.io import InputError, ProgressFn
from temporal.tasks import TaskFile, find_task_file, read_task_file, task_scores

if TYPE_CHECKING:
    from grounding.moments import Moment
    from grounding.narration import Narration
    from grounding.query import Grounder
    from grounding.voxels import VoxelSpace
    from recon.scene import SharedScene
    from temporal.video_steps import StepSegment, Timeline

log = logging.getLogger("howto3d")


class GuideStep(TypedDict):
    """One step of the guide (:class:`grounding.guide.StepPlace` and its number); a step no video performs has
    no ``point`` or ``radius``, confidence 0 and empty lists."""

    index: int
    step: str
    point: list[float] | None
    radius: float | None
    confidence: float
    uncertain: bool
    looks: int
    videos: list[str]
    segments: list[Segment]
    moments: list[Moment]
    narration: list[Said]


class Guide(TypedDict):
    """The ``guide --json`` contract (docs/ar.md): a task's steps in order, in the scene's shared frame."""

    scene: str
    task: str
    title: str
    task_source: str
    """"task file", or "discovered" (the key steps discovered from the videos)."""
    units: str
    steps: list[GuideStep]


def match_task(tf: TaskFile, text: str, grounder: Grounder | None) -> str:
    """The task ``text`` names: its id or title (any case), else the task whose title and steps are closest in
    meaning (the grounding model's sentence encoder; word overlap without a model)."""
    wanted = text.strip().lower()
    for t in tf.tasks.values():
        if wanted in (t.id.lower(), t.title.lower()):
            return t.id
    ids = list(tf.tasks)
    if grounder is not None:
        texts = [text] + [f"{tf.tasks[t].title}: {', '.join(tf.tasks[t].steps)}" for t in ids]
        E = grounder.model.embed(*grounder.tokenizer.encode(texts, grounder.max_tokens))
        E = E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)
        return ids[int(np.argmax(E[1:] @ E[0]))]
    scores = task_scores([text], tf.tasks)
    best = max(ids, key=lambda t: scores[t][0])
    if scores[best][0] <= 0:
        raise InputError(
            f"{tf.path}: no task matches {text!r}; use an id or title: "
            + ", ".join(f"{t.id} ({t.title})" for t in tf.tasks.values())
        )
    return best


def _spans(timelines: Mapping[str, Timeline], keep: Callable[[StepSegment], Hashable | None]) -> dict[Hashable, Spans]:
    """Per step key (``keep(step) -> key or None``), each video's segments of that step."""
    out: dict[Hashable, Spans] = {}
    for video, r in sorted(timelines.items()):
        for st in r.get("steps", []):
            key, start, end = keep(st), st.get("start"), st.get("end")
            if key is None or start is None or end is None:  # both None: the DP gave the step no segment
                continue
            segs = st.get("segments") or [[start, end]]
            out.setdefault(key, {}).setdefault(video, []).extend((float(a), float(b)) for a, b in segs)
    return out


def guide(
    ws: Workspace,
    scene: str,
    task: str,
    progress: ProgressFn | None = None,
    timelines: Mapping[str, Timeline] | None = None,
    grounder: Grounder | None = None,
    conf: GuideConfig | None = None,
    shared: SharedScene | None = None,
    narrations: dict[str, list[Narration]] | None = None,
) -> Guide:
    """The guide of ``task`` in ``scene`` (the ``guide --json`` contract).

    ``timelines`` (per video, as ``steps``/``discover`` save them) are computed here when not given (redone only
    when stale); ``grounder`` is loaded when not given, and its absence (no narration to train on) leaves the
    steps placed by where the cameras look alone. A server passes what it holds loaded (``shared``,
    ``narrations``) and the saved timelines."""
    from howto3d import discover_cmds, temporal_cmds

    conf = conf or ws.config.guide
    ws.require_scene(scene)
    if not task.strip():
        raise InputError("--task is empty: give a task id, its title, or what you want to do ('check the oil')")
    if grounder is None:
        try:
            grounder = wscenes.grounder(ws, scene)
        except InputError as e:
            log.warning("%s: steps are placed by where the cameras look, without their words (%s)", scene, e)
    path = find_task_file(ws.scene_dir(scene))
    steps: list[tuple[Hashable, str, Spans]]
    if path is not None:
        tf = read_task_file(path)
        task_id = match_task(tf, task, grounder)
        if timelines is None:
            timelines = temporal_cmds.steps(ws, scene, progress=progress)
        elif timelines and all(r.get("task_source") == "discovered" for r in timelines.values()):
            raise InputError(
                f"{ws.temporal_dir(scene) / 'steps'}: the saved timelines are discovered key steps, "
                f"not {path.name}'s; run `howto3d steps {ws.root} --scene {scene}`"
            )
        spans = _spans(timelines, lambda st: st["step"] if st.get("task") == task_id else None)
        steps = [(s, s, spans.get(s, {})) for s in tf.tasks[task_id].steps]
        name, title, source = task_id, tf.tasks[task_id].title, "task file"
    else:
        if timelines is None:
            timelines = discover_cmds.discover(ws, scene, progress=progress)
        spans = _spans(timelines, lambda st: st.get("key_step"))
        labels: dict[Hashable, Counter[str]] = {}
        for r in timelines.values():
            for st in r.get("steps", []):
                labels.setdefault(st.get("key_step"), Counter())[st["label"]] += 1
        steps = [(k, labels[k].most_common(1)[0][0], spans[k]) for k in sorted(spans, key=lambda k: (k is None, k))]
        name, title, source = task, task, "discovered"
        log.warning(
            "%s: no task file in %s: the guide follows the key steps discovered from the videos",
            scene,
            ws.scene_dir(scene),
        )
    performed = [s for s in steps if s[2]]
    if not performed:
        raise InputError(
            f"{scene}: no video performs {name!r} in its step timeline; check the task file's "
            "'videos' entry or rerun `howto3d run`"
        )
    shared = shared or wscenes.shared_scene(ws, scene)
    narrations = wscenes.narrations(ws, scene) if narrations is None else narrations
    space, probs, (radius, separation, ratio) = _space(shared, grounder, scene, [label for _, label, _ in steps])
    near = neighbourhood(space, radius)
    out: list[GuideStep] = []
    for i, (_, label, step_spans) in enumerate(steps):
        if not step_spans:
            log.warning("%s: step %r: no video performs it in its timeline; left without a place", scene, label)
            out.append(
                {
                    "step": label,
                    "index": i + 1,
                    "point": None,
                    "radius": None,
                    "confidence": 0.0,
                    "uncertain": True,
                    "looks": 0,
                    "videos": [],
                    "segments": [],
                    "moments": [],
                    "narration": [],
                }
            )
            continue
        placed = step_answer(
            shared,
            space,
            near,
            label,
            step_spans,
            None if probs is None else probs[i],
            narrations,
            conf,
            radius,
            separation,
            ratio,
        )
        out.append({"index": i + 1, **placed})
    return {
        "scene": scene,
        "task": name,
        "title": title,
        "task_source": source,
        "units": wscenes.frame_state(ws, scene)["units"],
        "steps": out,
    }


def _space(
    shared: SharedScene, grounder: Grounder | None, scene: str, texts: list[str]
) -> tuple[VoxelSpace, np.ndarray | None, tuple[float, float, float]]:
    """The voxels to place steps in, the text heatmaps (``None`` without a model) and the answer settings."""
    from grounding.config import GroundingConfig
    from grounding.voxels import build

    if grounder is not None:
        probs = grounder.scores(scene, texts)
        return (
            grounder.spaces[scene],
            probs,
            (grounder.score_radius, grounder.peak_separation, grounder.uncertain_ratio),
        )
    c = GroundingConfig()
    space = build(shared.points, shared.points, c.divisions, c.num_voxels, c.box_percentile)
    return space, None, (c.score_radius, c.peak_separation, c.uncertain_ratio)


STEP_COLOR = (1.0, 0.0, 1.0)
"""A guide step's marker: magenta, as on the web page."""


def step_target(ws: Workspace, scene: str, task: str, step: int | None) -> tuple[tuple, list]:
    """Step ``step`` (1-based) of the guide of ``task`` as an overlay draws it, (heatmap, markers): its
    neighbourhood as one blob, its point as a magenta dot."""
    g = guide(ws, scene, task)
    steps = "; ".join(f"{i + 1}. {s['step']}" for i, s in enumerate(g["steps"]))
    if step is None or not 1 <= step <= len(g["steps"]):
        raise InputError(f"--step must be 1 to {len(g['steps'])} for {g['title']!r} ({steps})")
    st = g["steps"][step - 1]
    if st["point"] is None or st["radius"] is None:
        raise InputError(
            f"{scene}: no video's timeline performs step {step} ({st['step']!r}) of {g['title']!r}; "
            f"nothing to draw. Steps: {steps}"
        )
    p = np.asarray(st["point"], float)
    return (p[None], np.ones(1), 2.0 * float(st["radius"])), [(p, STEP_COLOR)]
