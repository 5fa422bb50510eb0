"""What the commands print: every rich table (results in, a table on the console out) and the one JSON printer."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rich.table import Table

from howto3d.progress import console

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np


# ---- recon
def print_reconstruct_summary(summary: Sequence[Mapping[str, Any]]) -> None:
    table = Table(title="reconstruction")
    for col in ("video", "status", "registered", "points", "seconds", "note"):
        table.add_column(col)
    for r in summary:
        reg = f"{r['registered']}/{r['frames_sampled']}" if "registered" in r else "-"
        note = r.get("error", "") or ("skipped: unchanged" if r.get("skipped") else "")
        table.add_row(r["key"], r["status"], reg, str(r.get("points3D", "-")), str(r.get("seconds", "-")), note)
    console.print(table)


def print_align_summary(results: Mapping[str, Mapping[str, Any]]) -> None:
    for s, r in results.items():
        table = Table(title=f"alignment graph of {s} (reference: {r['reference']})")
        for col in ("edge", "3D-3D", "inliers", "ratio", "residual", "status"):
            table.add_column(col)
        for e in r["edges"]:
            table.add_row(
                f"{e['a']} ↔ {e['b']}",
                str(e["correspondences_3d"]),
                str(e["inliers"]),
                f"{e['inlier_ratio']:.2f}",
                str(e.get("residual", "-")),
                "edge" if e["accepted"] else f"rejected: {e['reason']}",
            )
        console.print(table)
        console.print(
            f"{s}: {len(r['aligned'])} video(s) in the shared frame"
            + (f"; not aligned: {', '.join(r['unaligned'])}" if r["unaligned"] else "")
        )


def print_alignment_accuracy(report: Mapping[str, Any]) -> None:
    """Rich tables of :func:`camera_errors` and :func:`eval_transfer` results."""
    from howto3d.evaluation import THRESHOLDS_CM  # here: evaluation imports pycolmap, which a query must not

    cams = Table(title="cameras vs ground truth (one Sim(3) fit of all shared-frame cameras)")
    for col in ("video", "frames", "centre mean (cm)", "centre max (cm)", "rotation max (°)"):
        cams.add_column(col)
    for v, e in report["cameras"].items():
        cams.add_row(
            v,
            str(e["frames"]),
            f"{e['centre_mean_m'] * 100:.2f}",
            f"{e['centre_max_m'] * 100:.2f}",
            f"{e['rotation_max_deg']:.2f}",
        )
    console.print(cams)
    t = report["transfer"]
    pcks = Table(title=f"keypoint transfer PCK ({t['keypoints']} triangulated keypoints)")
    pcks.add_column("mode")
    for th in THRESHOLDS_CM:
        pcks.add_column(f"{th} cm")
    for mode, label in (
        ("pck_shared", "shared frame"),
        ("pck_graph", f"graph ({t['pairs_graph']} pairs)"),
        ("pck_direct", f"direct edges ({t['pairs_direct']} pairs)"),
    ):
        pcks.add_row(label, *(f"{t[mode][f'{th}cm']:.2f}" for th in THRESHOLDS_CM))
    console.print(pcks)


# ---- grounding
def print_train_summary(summary: Mapping[str, Any]) -> None:
    table = Table(title=f"grounding training ({summary['supervision']} supervision)")
    for col in ("scene", "pairs", "voxels", "skipped"):
        table.add_column(col)
    for scene, r in summary["scenes"].items():
        skipped = ", ".join(f"{n} {why}" for why, n in r["skipped"].items()) or "-"
        table.add_row(scene, str(r["pairs"]), str(r["voxels"]), skipped)
    console.print(table)
    console.print(
        f"method {summary.get('method', 'classifier')}, {summary['train_pairs']} pairs, "
        f"best epoch {summary['best_epoch']}, {summary['seconds']['total']} s"
    )


def print_query_results(results: Sequence[Mapping[str, Any]]) -> None:
    table = Table(title="grounding")
    for col in ("scene", "text", "point", "score", "other places"):
        table.add_column(col)
    for r in results:
        text = r["text"] if len(r["text"]) <= 60 else r["text"][:57] + "..."
        other = (
            ", ".join(
                "(" + ", ".join(f"{x:.2f}" for x in p["center"]) + f") {p['score']:.2f}"
                for p in r.get("peaks", [])[1:2]
            )
            if r.get("uncertain")
            else "-"
        )
        table.add_row(
            r["scene"], text, "(" + ", ".join(f"{x:.3f}" for x in r["point"]) + ")", f"{r['score']:.3f}", other
        )
    console.print(table)
    for r in results:  # what was said there: the lines that voted most, so a user can check the answer
        said = [e for e in r.get("evidence", []) if e.get("supports", 0) >= 0.5][:2]
        if said:
            console.print(
                f"  {r['text'][:40]!r} rests on: "
                + "; ".join(f'{e["video"]} {e["start"]:.1f}-{e["end"]:.1f} s "{e["text"][:60]}"' for e in said),
                highlight=False,
                markup=False,
            )
        if r.get("moments"):
            m = r["moments"][0]
            console.print(
                f"  {r['text'][:40]!r} best seen in {m['video']} {m['start']:.1f}-{m['end']:.1f} s "
                f"(at {m['time']:.1f} s, pixel {m['xy'][0]:.0f}, {m['xy'][1]:.0f})",
                highlight=False,
                markup=False,
            )


def print_guide(guide: Mapping[str, Any]) -> None:
    """``howto3d guide``: one row per step (where, how sure, the best moment) and what was said then."""
    table = Table(title=f"{guide['scene']}: {guide['title']} ({guide['task_source']})")
    for col in ("#", "step", "point", "confidence", "best moment"):
        table.add_column(col)
    for st in guide["steps"]:
        point = "-" if st["point"] is None else "(" + ", ".join(f"{x:.3f}" for x in st["point"]) + ")"
        m = st["moments"][0] if st["moments"] else None
        seen = "-" if m is None else f"{m['video']} {m['start']:.1f}-{m['end']:.1f} s"
        table.add_row(
            str(st["index"]), st["step"], point, f"{st['confidence']:.2f}" + (" ?" if st["uncertain"] else ""), seen
        )
    console.print(table)
    for st in guide["steps"]:
        if st["narration"]:
            n = st["narration"][0]
            said = " ".join(n["text"].split())[:70]
            console.print(
                f'  {st["index"]}. said: {n["video"]} {n["start"]:.1f} s "{said}"', highlight=False, markup=False
            )


def print_eval_report(report: Mapping[str, Any]) -> None:
    at = f"{report['at'] * 100:.0f} cm"
    fine = f"{report['at_fine'] * 100:.0f} cm"
    table = Table(title=f"grounding PCK per part ({report.get('query_set', 'heldout')} queries)")
    for col in ("part", "queries", f"model @{fine}", f"model @{at}", f"chance @{at}", "median error (m)"):
        table.add_column(col)
    for part, r in report["parts"].items():
        table.add_row(
            part,
            str(r["queries"]),
            f"{r['pck_fine']:.2f}",
            f"{r['pck']:.2f}",
            f"{r['chance']:.2f}",
            f"{r['median_error_m']:.3f}",
        )
    table.add_row(
        "all",
        str(len(report["queries"])),
        f"{report['pck_fine']:.2f}",
        f"{report['pck_at']:.2f}",
        f"{report['chance_at']:.2f}",
        f"{report['median_error_m']:.3f}",
    )
    console.print(table)
    for w in report.get("per_world", []):
        console.print(
            f"{w['workspace']}: PCK@{fine} {w['pck_fine']:.2f} (chance {w['chance_fine']:.2f}), "
            f"PCK@{at} {w['pck_at']:.2f} (chance {w['chance_at']:.2f})"
        )


# ---- temporal
def print_lines(lines: list[str]) -> None:
    """Plain lines (paths, commands to copy) as they are: no highlighting, never wrapped."""
    for line in lines:
        console.print(line, highlight=False, soft_wrap=True)


def print_json(obj: object) -> None:
    """The one JSON printer of the command tree: indented, on stdout (tables and logs go to stderr)."""
    sys.stdout.write(json.dumps(obj, indent=1) + "\n")


def show(result: Any, as_json: bool, table: Callable[[Any], None]) -> None:
    """A command's result: JSON on stdout with ``--json``, else its table."""
    if as_json:
        print_json(result)
    else:
        table(result)


