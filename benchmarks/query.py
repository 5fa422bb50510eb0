"""``howto3d query`` latency: a cold shell (a new process per query) and in process (model loaded once).

    python benchmarks/query.py [WS] [--scene S] [--runs 3] [--baseline SRC] [--quick]

On a trained workspace (without WS: a small synthetic one built here, 1 scene × 2 videos × 10 s, 16 frames per
video reconstructed, aligned and trained for 2 epochs; ``--quick``, as ``make bench`` runs it, is the same),
side by side in one run: the cold ``howto3d query`` process (median of ``--runs``, wall
and CPU time of the child, the load average beside each run), what its time goes to (a bare ``python``,
``import numpy``, ``import howto3d.cli``, each in a fresh process; model load and first answer in process; and,
for reference, ``import torch``, which queries no longer pay: BERT runs in NumPy), and warm in-process queries
(p50/p95 of single texts, queries/s batched). ``--baseline SRC`` also runs the cold query
from another source tree (e.g. ``git archive <rev> | tar -x -C SRC``) interleaved with this one, so a before/after
pair sees the same machine load. Wall time on a shared machine follows its load; the CPU time much less.
Children may write bytecode (``__pycache__``, filled by one unmeasured run), as an installed package has it:
with ``PYTHONDONTWRITEBYTECODE`` set, every run would compile the project's modules again.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this folder comes first on sys.path and its grounding.py would shadow the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402

TEXTS = [
    f"{verb} {part}"
    for part in (
        "dipstick",
        "battery",
        "air filter",
        "coolant reservoir",
        "brake fluid",
        "spark plugs",
        "oil filler cap",
        "fuse box",
    )
    for verb in ("where is the", "show me the", "how do I reach the", "point at the")
]


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, float, float]:
    """Wall and CPU (user + sys) seconds of one child process, and the 1-minute load average before it."""
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), load


def median_of(runs: list[tuple[float, float, float]]) -> str:
    wall, cpu, load = (statistics.median(x) for x in zip(*runs, strict=True))
    return f"{wall:6.2f} s | {cpu:6.2f} s | {load:4.1f}"


def small_workspace(root: Path):
    """A real trained workspace: synthetic videos → pycolmap → alignment → grounding model."""
    from howto3d import grounding_cmds, recon_cmds
    from howto3d.synth_cmds import make_synthetic_workspace

    print(f"building a small trained workspace in {root / 'ws'} ...", flush=True)
    ws = make_synthetic_workspace(root / "ws", scenes=1, videos=2, seconds=10.0, seed=0, fps=5.0)
    recon_cmds.reconstruct(ws, None, frames=16)
    recon_cmds.align(ws, None)
    grounding_cmds.train(ws, epochs=2)
    return ws


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ws", type=Path, nargs="?", help="a trained workspace (default: build a small one)")
    parser.add_argument("--quick", action="store_true", help="no effect: the default is already quick")
    parser.add_argument("--scene")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--baseline", type=Path, help="another source tree to time the cold query from")
    args = parser.parse_args()

    from howto3d.workspace import Workspace

    ws = Workspace.open(args.ws) if args.ws else small_workspace(Path(tempfile.mkdtemp(prefix="howto3d-bench-")))
    scene = args.scene or ws.scenes()[0]
    py = sys.executable, "-P"  # -P: the current folder must not shadow the tree named by PYTHONPATH
    query = [
        "-c",
        "import sys; from howto3d.cli import main; sys.argv[0] = 'howto3d'; main()",
        "query",
        str(ws.root),
        "--scene",
        scene,
        "where is the dipstick",
        "--json",
    ]
    base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    here = {**base, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    other = {**base, "PYTHONPATH": str(args.baseline.resolve())} if args.baseline else None
    rows: dict[str, list] = {"cold `howto3d query` process": []}
    if args.baseline:
        rows["cold `howto3d query` process, --baseline"] = []
    parts = {
        "  of which: `python -c pass`": ["-c", "pass"],
        "  of which: `import numpy`": ["-c", "import numpy"],
        "  of which: `import howto3d.cli`": ["-c", "import howto3d.cli"],
        "  not any more: `import torch`": ["-c", "import torch"],
    }
    rows |= {name: [] for name in parts}
    timed([*py, *query], here)  # unmeasured: bytecode and page cache
    if other:
        timed([*py, *query], other)
    for _ in range(args.runs):  # interleaved, so every row sees the same load
        rows["cold `howto3d query` process"].append(timed([*py, *query], here))
        if other:
            rows["cold `howto3d query` process, --baseline"].append(timed([*py, *query], other))
        for name, cmd in parts.items():
            rows[name].append(timed([*py, *cmd], here))

    from grounding import query as gquery

    t0, c0 = time.perf_counter(), time.process_time()
    grounder = gquery.load(ws.grounding_dir)
    load_s = (time.perf_counter() - t0, time.process_time() - c0, os.getloadavg()[0])
    t0, c0 = time.perf_counter(), time.process_time()
    grounder.query(scene, TEXTS[:1])
    first_s = (time.perf_counter() - t0, time.process_time() - c0, os.getloadavg()[0])
    grounder.query(scene, TEXTS)  # warm-up
    single = []
    for t in TEXTS:
        t0 = time.perf_counter()
        grounder.query(scene, [t])
        single.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    for _ in range(5):
        grounder.query(scene, TEXTS)
    batched = 5 * len(TEXTS) / (time.perf_counter() - t0)

    print(f"\nhowto3d query on {ws.root} (scene {scene}), {os.cpu_count()} CPUs, median of {args.runs} runs\n")
    print("| measurement                                   |   wall   | CPU (child) | load |")
    print("|-----------------------------------------------|----------|-------------|------|")
    for name, runs in rows.items():
        print(f"| {name:<45} | {median_of(runs)} |")
    for name, (wall, cpu, load) in (("  in process: load the model", load_s), ("  in process: first answer", first_s)):
        print(f"| {name:<45} | {wall:6.2f} s | {cpu:6.2f} s | {load:4.1f} |")
    ms = 1000 * np.asarray(single)
    print(
        f"\nwarm, in process: single text p50 {np.percentile(ms, 50):.1f} ms, p95 {np.percentile(ms, 95):.1f} ms; "
        f"batched {batched:.0f} queries/s ({len(TEXTS)} texts per call)"
    )


if __name__ == "__main__":
    main()
