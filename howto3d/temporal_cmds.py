"""Workspace-level temporal commands: clip features, ``actionness``, ``steps`` and ``eval-steps``.

The temporal stage works on arrays; this module finds them in a workspace (videos, subtitles, the scene's
task file, the shared reconstruction, the grounding model) and writes what it computes under
``WS/scenes/<scene>/temporal/``::

    features.safetensors + features.json   per-second clip features per video (reused while inputs are unchanged)
    actionness/model/                      order-verification model (safetensors + JSON)
    actionness/<video>.json                {"video", "clip_seconds", "times", "actionness"}
    steps/model/                           step model (safetensors + JSON)
    steps/<video>.json                     tasks, step segments and every method's clips/labels
"""

from __future__ import annotations

import logging
from dataclasses import asdict, replace

import numpy as np
from rich.table import Table
from safetensors.numpy import load_file, save

from grounding.narration import load_narrations
from howto3d.pipeline import reconstructed_videos, shared_scene
from howto3d.progress import ProgressFn, console
from howto3d.workspace import Workspace
from recon.io import (
    InputError,
    atomic_dir,
    atomic_write_bytes,
    atomic_write_json,
    file_fingerprint,
    params_fingerprint,
    read_json,
)
from recon.scene import SharedScene
from temporal import video_steps as vs
from temporal.features import KINDS, FeatureConfig, clip_cameras, sample_times, scene_features, select
from temporal.grounded import grounded_scores
from temporal.models import StepVideo, TrainConfig, train_step_model
from temporal.order import OrderConfig, min_clips, train_order_verification
from temporal.tasks import TaskFile, find_task_file, read_task_file, step_list, video_tasks

log = logging.getLogger("howto3d")


def _shared_or_none(ws: Workspace, scene: str) -> SharedScene | None:
    try:
        return shared_scene(ws, scene)
    except InputError as e:
        log.warning("%s: no shared reconstruction (%s): motion, gaze and 3D-grounded scores are zero/skipped",
                    scene, e)
        return None


def clip_features(ws: Workspace, scene: str, conf: FeatureConfig | None = None,
                  progress: ProgressFn | None = None) -> tuple[dict[str, np.ndarray], SharedScene | None]:
    """``X[T, D]`` (the ``conf.kinds`` columns) of every video of the scene.

    All kinds are computed and cached together, recomputed only when videos, poses or settings change, so
    trying another combination of kinds costs nothing.
    """
    conf = conf or ws.config.clip_features
    if not conf.kinds or any(k not in KINDS for k in conf.kinds):
        raise InputError(f"{ws.config_path}: clip_features.kinds = {conf.kinds}; choose from {', '.join(KINDS)}")
    full = replace(conf, kinds=list(KINDS))
    videos = {v.name: v.path for v in ws.videos(scene)}
    if not videos:
        raise InputError(f"{ws.scene_dir(scene) / 'videos'}: no videos; add some with `howto3d add`")
    shared = _shared_or_none(ws, scene)
    models = {v: ws.sfm_dir(scene, v) / "model" / "images.bin" for v in reconstructed_videos(ws, scene)}
    transforms = ws.align_dir(scene) / "transforms.json"
    fp = params_fingerprint([asdict(full), {v: file_fingerprint(p) for v, p in videos.items()},
                             {v: file_fingerprint(p) for v, p in models.items()},
                             file_fingerprint(transforms) if transforms.exists() else None])
    folder = ws.temporal_dir(scene)
    meta_path, data_path = folder / "features.json", folder / "features.safetensors"
    if meta_path.exists() and data_path.exists() and read_json(meta_path).get("fingerprint") == fp:
        log.info("%s: clip features reused (same videos, poses and settings)", scene)
        feats = load_file(data_path)
    else:
        feats = scene_features(videos, shared, full, progress)
        atomic_write_bytes(data_path, save({k: np.ascontiguousarray(v) for k, v in feats.items()}))
        atomic_write_json(meta_path, {"fingerprint": fp, "config": asdict(full),
                                      "clips": {v: len(x) for v, x in feats.items()}})
    return {v: select(x, full, conf.kinds) for v, x in feats.items()}, shared


def _select(ws: Workspace, scene: str, video: str | None) -> list[str]:
    names = [v.name for v in ws.videos(scene)]
    if video is not None and video not in names:
        raise InputError(f"{ws.root}: scene {scene!r} has no video {video!r}; videos: {', '.join(names)}")
    return [video] if video else names


