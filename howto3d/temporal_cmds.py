"""Workspace adapter of the temporal stage: clip features, ``actionness``, ``steps``, ``eval-steps`` and
``crosstask export``.

Finds each step's inputs in the workspace (videos, subtitles, the scene's task file, the shared reconstruction,
the grounding model), runs the stage through :meth:`Workspace.run_step` (so unchanged inputs and settings are
not recomputed) and returns its results. The artefacts under ``WS/scenes/<scene>/temporal/`` belong to the
stage modules that write them::

    features.safetensors + features.json   temporal.features (save_features / load_features)
    actionness/model/, actionness/<video>.json   temporal.actionness.Actionness
    steps/model/, steps/<video>.json       temporal.video_steps.Timelines (discovered key steps too)
    groundedness.json                      temporal.groundedness.GroundednessReport
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import asdict, replace
from pathlib import Path
from typing import TypedDict

import numpy as np

from grounding import query as gquery
from grounding.model_transformers import META, WEIGHTS
from howto3d import scenes
from howto3d.executor import mapper
from howto3d.workspace import StepSpec, Workspace
from recon.io import InputError, ProgressFn, read_json
from temporal import actionness as act_stage
from temporal import crosstask as ct_stage
from temporal import video_steps as vs
from temporal.annotations import read_annotations
from temporal.features import (
    CLIP_SECONDS,
    KINDS,
    FeatureConfig,
    clip_cameras,
    load_features,
    sample_times,
    save_features,
    scene_features,
    select,
)
from temporal.grounded_scores import seen_mass
from temporal.order import OrderConfig, min_clips
from temporal.tasks import TaskFile, find_task_file, read_task_file, video_tasks

log = logging.getLogger("howto3d")

Lines = dict[str, list[tuple[str, float, float]]]


class StepsEval(TypedDict):
    """``eval-steps --json``: per scene the stage's report (:func:`temporal.video_steps.evaluate_scene`), and what
    was skipped and why (``"<scene>/<video>: reason"``)."""

    scenes: dict[str, vs.SceneEval]
    skipped: list[str]


class CrossTaskExport(ct_stage.ExportSummary):
    """``crosstask export --json``: what was written, the scene, where the labels came from (``labels``) and
    ``notes`` (videos left out, renamed steps)."""

    scene: str
    labels: str


class ActionnessRecord(TypedDict):
    """One video of ``actionness --json``: a score per clip of ``clip_seconds``."""

    clip_seconds: float
    actionness: list[float]


def arrays_fingerprint(arrays: Mapping[str, np.ndarray]) -> str:
    """Content fingerprint of per-video arrays: the honest input of a step that is handed arrays (features,
    actionness) rather than files, so a caller's own feature selection is a different input."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}:{a.dtype}:{a.shape};".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def narration_lines(ws: Workspace, scene: str) -> Lines:
    """``(text, start, end)`` of every video's narration (``[]`` without subtitles): what the stage reads."""
    return {v: [(n.text, n.start, n.end) for n in ns] for v, ns in scenes.narrations(ws, scene).items()}


def _geometry_inputs(ws: Workspace, scene: str) -> dict[str, Path | str | None]:
    """The scene's reconstructions and shared frame, as step inputs."""
    return {
        **{f"model/{v}": fp for v, fp in scenes.model_fingerprints(ws, scene).items()},
        "transforms": ws.align_dir(scene) / "transforms.json",
    }


def _feature_confs(ws: Workspace, conf: FeatureConfig | None) -> tuple[FeatureConfig, FeatureConfig]:
    """The clip-feature settings asked for (default: the workspace's), checked, and the same with every kind:
    what is computed and saved."""
    conf = conf or ws.config.clip_features
    if not conf.kinds or any(k not in KINDS for k in conf.kinds):
        raise InputError(f"{ws.config_path}: clip_features.kinds = {conf.kinds}; choose from {', '.join(KINDS)}")
    return conf, replace(conf, kinds=list(KINDS))


