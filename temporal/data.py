"""CrossTask file formats, interval <-> per-clip labels, and dataset statistics (CrossTask, [001] §3.5).

The readers follow the public CrossTask release byte for byte so the original data loads unchanged;
every parse error names the file and what to fix (``DataError``).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from recon.io import InputError

Interval = tuple[int, float, float]
"""``(step_1based, start_sec, end_sec)``: one annotated (or constraint) interval."""


class DataError(InputError):
    """A dataset file is missing or malformed; the message names the file and the fix (an input error: the CLI
    prints it as one line, exit 2)."""


@dataclass
class Task:
    """One task: an ordered list of step descriptions (wikiHow style)."""

    task_id: str
    title: str
    url: str
    steps: list[str]


@dataclass
class VideoEntry:
    """One line of ``videos.csv``."""

    task_id: str
    video_id: str
    url: str


# ----------------------------------------------------------------------------- CrossTask text files


def read_tasks(path: Path) -> dict[str, Task]:
    """Parse repeated 6-line blocks: id, title, url, n_steps, comma-separated steps, blank line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected a CrossTask tasks_*.txt file)")
    lines = path.read_text().split("\n")
    tasks: dict[str, Task] = {}
    i = 0
    while i < len(lines) and lines[i].strip():
        block = lines[i : i + 5]
        if len(block) < 5:
            raise DataError(f"{path}:{i + 1}: truncated task block; each task needs 5 lines and a blank line")
        tid, title, url, n, steps = (s.strip() for s in block)
        try:
            n_steps = int(n)
        except ValueError:
            raise DataError(f"{path}:{i + 4}: step count {n!r} is not an integer") from None
        step_list = steps.split(",")
        if len(step_list) != n_steps:
            raise DataError(
                f"{path}:{i + 5}: task {tid} declares {n_steps} steps but lists "
                f"{len(step_list)}; fix the count or the comma-separated list"
            )
        tasks[tid] = Task(tid, title, url, step_list)
        i += 6
    return tasks


def write_tasks(path: Path, tasks: dict[str, Task] | list[Task]) -> None:
    items = tasks.values() if isinstance(tasks, dict) else tasks
    text = "".join(f"{t.task_id}\n{t.title}\n{t.url}\n{len(t.steps)}\n{','.join(t.steps)}\n\n" for t in items)
    Path(path).write_text(text)


def read_videos(path: Path) -> list[VideoEntry]:
    """``task,video_id,url`` per line, no header (CrossTask ``videos.csv`` / ``videos_val.csv``)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected lines 'task,video_id,url')")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.strip().split(",", 2)
        if len(parts) != 3:
            raise DataError(f"{path}:{n}: expected 'task,video_id,url', got {line!r}")
        out.append(VideoEntry(*parts))
    return out


def write_videos(path: Path, videos: list[VideoEntry]) -> None:
    Path(path).write_text("".join(f"{v.task_id},{v.video_id},{v.url}\n" for v in videos))


def read_intervals(path: Path) -> list[Interval]:
    """Annotation or constraint CSV: lines ``step,start,end`` (step 1-based, seconds)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected lines 'step,start,end')")
    out = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.strip().split(",")
        try:
            step, start, end = int(parts[0]), float(parts[1]), float(parts[2])
            if len(parts) != 3:
                raise ValueError
        except (ValueError, IndexError):
            raise DataError(f"{path}:{n}: expected 'step,start,end' (int,float,float), got {line!r}") from None
        if step < 1 or end < start:
            raise DataError(f"{path}:{n}: step must be >= 1 and end >= start, got {line!r}")
        out.append((step, start, end))
    return out


def write_intervals(path: Path, intervals: list[Interval]) -> None:
    Path(path).write_text("".join(f"{s},{float(a)!r},{float(b)!r}\n" for s, a, b in intervals))


