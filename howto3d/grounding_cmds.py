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
from grounding.narration import Narration, load_narrations
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
        out[v.name] = load_narrations(v.subtitles, f"{scene}/{v.name}")  # a bad file: warned, no narration
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
    line_weights = None
    if conf.min_groundedness > 0:
        from howto3d.discover_cmds import groundedness_weights, write_line_record

        line_weights = {s: groundedness_weights(ws, s, narrations[s], conf.min_groundedness, progress)
                        for s in scenes}
    summary = gtrain.main(conf, scenes, narrations, ws.grounding_dir, progress, line_weights=line_weights)
    if line_weights is not None:
        for s in scenes:
            write_line_record(ws, s, narrations[s], conf.min_groundedness)
    return summary


def query(ws: Workspace, scene: str, texts: list[str], heatmap_ply: Path | None = None) -> list[dict]:
    """Ground each text in ``scene``; with ``heatmap_ply`` the (first) query's heatmap is written there too."""
    grounder = gquery.load(ws.grounding_dir)
    results = grounder.query(scene, texts)
    if heatmap_ply is not None and texts:
        centers, scores, _ = grounder.heatmap(scene, texts[0])
        gquery.write_heatmap_ply(heatmap_ply, centers, scores)
    return results


QUERY_SETS = ("paraphrase", "heldout")


def query_set(name: str) -> dict[str, tuple[str, ...] | list[str]]:
    """The evaluation queries: 'paraphrase' (questions and descriptions worded unlike any narration, the
    default) or 'heldout' (wikiHow-style instructions, closer to the narration)."""
    from synth.queries import PARAPHRASE_QUERIES

    if name not in QUERY_SETS:
        raise InputError(f"unknown query set {name!r}: use one of {', '.join(QUERY_SETS)}")
    return PARAPHRASE_QUERIES if name == "paraphrase" else geval.HELDOUT_QUERIES


def eval_inputs(ws: Workspace, scenes: list[str], queries: dict) -> dict:
    """Per evaluable scene: queries of its filmed parts, true part positions (m), chance points (m) and the map
    from the shared frame to metres. Scenes without ground truth or a usable alignment are logged and skipped."""
    parts, gt_points, chance, to_metric, not_filmed = {}, {}, {}, {}, {}
    for scene in scenes:
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
        filmed = sorted({st["part"] for v in gt["videos"].values() for st in v["steps"]} & set(queries))
        parts[scene] = filmed
        not_filmed[scene] = sorted(set(gt["parts"]) & set(queries) - set(filmed))
        gt_points[scene] = gt["parts"]
        chance[scene] = sim * shared.points
        to_metric[scene] = lambda p, sim=sim: sim * p
    if not parts:
        raise InputError(f"{ws.root}: no trained scene has a ground_truth.json; eval-grounding needs a synthetic "
                         "world (`howto3d synth`)")
    return {"queries": geval.queries_for(parts, queries), "gt_points": gt_points, "chance": chance,
            "to_metric": to_metric, "not_filmed": not_filmed}


def eval_grounding(ws: Workspace | list[Workspace], out_png: Path | None = None,
                   queries: str = "paraphrase") -> dict:
    """Queries vs ``ground_truth.json`` part positions, in metres (synthetic worlds only), pooled over worlds.

    Only parts that some video of the scene works on are queried (a part never filmed cannot be learned);
    the others are listed under ``not_filmed``. With several workspaces each is scored by its own model and the
    report pools them (``worlds`` holds each one's PCK@10/@30).
    """
    workspaces = ws if isinstance(ws, list) else [ws]
    qset = query_set(queries)
    reports = []
    for w in workspaces:
        grounder = gquery.load(w.grounding_dir)
        inputs = eval_inputs(w, grounder.scenes, qset)
        r = geval.evaluate(grounder, inputs["queries"], inputs["gt_points"], inputs["chance"], inputs["to_metric"])
        r["not_filmed"] = inputs["not_filmed"]
        r["workspace"] = str(w.root)
        reports.append(r)
    report = reports[0] if len(reports) == 1 else geval.combine(reports)
    report["query_set"] = queries
    if len(reports) > 1:
        report["not_filmed"] = {r["workspace"]: r["not_filmed"] for r in reports}
        report["per_world"] = [{k: r[k] for k in ("workspace", "pck_at", "chance_at", "pck_fine", "chance_fine")}
                               for r in reports]
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
    console.print(f"method {summary.get('method', 'classifier')}, {summary['train_pairs']} pairs, "
                  f"best epoch {summary['best_epoch']}, {summary['seconds']['total']} s")


def print_query_results(results: list[dict]) -> None:
    table = Table(title="grounding")
    for col in ("scene", "text", "point", "score", "other places"):
        table.add_column(col)
    for r in results:
        text = r["text"] if len(r["text"]) <= 60 else r["text"][:57] + "..."
        other = ", ".join("(" + ", ".join(f"{x:.2f}" for x in p["center"]) + f") {p['score']:.2f}"
                          for p in r.get("peaks", [])[1:2]) if r.get("uncertain") else "-"
        table.add_row(r["scene"], text, "(" + ", ".join(f"{x:.3f}" for x in r["point"]) + ")", f"{r['score']:.3f}",
                      other)
    console.print(table)


def print_eval_report(report: dict) -> None:
    at = f"{report['at'] * 100:.0f} cm"
    fine = f"{report['at_fine'] * 100:.0f} cm"
    table = Table(title=f"grounding PCK per part ({report.get('query_set', 'heldout')} queries)")
    for col in ("part", "queries", f"model @{fine}", f"model @{at}", f"chance @{at}", "median error (m)"):
        table.add_column(col)
    for part, r in report["parts"].items():
        table.add_row(part, str(r["queries"]), f"{r['pck_fine']:.2f}", f"{r['pck']:.2f}", f"{r['chance']:.2f}",
                      f"{r['median_error_m']:.3f}")
    table.add_row("all", str(len(report["queries"])), f"{report['pck_fine']:.2f}", f"{report['pck_at']:.2f}",
                  f"{report['chance_at']:.2f}", f"{report['median_error_m']:.3f}")
    console.print(table)
    for w in report.get("per_world", []):
        console.print(f"{w['workspace']}: PCK@{fine} {w['pck_fine']:.2f} (chance {w['chance_fine']:.2f}), "
                      f"PCK@{at} {w['pck_at']:.2f} (chance {w['chance_at']:.2f})")
