"""``howto3d serve`` soak: a steady 50 queries/s plus one localization/s for 10 minutes, from a bounded load
generator on loopback.

    python benchmarks/soak.py [WS] [--scene S] [--minutes 10] [--qps 50] [--lps 1] [--quick]

Starts the real server (``howto3d serve``, its own process, the workspace's ``[serve]`` settings) and waits for
``/health/ready``; then sends requests on a fixed schedule (open loop: a slow answer does not slow the
schedule down, and at most ``--in-flight`` requests wait at once; a request that finds them all busy counts as
an error). Queries are half one of 20 popular texts (answered from the cache) and half new texts (a BERT
forward pass each); localizations cycle through frames of the workspace's videos that SfM never sampled.

Per minute it reports p50/p99 latency of each kind, errors, and the resident memory of the server with its
localization workers. It passes (exit 0) when no request failed, memory grew < 10 % from the end of the first
minute (warm-up) to the end, and the last minute's query p99 is within 2x the first minute's.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

# Run as a script, this folder comes first on sys.path and its grounding.py would shadow the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from howto3d.workspace import Workspace  # noqa: E402


def _server_bench():
    """``benchmarks/server.py``, for its photo and workspace helpers (one builder for both benchmarks)."""
    spec = importlib.util.spec_from_file_location("bench_server", Path(__file__).with_name("server.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _rss_mb(pid: int) -> float:
    """Resident memory of the server and its descendants (the localization workers), MB (Linux /proc)."""
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            status = Path(f"/proc/{p}/status").read_text()
            todo += [int(c) for t in Path(f"/proc/{p}/task").iterdir() for c in (t / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):  # exited meanwhile
            continue
        total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS:")))
    return total / 1e3


async def _soak(url: str, scene: str, photos: list[bytes], pid: int, args) -> list[dict]:
    """Fire the schedule; one record per minute."""
    popular = [f"where is the {p}" for p in _server_bench().PARTS] * 3
    minutes: list[dict] = []
    current = {"query": [], "localize": [], "errors": 0}
    in_flight = asyncio.Semaphore(args.in_flight)
    tasks: set[asyncio.Task] = set()

    async def one(c: httpx.AsyncClient, kind: str, k: int, bucket: dict) -> None:
        t0 = time.perf_counter()
        try:
            if kind == "query":
                text = popular[k % 20] if k % 2 else f"show me part number {k} of the engine"
                r = await c.post("/query", json={"scene": scene, "text": text})
            else:
                photo = photos[k % len(photos)]
                r = await c.post("/localize", data={"scene": scene}, files={"image": (f"{k}.jpg", photo, "image/jpeg")})
            ok = r.status_code == 200
        except httpx.HTTPError:
            ok = False
        finally:
            in_flight.release()
        if ok:
            bucket[kind].append(time.perf_counter() - t0)
        else:
            bucket["errors"] += 1

    limits = httpx.Limits(max_connections=args.in_flight, max_keepalive_connections=args.in_flight)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as c:
        start = time.perf_counter()
        q = loc = 0
        for minute in range(args.minutes):
            bucket = current = {"query": [], "localize": [], "errors": 0}
            end = start + 60 * (minute + 1)
            while (now := time.perf_counter()) < end:
                due_q = start + q / args.qps
                due_l = start + loc / args.lps
                due = min(due_q, due_l)
                if due > now:
                    await asyncio.sleep(due - now)
                kind = "query" if due_q <= due_l else "localize"
                k = q if kind == "query" else loc
                q, loc = (q + 1, loc) if kind == "query" else (q, loc + 1)
                if in_flight.locked():  # the bound: a generator that queued without limit would hide an overload
                    bucket["errors"] += 1
                    continue
                await in_flight.acquire()
                task = asyncio.create_task(one(c, kind, k, bucket))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            minutes.append(
                {"minute": minute + 1, "bucket": current, "rss_mb": _rss_mb(pid), "load": os.getloadavg()[0]}
            )
            print(_row(minutes[-1]), flush=True)
        await asyncio.gather(*tasks)
    return minutes


def _p(values: list[float], q: float) -> float:
    return 1000 * float(np.percentile(values, q)) if values else float("nan")


def _row(m: dict) -> str:
    b = m["bucket"]
    return (
        f"| {m['minute']:6d} | {len(b['query']):7d} | {_p(b['query'], 50):6.1f} | {_p(b['query'], 99):6.1f} | "
        f"{len(b['localize']):8d} | {_p(b['localize'], 50):6.0f} | {_p(b['localize'], 99):6.0f} | "
        f"{b['errors']:6d} | {m['rss_mb']:7.0f} | {m['load']:4.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "ws", type=Path, nargs="?", help="a trained workspace (default: the small one that benchmarks/query.py builds)"
    )
    parser.add_argument("--scene")
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument("--qps", type=float, default=50.0, help="queries per second")
    parser.add_argument("--lps", type=float, default=1.0, help="localizations per second")
    parser.add_argument("--in-flight", type=int, default=64, help="requests waiting at once, at most")
    parser.add_argument("--quick", action="store_true", help="2 minutes (the pass rule needs a first and a last)")
    args = parser.parse_args()
    if args.quick:
        args.minutes = 2
    bench = _server_bench()
    ws = Workspace.open(args.ws) if args.ws else bench._small_workspace()
    scene = args.scene or ws.scenes()[0]
    photos = bench._photos(ws, scene, 8)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    cli = [sys.executable, "-P", "-c", "import sys; from howto3d.cli import main; sys.argv[0] = 'howto3d'; main()"]
    server = subprocess.Popen(
        [*cli, "serve", str(ws.root), "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        t0 = time.perf_counter()
        while True:
            try:
                if httpx.get(url + "/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.perf_counter() - t0 > 600:
                raise SystemExit("the server did not become ready")
            time.sleep(0.1)
        ready = time.perf_counter() - t0
        first = []
        with httpx.Client(base_url=url, timeout=300) as c:
            for k in range(3):  # warm by default: the first costs what the others do
                t1 = time.perf_counter()
                c.post("/localize", data={"scene": scene}, files={"image": (f"{k}.jpg", photos[k], "image/jpeg")})
                first.append(time.perf_counter() - t1)
        print(
            f"\nhowto3d serve on {ws.root} (scene {scene}), {os.cpu_count()} CPUs: ready {ready:.1f} s after "
            f"start; first three /localize {', '.join(f'{s:.2f}' for s in first)} s\n"
        )
        print(
            f"{args.qps:g} queries/s + {args.lps:g} localizations/s for {args.minutes} min, at most "
            f"{args.in_flight} in flight\n"
        )
        print("| minute | queries | p50 ms | p99 ms | localize | p50 ms | p99 ms | errors | RSS MB | load |")
        print("|--------|---------|--------|--------|----------|--------|--------|--------|--------|------|")
        minutes = asyncio.run(_soak(url, scene, photos, server.pid, args))
    finally:
        server.terminate()
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
    errors = sum(m["bucket"]["errors"] for m in minutes)
    growth = minutes[-1]["rss_mb"] / minutes[0]["rss_mb"] - 1
    p99_ratio = _p(minutes[-1]["bucket"]["query"], 99) / _p(minutes[0]["bucket"]["query"], 99)
    passed = errors == 0 and growth < 0.10 and p99_ratio <= 2.0
    print(
        f"\nerrors {errors}; RSS growth after the first minute {100 * growth:+.1f} %; last/first minute query p99 "
        f"{p99_ratio:.2f}x → {'PASS' if passed else 'FAIL'}"
    )
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
