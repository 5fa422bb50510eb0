"""The workspace folder every stage reads and writes, and the per-stage records that make runs resumable.

Layout (documented in the README)::

    WS/howto3d.toml                       configuration (every field documented)
    WS/scenes/<scene>/videos/             the user's videos + same-stem subtitles (never modified)
    WS/scenes/<scene>/ground_truth.json   synthetic worlds only: read by evaluation, never by a stage
    WS/scenes/<scene>/frames/<video>/     sampled frames + frames.json (exact timestamps)
    WS/scenes/<scene>/sfm/<video>/        COLMAP model (binary) + report.json
    WS/scenes/<scene>/align/              alignment graph + per-video Sim(3) to the shared frame
    WS/scenes/<scene>/tasks.json|toml     the scene's tasks and ordered steps (written by the user)
    WS/scenes/<scene>/temporal/           clip features, actionness and step timelines per video
    WS/grounding/                         voxel spaces, training pairs, model (safetensors + JSON)
    WS/state/<stage>.json                 what each stage did: fingerprints, params, status, timings
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grounding.narration import SUBTITLE_SUFFIXES, find_subtitles
from howto3d.config import Config, load_config, to_toml
from recon.io import InputError, atomic_write_bytes, atomic_write_json, read_json

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_name(kind: str, name: str) -> str:
    """Scene/video names become folder names: keep them portable."""
    if not _NAME.match(name):
        raise InputError(f"{kind} name {name!r} is not allowed; use letters, digits, '_', '-' or '.'")
    return name


@dataclass(frozen=True)
class Video:
    """One video of a scene and its optional subtitles."""

    scene: str
    name: str
    path: Path
    subtitles: Path | None


class Workspace:
    """Paths and records of a workspace folder."""

    def __init__(self, root: Path):
        self.root = Path(root)

    # ---- creation and config -------------------------------------------------------------
    @classmethod
    def init(cls, root: Path, config: Config | None = None) -> Workspace:
        """Create the folder and a documented ``howto3d.toml`` (an existing config is kept)."""
        ws = cls(root)
        (ws.root / "scenes").mkdir(parents=True, exist_ok=True)
        if not ws.config_path.exists():
            atomic_write_bytes(ws.config_path, to_toml(config or Config()).encode())
        return ws

    @classmethod
    def open(cls, root: Path) -> Workspace:
        """Open an existing workspace, with a clear error when the folder is not one."""
        ws = cls(root)
        if not (ws.root / "scenes").is_dir():
            raise InputError(f"{ws.root}: not a howto3d workspace; create it with `howto3d init {ws.root}`")
        return ws

    @property
    def config_path(self) -> Path:
        return self.root / "howto3d.toml"

    @property
    def config(self) -> Config:
        return load_config(self.config_path)

    # ---- layout -------------------------------------------------------------------------
    def scene_dir(self, scene: str) -> Path:
        return self.root / "scenes" / scene

    def scenes(self) -> list[str]:
        base = self.root / "scenes"
        return sorted(p.name for p in base.iterdir() if p.is_dir() and (p / "videos").is_dir())

    def require_scene(self, scene: str) -> str:
        if scene not in self.scenes():
            known = ", ".join(self.scenes()) or "none yet (add videos with `howto3d add`)"
            raise InputError(f"{self.root}: unknown scene {scene!r}; scenes: {known}")
        return scene

    def select_scenes(self, scene: str | None) -> list[str]:
        """``[scene]`` when given (checked), else every scene; an empty workspace is an input error."""
        if scene is not None:
            return [self.require_scene(scene)]
        scenes = self.scenes()
        if not scenes:
            raise InputError(f"{self.root}: no scenes yet; "
                             f"add videos with `howto3d add {self.root} --scene NAME VIDEO...`")
        return scenes

    def videos(self, scene: str) -> list[Video]:
        folder = self.scene_dir(scene) / "videos"
        return [Video(scene, p.stem, p, find_subtitles(p))
                for p in sorted(folder.iterdir()) if p.suffix.lower() in VIDEO_SUFFIXES]

    def frames_dir(self, scene: str, video: str) -> Path:
        return self.scene_dir(scene) / "frames" / video

    def sfm_dir(self, scene: str, video: str) -> Path:
        return self.scene_dir(scene) / "sfm" / video

    def align_dir(self, scene: str) -> Path:
        return self.scene_dir(scene) / "align"

    def temporal_dir(self, scene: str) -> Path:
        return self.scene_dir(scene) / "temporal"

    def ground_truth_path(self, scene: str) -> Path:
        return self.scene_dir(scene) / "ground_truth.json"

    @property
    def grounding_dir(self) -> Path:
        return self.root / "grounding"

    # ---- ingest -------------------------------------------------------------------------
    def add_videos(self, scene: str, videos: list[Path]) -> list[Video]:
        """Copy videos and their same-stem subtitles into a scene; the originals are never touched."""
        check_name("scene", scene)
        for v in videos:
            if not Path(v).is_file():
                raise InputError(f"{v}: video file not found")
            if Path(v).suffix.lower() not in VIDEO_SUFFIXES:
                raise InputError(f"{v}: not a video file; expected one of {', '.join(VIDEO_SUFFIXES)}")
            check_name("video", Path(v).stem)
        dest = self.scene_dir(scene) / "videos"
        dest.mkdir(parents=True, exist_ok=True)
        added = []
        for v in map(Path, videos):
            target = dest / v.name
            if target.exists() and target.stat().st_size == v.stat().st_size:
                continue
            shutil.copy2(v, target.with_name(f".{v.name}.tmp"))
            target.with_name(f".{v.name}.tmp").replace(target)
            for suffix in SUBTITLE_SUFFIXES:
                sub = v.with_suffix(suffix)
                if sub.is_file():
                    shutil.copy2(sub, dest / sub.name)
            added.append(Video(scene, v.stem, target, find_subtitles(target)))
        return added

    # ---- stage records ------------------------------------------------------------------
    def record(self, stage: str) -> StageRecord:
        return StageRecord(self.root / "state" / f"{stage}.json")


class StageRecord:
    """What a stage did, per item (e.g. ``civic/video_00``): fingerprint of inputs+params, status, timings.

    A rerun skips an item whose fingerprint is unchanged (done or failed with the same inputs);
    every update is written atomically, so a killed run keeps what it had finished.
    """

    def __init__(self, path: Path):
        self.path = path
        self.items: dict[str, dict[str, Any]] = read_json(path)["items"] if path.exists() else {}

    def get(self, key: str, fingerprint: str) -> dict[str, Any] | None:
        """The entry of ``key`` if it was made from the same inputs, else ``None``."""
        entry = self.items.get(key)
        return entry if entry is not None and entry.get("fingerprint") == fingerprint else None

    def put(self, key: str, fingerprint: str, status: str, **info: Any) -> None:
        self.items[key] = {"fingerprint": fingerprint, "status": status, "when": time.time(), **info}
        atomic_write_json(self.path, {"items": self.items})

    def drop(self, key: str) -> None:
        if self.items.pop(key, None) is not None:
            atomic_write_json(self.path, {"items": self.items})