def features_step(ws: Workspace, scene: str, conf: FeatureConfig | None = None) -> StepSpec:
    """The clip features' step: every video and the scene's geometry, with the settings of every kind (all are
    computed together). Shared with ``howto3d check``, as are the other ``*_step`` functions."""
    inputs = {**{f"video/{v.name}": v.path for v in ws.videos(scene)}, **_geometry_inputs(ws, scene)}
    return StepSpec("features", scene, inputs, asdict(_feature_confs(ws, conf)[1]))


def _all_kinds(ws: Workspace, scene: str, full: FeatureConfig, progress: ProgressFn | None) -> dict[str, np.ndarray]:
    """Every kind of clip feature (``full``) of every video, computed once per change of videos, poses or
    settings; each video's share as a Ray task with ``[run] executor = "ray"`` (only this process writes)."""
    videos = {v.name: v.path for v in ws.videos(scene)}
    if not videos:
        raise InputError(f"{ws.scene_dir(scene) / 'videos'}: no videos; add some with `howto3d add`")
    folder = ws.temporal_dir(scene)

    def compute() -> dict[str, np.ndarray]:
        shared = scenes.shared_or_none(ws, scene, "motion and gaze features are zero")
        feats = scene_features(videos, shared, full, progress, map_videos=mapper(ws.config.run))
        save_features(folder, feats, full, scenes.frame_state(ws, scene) if shared is not None else None)
        return feats

    return ws.run_step(*features_step(ws, scene, full), compute, load=lambda: load_features(folder)[0])


def features_of(
    ws: Workspace, scene: str, conf: FeatureConfig | None = None, progress: ProgressFn | None = None
) -> dict[str, np.ndarray]:
    """``X[T, D]`` (the ``conf.kinds`` columns, default: the workspace's) of every video of the scene.

    All kinds are computed and saved together, so trying another combination of kinds costs nothing.
    """
    conf, full = _feature_confs(ws, conf)
    return {v: select(x, full, conf.kinds) for v, x in _all_kinds(ws, scene, full, progress).items()}


def saved_features(ws: Workspace, scene: str) -> dict[str, np.ndarray]:
    """The saved features as :func:`features_of` returns them with the workspace's settings, never computed
    (``howto3d check`` reads them when their step is current)."""
    conf, full = _feature_confs(ws, None)
    return {v: select(x, full, conf.kinds) for v, x in load_features(ws.temporal_dir(scene))[0].items()}


def _select(ws: Workspace, scene: str, video: str | None) -> list[str]:
    if video is not None:
        return [scenes.video(ws, scene, video).name]
    return [v.name for v in ws.videos(scene)]


def actionness_step(
    ws: Workspace, scene: str, features: Mapping[str, np.ndarray], conf: vs.StepsConfig | None = None
) -> StepSpec:
    """Actionness of these features: the subtitles orient the score, so they are inputs too."""
    conf = conf or ws.config.temporal
    inputs = {"features": arrays_fingerprint(features), **scenes.subtitle_inputs(ws, scene)}
    params = {
        "order_epochs": conf.order_epochs,
        "order_models": conf.order_models,
        "seed": conf.seed,
        "actionness_prior": conf.actionness_prior,
    }
    return StepSpec("actionness", scene, inputs, params)


def saved_actionness(
    ws: Workspace, scene: str, features: Mapping[str, np.ndarray], conf: vs.StepsConfig | None = None
) -> dict[str, np.ndarray]:
    """The saved actionness of every video of ``features`` long enough to have one (each must be there)."""
    conf = conf or ws.config.temporal
    shortest = min_clips(OrderConfig(epochs=conf.order_epochs, seed=conf.seed))
    return act_stage.Actionness.load(
        ws.temporal_dir(scene) / "actionness", sorted(v for v in features if len(features[v]) >= shortest)
    )