def actionness(ws: Workspace, scene: str, video: str | None = None, progress: ProgressFn | None = None,
               features: dict[str, np.ndarray] | None = None, conf: vs.StepsConfig | None = None,
               ) -> dict[str, np.ndarray]:
    """Order verification trained on all the scene's videos (no labels); saves and returns per-clip actionness."""
    conf = conf or ws.config.temporal
    feats = features if features is not None else clip_features(ws, scene, progress=progress)[0]
    oconf = OrderConfig(epochs=conf.order_epochs, seed=conf.seed)
    shortest = min_clips(oconf)
    names = sorted(v for v in feats if len(feats[v]) >= shortest)
    for v in sorted(set(feats) - set(names)):
        log.warning("%s/%s: actionness skipped: %d s is shorter than the %d s order verification needs",
                    scene, v, len(feats[v]), shortest)
    if not names:
        return {}
    model = train_order_verification([feats[v] for v in names], oconf, progress)
    lines = _lines(ws, scene)
    sign = vs.orientation([model.actionness(feats[v]) for v in names],
                          [vs.action_cue(lines[v], len(feats[v])) for v in names])
    if sign < 0:
        log.info("%s: actionness oriented by the narration and the intro/outro prior (the order model's score "
                 "is flipped)", scene)
        model.flip_actionness()
    folder = ws.temporal_dir(scene) / "actionness"
    with atomic_dir(folder / "model") as tmp:
        model.save(tmp, oconf)
    out = {}
    for v in (v for v in _select(ws, scene, video) if v in names):
        a = vs.with_prior(model.actionness(feats[v]), conf.actionness_prior)
        atomic_write_json(folder / f"{v}.json", {"video": v, "clip_seconds": 1.0,
                                                 "times": (np.arange(len(a)) + 0.5).tolist(),
                                                 "actionness": np.round(a, 6).tolist()})
        out[v] = a
    return out


def load_actionness(ws: Workspace, scene: str) -> dict[str, np.ndarray]:
    """Saved actionness per video (videos without a file are left out)."""
    folder = ws.temporal_dir(scene) / "actionness"
    return {p.stem: np.array(read_json(p)["actionness"]) for p in sorted(folder.glob("*.json"))}


def task_file(ws: Workspace, scene: str) -> TaskFile:
    path = find_task_file(ws.scene_dir(scene))
    if path is None:
        raise InputError(f"{ws.scene_dir(scene)}: no tasks.json or tasks.toml; list the scene's tasks and their "
                         'ordered steps there, e.g. {"tasks": [{"id": "check_oil", "title": "check the oil", '
                         '"steps": ["remove dipstick", "wipe dipstick"]}]}')
    return read_task_file(path)


def _lines(ws: Workspace, scene: str) -> dict[str, list[tuple[str, float, float]]]:
    out = {}
    for v in ws.videos(scene):
        if v.subtitles is None:
            log.info("%s/%s: no subtitles: no narration constraints, task only from the task file or --task",
                     scene, v.name)
        out[v.name] = [(n.text, n.start, n.end) for n in load_narrations(v.subtitles, f"{scene}/{v.name}")]
    return out


def _grounder(ws: Workspace, scene: str):
    """The grounding model if it knows the scene, else ``None`` (the reason is logged)."""
    from grounding.query import load

    try:
        grounder = load(ws.grounding_dir)
        grounder.scores(scene, [])  # raises when the model has no head for this scene
    except InputError as e:
        log.warning("%s: no 3D-grounded step scores (%s)", scene, e)
        return None
    return grounder


def _grounded(grounder, scene: str, shared: SharedScene | None, video: str, phrases: list[str], T: int,
              spp: int) -> np.ndarray | None:
    """3D-grounded scores of one video, or ``None`` (with the reason logged) when they cannot be computed."""
    if grounder is None:
        return None
    if shared is None or not shared.frames_of(video):
        log.info("%s/%s: not in the shared reconstruction: no 3D-grounded scores", scene, video)
        return None
    cams = clip_cameras(shared.frames_of(video), *sample_times(float(T), spp))
    return grounded_scores(grounder.scores(scene, phrases), grounder.spaces[scene].centers, cams, T)


