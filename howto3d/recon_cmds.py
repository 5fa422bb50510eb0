"""The recon stage over a workspace: frames + SfM per video in worker processes or Ray tasks, then alignment
per scene (its video pairs on Ray too with ``[run] executor = "ray"``).

Stages are plain functions over paths (``recon.sampling.main``, ``recon.reconstruct.main``, ``recon.align.main``);
this module finds their inputs in the workspace and records what they did through ``Workspace.step`` /
``Workspace.run_step`` (skip, resume, one bad video never stopping the others).
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from howto3d import scenes
from howto3d.config import RunConfig
from howto3d.executor import Task, guarded, mapper, run_tasks
from howto3d.workspace import Step, StepSpec, Video, Workspace
from recon import align as align_stage
from recon import reconstruct as recon_stage
from recon import sampling as frames_stage
from recon.align import Alignment
from recon.io import InputError, ProgressFn, read_json
from recon.scene import RegisteredFrame, SharedScene
from recon.transfer import Localize

if TYPE_CHECKING:
    from recon.config import FramesConfig, ReconstructConfig

log = logging.getLogger("howto3d")

Executor = Literal["local", "ray"]


class ScaleResult(TypedDict):
    """``scale --json`` (docs/workspace.md): the new metric scale, the fit's residual and each given length."""

    scene: str
    scale: float
    """The shared frame's metres per unit of the reference video's model, after this scaling."""
    units: str
    residual: float
    """RMS residual of the given lengths (m)."""
    factor: float
    """This scaling's factor (1 when the frame was already metric and stays so)."""
    units_before: str
    distances: list[dict[str, Any]]
    """Each length: ``a``, ``b``, ``metres``, ``model`` (before) and ``after`` (its length now, m)."""


def _sample_frames(conf: FramesConfig, video: Path, frames_dir: Path) -> dict:
    """Worker: sample a video's frames (recorded by the driver, so a later SfM failure or kill keeps them)."""
    t = time.perf_counter()
    return {**guarded(frames_stage.main, conf, video, frames_dir), "seconds": time.perf_counter() - t}


def _structure_from_motion(conf: ReconstructConfig, frames_dir: Path, sfm_dir: Path) -> dict:
    """Worker: per-video SfM on the sampled frames; errors come back as data, not exceptions."""
    t = time.perf_counter()
    result = guarded(recon_stage.main, conf, frames_dir, sfm_dir)
    if result["status"] == "done":
        result = {"status": "done", "report": {k: v for k, v in result.items() if k != "status"}}
    return {**result, "seconds": time.perf_counter() - t}


def run_config(ws: Workspace, executor: Executor | None) -> RunConfig:
    """The workspace's ``[run]`` settings, with a command's ``--executor`` (when given) in place of its own."""
    return replace(ws.config.run, executor=executor) if executor else ws.config.run


