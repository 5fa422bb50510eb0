"""Key-step discovery without step lists (004) on synthetic CrossTask-format data, next to the paper's Table 1.

    python benchmarks/procedure.py [--quick] [--seed S]

Frame recall / F1 (%) after a Hungarian mapping per task, averaged over tasks, at k = 7, 10, 12, 15, for the
paper's Random baseline, single-task (one model per task) and multi-task (one model + task head), each with
the paper's "every clip is a key step" and with background states. The paper's CrossTask numbers are printed
for orientation only: the synthetic data are not CrossTask (72 % background, noisy 64-d clip features).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, this file's folder leads sys.path and its name would shadow the `temporal` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from temporal.data import CrossTask  # noqa: E402
from temporal.procedure import ProcedureConfig, discover_crosstask  # noqa: E402
from temporal.synthetic_crosstask import SynthConfig, generate  # noqa: E402

KS = (7, 10, 12, 15)
PAPER = {  # 004 Table 1 (CrossTask): (recall, F1) per k; multi-task from Table 3 / Fig. 2
    "Random": [(14.8, 6.5), (10.8, 5.8), (9.2, 5.6), (7.5, 5.3)],
    "single-task": [(33.3, 13.4), (31.6, 13.5), (29.8, 13.0), (32.2, 14.1)],
    "multi-task": [(41.7, 16.2), (41.7, 16.2), (41.7, 16.2), (41.6, 16.3)],
}


def main(quick: bool, seed: int) -> None:
    torch.set_num_threads(1)
    console = Console()
    conf = (
        SynthConfig(n_primary=4, n_related=0, train_videos=10, test_videos=6, length_range=(60, 180), seed=seed)
        if quick
        else SynthConfig(n_related=0, seed=seed)
    )
    rows: dict[str, list[str]] = {}
    acc: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        generate(conf).write(Path(tmp))
        data = CrossTask.load(Path(tmp))
        for k in KS:
            for name, mt, bg in (
                ("single-task", False, "none"),
                ("single-task + background", False, "states"),
                ("multi-task", True, "none"),
                ("multi-task + background", True, "states"),
            ):
                t0 = time.process_time()
                _, rep = discover_crosstask(data, ProcedureConfig(k=k, multi_task=mt, background=bg, seed=seed))
                secs = time.process_time() - t0
                rows.setdefault("Random", [])
                if name == "single-task":
                    rows["Random"].append(f"{100 * rep['random']['recall']:.1f} / {100 * rep['random']['f1']:.1f}")
                rows.setdefault(name, []).append(
                    f"{100 * rep['ours']['recall']:.1f} / {100 * rep['ours']['f1']:.1f} ({secs:.0f} s)"
                )
                if mt:
                    acc[f"{name}, k={k}"] = rep["task_accuracy"]
    table = Table(
        title=f"key-step discovery, synthetic CrossTask ({'quick' if quick else 'full'}, seed {seed}): "
        "recall / F1 % (CPU seconds)"
    )
    table.add_column("method")
    for k in KS:
        table.add_column(f"k={k}")
        table.add_column(f"paper k={k}")
    for name, cells in rows.items():
        ref = PAPER.get(name.split(" +")[0]) if " +" not in name else None
        table.add_row(
            name, *[c for i, cell in enumerate(cells) for c in (cell, f"{ref[i][0]} / {ref[i][1]}" if ref else "-")]
        )
    console.print(table)
    console.print(
        "multi-task classification accuracy: "
        + ", ".join(f"{k} {100 * v:.1f} %" for k, v in acc.items())
        + " (paper, CrossTask k=10: 80.4 %)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Fewer, shorter videos.")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    main(args.quick, args.seed)
