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
    WS/scenes/<scene>/annotations/        labels saved from the web page: keypoints/<video>.json, steps/<video>.csv
    WS/grounding/                         voxel spaces, training pairs, model (safetensors + JSON)
    WS/state/<stage>.json                 what each stage did: fingerprints, params, status, timings
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from grounding.narration import find_subtitles, subtitle_files
from howto3d.config import Config, load_config, to_toml
from recon.io import (
    InputError,
    atomic_write_bytes,
    atomic_write_json,
    file_fingerprint,
    params_fingerprint,
    read_json,
)

log = logging.getLogger("howto3d")

VIDEO_SUFFIXES = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".m4v")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_MAX_NAME = 200
"""File systems allow 255 bytes per name; temporary names add a prefix and a random suffix."""


def check_name(kind: str, name: str) -> str:
    """Scene/video names become folder names: keep them portable."""
    if not _NAME.match(name):
        raise InputError(f"{kind} name {name!r} is not allowed; use letters, digits, '_', '-' or '.'")
    if len(name) > _MAX_NAME:
        raise InputError(
            f"{kind} name {name[:40]!r}... is {len(name)} characters long; rename it to at most "
            f"{_MAX_NAME} (it becomes folder and temporary-file names)"
        )
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
            raise InputError(
                f"{self.root}: no scenes yet; add videos with `howto3d add {self.root} --scene NAME VIDEO...`"
            )
        return scenes

    def videos(self, scene: str) -> list[Video]:
        folder = self.scene_dir(scene) / "videos"
        return [
            Video(scene, p.stem, p, find_subtitles(p))
            for p in sorted(folder.iterdir())
            if p.suffix.lower() in VIDEO_SUFFIXES
        ]

    def frames_dir(self, scene: str, video: str) -> Path:
        return self.scene_dir(scene) / "frames" / video

    def sfm_dir(self, scene: str, video: str) -> Path:
        return self.scene_dir(scene) / "sfm" / video

    def align_dir(self, scene: str) -> Path:
        return self.scene_dir(scene) / "align"

    def temporal_dir(self, scene: str) -> Path:
        return self.scene_dir(scene) / "temporal"

    def annotations_dir(self, scene: str) -> Path:
        """What the user labelled on the web page: ``keypoints/<video>.json`` (the ``transfer`` input, which
        ``eval-transfer --annotations`` reads as a folder) and ``steps/<video>.csv`` (``eval-steps --annotations``)."""
        return self.scene_dir(scene) / "annotations"

    def ground_truth_path(self, scene: str) -> Path:
        return self.scene_dir(scene) / "ground_truth.json"

    @property
    def grounding_dir(self) -> Path:
        return self.root / "grounding"

    # ---- ingest -------------------------------------------------------------------------
    def add_videos(self, scene: str, videos: list[Path]) -> list[Video]:
        """Copy videos and their sidecar subtitles into a scene; the originals are never touched.

        Returns the videos that are new or changed (content compared by hash, so a re-encoded file with the same
        size is not mistaken for the old one); changed subtitles of a known video are updated too, and the
        stages' fingerprints then redo whatever depends on them. Two videos with one name are refused: every
        per-video folder, record and subtitle is keyed by it.
        """
        check_name("scene", scene)
        dest = self.scene_dir(scene) / "videos"
        existing = {v.name: v.path for v in self.videos(scene)} if dest.is_dir() else {}
        given: dict[str, Path] = {}
        for v in map(Path, videos):
            if not v.is_file():
                raise InputError(f"{v}: video file not found")
            if v.suffix.lower() not in VIDEO_SUFFIXES:
                raise InputError(f"{v}: not a video file; expected one of {', '.join(VIDEO_SUFFIXES)}")
            check_name("video", v.stem)
            other = given.get(v.stem) or existing.get(v.stem)
            if other is not None and other.name != v.name:
                raise InputError(
                    f"{v}: a video named {v.stem!r} is already {other} in scene {scene!r}; rename one "
                    "of them (video names must be unique in a scene)"
                )
            if v.stem in given and given[v.stem].resolve() != v.resolve():
                raise InputError(f"{v}: given twice with {given[v.stem]} (same name {v.stem!r}); rename one of them")
            given[v.stem] = v
        dest.mkdir(parents=True, exist_ok=True)
        changed = []
        for v in given.values():
            target = dest / v.name
            is_new = not target.exists()
            if is_new or file_fingerprint(target) != file_fingerprint(v):
                _copy_atomic(v, target)
                if not is_new:
                    log.info("%s/%s: video content changed: replaced (its stages will be redone)", scene, v.stem)
                subs_changed = True
            else:
                subs_changed = False
            for sub in subtitle_files(v):
                copy = dest / sub.path.name
                if not copy.exists() or copy.read_bytes() != sub.path.read_bytes():
                    _copy_atomic(sub.path, copy)
                    if not subs_changed:
                        log.info("%s/%s: subtitles %s updated", scene, v.stem, sub.path.name)
                    subs_changed = True
            if subs_changed:
                changed.append(Video(scene, v.stem, target, find_subtitles(target)))
            else:
                log.info("%s/%s: already in the workspace, unchanged: skipped", scene, v.stem)
        return changed

    # ---- settings remembered from the command line --------------------------------------------
    def remember(self, section: str, key: str, value: Any) -> None:
        """Store a command-line override in ``howto3d.toml`` so later runs (``howto3d run``) keep using it."""
        config = self.config
        if getattr(getattr(config, section), key) == value:
            return
        setattr(getattr(config, section), key, value)
        atomic_write_bytes(self.config_path, to_toml(config).encode())
        log.info("%s.%s = %r saved in %s (later runs use it)", section, key, value, self.config_path)

    # ---- one writer at a time ---------------------------------------------------------------
    def lock(self, command: str) -> Workspace:
        """Take the workspace's writer lock until :func:`release_locks` (the CLI calls it when a command ends) or
        this process exits, when the OS releases it.

        A second writer waits, saying who holds it; a lock of a dead process is free by construction (``flock``),
        and temporary files left by such an interrupted run are removed once the lock is ours.
        """
        key = self.root.resolve()
        if key in _HELD:
            return self
        path = self.root / "state" / "lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "another howto3d process"
                log.warning("%s is busy (%s); waiting for it to finish", self.root, holder)
                fcntl.flock(fd, fcntl.LOCK_EX)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} running `{command}` since {time.strftime('%H:%M:%S')}\n".encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        _HELD[key] = fd
        self.remove_stale_temporaries()
        return self

    def remove_stale_temporaries(self) -> int:
        """Delete ``.*.tmp``/``.*.old`` files and folders of interrupted runs (call only while holding the lock).

        A ``.NAME.old`` without ``NAME`` is the previous content of a folder that ``atomic_dir`` was replacing when
        the run was killed between its two renames: it is put back (its record still describes it), not deleted.
        """
        stale = [p for pattern in (".*.tmp", ".*.old") for p in self.root.rglob(pattern)]
        for p in stale:
            final = p.with_name(p.name[1 : -len(".old")]) if p.name.endswith(".old") else None
            if final is not None and not final.exists() and not final.is_symlink():
                os.replace(p, final)
                log.info("%s: restored from %s (a run was killed while replacing it)", final, p.name)
            elif p.is_dir() and not p.is_symlink():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        if stale:
            log.info("removed %d temporary file(s) left by an interrupted run", len(stale))
        return len(stale)

    # ---- stage records: one way to skip finished work -------------------------------------------
    def record(self, stage: str) -> StageRecord:
        return StageRecord(self.root / "state" / f"{stage}.json")

    def step(self, stage: str, key: str, inputs: Mapping[str, Path | str | None], params: Any) -> Step:
        """The record of one item of a stage (``key``, e.g. ``civic/video_00``) for these inputs and settings.

        ``inputs`` name what the item is made from: a file (fingerprinted by content), an upstream fingerprint
        (a string, e.g. :meth:`recon.reconstruct.Model.fingerprint`) or ``None`` (absent). ``params`` is any
        JSON-able value (a config's ``asdict``). A changed input or setting makes a new fingerprint, so exactly
        the items that depend on it are redone. The fingerprint hashes the inputs in the order given (so records
        of earlier releases, made the same way, stay valid); each input's own fingerprint is recorded by name
        too, so ``howto3d check`` can say which one changed.
        """
        fingerprints = {name: _input_fingerprint(value) for name, value in inputs.items()}
        fp = params_fingerprint([*fingerprints.values(), params])
        record = self.record(stage)
        return Step(stage, key, fp, record, record.get(key, fp), fingerprints, params_fingerprint(params))

    def run_step(
        self,
        stage: str,
        key: str,
        inputs: Mapping[str, Path | str | None],
        params: Any,
        fn: Callable[[], T],
        *,
        load: Callable[[], T] | None = None,
        force: bool = False,
    ) -> T:
        """Run ``fn`` for one item unless it already finished from the same inputs and settings; then ``load()``
        (the stage's reader of what ``fn`` wrote) is the result, and an output that cannot be read is redone.

        Every stage of the workspace skips and resumes through here (or :meth:`step` when its items run in
        worker processes), so `howto3d run` twice does nothing the second time.
        """
        step = self.step(stage, key, inputs, params)
        if step.done and not force and load is not None:
            try:
                result = load()
            except (InputError, OSError, KeyError, ValueError) as e:
                log.info("%s: %s output unreadable (%s): redone", key, stage, e)
            else:
                log.info("%s: %s skipped (inputs and settings unchanged)", key, stage)
                return result
        t = time.perf_counter()
        result = fn()
        step.put("done", seconds=round(time.perf_counter() - t, 2))
        return result


