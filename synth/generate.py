"""World generation: scenes → videos (mp4 + srt) and ground truth, as a howto3d workspace tree.

Layout written under ``out_dir``::

    scenes/<scene>/videos/<video>.mp4   H.264, frame i at exactly i / fps
    scenes/<scene>/videos/<video>.srt   narration subtitles
    scenes/<scene>/tasks.json           the tasks and their ordered steps, as a user would write them
    scenes/<scene>/ground_truth.json    for evaluation code only
    scenes/<scene>/world.ply            canonical bay mesh (debugging / viewers)
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import open3d as o3d

from synth.camera import CameraPath, plan_path
from synth.narration import narrate, to_json, to_srt
from synth.render import Renderer
from synth.tasks import TASKS
from synth.video import VideoWriter
from synth.world import SCENE_NAMES, Scene, VideoVariant, build_scene, sample_variant

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


@dataclass
class WorldConfig:
    """What to generate; everything is determined by these values."""

    scenes: int = 2
    """Number of scenes (car models), each with its own layout and textures."""
    videos: int = 4
    """Videos per scene."""
    seconds: float = 30.0
    """Length of every video in seconds."""
    seed: int = 0
    """Master seed; same seed → identical ground truth and frames."""
    width: int = 640
    """Frame width in pixels (even, for yuv420p)."""
    height: int = 360
    """Frame height in pixels (even, for yuv420p)."""
    fps: float = 10.0
    """Frame rate; frame i is at i / fps seconds."""


def scene_names(cfg: WorldConfig) -> list[str]:
    """Seeded, unique car-model names for the scenes."""
    names = [str(n) for n in np.random.default_rng([cfg.seed, 7]).permutation(SCENE_NAMES)]
    return [names[i] if i < len(names) else f"{names[i % len(names)]}_{i // len(names)}" for i in range(cfg.scenes)]


def make_scene(cfg: WorldConfig, index: int) -> Scene:
    """Build scene ``index`` of the world (for tests/viewers that want to render it)."""
    return build_scene(scene_names(cfg)[index], np.random.default_rng([cfg.seed, index, 0]))


def make_variant(cfg: WorldConfig, scene_index: int, video_index: int) -> VideoVariant:
    """The per-video variation of a scene, exactly as used by ``generate_world``."""
    return sample_variant(_video_rng(cfg, scene_index, video_index, 0))


def _video_rng(cfg: WorldConfig, scene_index: int, video_index: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, scene_index, 1, video_index, stream])


def generate_world(out_dir: Path, cfg: WorldConfig, progress: Progress | None = None) -> list[Path]:
    """Write all scenes under ``out_dir/scenes`` and return the scene directories."""
    if cfg.width % 2 or cfg.height % 2:
        raise ValueError("width and height must be even (yuv420p)")
    dirs = []
    for s in range(cfg.scenes):
        scene = make_scene(cfg, s)
        scene_dir = Path(out_dir) / "scenes" / scene.name
        (scene_dir / "videos").mkdir(parents=True, exist_ok=True)
        o3d.io.write_triangle_mesh(str(scene_dir / "world.ply"), scene.mesh())
        gt = _scene_json(scene, cfg)
        for v in range(cfg.videos):
            name = f"video_{v:02d}"
            log.info("rendering %s/%s", scene.name, name)
            gt["videos"][name] = _make_video(cfg, scene, s, v, scene_dir / "videos", name, progress)
        (scene_dir / "ground_truth.json").write_text(json.dumps(gt, indent=1))
        (scene_dir / "tasks.json").write_text(json.dumps(_tasks_json(), indent=1))
        dirs.append(scene_dir)
    return dirs


def _make_video(
    cfg: WorldConfig, scene: Scene, s: int, v: int, video_dir: Path, name: str, progress: Progress | None
) -> dict:
    variant = make_variant(cfg, s, v)
    rng = _video_rng(cfg, s, v, 1)
    renderer = Renderer(scene, variant)
    parts = {p: pos + variant.offset(p) for p, pos in scene.parts.items()}
    order = [str(t) for t in rng.permutation(sorted(TASKS))]
    # A second task when the first visits few parts, so the camera tours more of the bay.
    task_names = order[:1] if len({s.part for s in TASKS[order[0]].steps}) > 2 else order[:2]
    f = cfg.width * rng.uniform(0.7, 1.05)
    K = np.array([[f, 0, cfg.width / 2], [0, f, cfg.height / 2], [0, 0, 1]])
    path = plan_path(rng, renderer, parts, task_names, K, cfg.seconds, cfg.fps, (cfg.width, cfg.height))
    lines = narrate(rng, path.visits, scene.name, task_names, cfg.seconds)
    (video_dir / f"{name}.srt").write_text(to_srt(lines))
    desc = f"{scene.name}/{name}"
    with VideoWriter(video_dir / f"{name}.mp4", cfg.width, cfg.height, cfg.fps) as writer:
        for i, pose in enumerate(path.poses):
            writer.write(renderer.render(K, pose, cfg.width, cfg.height))
            if progress is not None:
                progress(desc, i + 1, len(path.poses))
    return {
        "file": f"videos/{name}.mp4",
        "subtitles": f"videos/{name}.srt",
        "fps": cfg.fps,
        "width": cfg.width,
        "height": cfg.height,
        "parts": {p: _r(x) for p, x in parts.items()},
        "tasks": task_names,
        "steps": _steps(path),
        "dwells": [{"part": vi.part, "start": _r(vi.start), "end": _r(vi.end)} for vi in path.visits],
        "narrations": to_json(lines),
        "light": {"direction": _r(variant.light_dir), "intensity": _r(variant.light), "ambient": _r(variant.ambient)},
        "frames": [
            {"index": i, "time": _r(t), "K": _r(K), "cam_from_world": _r(pose)}
            for i, (t, pose) in enumerate(zip(path.times, path.poses, strict=True))
        ],
    }


def _tasks_json() -> dict:
    """The user-facing task file: ids, titles and ordered step phrases (no parts, no per-video answers)."""
    return {"tasks": [{"id": name, "title": t.title, "steps": [st.text for st in t.steps]}
                      for name, t in TASKS.items()]}


def _steps(path: CameraPath) -> list[dict]:
    out = []
    for visit in path.visits:
        span = (visit.end - visit.start) / len(visit.steps)
        for k, (task, step) in enumerate(visit.steps):
            start = visit.start + k * span
            out.append(
                {"task": task, "step": step.text, "part": step.part, "start": _r(start), "end": _r(start + span)}
            )
    return out


def _scene_json(scene: Scene, cfg: WorldConfig) -> dict:
    return {
        "scene": scene.name,
        "units": "m",
        "seed": cfg.seed,
        "frame": "bay frame: x across the bay (left→right seen from the bumper), y radiator→firewall, z up, "
        "floor top at z=0; cameras: cam_from_world=[R|t] OpenCV (x right, y down, z forward), "
        "pixel centres at (u+0.5, v+0.5), no distortion",
        "extent": _r(scene.extent()),
        "parts": {p: _r(x) for p, x in scene.parts.items()},
        "landmarks": [{"name": n, "position": _r(p)} for n, p in scene.landmarks],
        "tasks": {
            name: {"title": task.title, "steps": [{"text": st.text, "part": st.part} for st in task.steps]}
            for name, task in TASKS.items()
        },
        "videos": {},
    }


def _r(x: np.ndarray | float) -> list | float:
    """Round for a compact, stable JSON (1 µm / 1e-7 rad is far below any evaluation tolerance)."""
    return np.round(np.asarray(x, dtype=np.float64), 7).tolist()


def load_ground_truth(path: Path) -> dict:
    """Read ``ground_truth.json``; frame ``K``/``cam_from_world`` and positions become numpy arrays."""
    gt = json.loads(Path(path).read_text())
    gt["parts"] = {k: np.asarray(v) for k, v in gt["parts"].items()}
    for lm in gt["landmarks"]:
        lm["position"] = np.asarray(lm["position"])
    for video in gt["videos"].values():
        video["parts"] = {k: np.asarray(v) for k, v in video["parts"].items()}
        for fr in video["frames"]:
            fr["K"] = np.asarray(fr["K"])
            fr["cam_from_world"] = np.asarray(fr["cam_from_world"])
    return gt
