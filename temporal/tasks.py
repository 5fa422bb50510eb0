"""A scene's task list (``tasks.json`` / ``tasks.toml``) and which task(s) a video shows.

The file is what a user writes next to their videos: each task an id, a title and its ordered step phrases
(CrossTask style, e.g. "remove dipstick"), plus an optional ``videos`` table naming each video's tasks.
A video without an entry gets the tasks its narration talks about (TF-IDF similarity of the subtitle lines
to each task's title and steps), so a video showing two jobs gets both, in the order they are narrated.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from recon.io import InputError

from .step_windows import tfidf_embed

TASK_FILES = ("tasks.json", "tasks.toml")
EXAMPLE = (
    '{"tasks": [{"id": "check_oil", "title": "check the oil", "steps": ["remove dipstick", ...]}], '
    '"videos": {"video_00": ["check_oil"]}}'
)


@dataclass(frozen=True)
class TaskDef:
    """One task of the scene's file."""

    id: str
    title: str
    steps: tuple[str, ...]


@dataclass
class TaskFile:
    """Tasks by id (file order) and the optional per-video task lists."""

    path: Path
    tasks: dict[str, TaskDef]
    videos: dict[str, list[str]]


def find_task_file(scene_dir: Path) -> Path | None:
    """``tasks.json`` or ``tasks.toml`` in the scene folder, if any."""
    for name in TASK_FILES:
        if (Path(scene_dir) / name).is_file():
            return Path(scene_dir) / name
    return None


def read_task_file(path: Path) -> TaskFile:
    """Parse and check a task file; every problem is an :class:`InputError` naming the file and the fix."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except FileNotFoundError:
        raise InputError(f"{path}: task file not found; write one like {EXAMPLE}") from None
    except (json.JSONDecodeError, tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: cannot parse ({e}); expected {EXAMPLE}") from None
    if not isinstance(data, dict) or not isinstance(data.get("tasks"), list) or not data["tasks"]:
        raise InputError(f"{path}: needs a non-empty 'tasks' list, e.g. {EXAMPLE}")
    tasks: dict[str, TaskDef] = {}
    for i, t in enumerate(data["tasks"]):
        ok = (
            isinstance(t, dict)
            and isinstance(t.get("id"), str)
            and isinstance(t.get("steps"), list)
            and t["steps"]
            and all(isinstance(s, str) and s.strip() for s in t["steps"])
        )
        if not ok:
            raise InputError(f"{path}: task {i} needs an 'id' and a non-empty 'steps' list of phrases")
        if t["id"] in tasks:
            raise InputError(f"{path}: task id {t['id']!r} appears twice; ids must be unique")
        tasks[t["id"]] = TaskDef(t["id"], str(t.get("title", t["id"].replace("_", " "))), tuple(t["steps"]))
    videos = data.get("videos", {})
    if not isinstance(videos, dict):
        raise InputError(f"{path}: 'videos' must map a video name to a list of task ids")
    out = {}
    for v, ids in videos.items():
        ids = [ids] if isinstance(ids, str) else ids
        unknown = [t for t in ids if t not in tasks]
        if unknown:
            raise InputError(f"{path}: video {v!r} names unknown task(s) {unknown}; known: {', '.join(tasks)}")
        out[str(v)] = list(ids)
    return TaskFile(path, tasks, out)


def task_scores(lines: Sequence[str], tasks: dict[str, TaskDef]) -> dict[str, tuple[float, float]]:
    """Per task: mean over its steps of the best line's TF-IDF cosine (title counts as one more step),
    and the mean index of those best lines (where in the video the task is talked about)."""
    ids = list(tasks)
    queries = [q for t in ids for q in (tasks[t].title, *tasks[t].steps)]
    E = tfidf_embed(list(lines) + queries)
    E = E / np.maximum(np.linalg.norm(E, axis=1, keepdims=True), 1e-12)
    sim = E[: len(lines)] @ E[len(lines) :].T
    out, col = {}, 0
    for t in ids:
        n = 1 + len(tasks[t].steps)
        s = sim[:, col : col + n]
        col += n
        best = s.max(0)
        where = s.argmax(0)[best > 0]
        out[t] = (float(best.mean()), float(where.mean()) if len(where) else float("inf"))
    return out


def step_phrases(tasks: dict[str, TaskDef]) -> list[str]:
    """Every task's steps, task after task: the columns of the seen mass :func:`look_scores` reads."""
    return [s for t in tasks.values() for s in t.steps]


