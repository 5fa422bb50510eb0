"""Runs the stages over a workspace: which items need work, in what order, and what got recorded.

Stages are plain functions over paths (``recon.frames.main``, ``recon.reconstruct.main``...); this module
adds the workspace's bookkeeping: fingerprints, skip/resume, one bad video never stopping the others.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import time
from dataclasses import asdict, replace
from pathlib import Path

import pycolmap
from rich.table import Table

from howto3d.evaluation import fit_to_world
from howto3d.executor import Task, guarded, run_tasks
from howto3d.progress import ProgressFn, console
from howto3d.workspace import Video, Workspace
from recon import align as align_stage
from recon import frames as frames_stage
from recon import reconstruct as recon_stage
from recon.io import InputError, file_fingerprint, params_fingerprint, read_json
from recon.reconstruct import segment_dirs
from recon.scene import SharedScene, load_shared_scene
from recon.sim3 import sim3_from_json

log = logging.getLogger("howto3d")


def _sample_frames(conf: frames_stage.FramesConfig, video: Path, frames_dir: Path) -> dict:
    """Worker: sample a video's frames (recorded by the driver, so a later SfM failure or kill keeps them)."""
    t = time.perf_counter()
    return {**guarded(frames_stage.main, conf, video, frames_dir), "seconds": time.perf_counter() - t}


def _structure_from_motion(conf: recon_stage.ReconstructConfig, frames_dir: Path, sfm_dir: Path) -> dict:
    """Worker: per-video SfM on the sampled frames; errors come back as data, not exceptions."""
    t = time.perf_counter()
    result = guarded(recon_stage.main, conf, frames_dir, sfm_dir)
    if result["status"] == "done":
        result = {"status": "done", "report": {k: v for k, v in result.items() if k != "status"}}
    return {**result, "seconds": time.perf_counter() - t}