def reconstruct(
    ws: Workspace,
    scene: str | None,
    *,
    frames: int | None = None,
    workers: int | None = None,
    force: bool = False,
    progress: ProgressFn | None = None,
    executor: Executor | None = None,
) -> list[dict]:
    """Sample frames and reconstruct every video of the selected scenes; skip videos already done."""
    config = ws.config
    run = run_config(ws, executor)
    frames_conf = replace(config.frames, num_frames=frames) if frames else config.frames
    recon_conf = config.reconstruct
    threads = recon_conf.num_threads
    if run.executor == "ray" and threads <= 0:  # "all cores" of an unknown node: request, and use, a known number
        threads = run.cpus_per_task
    task_conf = replace(recon_conf, num_threads=threads)  # the record keeps recon_conf: threads change no result
    todo: list[tuple[Video, Step, Step]] = []
    summary = []
    for s in ws.select_scenes(scene):
        videos = ws.videos(s)
        if not videos:
            log.warning("scene %s has no videos: skipped", s)
        for v in videos:
            key = f"{s}/{v.name}"
            frames_step = ws.step("frames", key, {"video": v.path}, asdict(frames_conf))
            step = ws.step("reconstruct", key, {"frames": frames_step.fingerprint}, asdict(recon_conf))
            if step.entry and not force:
                why = "already reconstructed" if step.done else f"failed before: {step.entry['error']}"
                log.info(
                    "%s: skipped (%s; inputs unchanged%s)", key, why, "" if step.done else ", use --force to retry"
                )
                summary.append({"key": key, **step.entry, "skipped": True})
                continue
            todo.append((v, frames_step, step))
    workers = workers or run.workers or (0 if run.executor == "ray" else max(1, (os.cpu_count() or 1) // 2))
    desc = "reconstructing videos"
    if progress and todo:
        progress(desc, 0, len(todo))

    def sfm_task(i: int) -> Task:
        v = todo[i][0]
        return Task(
            (i, "sfm"),
            _structure_from_motion,
            (task_conf, ws.frames_dir(v.scene, v.name), ws.sfm_dir(v.scene, v.name)),
            inputs=(1,),
            output=2,
            num_cpus=max(1, threads),
        )

    def finish(task: Task, result: dict) -> list[Task]:
        i, phase = task.key
        v, frames_step, step = todo[i]
        key = step.key
        if result["status"] == "failed":
            _remove_partial(ws, v)
            free = shutil.disk_usage(ws.root).free
            if free < _LOW_DISK:  # SQLite/pycolmap report a full disk in many ways, or abort
                result["error"] = (
                    f"{ws.root}: the disk is full ({free >> 20} MiB free; {result['error']}); "
                    "free space there and rerun (finished videos are kept)"
                )
        elif phase == "frames":
            frames_step.put("done", seconds=round(result["seconds"], 2))
            return [sfm_task(i)]
        info = {"seconds": round(result.get("seconds", 0.0), 2)}  # a worker that died sent nothing back
        if result["status"] == "done":
            info |= {k: result["report"][k] for k in ("registered", "frames_sampled", "points3D")}
            info["segments"] = len(result["report"]["segments"])
            log.info(
                "%s: registered %d/%d frames in %.0f s (%d segment(s))",
                key,
                result["report"]["registered_all_segments"],
                info["frames_sampled"],
                result["seconds"],
                info["segments"],
            )
        else:
            info["error"] = result["error"]
            log.error("%s: %s", key, result["error"])
            if "traceback" in result:
                log.debug("%s", result["traceback"])
        step.put(result["status"], **info)
        summary.append({"key": key, "status": result["status"], **info})
        if progress:
            progress(desc, len([r for r in summary if not r.get("skipped")]), len(todo))
        return []

    def first_task(i: int) -> Task:
        v, frames_step, _ = todo[i]
        if frames_step.done and not force and frames_stage.is_done(ws.frames_dir(v.scene, v.name)):
            return sfm_task(i)
        return Task(
            (i, "frames"), _sample_frames, (frames_conf, v.path, ws.frames_dir(v.scene, v.name)), inputs=(1,), output=2
        )

    run_tasks(map(first_task, range(len(todo))), workers, finish, run)
    return sorted(summary, key=lambda r: r["key"])


_LOW_DISK = 64 << 20
"""Below this much free space a failed video is reported as a full disk (SQLite makes pycolmap fail or abort)."""


def _remove_partial(ws: Workspace, v: Video) -> None:
    """Temporary folders a dead or failed worker left for this video (others' may still be in use)."""
    for parent in (ws.frames_dir(v.scene, v.name).parent, ws.sfm_dir(v.scene, v.name).parent):
        for p in parent.glob(f".{glob.escape(v.name)}.*.tmp") if parent.is_dir() else []:
            shutil.rmtree(p, ignore_errors=True)


def refuse_repeated_segments(ws: Workspace, scene: str, video: str) -> None:
    """An input error (one line) when a video's segments register the same frame twice: only an earlier release
    wrote such models (``reconstruct`` now keeps each frame in one segment), so the fix is to reconstruct again."""
    model = recon_stage.Model(ws.sfm_dir(scene, video))
    segments = model.segments()
    if len(segments) < 2:
        return
    names = [recon_stage.registered_names(model.load(k)) for k in segments]
    if sum(map(len, names)) != len(set().union(*names)):
        raise InputError(
            f"{ws.sfm_dir(scene, video)}: its segments repeat frames (reconstructed by an earlier "
            f"release); run `howto3d reconstruct {ws.root} --scene {scene} --force`"
        )


def align(
    ws: Workspace,
    scene: str | None,
    *,
    force: bool = False,
    reanchor: bool = False,
    progress: ProgressFn | None = None,
    executor: Executor | None = None,
) -> dict:
    """Align every scene's reconstructed videos into its shared frame (skipped when inputs are unchanged).

    The frame is kept when videos are added or removed (only their pairs are matched); ``reanchor`` creates it
    anew (new reference and up; a metric scale is carried over when a video aligned in both frames allows)."""
    conf = ws.config.align
    map_pairs = mapper(run_config(ws, executor))
    results = {}
    for s in ws.select_scenes(scene):
        models = {v: ws.sfm_dir(s, v) for v in scenes.reconstructed_videos(ws, s)}
        if not models:
            log.warning("%s: no reconstructed video to align: skipped (run `howto3d reconstruct`)", s)
            continue
        for v in models:
            refuse_repeated_segments(ws, s, v)
        spec = align_step(ws, s)
        fingerprints = {v: str(fp) for v, fp in spec.inputs.items()}  # the models' (model_fingerprints)

        def fit(
            s: str = s, models: dict[str, Path] = models, fingerprints: dict[str, str] = fingerprints
        ) -> dict[str, Any]:
            return align_stage.main(
                conf,
                models,
                ws.align_dir(s),
                progress=progress,
                map_pairs=map_pairs,
                fingerprints=fingerprints,
                reanchor=reanchor,
            )

        def load(s: str = s) -> dict[str, Any]:
            return Alignment.load(ws.align_dir(s)).summary()

        results[s] = ws.run_step(*spec, fit, load=load, force=force or reanchor)
    return results


def align_step(ws: Workspace, scene: str) -> StepSpec:
    """The alignment's step (``align`` runs it, ``howto3d check`` asks it): every reconstructed video's model
    fingerprint, with the ``[align]`` settings."""
    return StepSpec("align", scene, scenes.model_fingerprints(ws, scene), asdict(ws.config.align))


def scale(
    ws: Workspace,
    scene: str,
    source: str,
    keypoints: Path,
    distances: list[tuple[str, str, float]],
    localizer: Callable[[SharedScene], Localize] | None = None,
) -> ScaleResult:
    """Make a scene's shared frame metric from known lengths between keypoints clicked in ``source``.

    The named keypoints are triangulated in the current frame, the least-squares scale over every given length
    (``--distance`` and the file's ``"distances"``) rescales the alignment about its origin (``Alignment.rescaled``)
    and it is saved atomically; scaling an already metric frame again refines it. Everything made in the old
    frame (grounding voxels and model, 3D-grounded steps) is redone by the next ``run``. ``localizer(shared)``
    poses clicked frames SfM did not register; it is built only when such a click needs it.
    """
    from recon.shared_frame import file_distances, measure  # imports open3d: only this command pays for it

    ws.require_scene(scene)
    align_dir = ws.align_dir(scene)
    if not Alignment.is_done(align_dir):
        raise InputError(
            f"{align_dir}: scene {scene!r} has no shared frame to scale yet; run `howto3d align "
            f"{ws.root} --scene {scene}` first"
        )
    request = read_json(keypoints)
    distances = list(distances) + file_distances(request, str(keypoints))
    shared = scenes.shared_scene(ws, scene)

    def lazy(make: Callable[[SharedScene], Localize]) -> Localize:
        made: list[Localize] = []

        def localize(t: float) -> RegisteredFrame | None:  # the index is built on the first click that needs it
            if not made:
                made.append(make(shared))
            return made[0](t)

        return localize

    m = measure(shared, source, request, distances, str(keypoints), lazy(localizer) if localizer else None)
    alignment = Alignment.load(align_dir)
    before = alignment.frame.get("units", "model")
    scaled = alignment.rescaled(m["scale"], "metres")
    scaled.frame["scale_measured"] = {
        "source": source,
        "keypoints": keypoints.name,
        "factor": m["scale"],
        "residual_m": m["residual"],
        "distances": m["distances"],
    }
    scaled.save(align_dir)
    log.info(
        "%s: shared frame scaled by %.6g (%s → metres; RMS residual %.4f m over %d length(s))",
        scene,
        m["scale"],
        before,
        m["residual"],
        len(distances),
    )
    return {
        "scene": scene,
        "scale": scaled.frame["metric_scale"],
        "units": "metres",
        "residual": round(m["residual"], 6),
        "factor": m["scale"],
        "units_before": before,
        "distances": [d | {"after": round(d["model"] * m["scale"], 6)} for d in m["distances"]],
    }