def _pct(x: float) -> str:
    return "-" if not math.isfinite(x) else f"{100 * x:.1f}"


def print_steps(results: Mapping[str, Mapping[str, Any]]) -> None:
    """Step timelines (``howto3d steps`` / ``discover``): one table per video."""
    for v, r in results.items():
        table = Table(title=f"{r['scene']}/{v}: {' + '.join(r['tasks'])} (task from {r['task_source']})")
        for col in ("task", "step", "clip (s)", "segment (s)"):
            table.add_column(col)
        for st in r["steps"]:
            seg = f"{st['start']:.0f}–{st['end']:.0f}" if st["start"] is not None else "-"
            table.add_row(st["task"], st["step"], str(st["clip"]), seg)
        console.print(table)


def print_eval(report: Mapping[str, Any]) -> None:
    """``howto3d eval-steps``: recall per method and video, frame F1, actionness AP, what was skipped."""
    for s, r in report["scenes"].items():
        table = Table(title=f"steps of {s} vs ground truth (recall: CrossTask, {r['annotated']} annotated steps)")
        table.add_column("video")
        for m in r["methods"]:
            table.add_column(f"{m} recall")
        table.add_column("fused frame F1")
        for v, e in r["videos"].items():
            table.add_row(
                v,
                *(f"{e[m]['hits'] / max(e['annotated'], 1):.2f}" for m in r["methods"]),
                f"{e['fused']['frame_f1']:.2f}" if "fused" in e else "-",
            )
        table.add_row(
            "all",
            *(f"{x['recall']:.2f}" for x in r["methods"].values()),
            f"{r['methods']['fused']['frame_f1']:.2f}" if "fused" in r["methods"] else "-",
        )
        console.print(table)
        if r["actionness"]:
            a = r["actionness"]
            console.print(
                f"{s}: actionness AP {a['ap']:.2f} (chance {a['chance']:.2f}, chance+trim {a['chance_trim']:.2f})"
            )
    for note in report["skipped"]:
        console.print(f"skipped {note}")


