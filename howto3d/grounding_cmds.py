"""Workspace-level grounding commands (``train``, ``query``, ``eval-grounding``) and their rich tables.

The grounding package works on in-memory scenes and a model folder; this module finds them in a workspace:
shared scenes from the pipeline, narrations from the videos' subtitles, the model under ``WS/grounding``.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

from rich.table import Table

from grounding import evaluate as geval
from grounding import query as gquery
from grounding import train as gtrain
from grounding.narration import Narration, read_narrations
from howto3d.pipeline import shared_scene, world_from_shared
from howto3d.progress import ProgressFn, console
from howto3d.workspace import Workspace
from recon.io import InputError, read_json

log = logging.getLogger("howto3d")


def _narrations(ws: Workspace, scene: str) -> dict[str, list[Narration]]:
    out = {}
    for v in ws.videos(scene):
        if v.subtitles is None:
            log.info("%s/%s: no subtitles: not used for grounding", scene, v.name)
            continue
        out[v.name] = read_narrations(v.subtitles)
    return out


def train(ws: Workspace, epochs: int | None = None, progress: ProgressFn | None = None) -> dict:
    """Train the shared grounding model on every scene that has a shared frame; scenes without one are skipped."""
    conf = ws.config.grounding
    if epochs is not None:
        conf = replace(conf, epochs=epochs)
    scenes, narrations = {}, {}
    for s in ws.select_scenes(None):
        try:
            scenes[s] = shared_scene(ws, s)
        except InputError as e:
            log.warning("scene %s skipped: %s", s, e)
            continue
        narrations[s] = _narrations(ws, s)
    if not scenes:
        raise InputError(f"{ws.root}: no scene is reconstructed and aligned yet; run `howto3d reconstruct` "
                         "and `howto3d align` first")
    return gtrain.main(conf, scenes, narrations, ws.grounding_dir, progress)


def query(ws: Workspace, scene: str, texts: list[str], heatmap_ply: Path | None = None) -> list[dict]:
    """Ground each text in ``scene``; with ``heatmap_ply`` the (first) query's heatmap is written there too."""
    grounder = gquery.load(ws.grounding_dir)
    results = grounder.query(scene, texts)
    if heatmap_ply is not None and texts:
        centers, scores, _ = grounder.heatmap(scene, texts[0])
        gquery.write_heatmap_ply(heatmap_ply, centers, scores)
    return results


def eval_grounding(ws: Workspace, out_png: Path | None = None) -> dict:
    """Held-out instruction queries vs ``ground_truth.json`` part positions, in metres (synthetic worlds only).

    Only parts that some video of the scene works on are queried (a part never filmed cannot be learned);
    the others are listed under ``not_filmed``.
    """
    grounder = gquery.load(ws.grounding_dir)
    parts, gt_points, chance, to_metric, not_filmed = {}, {}, {}, {}, {}
    for scene in grounder.scenes:
        path = ws.ground_truth_path(scene)
        if not path.exists():
            log.warning("scene %s: no %s (only synthetic worlds have one): not evaluated", scene, path.name)
            continue
        gt = read_json(path)
        shared = shared_scene(ws, scene)
        sim = world_from_shared(ws, scene, shared)
        if sim is None:
            log.warning("scene %s: too few registered frames match the ground truth: not evaluated", scene)
            continue
        filmed = sorted({st["part"] for v in gt["videos"].values() for st in v["steps"]} & set(geval.HELDOUT_QUERIES))
        parts[scene] = filmed
        not_filmed[scene] = sorted(set(gt["parts"]) & set(geval.HELDOUT_QUERIES) - set(filmed))
        gt_points[scene] = gt["parts"]
        chance[scene] = sim * shared.points
        to_metric[scene] = lambda p, sim=sim: sim * p
    if not parts:
        raise InputError(f"{ws.root}: no trained scene has a ground_truth.json; eval-grounding needs a synthetic "
                         "world (`howto3d synth`)")
    report = geval.evaluate(grounder, geval.queries_for(parts), gt_points, chance, to_metric)
    report["not_filmed"] = not_filmed
    if out_png is not None:
        geval.plot_pck(report, out_png)
    return report


def print_train_summary(summary: dict) -> None:
    table = Table(title=f"grounding training ({summary['supervision']} supervision)")
    for col in ("scene", "pairs", "voxels", "skipped"):
        table.add_column(col)
    for scene, r in summary["scenes"].items():
        skipped = ", ".join(f"{n} {why}" for why, n in r["skipped"].items()) or "-"
        table.add_row(scene, str(r["pairs"]), str(r["voxels"]), skipped)
    console.print(table)
    console.print(f"held-out accuracy {summary['heldout_accuracy']} on {summary['heldout_pairs']} pairs, "
                  f"best epoch {summary['best_epoch']}, {summary['seconds']['total']} s")


def print_query_results(results: list[dict]) -> None:
    table = Table(title="grounding")
    for col in ("scene", "text", "point", "score"):
        table.add_column(col)
    for r in results:
        text = r["text"] if len(r["text"]) <= 60 else r["text"][:57] + "..."
        table.add_row(r["scene"], text, "(" + ", ".join(f"{x:.3f}" for x in r["point"]) + ")", f"{r['score']:.3f}")
    console.print(table)


def print_eval_report(report: dict) -> None:
    at = f"{report['at'] * 100:.0f} cm"
    table = Table(title=f"grounding PCK@{at} per part")
    for col in ("part", "queries", "model", "chance", "median error (m)"):
        table.add_column(col)
    for part, r in report["parts"].items():
        table.add_row(part, str(r["queries"]), f"{r['pck']:.2f}", f"{r['chance']:.2f}", f"{r['median_error_m']:.3f}")
    table.add_row("all", str(len(report["queries"])), f"{report['pck_at']:.2f}", f"{report['chance_at']:.2f}",
                  f"{report['median_error_m']:.3f}")
    console.print(table)