def actionness(
    ws: Workspace,
    scene: str,
    video: str | None = None,
    progress: ProgressFn | None = None,
    features: dict[str, np.ndarray] | None = None,
    conf: vs.StepsConfig | None = None,
) -> dict[str, np.ndarray]:
    """Per-clip actionness of the scene's videos (``video``: only that one is returned; all are saved).

    Order verification is trained on every video long enough; redone only when the features, the subtitles
    (they orient the score) or the settings change.
    """
    conf = conf or ws.config.temporal
    selected = _select(ws, scene, video)
    feats = features if features is not None else features_of(ws, scene, progress=progress)

    def compute() -> dict[str, np.ndarray]:
        result = act_stage.main(conf, feats, narration_lines(ws, scene), progress, scene)
        result.save(ws.temporal_dir(scene) / "actionness")
        return result.videos

    act = ws.run_step(
        *actionness_step(ws, scene, feats, conf), compute, load=lambda: saved_actionness(ws, scene, feats, conf)
    )
    return {v: act[v] for v in selected if v in act}


def load_actionness(ws: Workspace, scene: str) -> dict[str, np.ndarray]:
    """Saved actionness per video (videos without a file are left out)."""
    return act_stage.Actionness.load(ws.temporal_dir(scene) / "actionness")


def task_file(ws: Workspace, scene: str) -> TaskFile:
    path = find_task_file(ws.scene_dir(scene))
    if path is None:
        raise InputError(
            f"{ws.scene_dir(scene)}: no tasks.json or tasks.toml; list the scene's tasks and their "
            'ordered steps there, e.g. {"tasks": [{"id": "check_oil", "title": "check the oil", '
            '"steps": ["remove dipstick", "wipe dipstick"]}]}'
        )
    return read_task_file(path)


def grounding_inputs(ws: Workspace, scene: str) -> dict[str, Path | str | None]:
    """The grounding model's files a scene's 3D-grounded scores read, as step inputs."""
    model = ws.grounding_dir / "model"
    return {
        "grounding/weights": model / WEIGHTS,
        "grounding/meta": model / META,
        "grounding/voxels": ws.grounding_dir / "scenes" / scene / "voxels.json",
    }


def _seen_fn(ws: Workspace, scene: str, spp: int) -> vs.SeenFn | None:
    """What the scene's videos see of phrases' grounding heatmaps (3D-grounded step scores, tasks by looks), or
    ``None`` (the reason logged) without a model for it."""
    try:
        grounder: gquery.Grounder = scenes.grounder(ws, scene)
    except scenes.StaleFrameError:
        raise  # grounded scores from the old frame on the new cameras would be silently wrong
    except InputError as e:
        log.warning("%s: no 3D-grounded step scores (%s)", scene, e)
        return None
    shared = scenes.shared_or_none(ws, scene, "no 3D-grounded step scores")

    def seen(video: str, phrases: list[str], T: int) -> np.ndarray | None:
        cams = clip_cameras(shared.frames_of(video), *sample_times(float(T), spp)) if shared is not None else None
        if cams is None:  # no registered frame of the video
            log.info("%s/%s: not in the shared reconstruction: no 3D-grounded scores", scene, video)
            return None
        return seen_mass(grounder.scores(scene, phrases), grounder.spaces[scene].centers, cams, T)

    return seen


def load_timelines(folder: Path, videos: list[str], discovered: bool) -> dict[str, vs.Timeline]:
    """The saved timelines of ``videos``, refused (so the step is redone) when the other command (``steps`` or
    ``discover``, which share the folder) wrote them."""
    saved = vs.Timelines.load(folder, videos)
    if any((r.get("task_source") == "discovered") != discovered for r in saved.values()):
        raise InputError(f"{folder}: timelines written by {'steps' if discovered else 'discover'}")
    return saved


def save_timelines(ws: Workspace, scene: str, timelines: vs.Timelines) -> None:
    """Write a scene's timelines; files of the scene's other videos are removed (they no longer hold)."""
    folder = ws.temporal_dir(scene) / "steps"
    for v in ws.videos(scene):
        if v.name not in timelines.videos:
            (folder / f"{v.name}.json").unlink(missing_ok=True)
    timelines.save(folder)


