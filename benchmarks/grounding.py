"""Grounding benchmark on a synthetic world seen through ``oracle_scene`` (exact geometry, no SfM).

Per supervision mode: training time, PCK@30cm of the held-out instruction queries against chance, per part;
then query latency (p50/p95 single, batched queries/s) and model size of the last model.

    python benchmarks/grounding.py [--quick] [--encoder PATH] [--out DIR]

``--quick`` uses a smaller world (64x36 frames, 8 videos per scene) and is what ``make bench`` runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402

from grounding import evaluate as geval  # noqa: E402
from grounding import query as gquery  # noqa: E402
from grounding import train as gtrain  # noqa: E402
from grounding.config import GroundingConfig  # noqa: E402
from grounding.narration import read_narrations  # noqa: E402


def load_world(root: Path, pixel_step: int) -> dict:
    from synth.oracle import oracle_scene

    scenes, narrations, gts = {}, {}, {}
    for d in sorted((root / "scenes").iterdir()):
        s = oracle_scene(d, pixel_step=pixel_step)
        scenes[s.scene] = s
        narrations[s.scene] = {p.stem: read_narrations(p) for p in sorted((d / "videos").glob("*.srt"))}
        gts[s.scene] = json.loads((d / "ground_truth.json").read_text())
    filmed = {s: sorted({st["part"] for v in g["videos"].values() for st in v["steps"]}) for s, g in gts.items()}
    return {"scenes": scenes, "narrations": narrations, "queries": geval.queries_for(filmed),
            "gt_points": {s: g["parts"] for s, g in gts.items()}, "chance": {s: sc.points for s, sc in scenes.items()}}


def latency(grounder: gquery.Grounder, scene: str, texts: list[str]) -> dict:
    single = []
    for t in texts:
        t0 = time.perf_counter()
        grounder.query(scene, [t])
        single.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    grounder.query(scene, texts)
    batched = time.perf_counter() - t0
    return {"single_p50_ms": round(1000 * float(np.percentile(single, 50)), 1),
            "single_p95_ms": round(1000 * float(np.percentile(single, 95)), 1),
            "batched_queries_per_s": round(len(texts) / batched, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small world (64x36 frames)")
    ap.add_argument("--encoder", default=GroundingConfig().encoder, help="packaged BERT or a local BERT folder")
    ap.add_argument("--out", type=Path, help="keep the world, models and report here")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from synth import WorldConfig, generate_world

    out = args.out or Path(tempfile.mkdtemp(prefix="bench_grounding_"))
    world = out / "world"
    size = (64, 36, 2) if args.quick else (320, 180, 6)
    if not (world / "scenes").is_dir():
        t = time.perf_counter()
        generate_world(world, WorldConfig(scenes=2, videos=8, seconds=30.0, seed=0, width=size[0], height=size[1]))
        print(f"world generated in {time.perf_counter() - t:.0f} s")
    data = load_world(world, size[2])
    report: dict = {"encoder": args.encoder, "queries": len(data["queries"]), "modes": {}}
    grounder = None
    for mode in ("center", "gaze"):
        conf = replace(GroundingConfig(), encoder=args.encoder, supervision=mode)
        t = time.perf_counter()
        summary = gtrain.main(conf, data["scenes"], data["narrations"], out / f"model_{mode}")
        seconds = time.perf_counter() - t
        grounder = gquery.load(out / f"model_{mode}")
        r = geval.evaluate(grounder, data["queries"], data["gt_points"], data["chance"])
        geval.plot_pck(r, out / f"pck_{mode}.png", label=mode)
        report["modes"][mode] = {"train_seconds": round(seconds, 1), "pairs": summary["train_pairs"],
                                 "best_epoch": summary["best_epoch"], "pck_at_30cm": r["pck_at"],
                                 "chance_at_30cm": r["chance_at"], "median_error_m": r["median_error_m"],
                                 "parts": {p: (v["pck"], v["chance"]) for p, v in r["parts"].items()}}
        print(f"{mode:6s} train {seconds:6.1f} s  PCK@30cm {r['pck_at']:.3f}  chance {r['chance_at']:.3f}  "
              f"median error {r['median_error_m']:.3f} m")
        for part, v in r["parts"].items():
            print(f"    {part:28s} {v['pck']:.2f}  (chance {v['chance']:.2f})")
    scene = data["queries"][0][0]
    report["latency"] = latency(grounder, scene, [q[2] for q in data["queries"]])
    report["model_mb"] = round(sum(f.stat().st_size for f in (out / "model_gaze" / "model").iterdir()) / 2**20, 1)
    print(f"latency {report['latency']}, model {report['model_mb']} MB")
    (out / "report.json").write_text(json.dumps(report, indent=1))
    print(f"report: {out / 'report.json'}")


if __name__ == "__main__":
    main()
