"""Grounding evaluation as in [001] §5.5.2: PCK in metres of the predicted point over 1–100 cm thresholds,
pooled over scenes, a per-part table at 30 cm, and the chance baseline (a random point of the model).

The held-out queries are instruction-style sentences (wikiHow-like) written independently of the synthetic
narration templates: different verbs, sentence shapes and extra context, the same part vocabulary a manual uses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal, NotRequired, TypedDict

import numpy as np

from grounding.query import Grounder

THRESHOLDS = np.arange(1, 101) / 100.0
"""PCK thresholds in metres (1 cm … 1 m)."""
AT = 0.30
"""Threshold of the per-part table (the source's Table 5.1)."""


class QueryScore(TypedDict):
    """One evaluated query: its answer (in metres) and its distance to the part."""

    scene: str
    part: str
    text: str
    point: list[float]
    error_m: float
    score: float
    uncertain: bool


class PartScore(TypedDict):
    """One part's queries: PCK at ``AT`` and ``AT_FINE``, chance at ``AT``, median error."""

    queries: int
    pck: float
    chance: float
    pck_fine: float
    median_error_m: float


class CalibrationBin(TypedDict):
    bin: list[float]
    queries: int
    mean_score: float
    hit_rate: float


class Calibration(TypedDict):
    """Whether ``score`` means something (:func:`calibration`)."""

    radius_m: float
    bins: list[CalibrationBin]
    hit_rate_confident: float | None
    hit_rate_uncertain: float | None
    uncertain_fraction: float


class GroundingReport(TypedDict):
    """``eval-grounding --json`` (:func:`evaluate`, pooled by :func:`combine`); the workspace commands add their
    own fields (``howto3d.grounding_cmds``)."""

    thresholds: list[float]
    pck: list[float]
    chance: list[float]
    at: float
    pck_at: float
    chance_at: float
    at_fine: float
    pck_fine: float
    chance_fine: float
    median_error_m: float
    calibration: Calibration
    parts: dict[str, PartScore]
    queries: list[QueryScore]
    worlds: NotRequired[int]
    """Pooled reports: how many."""


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


AT_FINE = 0.10
"""Second reported threshold (10 cm: the answer is on the part, not only near it)."""


def queries_for(
    parts_by_scene: Mapping[str, Sequence[str]], queries: Mapping[str, Sequence[str]] | None = None
) -> list[tuple[str, str, str]]:
    """(scene, part, text) for every query (``queries``, default the held-out instructions) of the given parts."""
    texts: Mapping[str, Sequence[str]] = HELDOUT_QUERIES if queries is None else queries
    return [
        (s, p, text)
        for s in sorted(parts_by_scene)
        for p in sorted(parts_by_scene[s])
        if p in texts
        for text in texts[p]
    ]


def evaluate(
    grounder: Grounder,
    queries: list[tuple[str, str, str]],
    gt_points: Mapping[str, Mapping[str, np.ndarray | Sequence[float]]],
    chance_points: Mapping[str, np.ndarray],
    to_metric: Mapping[str, Callable[[np.ndarray], np.ndarray]] | None = None,
    thresholds: np.ndarray = THRESHOLDS,
    method: str | None = None,
) -> GroundingReport:
    """PCK of the grounder's points (mapped to metres by ``to_metric[scene]``, identity when absent) and chance.

    ``gt_points`` and ``chance_points`` are in metres; PCK is pooled over all queries of all scenes.
    """
    to_metric = to_metric or {}
    rows: list[QueryScore] = []
    chance_rows: list[np.ndarray] = []
    for scene in sorted({q[0] for q in queries}):
        qs = [q for q in queries if q[0] == scene]
        results = (
            grounder.query(scene, [q[2] for q in qs], method=method)
            if method
            else grounder.query(scene, [q[2] for q in qs])
        )
        pred = np.array([r["point"] for r in results])
        pred = to_metric[scene](pred) if scene in to_metric else pred
        for (_, part, text), p, r in zip(qs, pred, results, strict=True):
            gt = np.asarray(gt_points[scene][part], float)
            rows.append(
                {
                    "scene": scene,
                    "part": part,
                    "text": text,
                    "point": [round(float(x), 4) for x in p],
                    "error_m": round(float(np.linalg.norm(p - gt)), 4),
                    "score": r["score"],
                    "uncertain": r.get("uncertain", False),
                }
            )
            chance_rows.append(pck(chance_points[scene], gt, thresholds))
    if not rows:
        raise ValueError("no queries to evaluate")
    errors = np.array([r["error_m"] for r in rows])
    model_curve = (errors[:, None] <= thresholds[None]).mean(0)
    chance = np.array(chance_rows)
    chance_curve = chance.mean(0)
    i_at = int(np.argmin(np.abs(thresholds - AT)))
    i_fine = int(np.argmin(np.abs(thresholds - AT_FINE)))
    parts: dict[str, PartScore] = {}
    for part in sorted({r["part"] for r in rows}):
        sel = [i for i, r in enumerate(rows) if r["part"] == part]
        parts[part] = {
            "queries": len(sel),
            "pck": round(float((errors[sel] <= thresholds[i_at]).mean()), 4),
            "chance": round(float(chance[sel, i_at].mean()), 4),
            "pck_fine": round(float((errors[sel] <= thresholds[i_fine]).mean()), 4),
            "median_error_m": round(float(np.median(errors[sel])), 4),
        }
    return {
        "thresholds": thresholds.tolist(),
        "pck": model_curve.round(4).tolist(),
        "chance": chance_curve.round(4).tolist(),
        "at": float(thresholds[i_at]),
        "pck_at": round(float(model_curve[i_at]), 4),
        "chance_at": round(float(chance_curve[i_at]), 4),
        "at_fine": float(thresholds[i_fine]),
        "pck_fine": round(float(model_curve[i_fine]), 4),
        "chance_fine": round(float(chance_curve[i_fine]), 4),
        "median_error_m": round(float(np.median(errors)), 4),
        "calibration": calibration(rows, thresholds[i_fine]),
        "parts": parts,
        "queries": rows,
    }


def calibration(
    rows: Sequence[QueryScore], radius: float, bins: Sequence[float] = (0.0, 0.25, 0.5, 0.75, 1.01)
) -> Calibration:
    """Does ``score`` mean something: per score bin, the mean score and the fraction of answers within
    ``radius`` of the truth; and that fraction for confident vs ``uncertain`` answers."""
    scores = np.array([r["score"] for r in rows])
    hit = np.array([r["error_m"] <= radius for r in rows])
    unsure = np.array([bool(r.get("uncertain")) for r in rows])
    table: list[CalibrationBin] = []
    for lo, hi in zip(bins[:-1], bins[1:], strict=True):
        sel = (scores >= lo) & (scores < hi)
        if sel.any():
            table.append(
                {
                    "bin": [lo, min(hi, 1.0)],
                    "queries": int(sel.sum()),
                    "mean_score": round(float(scores[sel].mean()), 4),
                    "hit_rate": round(float(hit[sel].mean()), 4),
                }
            )
    return {
        "radius_m": float(radius),
        "bins": table,
        "hit_rate_confident": round(float(hit[~unsure].mean()), 4) if (~unsure).any() else None,
        "hit_rate_uncertain": round(float(hit[unsure].mean()), 4) if unsure.any() else None,
        "uncertain_fraction": round(float(unsure.mean()), 4),
    }


def combine(reports: Sequence[GroundingReport]) -> GroundingReport:
    """Pool several worlds' reports (PCK curves and per-part rates weighted by their query counts)."""
    rows = [q for r in reports for q in r["queries"]]
    n = np.array([len(r["queries"]) for r in reports], float)

    def mean(key: Literal["pck", "chance", "pck_at", "chance_at", "pck_fine", "chance_fine"]) -> np.ndarray:
        values = np.array([r[key] for r in reports], float)
        return np.tensordot(n, values, axes=1) / n.sum()

    def part_mean(have: list[PartScore], q: np.ndarray, key: Literal["pck", "chance", "pck_fine"]) -> float:
        return round(float(np.dot(q, [h[key] for h in have]) / q.sum()), 4)

    parts: dict[str, PartScore] = {}
    for part in sorted({p for r in reports for p in r["parts"]}):
        have = [r["parts"][part] for r in reports if part in r["parts"]]
        q = np.array([h["queries"] for h in have], float)
        parts[part] = {
            "queries": int(q.sum()),
            "pck": part_mean(have, q, "pck"),
            "chance": part_mean(have, q, "chance"),
            "pck_fine": part_mean(have, q, "pck_fine"),
            "median_error_m": round(float(np.median([x["error_m"] for x in rows if x["part"] == part])), 4),
        }
    return {
        "thresholds": reports[0]["thresholds"],
        "at": reports[0]["at"],
        "at_fine": reports[0]["at_fine"],
        "pck": mean("pck").round(4).tolist(),
        "chance": mean("chance").round(4).tolist(),
        "pck_at": round(float(mean("pck_at")), 4),
        "chance_at": round(float(mean("chance_at")), 4),
        "pck_fine": round(float(mean("pck_fine")), 4),
        "chance_fine": round(float(mean("chance_fine")), 4),
        "median_error_m": round(float(np.median([q["error_m"] for q in rows])), 4),
        "calibration": calibration(rows, reports[0]["at_fine"]),
        "queries": rows,
        "worlds": len(reports),
        "parts": parts,
    }


def plot_pck(
    report: GroundingReport, png: Path, others: Mapping[str, GroundingReport] | None = None, label: str = "model"
) -> None:
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