def steps(
    ws: Workspace,
    scene: str,
    video: str | None = None,
    task: list[str] | None = None,
    progress: ProgressFn | None = None,
    feature_kinds: list[str] | None = None,
    conf: vs.StepsConfig | None = None,
) -> dict[str, vs.Timeline]:
    """Step timelines of the scene's videos (``video``: only that one is returned; all are saved).

    ``task`` overrides the task of ``video``; ``feature_kinds`` and ``conf`` override the workspace settings
    (benchmarks compare combinations with them). Redone only when an input (features, subtitles, task file,
    actionness, grounding model, reconstruction) or a setting changes.
    """
    conf = conf or ws.config.temporal
    fconf = ws.config.clip_features
    if feature_kinds is not None:
        fconf = replace(fconf, kinds=list(feature_kinds))
    selected = _select(ws, scene, video)
    tf = task_file(ws, scene)
    feats = features_of(ws, scene, fconf, progress)
    act = actionness(ws, scene, None, progress, feats, conf)  # of the same features (skipped when saved)
    override = {v: task for v in selected} if task else {}
    folder = ws.temporal_dir(scene) / "steps"

    def compute() -> dict[str, vs.Timeline]:
        inputs = vs.StepInputs(
            feats,
            narration_lines(ws, scene),
            tf,
            act,
            _seen_fn(ws, scene, fconf.samples_per_second),
            override,
            list(fconf.kinds),
            scene,
            scenes.frame_state(ws, scene),
        )
        result = vs.main(conf, inputs, progress)
        save_timelines(ws, scene, result)
        return result.videos

    def load() -> dict[str, vs.Timeline]:
        return load_timelines(folder, sorted(p.stem for p in folder.glob("*.json")), discovered=False)

    results = ws.run_step(*steps_step(ws, scene, feats, act, conf, fconf, override), compute, load=load)
    return {v: results[v] for v in selected if v in results}


def steps_step(
    ws: Workspace,
    scene: str,
    features: Mapping[str, np.ndarray],
    act: Mapping[str, np.ndarray],
    conf: vs.StepsConfig | None = None,
    fconf: FeatureConfig | None = None,
    override: dict[str, list[str]] | None = None,
) -> StepSpec:
    """Step timelines from these features and actionness, the subtitles, the task file, the grounding model and
    the reconstruction, with the workspace's settings unless given (``override``: per-video ``--task``)."""
    conf = conf or ws.config.temporal
    fconf = fconf or ws.config.clip_features
    inputs = {
        "features": arrays_fingerprint(features),
        **scenes.subtitle_inputs(ws, scene),
        "tasks": find_task_file(ws.scene_dir(scene)),
        "actionness": arrays_fingerprint(act),
        **grounding_inputs(ws, scene),
        **_geometry_inputs(ws, scene),
    }
    params = {
        "steps": asdict(conf),
        "kinds": list(fconf.kinds),
        "samples_per_second": fconf.samples_per_second,
        "task": override or {},
    }
    return StepSpec("steps", scene, inputs, params)


def load_steps(ws: Workspace, scene: str) -> dict[str, vs.Timeline]:
    """Saved step results per video."""
    return vs.Timelines.load(ws.temporal_dir(scene) / "steps")


def eval_steps(ws: Workspace, scene: str | None = None, annotations: Path | None = None) -> StepsEval:
    """Step recall (CrossTask), frame F1 and actionness AP of the saved results vs a synthetic world's ground truth,
    or vs your own labels (``annotations``: a folder of CSVs, :mod:`temporal.annotations`; one scene)."""
    report: StepsEval = {"scenes": {}, "skipped": []}
    selected = ws.select_scenes(scene)
    if annotations is not None and len(selected) != 1:
        raise InputError(
            f"--annotations {annotations}: labels of one scene; name it with --scene (one of {', '.join(selected)})"
        )
    for s in selected:
        videos = [v.name for v in ws.videos(s)]
        if annotations is not None:
            truth, notes = read_annotations(annotations, videos, task_file(ws, s))
            report["skipped"] += [f"{s}/{note}" for note in notes]
            videos = [v for v in videos if v in truth]
        elif ws.ground_truth_path(s).exists():
            truth = read_json(ws.ground_truth_path(s))["videos"]
        else:
            report["skipped"].append(
                f"{s}: no ground truth (only synthetic worlds have one; give your own labels with --annotations)"
            )
            continue
        r, skipped = vs.evaluate_scene(
            truth, videos, load_steps(ws, s), load_actionness(ws, s), f"howto3d steps {ws.root} --scene {s}"
        )
        report["scenes"][s] = r
        report["skipped"] += [f"{s}/{note}" for note in skipped]
    return report


