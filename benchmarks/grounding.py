"""Grounding variants side by side, on the paraphrase queries (``synth.queries``), same scenes for every variant.

Worlds are either reconstructed + aligned workspaces (``--workspaces WS...``: real pycolmap geometry, scored
in metres through the ground truth) or synthetic worlds seen through ``oracle_scene`` (``--oracle DIR...``,
exact geometry; generated here for seeds 0-2 when neither is given). Per variant: PCK@10cm and @30cm pooled
over the worlds, per part at 30 cm, chance, training seconds (and per epoch), calibration of ``score``; then
cold-start and warm query latency of the default.

    python benchmarks/grounding.py [--quick] [--degraded | --long] [--workspaces WS ...] [--oracle DIR ...]
        [--label clean] [--out DIR]

``--quick`` (``make bench``): one small generated world, the default and the source's model only.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402

from grounding import evaluate as geval  # noqa: E402
from grounding import query as gquery  # noqa: E402
from grounding import train as gtrain  # noqa: E402
from grounding.config import GroundingConfig  # noqa: E402
from grounding.narration import find_subtitles, read_narrations  # noqa: E402
from synth.queries import PARAPHRASE_QUERIES  # noqa: E402

SOURCE = {
    "method": "classifier",
    "trainable_layers": -1,
    "heldout_fraction": 0.15,
    "targets": "point",
    "seen_weighting": False,
    "window_pad_seconds": 0.0,
    "window_shift_seconds": 0.0,
    "prior_power": 0.0,
}
"""Today's model before this benchmark: BERT fine-tuned end to end, early stopping on a held-out split."""

RAW_INDEX = {
    "method": "index",
    "targets": "point",
    "seen_weighting": False,
    "window_pad_seconds": 0.0,
    "window_shift_seconds": 0.0,
    "index_weight_power": 1.0,
    "prior_power": 0.0,
}
PREVIOUS = {"index_weight_power": 1.0}
"""An earlier default: pair weights to the power 1."""
DEFAULT = "index, window + seen + 1 s neighbours, weight^4 (default)"
VARIANTS: dict[str, dict] = {
    "fine-tuned BERT + head (source)": SOURCE,
    "index, one voxel per line": RAW_INDEX,
    "index, window targets": RAW_INDEX | {"targets": "window"},
    "index, window + seen weighting": RAW_INDEX | {"targets": "window", "seen_weighting": True},
    "index, window + seen + 1 s neighbours (previous default)": PREVIOUS,
    "index, previous + window 1 s earlier": PREVIOUS | {"window_shift_seconds": 1.0},
    DEFAULT: {},
    "index, default + window 1 s earlier": {"window_shift_seconds": 1.0},
    "index, default, k 32, T 0.1": {"index_k": 32, "index_temperature": 0.1},
    "index, default + window 2 s earlier": {"window_shift_seconds": 2.0},
    "index, default + weight^2": {"index_weight_power": 2.0},
    "index, default + weight^8": {"index_weight_power": 8.0},
    "index, default, k 16, T 0.1": {"index_k": 16, "index_temperature": 0.1},
    "index, + narration prior (a=0.5)": {"prior_power": 0.5},
    "index, gaze supervision": {"supervision": "gaze", "targets": "point"},
    "index, no label smoothing": {"label_sigma": 0.0},
    "frozen encoder + head": {"method": "classifier"},
    "ensemble head + index (0.7), prior 0.5": {"method": "ensemble", "ensemble_weight": 0.7, "prior_power": 0.5},
    "top 2 layers fine-tuned (lr 2e-5, 15 epochs) + index": {
        "method": "ensemble",
        "trainable_layers": 2,
        "lr_encoder": 2e-5,
        "epochs": 15,
    },
}
"""Overrides of the default :class:`GroundingConfig` per variant."""

QUERY_TIME = (
    "method",
    "index_k",
    "index_temperature",
    "index_weight_power",
    "prior_power",
    "ensemble_weight",
    "score_radius",
    "peak_separation",
    "uncertain_ratio",
)
"""Settings read at query time: variants differing only in these share one trained model."""


def oracle_world(root: Path, pixel_step: int) -> dict:
    from synth.oracle import oracle_scene

    scenes, narrations, gts = {}, {}, {}
    for d in sorted((root / "scenes").iterdir()):
        s = oracle_scene(d, pixel_step=pixel_step)
        scenes[s.scene] = s
        subs = {v.stem: find_subtitles(v) for v in sorted((d / "videos").glob("*.mp4"))}
        narrations[s.scene] = {v: read_narrations(p) for v, p in subs.items() if p is not None}
        gts[s.scene] = json.loads((d / "ground_truth.json").read_text())
    filmed = {s: sorted({st["part"] for v in g["videos"].values() for st in v["steps"]}) for s, g in gts.items()}
    return {
        "name": root.name,
        "scenes": scenes,
        "narrations": narrations,
        "queries": geval.queries_for(filmed, PARAPHRASE_QUERIES),
        "gt_points": {s: g["parts"] for s, g in gts.items()},
        "chance": {s: sc.points for s, sc in scenes.items()},
        "to_metric": {},
    }


