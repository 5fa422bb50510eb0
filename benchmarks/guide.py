"""The AR guide against ground truth: how each way of placing a step does, on synthetic workspaces.

For every task of each workspace's task file that some video performs, ``howto3d guide`` runs once per fusion
(``grounding.guide.FUSIONS``: looks × text, looks alone, text alone, their mean) on the same saved timelines and
the same grounding model, and is scored by ``howto3d.evaluation.eval_guide``: steps placed within 30 cm of the
part they work on, top moments that show that part, top moments inside the step's true time span.

    python benchmarks/guide.py WS [WS ...]      # workspaces that went through `howto3d run` (synthetic worlds)
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from grounding.guide import FUSIONS, GuideConfig  # noqa: E402
from howto3d import evaluation, guide_cmds, scenes, temporal_cmds  # noqa: E402
from howto3d.workspace import Workspace  # noqa: E402
from recon.io import InputError  # noqa: E402
from temporal.tasks import find_task_file, read_task_file  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("ws", nargs="+", type=Path)
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("howto3d").setLevel(logging.ERROR)
    pooled: dict[str, list[dict]] = {f: [] for f in FUSIONS}
    for root in args.ws:
        ws = Workspace.open(root)
        for scene in ws.scenes():
            path = find_task_file(ws.scene_dir(scene))
            if path is None or not ws.ground_truth_path(scene).exists():
                print(f"{root}/{scene}: skipped (needs a task file and ground truth)")
                continue
            gt = evaluation.load_gt(ws.ground_truth_path(scene))
            shared = scenes.shared_scene(ws, scene)
            world = evaluation.world_from_shared(ws, scene, shared)
            timelines = temporal_cmds.steps(ws, scene)
            grounder = scenes.grounder(ws, scene)
            performed = sorted({s["task"] for r in gt["videos"].values() for s in r.get("steps", [])})
            for task in [t for t in read_task_file(path).tasks if t in performed]:
                for fusion in FUSIONS:
                    try:
                        g = guide_cmds.guide(ws, scene, task, timelines=timelines, grounder=grounder,
                                             conf=replace(GuideConfig(), fusion=fusion))
                    except InputError as e:  # no video performs it in its timeline: every step unplaced
                        print(f"{root.name}/{scene} {task}: {e}")
                        g = {"task": task, "steps": [{"step": s, "point": None, "moments": []}
                                                     for s in read_task_file(path).tasks[task].steps]}
                    r = evaluation.eval_guide(gt, world, g)
                    pooled[fusion] += r["steps"]
                    print(f"{root.name}/{scene} {task:<22} {fusion:<8} placed {r['placed']:.2f}  moment shows "
                          f"{r['moment_shows']:.2f}  inside {r['moment_inside']:.2f}  ({len(r['steps'])} steps)",
                          flush=True)
    print("\n| fusion | steps | placed ≤ 30 cm | median error (cm) | top moment shows the part | inside the step |")
    print("|---|---|---|---|---|---|")
    for fusion, rows in pooled.items():
        if not rows:
            continue
        errs = sorted(r["error_m"] for r in rows if r["error_m"] is not None)
        med = 100 * errs[len(errs) // 2] if errs else float("nan")
        n = len(rows)
        print(f"| {fusion} | {n} | {sum(e <= 0.3 for e in errs) / n:.2f} | {med:.1f} | "
              f"{sum(r['moment_shows'] for r in rows) / n:.2f} | {sum(r['moment_inside'] for r in rows) / n:.2f} |")


if __name__ == "__main__":
    main()
