"""Your own step labels: one CSV per video, read as the ground truth ``eval-steps`` scores against.

The rows are CrossTask's annotation shape, ``step,start,end`` (seconds), so CrossTask's own files read unchanged,
with what a hand-written file needs on top:

- ``step`` is a 1-based step number of the task's list in the scene's task file (CrossTask) or the step's text
  ("remove dipstick"; case and spacing do not matter);
- an optional 4th column ``task`` (a task id of the task file) says which task a row belongs to;
- an optional header row naming the columns (``step,start,end[,task]``, any order; other columns are ignored).

A video's labels are ``DIR/<video>.csv`` plus, per task, ``DIR/<video>.<task>.csv`` or CrossTask's
``DIR/<task>_<video>.csv`` (every row of those belongs to that task; an empty one says the video performs the task
with no step labelled). A row's task is, first found: its ``task`` column, the file's task, else the video's
tasks in the task file's ``videos`` table (all tasks without an entry). A step number needs exactly one such task
and a step text must name exactly one of their steps; anything else is an :class:`InputError` naming
``file:line`` and the fix. Never the tasks the pipeline predicted: labels do not depend on predictions.
"""

from __future__ import annotations

import csv
import math
import tempfile
from collections.abc import Sequence
from pathlib import Path

from recon.io import InputError, atomic_write_bytes

from .data import Interval
from .tasks import TaskFile

COLUMNS = ("step", "start", "end", "task")
SHAPE = "rows 'step,start,end[,task]' (step: 1-based number or text of the task's step; seconds)"


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def label_files(folder: Path, video: str, task_file: TaskFile) -> list[tuple[Path, str | None]]:
    """The existing CSV files of ``video`` in ``folder`` and the task each one is for (``None``: any)."""
    names: list[tuple[str, str | None]] = [(f"{video}.csv", None)]
    names += [(n, t) for t in task_file.tasks for n in (f"{video}.{t}.csv", f"{t}_{video}.csv")]
    return [(folder / n, t) for n, t in names if (folder / n).is_file()]


def _candidates(task_file: TaskFile, video: str, fixed: str | None) -> list[str]:
    if fixed is not None:
        return [fixed]
    return task_file.videos.get(video) or list(task_file.tasks)


def _step(where: str, cell: str, tasks: list[str], task_file: TaskFile, video: str) -> tuple[str, str]:
    """``(task, step text)`` of a row's ``step`` cell among its candidate ``tasks``."""
    fix = f"add a 4th column task or put the rows in {video}.<task>.csv"
    if cell.isdigit():
        if len(tasks) != 1:
            raise InputError(f"{where}: step {cell} is ambiguous: {video} may perform any of {', '.join(tasks)}; {fix}")
        steps = task_file.tasks[tasks[0]].steps
        if not 1 <= int(cell) <= len(steps):
            raise InputError(f"{where}: step {cell}: task {tasks[0]} has steps 1–{len(steps)} in {task_file.path}")
        return tasks[0], steps[int(cell) - 1]
    found = [(t, s) for t in tasks for s in task_file.tasks[t].steps if _norm(s) == _norm(cell)]
    if len(found) == 1:
        return found[0]
    if found:
        raise InputError(f"{where}: step {cell!r} is in several tasks ({', '.join(t for t, _ in found)}); {fix}")
    known = "; ".join(f"{t}: {', '.join(task_file.tasks[t].steps)}" for t in tasks)
    raise InputError(
        f"{where}: unknown step {cell!r}; write a step number or text of {known} (the task list is {task_file.path})"
    )


def _seconds(where: str, row: dict[str, str]) -> tuple[float, float]:
    try:
        start, end = float(row["start"]), float(row["end"])
    except ValueError:
        raise InputError(
            f"{where}: start {row['start']!r} / end {row['end']!r} must be numbers of seconds; expected {SHAPE}"
        ) from None
    if not (math.isfinite(start) and math.isfinite(end)) or start < 0:
        raise InputError(f"{where}: start {row['start']} / end {row['end']} must be finite seconds >= 0")
    if end < start:
        raise InputError(f"{where}: end {row['end']} is before start {row['start']}; swap them")
    return start, end


