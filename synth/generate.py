"""World generation: scenes → videos (mp4 + srt) and ground truth, as a howto3d workspace tree.

Layout written under ``out_dir``::

    scenes/<scene>/videos/<video>.mp4   H.264, frame i at exactly i / fps
    scenes/<scene>/videos/<video>.srt   narration subtitles (or <video>.en.vtt YouTube auto-captions,
                                        or <video>.json Whisper output: see ``WorldConfig.caption_*``)
    scenes/<scene>/tasks.json           the tasks and their ordered steps, as a user would write them
    scenes/<scene>/ground_truth.json    for evaluation code only
    scenes/<scene>/world.ply            canonical bay mesh (debugging / viewers)
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import open3d as o3d

from recon.io import ProgressFn
from synth.camera import Visit, plan_path
from synth.captions import spoken_words, to_whisper_json, to_youtube_vtt
from synth.footage import (
    INSERT_SOURCES,
    Hands,
    InsertShot,
    Timeline,
    add_noise,
    build_timeline,
    exposure_curve,
    motion_blur,
)
from synth.maintenance import TASKS
from synth.render import Renderer, project
from synth.talk import in_view, narrate, to_json, to_srt
from synth.video_writer import VideoWriter
from synth.world import SCENE_NAMES, Scene, VideoVariant, build_scene, sample_variant

log = logging.getLogger(__name__)


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
    dwell_seconds: float = 0.0
    """Real-length pacing: dwells of about this many seconds hovering over a part (hand-held drift of a few cm),
    tasks repeating until the video is full; 0 = short dwells fitted to the video (2.5–6 s)."""
    swing_seconds: float = 1.5
    """With ``dwell_seconds``: duration of the quick swing from one part to the next."""
    cuts: int = 0
    """Jump cuts per video: 4–8 s of footage skipped; inside a dwell the camera resumes from another side."""
    inserts: int = 0
    """Off-car inserts per video (garage wall, product bottle, face cam, workshop): frames with no bay pose."""
    insert_seconds: float = 3.0
    """Mean length of an insert (s)."""
    motion_blur: float = 0.0
    """Shutter open for this fraction of the frame interval (0.5 = 180° shutter); every pixel is smeared along
    its true image motion, so blur grows with camera speed; 0 = sharp."""
    distortion_k1: float = 0.0
    """Lens distortion, COLMAP SIMPLE_RADIAL k1 (negative = barrel), rendered exactly; in ground truth."""
    exposure_jumps: float = 0.0
    """Auto-exposure steps per minute (gain ×/÷1.3–1.7 within 0.2 s)."""
    hands: bool = False
    """Skin- or glove-coloured hands working over the part during dwells (composited; poses unaffected)."""
    noise: float = 0.0
    """Sensor noise, standard deviation in 8-bit levels."""
    crf: int = 18
    """H.264 quality (x264 CRF; higher = stronger compression artefacts)."""
    caption_vtt_share: float = 0.0
    """Share of each scene's videos whose narration is a YouTube auto-caption ``<video>.en.vtt`` (no SRT)."""
    caption_whisper_share: float = 0.0
    """Share of each scene's videos whose narration is Whisper JSON ``<video>.json`` (no SRT)."""
    extra_talk: float = 0.0
    """Extra ungrounded narration lines (filler, off-screen parts) per 10 s of video (``synth.talk``)."""
    talk: str = "sparse"
    """Narration style: ``sparse`` names the part in a line or two per step and says little else; ``dense`` talks
    like a real presenter, a line every 3–4 s, most naming no part (generic actions, pronouns for the part
    on screen, transit and off-topic talk), the part named about once per visit with jittered timing
    (``synth.talk._dense``); each line's part, reference and dwell are in the ground truth."""

    @classmethod
    def long(cls, **overrides: Any) -> WorldConfig:
        """Real-length downloads: 1 scene × 2 videos × 150 s at 5 fps, 480×270, 36–54 s hovers with hands (three
        or four parts per video: minute-long ones would leave two and a remnant), 1–2 s swings, one jump cut and
        one insert per video, dense talk, half the videos with YouTube auto-captions."""
        base: dict[str, Any] = dict(
            scenes=1,
            videos=2,
            seconds=150.0,
            fps=5.0,
            width=480,
            height=270,
            dwell_seconds=45.0,
            swing_seconds=1.5,
            cuts=1,
            inserts=1,
            hands=True,
            caption_vtt_share=0.5,
            talk="dense",
        )
        return cls(**(base | overrides))

    @classmethod
    def degraded(cls, **overrides: Any) -> WorldConfig:
        """Degraded footage: 2 scenes × 5 videos × 30 s at 10 fps, motion blur, barrel distortion, exposure
        jumps, hands over the parts, one jump cut per video, sensor noise, stronger compression and dense talk."""
        base: dict[str, Any] = dict(
            scenes=2,
            videos=5,
            seconds=30.0,
            motion_blur=0.5,
            distortion_k1=-0.08,
            exposure_jumps=4.0,
            hands=True,
            cuts=1,
            noise=2.0,
            crf=23,
            talk="dense",
        )
        return cls(**(base | overrides))

    def check(self) -> None:
        """Raise ValueError on settings that cannot be rendered."""
        if self.width % 2 or self.height % 2:
            raise ValueError("width and height must be even (yuv420p)")
        if not (
            0 <= self.caption_vtt_share <= 1
            and 0 <= self.caption_whisper_share <= 1
            and self.caption_vtt_share + self.caption_whisper_share <= 1
        ):
            raise ValueError("caption_vtt_share and caption_whisper_share must be in [0, 1] and sum to at most 1")
        if not -0.3 <= self.distortion_k1 <= 0.3 or self.motion_blur < 0 or self.cuts < 0 or self.inserts < 0:
            raise ValueError("distortion_k1 must be in [-0.3, 0.3]; motion_blur, cuts, inserts must be >= 0")
        if self.talk not in ("sparse", "dense") or (self.talk == "dense" and self.extra_talk > 0):
            raise ValueError(
                "talk must be sparse or dense; extra_talk only adds to sparse talk (dense talk is "
                "mostly ungrounded already)"
            )


