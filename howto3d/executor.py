"""Runs per-item work (one video's frames, one video's SfM, one video pair) in worker processes or on Ray.

Worker processes are what make "one bad video never stops the others" hold for failures Python cannot catch:
a C++ abort inside pycolmap (SQLite "database or disk is full"), a segfault, the OOM killer. Such a death is
the failure of the task that was running, and the run goes on.

With ``[run] executor = "ray"`` the same tasks are Ray tasks. The workers may not see this machine's disk, so a
task's input files travel to the worker as bytes, the stage writes into the worker's own temporary folder, and
its output folder comes back as bytes that only the driver writes into the workspace (atomically).
"""

from __future__ import annotations

import atexit
import logging
import tempfile
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

from howto3d.config import RunConfig
from recon.io import InputError, atomic_dir

log = logging.getLogger("howto3d")

DIED = (
    "its worker process died (a crash inside a native library, or the machine ran out of memory or disk); "
    "free memory/disk space and rerun"
)


@dataclass
class Task:
    """One unit of work: ``fn(*args)`` in a worker, returning a JSON-able dict (see :func:`guarded`)."""

    key: Any
    fn: Callable[..., dict]
    args: tuple
    inputs: tuple[int, ...] = ()
    """Indexes of ``args`` that are input files or folders: on Ray their bytes travel to the worker."""
    output: int | None = None
    """Index of the ``args`` path that is the task's output folder: on Ray the worker writes it in its own
    temporary folder and the driver writes the returned files there."""
    num_cpus: int = 1
    """Cores the task keeps busy (its threads), what Ray schedules it by."""


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


def run_tasks(
    tasks: Iterable[Task], workers: int, on_done: Callable[[Task, dict], Iterable[Task]], run: RunConfig | None = None
) -> None:
    """Run ``tasks`` on ``workers`` spawned processes (or as Ray tasks when ``run.executor`` is "ray");
    ``on_done(task, result)`` runs in this process as each finishes (it records the result) and may return
    follow-up tasks.

    At most ``workers`` tasks are in flight, so when a worker dies the suspects are exactly those; each is then
    rerun alone in a fresh process, and the one that dies again is reported failed (``DIED``). On Ray, Ray
    retries a task lost with its worker or node (``run.max_retries``) and then reports it failed the same way;
    ``workers`` = 0 there means as many as the cluster has CPUs for.
    """
    if run is not None and run.executor == "ray":
        _run_ray(tasks, workers, on_done, run)
        return
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
                    log.warning(
                        "a worker process died; rerunning the %d task(s) it may have been running one at a time",
                        len(suspects),
                    )
                    break


