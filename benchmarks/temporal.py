"""Temporal benchmark: DP timings, training times, and recall / AP per method on synthetic CrossTask data.

    python benchmarks/temporal.py [--quick]

Reference numbers are the seeds' CrossTask results ([001] ch. 3, [002], [000]), printed for orientation only:
the synthetic data are not CrossTask.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# Run as a script, this file's folder leads sys.path and its name would shadow the `temporal` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from temporal import dp as tdp  # noqa: E402
from temporal.data import intervals_to_labels  # noqa: E402
from temporal.discrim import DiscrimConfig, DiscrimVideo, train_discriminator, tune_alpha  # noqa: E402
from temporal.metrics import action_ap, chance_actionness, recall_counts  # noqa: E402
from temporal.models import StepVideo, TrainConfig, train_step_model  # noqa: E402
from temporal.order import OrderConfig, train_order_verification  # noqa: E402
from temporal.step_windows import constraint_mask  # noqa: E402
from temporal.synthetic_crosstask import SynthConfig, generate  # noqa: E402

console = Console()


def dp_timings(quick: bool) -> Table:
    table = Table(
        "T",
        "K",
        "A1 one-per-step (ms)",
        "A2 contiguous (ms)",
        title="DP time (vs the previous code and CrossTask: benchmarks/dp.py)",
    )
    rng = np.random.default_rng(0)
    tdp.align_one(np.zeros((3, 2)))  # numba compiles (or loads its cache) on the first call: not a DP time
    tdp.align_contiguous(np.zeros((3, 2)))
    for T in (300, 3000, 30000):
        for K in (5, 10, 20):
            S = rng.normal(size=(T, K))
            times = []
            for f in (tdp.align_one, tdp.align_contiguous):
                best = np.inf
                for _ in range(1 if quick else 3):
                    t = time.perf_counter()
                    f(S)
                    best = min(best, time.perf_counter() - t)
                times.append(f"{1e3 * best:.1f}")
            table.add_row(str(T), str(K), *times)
    return table


def pooled_recall(videos, scores) -> float:
    """CrossTask recall pooled over all test videos (``temporal.metrics.recall_counts``, as everywhere)."""
    counts = [
        recall_counts(
            intervals_to_labels(v.intervals, len(v.X), S.shape[1]), tdp.steps_to_labels(tdp.align_one(S), len(v.X))
        )
        for v, S in ((v, scores(v)) for v in videos)
    ]
    return sum(h for h, _ in counts) / max(sum(n for _, n in counts), 1)


def main(quick: bool) -> None:
    torch.set_num_threads(1)
    console.print(dp_timings(quick))
    conf = (
        SynthConfig(
            n_primary=6,
            n_related=4,
            train_videos=8,
            test_videos=6,
            related_videos=6,
            p_intro=0.5,
            distractors_per_min=2.0,
            n_verbs=12,
            n_nouns=16,
            seed=0,
        )
        if quick
        else SynthConfig(
            n_primary=10,
            n_related=5,
            train_videos=30,
            test_videos=10,
            related_videos=20,
            p_intro=0.5,
            distractors_per_min=2.0,
            seed=0,
        )
    )
    ds = generate(conf)
    steps = ds.steps()
    console.print(f"synthetic set: {len(ds.videos)} videos, {len(ds.tasks)} tasks")
    test = ds.by_split("test")
    train = ds.by_split("train")

    def step_videos(vids, cons=True):
        return [
            StepVideo(
                v.task_id,
                v.X,
                constraint_mask(v.constraints, len(v.X), len(steps[v.task_id])) if cons else None,
                intervals_to_labels(v.intervals, len(v.X), len(steps[v.task_id])),
            )
            for v in vids
        ]

    ep = dict(pretrain_epochs=10, epochs=20, lr=3e-3) if quick else dict(pretrain_epochs=30, epochs=30, lr=1e-3)
    tr, rel = step_videos(train), step_videos(ds.by_split("related"))
    runs = {
        "Task-specific step": (tr, TrainConfig(share="none", **ep), 18.6),
        "Shared step": (tr, TrainConfig(share="steps", **ep), 18.9),
        "Component, primary only": (tr, TrainConfig(**ep), 20.2),
        "Component, no constraints": (tr + rel, TrainConfig(use_constraints=False, **ep), 17.0),
        "Component, shared (+related)": (tr + rel, TrainConfig(**ep), 22.4),
        "Supervised": (tr, TrainConfig(supervised=True, **ep), 31.6),
    }
    rec = Table(
        "method",
        "recall % (synthetic)",
        "CrossTask ref %",
        "train time (s)",
        title=f"Step localization ({len(test)} test videos)",
    )
    rec.add_row("Uniform", f"{100 * pooled_recall(test, lambda v: _uniform(v, steps)):.1f}", "9.7", "-")
    models = {}
    for name, (vids, c, ref) in runs.items():
        t = time.perf_counter()
        models[name] = m = train_step_model(vids, steps, c)
        dt = time.perf_counter() - t
        rec.add_row(
            name, f"{100 * pooled_recall(test, lambda v, m=m: m.log_probs(v.X, v.task_id)):.1f}", f"{ref}", f"{dt:.1f}"
        )

    # actionness
    ap = Table("method", "AP % (synthetic)", "CrossTask ref %", "train time (s)", title="Action vs background AP")
    rng = np.random.default_rng(0)
    ivs = [v.intervals for v in test]
    ap.add_row("Chance", f"{100 * action_ap([chance_actionness(len(v.X), rng) for v in test], ivs):.1f}", "27.5", "-")
    ap.add_row(
        "Chance + trim@0.3",
        f"{100 * action_ap([chance_actionness(len(v.X), rng, 0.3) for v in test], ivs):.1f}",
        "32.6",
        "-",
    )
    unl = [v.X for v in ds.videos if v.split in ("train", "related")]
    oc = OrderConfig(epochs=10 if quick else 15)
    order = {}
    for name, c in {
        "Order verification (ours)": oc,
        "Order verification, untrimmed": OrderConfig(trim=0.0, epochs=oc.epochs),
        "Order verification, 20 s range": OrderConfig(window=20, epochs=oc.epochs),
    }.items():
        t = time.perf_counter()
        order[name] = m = train_order_verification(unl, c)
        dt = time.perf_counter() - t
        ap.add_row(
            name,
            f"{100 * action_ap([m.actionness(v.X) for v in test], ivs):.1f}",
            "47.6" if name.endswith("(ours)") else "-",
            f"{dt:.1f}",
        )
    base = models["Component, shared (+related)"]
    base.add_tasks({"__all__": sorted({s for ss in steps.values() for s in ss})})

    def dv(v):
        A = np.exp(base.log_probs(v.X, "__all__"))
        return DiscrimVideo(v.X, A, intervals_to_labels(v.intervals, len(v.X), 11).any(1).astype(np.float32))

    per_task: dict[str, list] = {}
    for v in train:
        per_task.setdefault(v.task_id, []).append(v)
    fit = [v for vs in per_task.values() for v in vs[: max(len(vs) // 3, 2)]]
    hold = [v for vs in per_task.values() for v in vs[max(len(vs) // 3, 2) : max(len(vs) // 3, 2) + 4]]
    dconf = DiscrimConfig(hidden=128, batch=256, max_epochs=60)
    discr = {}
    for name, c in {
        "Discrimination d (t=3)": dconf,
        "Discrimination d_v (visual only)": DiscrimConfig(hidden=128, batch=256, max_epochs=60, aux_weight=0.0),
    }.items():
        t = time.perf_counter()
        discr[name] = m = train_discriminator([dv(v) for v in fit], [dv(v) for v in hold], c)
        dt = time.perf_counter() - t
        ap.add_row(
            name,
            f"{100 * action_ap([m.actionness(v.X) for v in test], ivs):.1f}",
            "64.35 (COIN)" if "t=3" in name else "63.04 (COIN)",
            f"{dt:.1f}",
        )

    # post-processing of the component model's scores
    def fused(act, alpha):
        return pooled_recall(test, lambda v: tdp.fuse_actionness(base.log_probs(v.X, v.task_id), act(v.X), alpha, True))

    for name, act, ref in [
        ("+ order actionness", order["Order verification (ours)"].actionness, "27.0"),
        ("+ discrimination d", discr["Discrimination d (t=3)"].actionness, "-"),
    ]:
        triples = [
            (
                base.log_probs(v.X, v.task_id),
                act(v.X),
                intervals_to_labels(v.intervals, len(v.X), len(steps[v.task_id])),
            )
            for v in hold
        ]
        alpha, _ = tune_alpha(triples)
        rec.add_row(f"Component, shared {name} (alpha={alpha:.2f})", f"{100 * fused(act, alpha):.1f}", ref, "-")
    orc = pooled_recall(
        test,
        lambda v: tdp.oracle_scores(
            base.log_probs(v.X, v.task_id), intervals_to_labels(v.intervals, len(v.X), len(steps[v.task_id]))
        ),
    )
    rec.add_row("Component, shared, oracle background", f"{100 * orc:.1f}", "-", "-")
    console.print(rec)
    console.print(ap)


def _uniform(v, steps) -> np.ndarray:
    T, K = len(v.X), len(steps[v.task_id])
    S = np.zeros((T, K))
    S[tdp.uniform_steps(T, K), np.arange(K)] = 1.0
    return S


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Small synthetic set (~100 videos), short training.")
    main(parser.parse_args().quick)