def steps(ws: Workspace, scene: str, video: str | None = None, task: list[str] | None = None,
          progress: ProgressFn | None = None, feature_kinds: list[str] | None = None,
          conf: vs.StepsConfig | None = None,
          features: tuple[dict[str, np.ndarray], SharedScene | None] | None = None) -> dict[str, dict]:
    """Step timelines of the selected video(s): the step model is trained on all the scene's videos from their
    narration only; every method's result is saved in ``steps/<video>.json`` and returned.

    ``feature_kinds`` and ``conf`` override the workspace settings (benchmarks compare combinations with them);
    ``features`` is what ``clip_features`` returned, when the caller has it already.
    """
    conf = conf or ws.config.temporal
    fconf = ws.config.clip_features
    if feature_kinds is not None:
        fconf = replace(fconf, kinds=list(feature_kinds))
    tf = task_file(ws, scene)
    feats, shared = features or clip_features(ws, scene, fconf, progress)
    lines = _lines(ws, scene)
    selected = _select(ws, scene, video)
    assigned = {}
    for v in feats:
        tasks, source = video_tasks(tf, v, [t for t, _, _ in lines[v]], task if v in selected else None)
        if not tasks:
            log.warning("%s/%s: skipped: its narration matches no task of %s; give --task or a 'videos' entry",
                        scene, v, tf.path.name)
            continue
        assigned[v] = (tasks, source)
    if not assigned:
        raise InputError(f"{tf.path}: no video of scene {scene!r} could be given a task; add a 'videos' table")
    task_steps, masks, train = {}, {}, []
    for v, (tasks, _) in sorted(assigned.items()):
        key = "+".join(tasks)
        task_steps[key] = [s for _, s in step_list(tf, tasks)]
        masks[v] = vs.step_constraints(lines[v], task_steps[key], len(feats[v]), conf)
        train.append(StepVideo(key, feats[v], masks[v]))
    model = train_step_model(train, task_steps, TrainConfig(epochs=conf.epochs, pretrain_epochs=conf.pretrain_epochs,
                                                            seed=conf.seed), progress)
    folder = ws.temporal_dir(scene) / "steps"
    with atomic_dir(folder / "model") as tmp:
        model.save(tmp)
    act = load_actionness(ws, scene)
    if any(v not in act for v in selected):
        act = actionness(ws, scene, None, progress, feats, conf)
    grounder = _grounder(ws, scene)
    out = {}
    for v in selected:
        if v not in assigned:
            continue
        tasks, source = assigned[v]
        key, seq = "+".join(tasks), step_list(tf, tasks)
        X, T, K, mask = feats[v], len(feats[v]), len(seq), masks[v]
        learned = model.log_probs(X, key)
        grounded = _grounded(grounder, scene, shared, v, [s for _, s in seq], T, fconf.samples_per_second)
        scores = {"uniform": None, "learned": vs.fuse(learned, None, act.get(v), conf),
                  "grounded": None if grounded is None else vs.fuse(None, grounded, act.get(v), conf),
                  "fused": vs.fuse(learned, grounded, act.get(v), conf)}
        methods = {}
        for m, S in scores.items():
            if m == "grounded" and S is None:
                continue
            clips, y = vs.localize(S, T, K, None if m == "uniform" else mask, conf)
            methods[m] = {"clips": clips.tolist(), "labels": y.tolist()}
        fused = methods["fused"]
        result = {"video": v, "scene": scene, "tasks": tasks, "task_source": source, "clip_seconds": 1.0,
                  "clips": T, "features": fconf.kinds,
                  "steps": vs.segments(np.array(fused["labels"]), seq, np.array(fused["clips"])), "methods": methods}
        atomic_write_json(folder / f"{v}.json", result)
        out[v] = result
    return out


def load_steps(ws: Workspace, scene: str) -> dict[str, dict]:
    """Saved step results per video."""
    folder = ws.temporal_dir(scene) / "steps"
    return {p.stem: read_json(p) for p in sorted(folder.glob("*.json"))}