# ---- files as bytes: what travels between the driver and a Ray worker --------------------------------------
def pack_files(path: Path) -> dict[str, bytes]:
    """A file (``{name: bytes}``) or every file of a folder (``{relative/path: bytes}``), to send elsewhere."""
    path = Path(path)
    if path.is_file():
        return {path.name: path.read_bytes()}
    return {p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def unpack_files(files: dict[str, bytes], folder: Path) -> None:
    """Write :func:`pack_files`' output as ``folder``, atomically (it appears complete or not at all)."""
    with atomic_dir(Path(folder)) as tmp:
        for rel, data in files.items():
            if Path(rel).is_absolute() or ".." in Path(rel).parts:
                raise ValueError(f"refusing to write {rel!r} outside {folder}")
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_bytes(data)


@dataclass
class _Shipped:
    """An input path's content on its way to a worker (``is_file``: the arg was that one file)."""

    files: dict[str, bytes]
    is_file: bool
    origin: str
    """The path on the driver, which messages name (the worker's copy means nothing to the user)."""


def _on_worker(fn: Callable[..., Any], args: tuple, output: int | None) -> Any:
    """Ray task body: materialise shipped inputs in the worker's own temporary folder, run the stage there and
    return its output folder's files with the result (the workspace is never touched here)."""
    with tempfile.TemporaryDirectory(prefix="howto3d-task-") as tmp:
        local = list(args)
        for i, a in enumerate(args):
            if isinstance(a, _Shipped):
                unpack_files(a.files, Path(tmp) / f"in{i}")
                local[i] = Path(tmp) / f"in{i}" / (next(iter(a.files)) if a.is_file else "")
        out = Path(tmp) / "out" / str(args[output]) if output is not None else None
        if out is not None and output is not None:
            out.parent.mkdir()
            local[output] = out
        result = fn(*local)
        if isinstance(result, dict) and isinstance(result.get("error"), str):
            for a, here in zip(args, local, strict=True):
                if isinstance(a, _Shipped):
                    result["error"] = result["error"].replace(str(here), a.origin)
        if out is not None and result.get("status") == "done" and out.is_dir():
            result["files"] = pack_files(out)
        return result


def _ray_args(task: Task) -> tuple:
    """The task's args as a worker off this machine gets them: inputs as bytes, the output folder by name only."""
    args = list(task.args)
    for i in task.inputs:
        args[i] = _Shipped(pack_files(args[i]), Path(args[i]).is_file(), str(args[i]))
    if task.output is not None:
        args[task.output] = Path(args[task.output]).name
    return tuple(args)


def ray_session(run: RunConfig):
    """Connect to the configured Ray cluster (``ray_address``, else ``RAY_ADDRESS``, else start a local one) once
    per process; a cluster this process started is shut down when it exits, one it joined is left running."""
    import ray

    if not ray.is_initialized():
        try:
            ray.init(
                address=run.ray_address or None,
                ignore_reinit_error=True,
                include_dashboard=False,
                logging_level=logging.ERROR,
                log_to_driver=False,
            )
        except (ConnectionError, ValueError, RuntimeError) as e:
            raise InputError(
                f"Ray cluster {run.ray_address or '(RAY_ADDRESS or local)'}: {e}; check [run] "
                "ray_address in howto3d.toml or RAY_ADDRESS, or use --executor local"
            ) from e
        atexit.register(ray.shutdown)
    return ray


def _ray_failure(ray, e: Exception) -> dict:
    """A Ray task that ended without a result: a raise in our wrapper, or a worker/node lost past its retries."""
    if isinstance(e, ray.exceptions.RayTaskError):
        cause = e.cause
        if isinstance(cause, InputError):
            return {"status": "failed", "error": str(cause)}
        return {"status": "failed", "error": f"{type(cause).__name__}: {cause}", "traceback": str(e)}
    return {"status": "failed", "error": f"{DIED} (Ray: {type(e).__name__})"}


def _in_flight(ray, workers: int, run: RunConfig) -> int:
    """Tasks submitted at once: their inputs sit in the object store, so not every video at the same time."""
    return workers or max(1, int(ray.cluster_resources().get("CPU", 1)) // max(1, run.cpus_per_task))


def _run_ray(
    tasks: Iterable[Task], workers: int, on_done: Callable[[Task, dict], Iterable[Task]], run: RunConfig
) -> None:
    """:func:`run_tasks` on Ray: the driver submits, collects, writes each output folder and calls ``on_done``."""
    ray = ray_session(run)
    remote = ray.remote(_on_worker)
    queue: deque[Task] = deque(tasks)
    pending: dict[Any, Task] = {}
    limit = _in_flight(ray, workers, run)
    try:
        while queue or pending:
            while queue and len(pending) < limit:
                task = queue.popleft()
                ref = remote.options(
                    num_cpus=task.num_cpus, max_retries=run.max_retries, name=f"howto3d {task.key}"
                ).remote(task.fn, _ray_args(task), task.output)
                pending[ref] = task
            done, _ = ray.wait(list(pending), num_returns=1)
            task = pending.pop(done[0])
            try:
                result = ray.get(done[0])
            except (ray.exceptions.RayError, InputError) as e:
                result = _ray_failure(ray, e)
            files = result.pop("files", None)
            if files is not None and task.output is not None:
                try:
                    unpack_files(files, task.args[task.output])
                except OSError as e:
                    result = {"status": "failed", "error": f"{task.args[task.output]}: {e}; free space there and rerun"}
            queue.extend(on_done(task, result))
    finally:
        for ref in pending:  # interrupted: nothing of ours keeps running on the cluster
            ray.cancel(ref, force=True)


def _map_on_worker(fn: Callable, item: Any) -> Any:
    """Ray task body of :func:`mapper`: a tuple item's shipped files are materialised in the worker's own
    temporary folder first (the workspace is never touched here)."""
    if not isinstance(item, tuple):
        return fn(item)
    return _on_worker(lambda *args: fn(args), item, None)


def _ship(item: Any) -> Any:
    """A map item as it travels: the top-level ``Path`` elements of a tuple item go as the files' bytes."""
    if not isinstance(item, tuple):
        return item
    return tuple(_Shipped(pack_files(a), a.is_file(), str(a)) if isinstance(a, Path) else a for a in item)


def mapper(run: RunConfig | None) -> Callable[[Callable, Iterable], Iterator] | None:
    """A ``map(fn, items)`` running each call as a Ray task (results in order), or None for the in-process map.

    Items are arrays and settings; a tuple item's top-level ``Path`` elements are input *files*, whose bytes
    travel to the worker (no shared filesystem). An exception ``fn`` raises on the worker is raised here as
    itself (an input error stays one line), as the in-process map would.
    """
    if run is None or run.executor != "ray":
        return None

    def ray_map(fn: Callable, items: Iterable) -> Iterator:
        ray = ray_session(run)
        remote = ray.remote(_map_on_worker).options(num_cpus=1, max_retries=run.max_retries)
        queue, pending = deque(items), deque[Any]()
        limit = _in_flight(ray, run.workers, run)
        try:
            while queue or pending:
                while queue and len(pending) < limit:
                    pending.append(remote.remote(fn, _ship(queue.popleft())))
                try:
                    result = ray.get(pending.popleft())
                except ray.exceptions.RayTaskError as e:
                    raise (e.cause or e) from None
                yield result
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    return ray_map