def workspace_world(root: Path) -> dict:
    from howto3d import grounding_cmds
    from howto3d import scenes as wscenes
    from howto3d.workspace import Workspace

    ws = Workspace.open(root)
    scenes = {s: wscenes.shared_scene(ws, s) for s in ws.select_scenes(None)}
    narrations = {s: wscenes.narrations(ws, s) for s in scenes}
    inputs = grounding_cmds.eval_inputs(ws, sorted(scenes), PARAPHRASE_QUERIES)
    return {"name": root.name, "scenes": scenes, "narrations": narrations, **inputs}


def latency(folder: Path, scene: str, texts: list[str]) -> dict:
    t0 = time.perf_counter()
    grounder = gquery.load(folder)
    grounder.query(scene, texts[:1])
    cold = time.perf_counter() - t0
    single = []
    for t in texts:
        t0 = time.perf_counter()
        grounder.query(scene, [t])
        single.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    grounder.query(scene, texts)
    batched = time.perf_counter() - t0
    return {
        "cold_start_s": round(cold, 2),
        "single_p50_ms": round(1000 * float(np.percentile(single, 50)), 1),
        "single_p95_ms": round(1000 * float(np.percentile(single, 95)), 1),
        "batched_queries_per_s": round(len(texts) / batched, 1),
    }


def run_variant(name: str, overrides: dict, worlds: list[dict], out: Path, encoder: str, trained: dict) -> dict:
    """Train (or reuse a model trained with the same training settings) and evaluate on every world."""
    conf = replace(GroundingConfig(), encoder=encoder, **overrides)
    key = json.dumps({k: v for k, v in asdict(conf).items() if k not in QUERY_TIME}, sort_keys=True)
    reports, seconds, per_epoch = [], [], []
    for w in worlds:
        have = trained.get((w["name"], key))
        if have is None or (conf.method != "index" and not have["head"]):
            folder = out / w["name"] / f"model_{len(trained)}"
            t = time.perf_counter()
            summary = gtrain.main(conf, w["scenes"], w["narrations"], folder)
            have = {
                "folder": folder,
                "head": conf.method != "index",
                "seconds": time.perf_counter() - t,
                "per_epoch": summary.get("seconds_per_epoch"),
            }
            trained[(w["name"], key)] = have
        seconds.append(have["seconds"])
        if have["per_epoch"] is not None:
            per_epoch.append(have["per_epoch"])
        grounder = gquery.load(have["folder"])
        grounder.k, grounder.temperature = conf.index_k, conf.index_temperature
        grounder.weight_power = conf.index_weight_power
        grounder.prior_power, grounder.ensemble_weight = conf.prior_power, conf.ensemble_weight
        reports.append(
            geval.evaluate(grounder, w["queries"], w["gt_points"], w["chance"], w["to_metric"], method=conf.method)
        )
    r = summarize(reports)
    r |= {
        "train_seconds": round(float(np.mean(seconds)), 1),
        "seconds_per_epoch": round(float(np.mean(per_epoch)), 3) if per_epoch else None,
        "world_reports": [
            {
                k: x[k]
                for k in (
                    "queries",
                    "parts",
                    "pck",
                    "chance",
                    "pck_at",
                    "chance_at",
                    "pck_fine",
                    "chance_fine",
                    "thresholds",
                    "at",
                    "at_fine",
                    "median_error_m",
                )
            }
            for x in reports
        ],
    }
    return r


def summarize(reports: list[dict]) -> dict:
    r = geval.combine(reports) if len(reports) > 1 else reports[0]
    return {
        "pck_at_10cm": r["pck_fine"],
        "pck_at_30cm": r["pck_at"],
        "chance_at_10cm": r["chance_fine"],
        "chance_at_30cm": r["chance_at"],
        "median_error_m": r["median_error_m"],
        "per_world": [(x["pck_fine"], x["pck_at"]) for x in reports],
        "parts_at_30cm": {p: v["pck"] for p, v in r["parts"].items()},
        "parts_at_10cm": {p: v["pck_fine"] for p, v in r["parts"].items()},
        "calibration": r["calibration"],
        "queries": len(r["queries"]),
    }


def print_row(label: str, name: str, r: dict) -> None:
    parts = "  ".join(f"{p[:12]} {v:.2f}" for p, v in r["parts_at_30cm"].items())
    print(
        f"{label} | {name:52s} | PCK@10 {r['pck_at_10cm']:.3f} PCK@30 {r['pck_at_30cm']:.3f} | chance "
        f"{r['chance_at_10cm']:.3f}/{r['chance_at_30cm']:.3f} | train {r.get('train_seconds')} s "
        f"({r.get('seconds_per_epoch')} s/epoch) | {parts}",
        flush=True,
    )