def reconstruct(ws: Workspace, scene: str | None, *, frames: int | None = None, workers: int | None = None,
                force: bool = False, progress: ProgressFn | None = None) -> list[dict]:
    """Sample frames and reconstruct every video of the selected scenes; skip videos already done."""
    config = ws.config
    frames_conf = replace(config.frames, num_frames=frames) if frames else config.frames
    recon_conf = config.reconstruct
    record, frames_record = ws.record("reconstruct"), ws.record("frames")
    todo: list[tuple[Video, str, str, bool]] = []
    summary = []
    for s in ws.select_scenes(scene):
        videos = ws.videos(s)
        if not videos:
            log.warning("scene %s has no videos: skipped", s)
        for v in videos:
            key = f"{s}/{v.name}"
            frames_fp = params_fingerprint([file_fingerprint(v.path), asdict(frames_conf)])
            fp = params_fingerprint([frames_fp, asdict(recon_conf)])
            entry = record.get(key, fp)
            if entry and not force:
                why = "already reconstructed" if entry["status"] == "done" else f"failed before: {entry['error']}"
                log.info("%s: skipped (%s; inputs unchanged%s)", key, why,
                         "" if entry["status"] == "done" else ", use --force to retry")
                summary.append({"key": key, **entry, "skipped": True})
                continue
            redo = force or frames_record.get(key, frames_fp) is None
            todo.append((v, frames_fp, fp, redo))
    workers = workers or max(1, (os.cpu_count() or 1) // 2)
    desc = "reconstructing videos"
    if progress and todo:
        progress(desc, 0, len(todo))

    def sfm_task(i: int) -> Task:
        v = todo[i][0]
        return Task((i, "sfm"), _structure_from_motion,
                    (recon_conf, ws.frames_dir(v.scene, v.name), ws.sfm_dir(v.scene, v.name)))

    def finish(task: Task, result: dict) -> list[Task]:
        i, phase = task.key
        v, frames_fp, fp, _ = todo[i]
        key = f"{v.scene}/{v.name}"
        if result["status"] == "failed":
            _remove_partial(ws, v)
            free = shutil.disk_usage(ws.root).free
            if free < _LOW_DISK:  # SQLite/pycolmap report a full disk in many ways, or abort
                result["error"] = (f"{ws.root}: the disk is full ({free >> 20} MiB free; {result['error']}); "
                                   "free space there and rerun (finished videos are kept)")
        elif phase == "frames":
            frames_record.put(key, frames_fp, "done", seconds=round(result["seconds"], 2))
            return [sfm_task(i)]
        info = {"seconds": round(result["seconds"], 2)}
        if result["status"] == "done":
            info |= {k: result["report"][k] for k in ("registered", "frames_sampled", "points3D")}
            info["segments"] = len(result["report"]["segments"])
            log.info("%s: registered %d/%d frames in %.0f s (%d segment(s))", key,
                     result["report"]["registered_all_segments"], info["frames_sampled"], result["seconds"],
                     info["segments"])
        else:
            info["error"] = result["error"]
            log.error("%s: %s", key, result["error"])
            if "traceback" in result:
                log.debug("%s", result["traceback"])
        record.put(key, fp, result["status"], **info)
        summary.append({"key": key, "status": result["status"], **info})
        if progress:
            progress(desc, len([r for r in summary if not r.get("skipped")]), len(todo))
        return []

    first = [Task((i, "frames"), _sample_frames, (frames_conf, v.path, ws.frames_dir(v.scene, v.name)))
             if redo or not (ws.frames_dir(v.scene, v.name) / "frames.json").exists() else sfm_task(i)
             for i, (v, _, _, redo) in enumerate(todo)]
    run_tasks(first, workers, finish)
    return sorted(summary, key=lambda r: r["key"])


_LOW_DISK = 64 << 20
"""Below this much free space a failed video is reported as a full disk (SQLite makes pycolmap fail or abort)."""


def _remove_partial(ws: Workspace, v: Video) -> None:
    """Temporary folders a dead or failed worker left for this video (others' may still be in use)."""
    for parent in (ws.frames_dir(v.scene, v.name).parent, ws.sfm_dir(v.scene, v.name).parent):
        for p in parent.glob(f".{glob.escape(v.name)}.*.tmp") if parent.is_dir() else []:
            shutil.rmtree(p, ignore_errors=True)


def print_reconstruct_summary(summary: list[dict]) -> None:
    table = Table(title="reconstruction")
    for col in ("video", "status", "registered", "points", "seconds", "note"):
        table.add_column(col)
    for r in summary:
        reg = f"{r['registered']}/{r['frames_sampled']}" if "registered" in r else "-"
        note = r.get("error", "") or ("skipped: unchanged" if r.get("skipped") else "")
        table.add_row(r["key"], r["status"], reg, str(r.get("points3D", "-")), str(r.get("seconds", "-")), note)
    console.print(table)


def make_synthetic_workspace(out: Path, *, scenes: int | None = None, videos: int | None = None,
                             seconds: float | None = None, seed: int = 0, fps: float | None = None,
                             progress: ProgressFn | None = None, preset: str = "default",
                             settings: list[str] = ()) -> Workspace:
    """Render a synthetic world straight into a new workspace (videos, subtitles, ground truth).

    ``preset``: ``default``, ``long`` or ``degraded`` (see ``synth.WorldConfig``); None keeps the preset's value;
    ``settings``: any other ``WorldConfig`` field as ``KEY=VALUE`` (``cuts=2``, ``caption_vtt_share=0.5``).
    """
    from synth import generate_world, world_config

    try:
        cfg = world_config(preset, settings, scenes=scenes, videos=videos, seconds=seconds, seed=seed, fps=fps)
    except ValueError as e:
        raise InputError(f"howto3d synth: {e}") from None
    ws = Workspace.init(out)
    generate_world(ws.root, cfg, progress=progress)
    return ws


def reconstructed_videos(ws: Workspace, scene: str) -> list[str]:
    """Videos of a scene whose reconstruction finished (model on disk)."""
    return [v.name for v in ws.videos(scene) if (ws.sfm_dir(scene, v.name) / "model" / "images.bin").exists()]


def shared_from_video(ws: Workspace, scene: str) -> dict[str, pycolmap.Sim3d]:
    """Each aligned video's Sim(3) into the scene's shared frame.

    Before ``align`` a single-video scene is its own shared frame; a multi-video scene needs ``align``.
    """
    path = ws.align_dir(scene) / "transforms.json"
    if path.exists():
        return {v: sim3_from_json(s) for v, s in read_json(path)["shared_from_video"].items()}
    videos = reconstructed_videos(ws, scene)
    if len(videos) == 1:
        return {videos[0]: pycolmap.Sim3d()}
    if not videos:
        raise InputError(f"{ws.root}: scene {scene!r} has no reconstructed video yet; run `howto3d reconstruct`")
    raise InputError(f"{ws.root}: scene {scene!r} has {len(videos)} reconstructed videos but no shared frame yet; "
                     "run `howto3d align`")


def shared_from_segment(ws: Workspace, scene: str) -> dict[str, dict[int, pycolmap.Sim3d]]:
    """Each aligned segment's Sim(3) into the scene's shared frame, by video then segment.

    Alignments made before segments existed (``shared_from_video`` only) read as segment 0 of each video.
    """
    path = ws.align_dir(scene) / "transforms.json"
    if path.exists() and "shared_from_segment" in (data := read_json(path)):
        return {v: {int(k): sim3_from_json(s) for k, s in segs.items()}
                for v, segs in data["shared_from_segment"].items()}
    return {v: {0: s} for v, s in shared_from_video(ws, scene).items()}


def shared_scene(ws: Workspace, scene: str) -> SharedScene:
    """The scene's aligned videos, every aligned segment of each, in its shared frame (points, registered frames)."""
    ws.require_scene(scene)
    transforms = shared_from_segment(ws, scene)
    return load_shared_scene(scene, {v: ws.sfm_dir(scene, v) for v in transforms},
                             {v: ws.frames_dir(scene, v) for v in transforms}, transforms)


def world_from_shared(ws: Workspace, scene: str, shared: SharedScene) -> pycolmap.Sim3d | None:
    """Synthetic worlds only: the metric Sim(3) from the shared frame to the ground-truth world (metres).

    Fitted on all registered camera centres against their ground-truth centres; ``None`` without ground truth.
    """
    path = ws.ground_truth_path(scene)
    if not path.exists():
        return None
    try:
        return fit_to_world(shared.frames, read_json(path))
    except InputError:
        return None


def align(ws: Workspace, scene: str | None, *, force: bool = False, progress: ProgressFn | None = None) -> dict:
    """Align every scene's reconstructed videos into its shared frame (skipped when inputs are unchanged)."""
    conf = ws.config.align
    record = ws.record("align")
    results = {}
    for s in ws.select_scenes(scene):
        videos = reconstructed_videos(ws, s)
        if not videos:
            log.warning("%s: no reconstructed video to align: skipped (run `howto3d reconstruct`)", s)
            continue
        models = {v: ws.sfm_dir(s, v) for v in videos}
        fp = params_fingerprint([asdict(conf), {v if k == 0 else f"{v}#{k}": file_fingerprint(d / "points3D.bin")
                                                for v, p in models.items() for k, d in segment_dirs(p).items()}])
        entry = record.get(s, fp)
        if entry and not force and (ws.align_dir(s) / "transforms.json").exists():
            log.info("%s: alignment skipped (same reconstructions and settings)", s)
            results[s] = entry["result"]
            continue
        t = time.perf_counter()
        result = align_stage.main(conf, models, ws.align_dir(s), progress=progress)
        record.put(s, fp, "done", seconds=round(time.perf_counter() - t, 2), result=result)
        results[s] = result
    return results


def print_align_summary(results: dict) -> None:
    for s, r in results.items():
        table = Table(title=f"alignment graph of {s} (reference: {r['reference']})")
        for col in ("edge", "3D-3D", "inliers", "ratio", "residual", "status"):
            table.add_column(col)
        for e in r["edges"]:
            table.add_row(f"{e['a']} ↔ {e['b']}", str(e["correspondences_3d"]), str(e["inliers"]),
                          f"{e['inlier_ratio']:.2f}", str(e.get("residual", "-")),
                          "edge" if e["accepted"] else f"rejected: {e['reason']}")
        console.print(table)
        console.print(f"{s}: {len(r['aligned'])} video(s) in the shared frame"
                      + (f"; not aligned: {', '.join(r['unaligned'])}" if r["unaligned"] else ""))


def run_all(ws: Workspace, frames: int | None = None) -> None:
    """reconstruct → align → train → actionness + steps, printing each stage's summary; stages skip finished work."""
    from howto3d import grounding_cmds, temporal_cmds
    from howto3d.progress import progress_bar

    with progress_bar() as progress:
        summary = reconstruct(ws, None, frames=frames, progress=progress)
    print_reconstruct_summary(summary)
    with progress_bar() as progress:
        results = align(ws, None, progress=progress)
    print_align_summary(results)
    with progress_bar() as progress:
        trained = grounding_cmds.train(ws, None, progress)
    grounding_cmds.print_train_summary(trained)
    with progress_bar() as progress:
        timelines = temporal_cmds.run(ws, progress)
    for results in timelines.values():
        temporal_cmds.print_steps(results)
