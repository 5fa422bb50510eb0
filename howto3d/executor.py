"""Runs per-item work (one video's frames, one video's SfM) in worker processes.

Worker processes are what make "one bad video never stops the others" hold for failures Python cannot catch:
a C++ abort inside pycolmap (SQLite "database or disk is full"), a segfault, the OOM killer. Such a death is
the failure of the task that was running, and the run goes on.
"""

from __future__ import annotations

import logging
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from typing import Any

from recon.io import InputError

log = logging.getLogger("howto3d")

DIED = ("its worker process died (a crash inside a native library, or the machine ran out of memory or disk); "
        "free memory/disk space and rerun")


@dataclass
class Task:
    """One unit of work: ``fn(*args)`` in a worker, returning a JSON-able dict (see :func:`guarded`)."""

    key: Any
    fn: Callable[..., dict]
    args: tuple


def guarded(fn: Callable[..., dict], *args: Any) -> dict:
    """Call ``fn`` and turn *any* exception into data: one item's failure must never end the run.

    Input errors keep their one-line message; anything else is reported with its type and message, and the
    traceback travels along for ``--verbose`` logs (programming errors stay debuggable).
    """
    try:
        return {"status": "done", **fn(*args)}
    except InputError as e:
        return {"status": "failed", "error": str(e)}
    except Exception as e:  # noqa: BLE001 - recorded as this item's failure, with the traceback for debugging
        return {"status": "failed", "error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}


def run_tasks(tasks: Iterable[Task], workers: int, on_done: Callable[[Task, dict], Iterable[Task]]) -> None:
    """Run ``tasks`` on ``workers`` spawned processes; ``on_done(task, result)`` runs in this process as each
    finishes (it records the result) and may return follow-up tasks.

    At most ``workers`` tasks are in flight, so when a worker dies the suspects are exactly those; each is then
    rerun alone in a fresh process, and the one that dies again is reported failed (``DIED``).
    """
    queue: deque[Task] = deque(tasks)
    suspects: deque[Task] = deque()
    ctx = get_context("spawn")
    while queue or suspects:
        if suspects:
            task = suspects.popleft()
            with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
                try:
                    result = pool.submit(task.fn, *task.args).result()
                except BrokenProcessPool:
                    result = {"status": "failed", "error": DIED}
            queue.extend(on_done(task, result))
            continue
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            pending: dict[Future, Task] = {}
            while queue or pending:
                while queue and len(pending) < workers:
                    task = queue.popleft()
                    pending[pool.submit(task.fn, *task.args)] = task
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                try:
                    for fut in done:
                        task = pending.pop(fut)
                        result = fut.result()
                        queue.extend(on_done(task, result))
                except BrokenProcessPool:
                    suspects.extend([task, *pending.values()])
                    log.warning("a worker process died; rerunning the %d task(s) it may have been running one at a "
                                "time", len(suspects))
                    break
