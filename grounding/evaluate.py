"""Grounding evaluation as in the source (§5.5.2): PCK in metres of the predicted point over 1–100 cm thresholds,
pooled over scenes, a per-part table at 30 cm, and the chance baseline (a random point of the model).

The held-out queries are instruction-style sentences (wikiHow-like) written independently of the synthetic
narration templates: different verbs, sentence shapes and extra context, the same part vocabulary a manual uses.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from grounding.query import Grounder

THRESHOLDS = np.arange(1, 101) / 100.0
"""PCK thresholds in metres (1 cm … 1 m)."""
AT = 0.30
"""Threshold of the per-part table (the source's Table 5.1)."""

HELDOUT_QUERIES: dict[str, list[str]] = {
    "air_filter": [
        "lift the filter out of the housing",
        "undo the metal clips that hold the lid of the air filter box",
        "inspect the old air filter element for dirt, leaves and debris",
        "seat the new filter in the air cleaner housing with the rubber rim facing up",
    ],
    "brake_fluid_reservoir": [
        "find the brake fluid reservoir on top of the master cylinder near the firewall",
        "wipe the brake reservoir cap before opening it so no dirt falls inside",
        "add DOT 3 brake fluid until the level reaches the MAX line on the reservoir",
        "if the brake fluid looks dark brown, have it flushed and replaced",
    ],
    "battery": [
        "unbolt the bracket that holds the battery down",
        "lift the old battery straight up and out of the car with both hands",
        "set the new battery in the tray with the posts on the same side as before",
        "scrub corrosion off the battery tray with baking soda before installing the replacement",
    ],
    "battery_positive_terminal": [
        "use a wrench to loosen the positive cable clamp and take the cable off of the terminal",
        "flip up the red plastic cover to reach the positive post",
        "after the ground is off, remove the cable from the plus terminal",
        "attach the red cable to the positive post of the new battery first",
    ],
    "battery_negative_terminal": [
        "loosen the clamp on the negative battery cable",
        "disconnect the black cable from the minus post before anything else",
        "twist the ground cable off the negative post and tuck it away from the battery",
        "reconnect the negative cable last and tighten its nut snugly",
    ],
    "dipstick": [
        "remove the dipstick",
        "slide the dipstick out of its tube and wipe the tip with a paper towel",
        "read the oil film on the end of the dipstick between the low and high marks",
        "insert the dipstick fully into the tube, then withdraw it again to check the level",
    ],
    "spark_plugs": [
        "disconnect the ignition coil connectors and pull each coil out to expose the spark plugs",
        "use a spark plug socket and extension to unscrew each plug",
        "check the gap on the new spark plugs before installing them",
        "thread each new spark plug in by hand to avoid cross-threading",
    ],
    "coolant_reservoir": [
        "wait until the engine has cooled before opening the coolant tank",
        "fill the overflow reservoir with a 50/50 antifreeze mix up to the full line",
        "see where the coolant sits against the markings on the side of the expansion tank",
        "screw the coolant reservoir cap back on until it clicks",
    ],
    "oil_filler_cap": [
        "unscrew the oil filler cap on top of the valve cover",
        "twist off the oil cap and set it aside before pouring fresh oil",
        "pour a little oil through the filler opening, then screw the oil cap back on",
        "the oil fill cap usually shows an oil can symbol",
    ],
}


def pck(pred: np.ndarray, gt: np.ndarray, thresholds: np.ndarray = THRESHOLDS) -> np.ndarray:
    """Fraction of predictions within each threshold of their ground truth (same units; ``gt`` broadcasts).

    With all model points as ``pred`` and one ground truth it is the exact expected PCK of the chance baseline.
    """
    d = np.sort(np.linalg.norm(np.asarray(pred, float).reshape(-1, 3) - np.asarray(gt, float), axis=1))
    return np.searchsorted(d, np.asarray(thresholds), side="right") / len(d)


def queries_for(parts_by_scene: dict[str, list[str]]) -> list[tuple[str, str, str]]:
    """(scene, part, text) for every held-out query of the given parts of each scene."""
    return [(s, p, text) for s in sorted(parts_by_scene) for p in sorted(parts_by_scene[s])
            for text in HELDOUT_QUERIES[p]]


def evaluate(grounder: Grounder, queries: list[tuple[str, str, str]], gt_points: dict[str, dict[str, np.ndarray]],
             chance_points: dict[str, np.ndarray],
             to_metric: dict[str, Callable[[np.ndarray], np.ndarray]] | None = None,
             thresholds: np.ndarray = THRESHOLDS) -> dict:
    """PCK of the grounder's points (mapped to metres by ``to_metric[scene]``, identity when absent) and chance.

    ``gt_points`` and ``chance_points`` are in metres; PCK is pooled over all queries of all scenes.
    """
    to_metric = to_metric or {}
    rows, chance = [], []
    for scene in sorted({q[0] for q in queries}):
        qs = [q for q in queries if q[0] == scene]
        results = grounder.query(scene, [q[2] for q in qs])
        pred = np.array([r["point"] for r in results])
        pred = to_metric[scene](pred) if scene in to_metric else pred
        for (_, part, text), p in zip(qs, pred, strict=True):
            gt = np.asarray(gt_points[scene][part], float)
            rows.append({"scene": scene, "part": part, "text": text, "point": [round(float(x), 4) for x in p],
                         "error_m": round(float(np.linalg.norm(p - gt)), 4)})
            chance.append(pck(chance_points[scene], gt, thresholds))
    if not rows:
        raise ValueError("no queries to evaluate")
    errors = np.array([r["error_m"] for r in rows])
    model_curve = (errors[:, None] <= thresholds[None]).mean(0)
    chance = np.array(chance)
    chance_curve = chance.mean(0)
    i_at = int(np.argmin(np.abs(thresholds - AT)))
    parts = {}
    for part in sorted({r["part"] for r in rows}):
        sel = [i for i, r in enumerate(rows) if r["part"] == part]
        parts[part] = {"queries": len(sel), "pck": round(float((errors[sel] <= thresholds[i_at]).mean()), 4),
                       "chance": round(float(chance[sel, i_at].mean()), 4),
                       "median_error_m": round(float(np.median(errors[sel])), 4)}
    return {
        "thresholds": thresholds.tolist(),
        "pck": model_curve.round(4).tolist(),
        "chance": chance_curve.round(4).tolist(),
        "at": float(thresholds[i_at]),
        "pck_at": round(float(model_curve[i_at]), 4),
        "chance_at": round(float(chance_curve[i_at]), 4),
        "median_error_m": round(float(np.median(errors)), 4),
        "parts": parts,
        "queries": rows,
    }


def plot_pck(report: dict, png: Path, others: dict[str, dict] | None = None, label: str = "model") -> None:
    """PCK curves (model, chance, and any ``others`` reports by label) against the threshold in cm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    cm = np.asarray(report["thresholds"]) * 100
    for name, r in {label: report, **(others or {})}.items():
        ax.plot(cm, r["pck"], label=f"{name} (PCK@{r['at'] * 100:.0f}cm {r['pck_at']:.2f})")
    ax.plot(cm, report["chance"], "k--", label=f"chance ({report['chance_at']:.2f})")
    ax.set(xlabel="threshold (cm)", ylabel="PCK", xlim=(0, 100), ylim=(0, 1), title="3D text grounding")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    Path(png).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=120, bbox_inches="tight")
    plt.close(fig)