def eval_steps(ws: Workspace, scene: str | None = None) -> dict:
    """Synthetic worlds: step recall (CrossTask), frame F1 and actionness AP of the saved results vs ground truth."""
    report: dict = {"scenes": {}, "skipped": []}
    for s in ws.select_scenes(scene):
        gt_path = ws.ground_truth_path(s)
        if not gt_path.exists():
            report["skipped"].append(f"{s}: no ground truth (only synthetic worlds have one)")
            continue
        gt = read_json(gt_path)["videos"]
        saved, act = load_steps(ws, s), load_actionness(ws, s)
        videos, a_list, g_list = {}, [], []
        for v in (v.name for v in ws.videos(s)):
            if v not in gt:
                report["skipped"].append(f"{s}/{v}: no ground truth for this video")
                continue
            if v in act:
                a_list.append(act[v])
                g_list.append(gt[v]["steps"])
            if v not in saved:
                report["skipped"].append(f"{s}/{v}: no step results; run `howto3d steps {ws.root} --scene {s} "
                                         f"--video {v}`")
                continue
            r = saved[v]
            if r.get("task_source") == "discovered":
                report["skipped"].append(f"{s}/{v}: discovered key steps have no step names to score (`howto3d "
                                         "temporal discover` evaluates discovery on CrossTask-format data)")
                continue
            seq = [(st["task"], st["step"]) for st in r["steps"]]
            ev = vs.evaluate_video(gt[v]["steps"], seq, {m: np.array(x["clips"]) for m, x in r["methods"].items()},
                                   {m: np.array(x["labels"]) for m, x in r["methods"].items()}, r["clips"])
            videos[v] = {"tasks": r["tasks"], "true_tasks": gt[v]["tasks"], **ev}
        methods = [m for m in vs.METHODS if videos and all(m in e for e in videos.values())]
        total = sum(e["annotated"] for e in videos.values())
        summary = {m: {"recall": sum(e[m]["hits"] for e in videos.values()) / max(total, 1),
                       "frame_f1": float(np.mean([e[m]["frame_f1"] for e in videos.values()]))} for m in methods}
        report["scenes"][s] = {"videos": videos, "methods": summary, "annotated": total,
                               "actionness": vs.actionness_report(a_list, g_list) if a_list else None}
    return report


def print_eval(report: dict) -> None:
    for s, r in report["scenes"].items():
        table = Table(title=f"steps of {s} vs ground truth (recall: CrossTask, {r['annotated']} annotated steps)")
        table.add_column("video")
        for m in r["methods"]:
            table.add_column(f"{m} recall")
        table.add_column("fused frame F1")
        for v, e in r["videos"].items():
            table.add_row(v, *(f"{e[m]['hits'] / max(e['annotated'], 1):.2f}" for m in r["methods"]),
                          f"{e['fused']['frame_f1']:.2f}" if "fused" in e else "-")
        table.add_row("all", *(f"{x['recall']:.2f}" for x in r["methods"].values()),
                      f"{r['methods']['fused']['frame_f1']:.2f}" if "fused" in r["methods"] else "-")
        console.print(table)
        if r["actionness"]:
            a = r["actionness"]
            console.print(f"{s}: actionness AP {a['ap']:.2f} (chance {a['chance']:.2f}, "
                          f"chance+trim {a['chance_trim']:.2f})")
    for note in report["skipped"]:
        console.print(f"skipped {note}")


def print_steps(results: dict[str, dict]) -> None:
    for v, r in results.items():
        table = Table(title=f"{r['scene']}/{v}: {' + '.join(r['tasks'])} (task from {r['task_source']})")
        for col in ("task", "step", "clip (s)", "segment (s)"):
            table.add_column(col)
        for st in r["steps"]:
            seg = f"{st['start']:.0f}–{st['end']:.0f}" if st["start"] is not None else "-"
            table.add_row(st["task"], st["step"], str(st["clip"]), seg)
        console.print(table)


def timeline_inputs(ws: Workspace, scene: str) -> tuple[dict[str, list[dict]], dict[str, tuple]]:
    """Saved steps and actionness in the shape ``viewer_cmds.timelines`` draws (actionness scaled to 0..1)."""
    steps_out = {v: [{"label": st["step"], "start": st["start"], "end": st["end"]} for st in r["steps"]
                     if st["start"] is not None] for v, r in load_steps(ws, scene).items()}
    act = {}
    for v, a in load_actionness(ws, scene).items():
        span = float(a.max() - a.min()) or 1.0
        act[v] = (np.arange(len(a)) + 0.5, (a - a.min()) / span)
    return steps_out, act


def run(ws: Workspace, progress: ProgressFn | None = None) -> dict:
    """``howto3d run``'s temporal stage: actionness and step timelines for every scene with reconstructed videos."""
    done = {}
    for s in ws.select_scenes(None):
        if not reconstructed_videos(ws, s):
            log.warning("%s: temporal skipped: no reconstructed video yet", s)
            continue
        features = clip_features(ws, s, progress=progress)
        actionness(ws, s, None, progress, features[0])
        if find_task_file(ws.scene_dir(s)) is None:
            from howto3d.discover_cmds import discover

            log.warning("%s: no tasks.json/tasks.toml in %s: key steps discovered from the videos instead "
                        "(`howto3d discover`)", s, ws.scene_dir(s))
            done[s] = discover(ws, s, progress=progress, features=features[0])
            continue
        done[s] = steps(ws, s, progress=progress, features=features)
    return done