PRESETS: dict[str, Callable[..., WorldConfig]] = {
    "default": WorldConfig,
    "long": WorldConfig.long,
    "degraded": WorldConfig.degraded,
}


def world_config(preset: str = "default", settings: Sequence[str] = (), **values: object) -> WorldConfig:
    """A preset with overrides: ``values`` by field (None keeps the preset's) and ``settings`` as ``KEY=VALUE``.

    Raises ValueError with one line naming the bad preset, key or value (the CLI's ``--preset`` / ``--set``).
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; use one of {', '.join(PRESETS)}")
    defaults = WorldConfig()
    over = {k: v for k, v in values.items() if v is not None}
    for item in settings:
        key, sep, text = item.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not hasattr(defaults, key):
            raise ValueError(
                f"bad setting {item!r}: write KEY=VALUE with KEY one of "
                f"{', '.join(f.name for f in dataclasses.fields(WorldConfig))}"
            )
        kind = type(getattr(defaults, key))
        try:
            if kind is bool:
                if text.strip().lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(text)
                over[key] = text.strip().lower() in ("true", "1", "yes")
            else:
                over[key] = kind(text)
        except ValueError:
            raise ValueError(f"bad setting {item!r}: {key} needs a {kind.__name__} value") from None
    cfg = PRESETS[preset](**over)
    cfg.check()
    return cfg


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


def generate_world(out_dir: Path, cfg: WorldConfig, progress: ProgressFn | None = None) -> list[Path]:
    """Write all scenes under ``out_dir/scenes`` and return the scene directories."""
    cfg.check()
    dirs = []
    for s in range(cfg.scenes):
        scene = make_scene(cfg, s)
        scene_dir = Path(out_dir) / "scenes" / scene.name
        (scene_dir / "videos").mkdir(parents=True, exist_ok=True)
        o3d.io.write_triangle_mesh(scene_dir / "world.ply", scene.mesh())
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
    cfg: WorldConfig, scene: Scene, s: int, v: int, video_dir: Path, name: str, progress: ProgressFn | None
) -> dict:
    variant = make_variant(cfg, s, v)
    rng = _video_rng(cfg, s, v, 1)
    renderer = Renderer(scene, variant)
    parts = {p: pos + variant.offset(p) for p, pos in scene.parts.items()}
    order = [str(t) for t in rng.permutation(sorted(TASKS))]
    if cfg.dwell_seconds > 0:  # long videos: task after task until the time is full
        task_names = order * 3
    else:  # a second task when the first visits few parts, so the camera tours more of the bay
        task_names = order[:1] if len({s.part for s in TASKS[order[0]].steps}) > 2 else order[:2]
    f = cfg.width * rng.uniform(0.7, 1.05)
    K = np.array([[f, 0, cfg.width / 2], [0, f, cfg.height / 2], [0, 0, 1]])
    edit = build_timeline(_video_rng(cfg, s, v, 2), cfg.seconds, cfg.fps, cfg.cuts, cfg.inserts, cfg.insert_seconds)
    path = plan_path(
        rng,
        renderer,
        parts,
        task_names,
        K,
        edit.footage_seconds,
        cfg.fps,
        (cfg.width, cfg.height),
        dwell=cfg.dwell_seconds,
        swing=cfg.swing_seconds,
        cuts=edit.cut_footage(),
    )
    if cfg.dwell_seconds > 0:
        task_names = list(dict.fromkeys(t for visit in path.visits for t, _ in visit.steps)) or order[:1]
    edited = bool(edit.cuts or edit.inserts)
    visits, dwells = _video_visits(path.visits, edit, cfg.fps) if edited else (path.visits, None)
    dwells = dwells or [{"part": vi.part, "start": _r(vi.start), "end": _r(vi.end)} for vi in visits]
    visible = _in_view(path.pose_at, edit, parts, K, cfg) if cfg.extra_talk > 0 or cfg.talk == "dense" else None
    lines = narrate(
        rng,
        visits,
        scene.name,
        task_names,
        cfg.seconds,
        extra_talk=cfg.extra_talk,
        visible=visible,
        talk=cfg.talk,
        pieces=_pieces(visits, dwells),
    )
    subtitles, fmt = _write_subtitles(cfg, s, v, video_dir, name, lines)

    fx = _video_rng(cfg, s, v, 3)
    hands = Hands.sample(fx) if cfg.hands else None
    exposure = exposure_curve(fx, edit.times, cfg.exposure_jumps) if cfg.exposure_jumps > 0 else None
    shots = {ins["first_frame"]: InsertShot(fx, ins["kind"], cfg.width, cfg.height) for ins in edit.inserts}
    bay = np.isfinite(edit.source)
    poses = path.poses if not edited else np.full((len(edit.times), 3, 4), np.nan)
    if edited:
        poses[bay] = path.pose_at(edit.source[bay])
    half = 0.5 * cfg.motion_blur / cfg.fps
    k1 = cfg.distortion_k1
    frames, desc, shot = [], f"{scene.name}/{name}", None
    with VideoWriter(video_dir / f"{name}.mp4", cfg.width, cfg.height, cfg.fps, crf=cfg.crf) as writer:
        for i, t in enumerate(edit.times):
            rec: dict[str, Any] = {"index": i, "time": _r(t), "K": _r(K), "cam_from_world": _r(poses[i])}
            gain = 1.0 if exposure is None else float(exposure[i])
            if not bay[i]:
                ins = next(x for x in edit.inserts if x["first_frame"] <= i <= x["last_frame"])
                shot = shots.get(i, shot)
                assert shot is not None  # an insert's first frame starts its shot
                span = max(ins["last_frame"] - ins["first_frame"], 1)
                image = shot.frame((i - ins["first_frame"]) / span)
                rec.update(K=None, cam_from_world=None)
            elif cfg.motion_blur > 0:
                image, points = renderer.render(K, poses[i], cfg.width, cfg.height, k1=k1, exposure=gain, points=True)
                ends = path.pose_at(np.array([edit.source[i] - half, edit.source[i] + half]))
                image, rec["blur_px"] = motion_blur(image, points, K, k1, ends[0], ends[1])
                rec["blur_px"] = _r(rec["blur_px"])
            else:
                image = renderer.render(K, poses[i], cfg.width, cfg.height, k1=k1, exposure=gain)
            if hands is not None and bay[i]:
                image, rec["hand_cover"] = _hands(hands, image, float(t), dwells, parts, K, k1, poses[i])
                rec["hand_cover"] = _r(rec["hand_cover"])
            image = add_noise(fx, image, cfg.noise)
            if edited:
                rec.update(kind="bay" if bay[i] else "insert", shot=int(edit.shot[i]))
            if k1:
                rec["k1"] = k1
            if exposure is not None:
                rec["exposure"] = _r(gain)
            frames.append(rec)
            writer.write(image)
            if progress is not None:
                progress(desc, i + 1, len(edit.times))
    out = {
        "file": f"videos/{name}.mp4",
        "subtitles": f"videos/{subtitles}",
        "subtitle_format": fmt,
        "fps": cfg.fps,
        "width": cfg.width,
        "height": cfg.height,
        "camera": {"model": "SIMPLE_RADIAL", "params": _r([f, cfg.width / 2, cfg.height / 2, k1])},
        "parts": {p: _r(x) for p, x in parts.items()},
        "tasks": task_names,
        "steps": _steps(visits),
        "dwells": dwells,
        "narrations": to_json(lines),
        "light": {"direction": _r(variant.light_dir), "intensity": _r(variant.light), "ambient": _r(variant.ambient)},
        "frames": frames,
    }
    if edited:
        out["cuts"], out["inserts"] = edit.cuts, [ins | {"source": INSERT_SOURCES[ins["kind"]]} for ins in edit.inserts]
    if fmt != "srt":
        out["words"] = [{"word": w.text, "start": w.start, "end": w.end, "line": w.line} for w in spoken_words(lines)]
    return out


def _in_view(
    pose_at: Callable[[np.ndarray], np.ndarray],
    edit: Timeline,
    parts: dict[str, np.ndarray],
    K: np.ndarray,
    cfg: WorldConfig,
) -> Callable[[float, float], set[str]]:
    """``visible(a, b)``: parts in view (:func:`synth.talk.in_view`) in some bay frame of video time [a, b],
    so that an off-screen mention names a part the camera does not show then."""

    def visible(a: float, b: float) -> set[str]:
        frames = np.flatnonzero((edit.times >= a) & (edit.times <= b) & np.isfinite(edit.source))
        poses = pose_at(edit.source[frames]) if len(frames) else ()
        return set().union(*(in_view(parts, p, K, cfg.distortion_k1, cfg.width, cfg.height) for p in poses))

    return visible


def _video_visits(visits: list[Visit], edit: Timeline, fps: float) -> tuple[list[Visit], list[dict]]:
    """Dwells in video time after the edit: (one span per surviving visit, every on-screen piece of a dwell).

    A cut or an insert splits a dwell into pieces; a dwell skipped entirely disappears.
    """
    out, pieces = [], []
    shots = [np.flatnonzero((edit.shot == k) & np.isfinite(edit.source)) for k in np.unique(edit.shot)]
    for visit in visits:
        mine = []
        for idx in shots:
            if idx.size == 0:
                continue
            offset = edit.source[idx[0]] - edit.times[idx[0]]
            lo = max(visit.start - offset, edit.times[idx[0]])
            hi = min(visit.end - offset, edit.times[idx[-1]])
            if np.ceil(lo * fps - 1e-9) <= np.floor(hi * fps + 1e-9):
                mine.append((float(lo), float(hi)))
        if mine:
            pieces += [{"part": visit.part, "start": _r(a), "end": _r(b)} for a, b in mine]
            out.append(Visit(visit.part, visit.steps, mine[0][0], mine[-1][1]))
    return out, pieces


def _pieces(visits: list[Visit], dwells: list[dict]) -> list[tuple[int, float, float]]:
    """(visit index, start, end) of every dwell piece, so that narration lines can name their dwell."""

    def owner(d: dict) -> int:
        return next(
            k for k, v in enumerate(visits) if v.part == d["part"] and v.start - 1e-6 <= d["start"] <= v.end + 1e-6
        )

    return [(owner(d), d["start"], d["end"]) for d in dwells]


def _hands(
    hands: Hands,
    image: np.ndarray,
    t: float,
    dwells: list[dict],
    parts: dict,
    K: np.ndarray,
    k1: float,
    pose: np.ndarray,
) -> tuple[np.ndarray, float]:
    """Hands over the part of the dwell on screen at ``t`` (none between dwells)."""
    dwell = next((d for d in dwells if d["start"] <= t <= d["end"]), None)
    if dwell is None:
        return image, 0.0
    part = parts[dwell["part"]]
    depth = float((pose[:, :3] @ part + pose[:, 3])[2])
    if depth <= 0.05:
        return image, 0.0
    px = project(K, k1, pose, part[None])[0]
    return hands.draw(image, t, px, float(K[0, 0]) * 0.13 / depth)


def _write_subtitles(cfg: WorldConfig, s: int, v: int, video_dir: Path, name: str, lines: list) -> tuple[str, str]:
    """Write the narration in this video's subtitle format; returns (file name, format)."""
    order = np.random.default_rng([cfg.seed, s, 3]).permutation(cfg.videos)
    n_vtt = int(round(cfg.caption_vtt_share * cfg.videos))
    n_json = int(round(cfg.caption_whisper_share * cfg.videos))
    rank = int(np.flatnonzero(order == v)[0])
    if rank < n_vtt:
        (video_dir / f"{name}.en.vtt").write_text(to_youtube_vtt(_video_rng(cfg, s, v, 4), lines))
        return f"{name}.en.vtt", "youtube_vtt"
    if rank < n_vtt + n_json:
        (video_dir / f"{name}.json").write_text(to_whisper_json(lines))
        return f"{name}.json", "whisper_json"
    (video_dir / f"{name}.srt").write_text(to_srt(lines))
    return f"{name}.srt", "srt"