def merge(files: list[Path]) -> None:
    """Pool reports of separate runs (e.g. one process per world) per label and variant, and print the table."""
    runs = [json.loads(f.read_text()) for f in files]
    for label in dict.fromkeys(r["label"] for r in runs):
        mine = [r for r in runs if r["label"] == label]
        for name in dict.fromkeys(n for r in mine for n in r["variants"]):
            have = [r["variants"][name] for r in mine if name in r["variants"]]
            merged = summarize([w for h in have for w in h["world_reports"]])
            merged["train_seconds"] = round(float(np.mean([h["train_seconds"] for h in have])), 1)
            epochs = [h["seconds_per_epoch"] for h in have if h["seconds_per_epoch"] is not None]
            merged["seconds_per_epoch"] = round(float(np.mean(epochs)), 3) if epochs else None
            print_row(f"{label} ({len(merged['per_world'])} worlds)", name, merged)
            cal = merged["calibration"]
            print(
                f"      calibration: {[(b['mean_score'], b['hit_rate'], b['queries']) for b in cal['bins']]}, "
                f"hit rate confident {cal['hit_rate_confident']} / uncertain {cal['hit_rate_uncertain']} "
                f"({cal['uncertain_fraction']} uncertain)"
            )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one small world, default vs source only")
    ap.add_argument("--workspaces", type=Path, nargs="*", default=[], help="reconstructed + aligned workspaces")
    ap.add_argument("--oracle", type=Path, nargs="*", default=[], help="synthetic worlds seen through oracle_scene")
    ap.add_argument("--variants", nargs="*", help="only these variant names (default: all)")
    ap.add_argument("--label", default="clean", help="name of this set of worlds in the report (clean/degraded)")
    ap.add_argument("--encoder", default=GroundingConfig().encoder, help="packaged BERT or a local BERT folder")
    ap.add_argument("--out", type=Path, help="keep the worlds, models and report here")
    ap.add_argument("--merge", type=Path, nargs="*", help="only pool and print these report files")
    ap.add_argument(
        "--degraded",
        action="store_true",
        help="generate degraded worlds (WorldConfig.degraded: dense "
        "talk, half of the videos with rolling YouTube captions) instead of clean ones",
    )
    ap.add_argument(
        "--long",
        action="store_true",
        help="generate 2 × 10-minute videos with minute-long hovers and "
        "dense talk (WorldConfig.long, 60-s dwells) instead of clean worlds",
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.merge:
        merge(args.merge)
        return
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_grounding_"))
    oracle_dirs = list(args.oracle)
    if not args.workspaces and not oracle_dirs:
        from synth import WorldConfig, generate_world

        for seed in (0,) if args.quick else (0, 1, 2):
            d = out / f"world_s{seed}"
            if not (d / "scenes").is_dir():
                cfg = (
                    WorldConfig.degraded(seed=seed, width=64, height=36, caption_vtt_share=0.5)
                    if args.degraded
                    else WorldConfig.long(seed=seed, seconds=600.0, dwell_seconds=60.0, width=64, height=36)
                    if args.long
                    else WorldConfig(scenes=2, videos=4, seconds=20.0, seed=seed, width=64, height=36)
                )
                generate_world(d, cfg)
            oracle_dirs.append(d)
    worlds = [workspace_world(w) for w in args.workspaces] + [oracle_world(d, 2) for d in oracle_dirs]
    names = args.variants or ([DEFAULT, "fine-tuned BERT + head (source)"] if args.quick else list(VARIANTS))
    report: dict = {"label": args.label, "worlds": [w["name"] for w in worlds], "encoder": args.encoder, "variants": {}}
    trained: dict = {}
    path = out / f"report_{args.label}_{'_'.join(w['name'] for w in worlds)}.json"
    for name in names:
        r = run_variant(name, VARIANTS[name], worlds, out, args.encoder, trained)
        report["variants"][name] = r
        print_row(args.label, name, r)
        path.write_text(json.dumps(report, indent=1))
    default = next(
        (
            v
            for (world, key), v in trained.items()
            if world == worlds[0]["name"]
            and key
            == json.dumps(
                {
                    k: x
                    for k, x in asdict(replace(GroundingConfig(), encoder=args.encoder)).items()
                    if k not in QUERY_TIME
                },
                sort_keys=True,
            )
        ),
        None,
    )
    if default is not None:
        report["latency_default"] = latency(
            default["folder"], worlds[0]["queries"][0][0], [q[2] for q in worlds[0]["queries"]]
        )
        print(f"latency of the default: {report['latency_default']}")
    path.write_text(json.dumps(report, indent=1))
    print(f"report: {path}")


if __name__ == "__main__":
    main()