def print_actionness(scene: str, actionness: Mapping[str, np.ndarray], folder: Path) -> None:
    """``howto3d actionness``: where each video has most action, and where it was saved."""
    for v, a in actionness.items():
        console.print(
            f"{scene}/{v}: {len(a)} clips, most action at {int(a.argmax())}–{int(a.argmax()) + 1} s "
            f"→ {folder / (v + '.json')}"
        )


def print_groundedness(report: Mapping[str, Any]) -> None:
    """``howto3d groundedness``: each video's intra-video AUC and every line's groundedness."""
    for v, r in report["videos"].items():
        console.print(f"{report['scene']}/{v}: intra-video AUC {r['auc']:.2f}")
        for ln in r["lines"]:
            console.print(
                f"  {ln['groundedness']:.2f}  {ln['start']:6.1f}–{ln['end']:6.1f} s  {ln['text']}", highlight=False
            )


def print_crosstask_stats(result: Mapping[str, Any]) -> None:
    table = Table("task", "title", "videos", "steps", "avg len (s)", "missing %", "background %", "order")
    for r in result["tasks"]:
        table.add_row(
            r["task_id"],
            r["title"],
            str(r["videos"]),
            str(r["steps"]),
            f"{r['avg_len_s']:.0f}",
            _pct(r["missing_steps"]),
            _pct(r["background"]),
            f"{r['order_consistency']:.2f}",
        )
    console.print(table)


def _videos_per_task(result: Mapping[str, Any], column: str, note: str) -> None:
    table = Table("task", "title", column)
    for t, n in result["videos"].items():
        table.add_row(t, result["titles"][t], str(n))
    console.print(table)
    console.print(note)


def print_crosstask_train(result: Mapping[str, Any]) -> None:
    _videos_per_task(result, "training videos", f"saved model to {result['model']}")


def print_crosstask_localize(result: Mapping[str, Any]) -> None:
    _videos_per_task(result, "videos localized", f"wrote {result['predictions']}")


def print_crosstask_evaluate(result: Mapping[str, Any]) -> None:
    table = Table("task", "title", "videos", "recall %", "uniform %")
    for t, rec in result["recall"].items():
        table.add_row(t, result["titles"][t], str(result["videos"][t]), _pct(rec), _pct(result["uniform"][t]))
    table.add_row("mean", "", "", _pct(result["mean_recall"]), _pct(result["mean_uniform"]))
    console.print(table)


def print_crosstask_actionness(result: Mapping[str, Any]) -> None:
    table = Table("task", "AP ours %", "chance %", "chance+trim %")
    for t, r in result["ap"].items():
        table.add_row(t, _pct(r["ours"]), _pct(r["chance"]), _pct(r["trim"]))
    console.print(table)


def print_crosstask_discover(result: Mapping[str, Any]) -> None:
    if "ours" not in result:
        console.print(f"wrote key steps of {result['videos']} videos to {result['out']} (no annotations to evaluate)")
        return
    table = Table("task", "recall %", "precision %", "F1 %", "random F1 %")
    for t, r in result["ours"]["tasks"].items():
        table.add_row(
            t, _pct(r["recall"]), _pct(r["precision"]), _pct(r["f1"]), _pct(result["random"]["tasks"][t]["f1"])
        )
    table.add_row(
        "mean",
        _pct(result["ours"]["recall"]),
        _pct(result["ours"]["precision"]),
        _pct(result["ours"]["f1"]),
        _pct(result["random"]["f1"]),
    )
    console.print(table)
    if "task_accuracy" in result:
        console.print(f"task classification accuracy: {_pct(result['task_accuracy'])} %")