def _tasks_json() -> dict:
    """The user-facing task file: ids, titles and ordered step phrases (no parts, no per-video answers)."""
    return {
        "tasks": [{"id": name, "title": t.title, "steps": [st.text for st in t.steps]} for name, t in TASKS.items()]
    }


def _steps(visits: list[Visit]) -> list[dict]:
    out = []
    for visit in visits:
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
        "pixel centres at (u+0.5, v+0.5); a video's lens is its 'camera' (COLMAP SIMPLE_RADIAL f, cx, cy, k1; "
        "k1 = 0: no distortion); frames of an insert (kind 'insert') have no pose (null)",
        "extent": _r(scene.extent()),
        "parts": {p: _r(x) for p, x in scene.parts.items()},
        "landmarks": [{"name": n, "position": _r(p)} for n, p in scene.landmarks],
        "tasks": {
            name: {"title": task.title, "steps": [{"text": st.text, "part": st.part} for st in task.steps]}
            for name, task in TASKS.items()
        },
        "videos": {},
    }


def _r(x: npt.ArrayLike) -> Any:
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
            if fr["cam_from_world"] is not None:  # insert frames have no pose
                fr["K"] = np.asarray(fr["K"])
                fr["cam_from_world"] = np.asarray(fr["cam_from_world"])
    return gt