def read_file(path: Path, video: str, task_file: TaskFile, fixed: str | None) -> list[dict]:
    """One label file's rows as ``{"task", "step", "start", "end"}`` (file order)."""
    out: list[dict] = []
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: spreadsheets save a BOM
            reader = csv.reader(f)
            header: list[str] | None = None
            for cells in reader:
                where = f"{path}:{reader.line_num}"
                cells = [c.strip() for c in cells]
                if not any(cells):
                    continue
                if header is None and not out and "step" in (names := [c.lower() for c in cells]):
                    missing = [c for c in COLUMNS[:3] if c not in names]
                    if missing:
                        raise InputError(f"{where}: header lacks column(s) {', '.join(missing)}; expected {SHAPE}")
                    header = names
                    continue
                if header is None and len(cells) not in (3, 4) or header is not None and len(cells) != len(header):
                    raise InputError(f"{where}: {len(cells)} columns in {','.join(cells)!r}; expected {SHAPE}")
                row = dict(zip(header or COLUMNS, cells, strict=False))
                tasks = _candidates(task_file, video, fixed)
                if row.get("task"):
                    if row["task"] not in task_file.tasks:
                        raise InputError(f"{where}: unknown task {row['task']!r}; known: {', '.join(task_file.tasks)}")
                    if fixed is not None and row["task"] != fixed:
                        raise InputError(f"{where}: task {row['task']} in a file of task {fixed}; move the row")
                    tasks = [row["task"]]
                task, step = _step(where, row["step"], tasks, task_file, video)
                start, end = _seconds(where, row)
                out.append({"task": task, "step": step, "start": start, "end": end})
    except (UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"{path}: not a readable CSV ({e}); save it as UTF-8 text with {SHAPE}") from None
    return out


def read_annotations(folder: Path, videos: Sequence[str], task_file: TaskFile) -> tuple[dict[str, dict], list[str]]:
    """The labels in ``folder`` of each of ``videos`` as ``{video: {"tasks", "steps"}}`` (the ground truth shape
    ``video_steps.evaluate_scene`` reads; tasks in order of first mention) and a note per video without a file
    and per CSV file naming no video (a typo would otherwise drop labels silently)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder}: not a folder; give --annotations a folder of <video>.csv files with {SHAPE}")
    truth, notes, used = {}, [], set()
    for v in videos:
        files = label_files(folder, v, task_file)
        if not files:
            notes.append(f"{v}: no labels ({folder / (v + '.csv')} not found)")
            continue
        tasks: list[str] = []
        steps: list[dict] = []
        for path, fixed in files:
            used.add(path)
            rows = read_file(path, v, task_file, fixed)
            tasks += [t for t in dict.fromkeys([fixed, *(r["task"] for r in rows)]) if t is not None and t not in tasks]
            steps += rows
        truth[v] = {"tasks": tasks, "steps": steps}
    if not truth:
        raise InputError(f"{folder}: no labels of any video ({', '.join(videos)}); name each file <video>.csv")
    notes += [
        f"{p}: names no video of the scene (<video>.csv or <video>.<task>.csv)"
        for p in sorted(folder.glob("*.csv"))
        if p not in used
    ]
    return truth, notes


def to_intervals(steps: Sequence[dict], task_file: TaskFile) -> dict[str, list[Interval]]:
    """Labels ``{"task", "step", "start", "end"}`` as CrossTask intervals ``(step number, start, end)`` per task."""
    out: dict[str, list[Interval]] = {}
    for s in steps:
        known = task_file.tasks.get(s["task"])
        if known is None or s["step"] not in known.steps:
            raise InputError(
                f"step {s['step']!r} of task {s['task']!r} is not in {task_file.path}; add it there or relabel"
            )
        out.setdefault(s["task"], []).append((known.steps.index(s["step"]) + 1, s["start"], s["end"]))
    return out


def write_file(path: Path, rows: Sequence[dict], video: str, task_file: TaskFile | None) -> int:
    """Save ``rows`` (``{"step", "start", "end"[, "task"]}``, as the web page marks them) as ``path`` with a
    header, after checking them as :func:`read_file` will (a file that ``eval-steps`` would refuse is never
    written); the number of rows written."""
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise InputError(f'step spans must be a list of {{"step", "start", "end"[, "task"]}}; got {rows!r:.80}')
    columns = list(COLUMNS if any(r.get("task") for r in rows) else COLUMNS[:3])
    for i, r in enumerate(rows):
        where = f"span {i + 1}"
        if not str(r.get("step", "")).strip():
            raise InputError(f"{where}: no step; name the step the span shows")
        if any(c in str(r.get(k, "")) for k in columns for c in ",\n\r"):
            raise InputError(f"{where}: a comma or line break in {r!r:.80}; remove it")
        _seconds(where, {k: str(r.get(k, "")) for k in ("start", "end")})

    def cell(r: dict, k: str) -> str:
        return f"{float(r[k]):.3f}" if k in ("start", "end") else str(r.get(k, "")).strip()

    data = "\n".join([",".join(columns), *(",".join(cell(r, k) for k in columns) for r in rows), ""]).encode()
    if task_file is not None:  # the reader's own checks: steps and tasks the task file knows
        with tempfile.TemporaryDirectory() as tmp:
            check = Path(tmp) / path.name
            check.write_bytes(data)
            try:
                read_file(check, video, task_file, None)
            except InputError as e:
                raise InputError(str(e).replace(str(check), str(path))) from None
    atomic_write_bytes(path, data)
    return len(rows)