def _timeline_truth(saved: Mapping[str, vs.Timeline]) -> dict[str, dict]:
    """Saved step timelines as labels (``{video: {"tasks", "steps"}}``); discovered key steps have no task."""
    return {
        v: {
            "tasks": r["tasks"],
            "steps": [
                {k: st[k] for k in ("task", "step", "start", "end")} for st in r["steps"] if st["start"] is not None
            ],
        }
        for v, r in saved.items()
        if r.get("task_source") != "discovered"
    }


def crosstask_export(
    ws: Workspace, scene: str, out: Path, annotations: Path | None = None, progress: ProgressFn | None = None
) -> CrossTaskExport:
    """The scene as a CrossTask-format folder (``howto3d crosstask export``, :func:`temporal.crosstask.export`):
    clip features (the workspace's kinds; computed if not current), narration, constraints and annotations from
    ``annotations`` if given, else the synthetic ground truth, else the saved step timelines (``"labels"`` says
    which). A video's tasks are its labels' tasks, else the task file's entry or its narration's best match."""
    tf = task_file(ws, scene)
    videos = [v.name for v in ws.videos(scene)]
    notes: list[str] = []
    if annotations is not None:
        truth, notes = read_annotations(annotations, videos, tf)
        labels = f"your labels in {annotations}"
    elif ws.ground_truth_path(scene).exists():
        truth = read_json(ws.ground_truth_path(scene))["videos"]
        labels = f"the synthetic ground truth ({ws.ground_truth_path(scene)})"
    else:
        truth = _timeline_truth(load_steps(ws, scene))
        labels = (
            f"the saved step timelines ({ws.temporal_dir(scene) / 'steps'})"
            if truth
            else f"none (no --annotations, ground truth or saved timelines: run `howto3d steps {ws.root} --scene "
            f"{scene}` first)"
        )
    feats = features_of(ws, scene, progress=progress)
    lines = narration_lines(ws, scene)
    tasks = {}
    for v in videos:
        tasks[v] = truth[v]["tasks"] if v in truth else video_tasks(tf, v, [t for t, _, _ in lines[v]])[0]
        if not tasks[v]:
            notes.append(f"{v}: not exported: no labels, no entry in {tf.path.name} and its narration names no task")
            del tasks[v]
    summary = ct_stage.export(out, tf, feats, lines, tasks, truth, ws.config.temporal)
    return {**summary, "scene": scene, "labels": labels, "notes": notes + summary["notes"]}


def timeline_inputs(ws: Workspace, scene: str) -> tuple[dict[str, list[dict]], dict[str, tuple]]:
    """Saved steps and actionness in the shape ``viewer_cmds.timelines`` draws (actionness scaled to 0..1)."""
    steps_out = {
        v: [
            {"label": st["step"], "start": st["start"], "end": st["end"]}
            for st in r["steps"]
            if st["start"] is not None
        ]
        for v, r in load_steps(ws, scene).items()
    }
    act = {}
    for v, a in load_actionness(ws, scene).items():
        span = float(a.max() - a.min()) or 1.0
        act[v] = (np.arange(len(a)) + 0.5, (a - a.min()) / span)
    return steps_out, act


def actionness_json(actionness: Mapping[str, np.ndarray]) -> dict[str, ActionnessRecord]:
    """``howto3d actionness --json``: ``{video: {"clip_seconds", "actionness": [...]}}``."""
    return {
        v: ActionnessRecord(clip_seconds=CLIP_SECONDS, actionness=[round(float(x), 4) for x in a])
        for v, a in actionness.items()
    }