def read_npy(path: Path, expected: str) -> np.ndarray:
    """A ``.npy`` array, never unpickled; a missing or unreadable file is one line naming it and the fix."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found (expected {expected})")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise DataError(f"{path}: not a readable .npy array ({e}); save it with numpy.save") from None


def read_features(path: Path, dim: int | None = None) -> np.ndarray:
    """Per-clip features ``[T, D]`` as float32; checks shape so bad files fail here, not in training."""
    X = read_npy(path, "a [T, D] .npy array of features per video")
    if X.ndim != 2 or X.shape[0] == 0:
        raise DataError(f"{path}: features must have shape [T, D] with T > 0, got {X.shape}")
    if dim is not None and X.shape[1] != dim:
        raise DataError(f"{path}: features have D={X.shape[1]}, expected D={dim} like the other videos")
    if not np.isfinite(X).all():
        raise DataError(f"{path}: features contain NaN or inf; recompute them")
    return X.astype(np.float32, copy=False)


def read_narration(path: Path) -> list[tuple[str, float]]:
    """ASR words with timestamps: JSON ``[[word, time_sec], ...]`` (our extension of the CrossTask layout)."""
    path = Path(path)
    try:
        return [(str(w), float(t)) for w, t in json.loads(path.read_text())]
    except (ValueError, TypeError) as e:
        raise DataError(f"{path}: expected a JSON list of [word, time_sec] pairs ({e})") from None


def write_narration(path: Path, words: list[tuple[str, float]]) -> None:
    Path(path).write_text(json.dumps([[w, round(float(t), 3)] for w, t in words]))


# ----------------------------------------------------------------------------- labels


def intervals_to_labels(intervals: list[Interval], T: int, K: int) -> np.ndarray:
    """Dense ``Y[T, K]`` (uint8) exactly like the reference: ``Y[floor(s):ceil(e), step-1] = 1``."""
    Y = np.zeros((T, K), dtype=np.uint8)
    for step, start, end in intervals:
        if step > K:
            raise DataError(f"interval for step {step} but the task has only {K} steps")
        Y[int(math.floor(start)) : int(math.ceil(end)), step - 1] = 1
    return Y


def labels_to_dense(Y: np.ndarray) -> np.ndarray:
    """``y[T]`` in ``0..K`` (0 = background); overlapping steps resolve to the lowest index."""
    return np.where(Y.any(1), Y.argmax(1) + 1, 0)


def dense_to_intervals(y: np.ndarray) -> list[Interval]:
    """Runs of equal non-zero labels -> ``(step, start, end)`` at 1 clip = 1 s."""
    y = np.asarray(y)
    change = np.flatnonzero(np.diff(y)) + 1
    starts = np.r_[0, change]
    ends = np.r_[change, len(y)]
    return [(int(y[s]), float(s), float(e)) for s, e in zip(starts, ends, strict=True) if y[s] != 0]


# ----------------------------------------------------------------------------- statistics


def order_consistency(intervals: list[Interval], method: str = "pairs") -> float:
    """Agreement of the annotated step order with the canonical order (Alayrac'18, 2->1->3 = 2/3).

    ``pairs``: fraction of correctly ordered step pairs; ``lis``: longest increasing subsequence / n.
    Steps are ordered by their first start time; with fewer than 2 steps the order is trivially 1.
    """
    first: dict[int, float] = {}
    for s, a, _ in intervals:
        first[s] = min(a, first.get(s, math.inf))
    seq = np.array([s for s, _ in sorted(first.items(), key=lambda kv: (kv[1], kv[0]))])
    n = len(seq)
    if n < 2:
        return 1.0
    if method == "pairs":
        i, j = np.triu_indices(n, 1)
        return float((seq[i] < seq[j]).mean())
    if method == "lis":
        tails: list[int] = []
        for v in seq:
            k = int(np.searchsorted(tails, v))
            tails[k : k + 1] = [v]
        return len(tails) / n
    raise ValueError(f"unknown order-consistency method {method!r}; use 'pairs' or 'lis'")


@dataclass
class TaskStats:
    """Per-task dataset statistics (spec Table 3.2 columns)."""

    task_id: str
    title: str
    videos: int
    steps: int
    avg_len_s: float
    missing_steps: float
    """Fraction of (video, step) slots with no annotated interval."""
    background: float
    """Fraction of clips inside no step interval."""
    order_consistency: float


def task_stats(
    task: Task, lengths: list[int], annotations: list[list[Interval]], order_method: str = "pairs"
) -> TaskStats:
    """Statistics of one task from its videos' lengths (clips) and annotations."""
    K = len(task.steps)
    Ys = [intervals_to_labels(a, T, K) for a, T in zip(annotations, lengths, strict=True)]
    n = max(len(Ys), 1)
    missing = sum(int((~Y.any(0)).sum()) for Y in Ys) / max(n * K, 1) if Ys else 0.0
    bg = sum(int((~Y.any(1)).sum()) for Y in Ys) / max(sum(lengths), 1)
    oc = float(np.mean([order_consistency(a, order_method) for a in annotations])) if annotations else 1.0
    return TaskStats(task.task_id, task.title, len(Ys), K, float(np.mean(lengths)) if lengths else 0.0, missing, bg, oc)


# ----------------------------------------------------------------------------- dataset folder


@dataclass
class CrossTask:
    """A CrossTask-format folder (the public release layout; ``narration/`` is our optional extension).

    ``root/tasks_primary.txt``, ``tasks_related.txt``, ``videos.csv`` (training pool),
    ``videos_val.csv`` (test), ``annotations/<task>_<vid>.csv``, ``crosstask_constraints/<task>_<vid>.csv``,
    ``crosstask_features/<vid>.npy``, ``narration/<vid>.json``.
    """

    root: Path
    primary: dict[str, Task]
    related: dict[str, Task]
    train: list[VideoEntry]
    test: list[VideoEntry]
    dim: int | None = None
    _lengths: dict[str, int] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, root: Path) -> CrossTask:
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"{root}: dataset folder not found (create one with `howto3d crosstask synth {root}`)")
        primary = read_tasks(root / "tasks_primary.txt")
        related = read_tasks(root / "tasks_related.txt") if (root / "tasks_related.txt").exists() else {}
        train = read_videos(root / "videos.csv")
        test = read_videos(root / "videos_val.csv") if (root / "videos_val.csv").exists() else []
        tasks = {**primary, **related}
        for v in train + test:
            if v.task_id not in tasks:
                raise DataError(
                    f"{root / 'videos.csv'}: video {v.video_id} names unknown task {v.task_id}; "
                    "add the task to tasks_primary.txt or tasks_related.txt"
                )
        return cls(root, primary, related, train, test)

    @property
    def tasks(self) -> dict[str, Task]:
        return {**self.primary, **self.related}

    def features(self, vid: str) -> np.ndarray:
        X = read_features(self.root / "crosstask_features" / f"{vid}.npy", self.dim)
        self.dim = X.shape[1]
        self._lengths[vid] = X.shape[0]
        return X

    def length(self, vid: str) -> int:
        """Number of clips, read from the .npy header without loading the array."""
        if vid not in self._lengths:
            path = self.root / "crosstask_features" / f"{vid}.npy"
            if not path.is_file():
                raise DataError(f"{path}: feature file not found (expected a [T, D] .npy array per video)")
            self._lengths[vid] = int(np.load(path, mmap_mode="r").shape[0])
        return self._lengths[vid]

    def annotation(self, task: str, vid: str) -> list[Interval] | None:
        path = self.root / "annotations" / f"{task}_{vid}.csv"
        return read_intervals(path) if path.exists() else None

    def constraints(self, task: str, vid: str) -> list[Interval] | None:
        path = self.root / "crosstask_constraints" / f"{task}_{vid}.csv"
        return read_intervals(path) if path.exists() else None

    def narration(self, vid: str) -> list[tuple[str, float]] | None:
        path = self.root / "narration" / f"{vid}.json"
        return read_narration(path) if path.exists() else None

    def labels(self, task: str, vid: str) -> np.ndarray | None:
        ann = self.annotation(task, vid)
        return None if ann is None else intervals_to_labels(ann, self.length(vid), len(self.tasks[task].steps))

    def stats(self, order_method: str = "pairs") -> list[TaskStats]:
        """Statistics of every primary task over its annotated videos (train pool and test)."""
        out = []
        for tid, task in self.primary.items():
            vids = [v.video_id for v in self.train + self.test if v.task_id == tid]
            anns = [(a, v) for v in vids if (a := self.annotation(tid, v)) is not None]
            out.append(task_stats(task, [self.length(v) for _, v in anns], [a for a, _ in anns], order_method))
        return out