class StepSpec(NamedTuple):
    """One item of a stage as its command fingerprints it (``ws.step(*spec)``, ``ws.run_step(*spec, fn)``).

    Each adapter builds its spec in one function that its command and ``howto3d check`` both call, so check sees
    exactly the work a rerun would redo."""

    stage: str
    key: str
    inputs: Mapping[str, Path | str | None]
    params: Any


_HELD: dict[Path, int] = {}
"""Writer locks this process holds, by workspace folder (a command that runs other commands locks once)."""


def release_locks() -> None:
    """Release every workspace lock this process holds (the end of a CLI command)."""
    while _HELD:
        _, fd = _HELD.popitem()
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _copy_atomic(src: Path, dst: Path) -> None:
    """Copy via a temporary name so a full disk or a kill never leaves a half-copied file under the real name."""
    tmp = dst.with_name(f".{dst.name}.tmp")
    try:
        shutil.copy2(src, tmp)
        tmp.replace(dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


T = TypeVar("T")

_FINGERPRINTS: dict[tuple[str, int, int], str] = {}
"""File fingerprints of this process by (path, size, mtime): a long video is hashed once per command."""


def _input_fingerprint(value: Path | str | None) -> str | None:
    if not isinstance(value, Path):
        return value
    try:
        st = value.stat()
    except FileNotFoundError:
        return None
    key = (str(value.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FINGERPRINTS:
        _FINGERPRINTS[key] = file_fingerprint(value)
    return _FINGERPRINTS[key]


@dataclass
class Step:
    """One item of a stage as recorded: ``entry`` is its record when made from the same fingerprint."""

    stage: str
    key: str
    fingerprint: str
    record: StageRecord
    entry: dict[str, Any] | None
    inputs: dict[str, str | None] = field(default_factory=dict)
    """Each input's fingerprint by name (recorded with the outcome)."""
    settings: str = ""
    """Fingerprint of the settings alone (recorded with the outcome)."""

    @property
    def done(self) -> bool:
        return self.entry is not None and self.entry["status"] == "done"

    def put(self, status: str, **info: Any) -> None:
        """Record the item's outcome (``done`` or ``failed`` with an ``error``), merged under the record's lock."""
        self.record.put(self.key, self.fingerprint, status, inputs=self.inputs, settings=self.settings, **info)
        self.entry = self.record.items[self.key]

    def changes(self) -> list[str] | None:
        """Why a rerun would redo the recorded item: the names of the inputs that changed (added or removed
        ones too) and "settings"; ``None`` when it is current or was never recorded."""
        old = self.record.items.get(self.key)
        if old is None or self.entry is not None:
            return None
        before = old.get("inputs")
        if before is None:  # recorded before inputs were
            return ["its inputs or settings"]
        changed = sorted(
            n
            for n in before.keys() | self.inputs.keys()
            if n not in before or n not in self.inputs or before[n] != self.inputs[n]
        )
        if old.get("settings") != self.settings:
            changed.append("settings")
        return changed or ["the order of its inputs"]


class StageRecord:
    """What a stage did, per item (e.g. ``civic/video_00``): fingerprint of inputs+params, status, timings.

    A rerun skips an item whose fingerprint is unchanged (done or failed with the same inputs). Every update
    re-reads the file under a file lock and changes only its own item, so two processes recording different
    items never lose each other's entries; the write itself is atomic, so a killed run keeps what it finished.
    """

    def __init__(self, path: Path):
        self.path = path
        self.items: dict[str, dict[str, Any]] = self._read()

    def _read(self) -> dict[str, dict[str, Any]]:
        return read_json(self.path)["items"] if self.path.exists() else {}

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path.with_name(f".{self.path.name}.lock"), os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def get(self, key: str, fingerprint: str) -> dict[str, Any] | None:
        """The entry of ``key`` if it was made from the same inputs, else ``None``."""
        entry = self.items.get(key)
        return entry if entry is not None and entry.get("fingerprint") == fingerprint else None

    def put(self, key: str, fingerprint: str, status: str, **info: Any) -> None:
        with self._locked():
            self.items = self._read()
            self.items[key] = {"fingerprint": fingerprint, "status": status, "when": time.time(), **info}
            atomic_write_json(self.path, {"items": self.items})

    def drop(self, key: str) -> None:
        with self._locked():
            self.items = self._read()
            if self.items.pop(key, None) is not None:
                atomic_write_json(self.path, {"items": self.items})