def look_scores(M: np.ndarray, tasks: dict[str, TaskDef]) -> dict[str, tuple[float, float]]:
    """Per task from the seen mass ``M[T, K]`` of :func:`step_phrases`: how much more the video looks at its
    steps' places than at the average step's (the mean seen mass of its steps over that of all steps, minus 1,
    at least 0), and when (the mean clip of that excess; ``inf`` without any)."""
    M = np.asarray(M, float)
    base = max(float(M.mean()), 1e-12)
    excess = np.maximum(M - M.mean(1, keepdims=True), 0)
    out, col = {}, 0
    for t, task in tasks.items():
        n = len(task.steps)
        lift = max(float(M[:, col : col + n].mean()) / base - 1, 0.0)
        w = excess[:, col : col + n].sum(1)
        col += n
        out[t] = (lift, float(np.arange(len(w)) @ w / w.sum()) if w.sum() > 0 else float("inf"))
    return out


def _kept(scores: dict[str, tuple[float, float]], keep: float, floor: float) -> list[str]:
    """Tasks whose ``(score, when)`` scores within ``keep`` of the best, ordered by when; none if the best is at
    most ``floor``."""
    best = max(s for s, _ in scores.values())
    if best <= floor:
        return []
    return sorted((t for t, (s, _) in scores.items() if s >= keep * best), key=lambda t: scores[t][1])


def detect_tasks(lines: Sequence[str], tasks: dict[str, TaskDef], keep: float = 0.6) -> list[str]:
    """Tasks whose narration score is within ``keep`` of the best one, in the order they are talked about.

    A scene with one task: every video does it, whatever its narration says (chatter that names no step, or none)."""
    if len(tasks) == 1:
        return list(tasks)
    if not lines:
        return []
    return _kept(task_scores(lines, tasks), keep, 0.0)


def looked_tasks(M: np.ndarray, tasks: dict[str, TaskDef], keep: float = 0.6) -> list[str]:
    """Tasks whose look lift (:func:`look_scores` of the seen mass ``M``) is within ``keep`` of the best one, in
    the order they are looked at; none when the video looks at no task's places more than at the average's."""
    return _kept(look_scores(M, tasks), keep, 1e-6)  # a flat lift is rounding, not evidence


def video_tasks(
    task_file: TaskFile,
    video: str,
    lines: Sequence[str],
    override: Sequence[str] | None = None,
    looks: Callable[[list[str]], np.ndarray | None] | None = None,
) -> tuple[list[str], str]:
    """A video's tasks and where they came from (``option``, ``file``, ``narration`` or ``looks``).

    ``looks(phrases) -> M[T, K]``: what the video's cameras see of each phrase's grounded place (see
    :func:`look_scores`), asked only when the narration names no task. A task the presenter names outranks any
    heatmap: adding looks to every video's narration scores pushed a second, narrated job out of a two-task
    video."""
    if override:
        unknown = [t for t in override if t not in task_file.tasks]
        if unknown:
            raise InputError(
                f"--task {','.join(unknown)}: not in {task_file.path}; known: {', '.join(task_file.tasks)}"
            )
        return list(override), "option"
    if video in task_file.videos:
        return task_file.videos[video], "file"
    said = detect_tasks(lines, task_file.tasks)
    M = looks(step_phrases(task_file.tasks)) if looks is not None and not said else None
    return (said, "narration") if M is None else (looked_tasks(M, task_file.tasks), "looks")


def step_list(task_file: TaskFile, tasks: Sequence[str]) -> list[tuple[str, str]]:
    """The ``(task, step)`` sequence a video with these tasks goes through, in order."""
    return [(t, s) for t in tasks for s in task_file.tasks[t].steps]
