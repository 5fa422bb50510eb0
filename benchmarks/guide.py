"""The AR guide against ground truth: how each way of placing a step does, on synthetic workspaces.

For every task of each workspace's task file that some video performs, ``howto3d guide`` runs once per fusion
(``grounding.guide.FUSIONS``: looks × text, looks alone, text alone, their mean) on the same saved timelines and
the same grounding model, and is scored by ``howto3d.evaluation.eval_guide``: steps placed within 30 cm of the
part they work on, top moments that show that part, top moments inside the step's true time span. Then every
paraphrase query of a filmed part (``synth.queries``) is asked, and its answer's top moment checked for showing it.

    python benchmarks/guide.py WS [WS ...]      # workspaces that went through `howto3d run` (synthetic worlds)
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

# Run as a script, this file's folder comes first on sys.path and its name would shadow the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from grounding.guide import FUSIONS, GuideConfig  # noqa: E402
from howto3d import evaluation, grounding_cmds, guide_cmds, scenes, temporal_cmds  # noqa: E402
from howto3d.workspace import Workspace  # noqa: E402
from recon.io import InputError  # noqa: E402
from synth.queries import PARAPHRASE_QUERIES  # noqa: E402
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
                        g = guide_cmds.guide(
                            ws,
                            scene,
                            task,
                            timelines=timelines,
                            grounder=grounder,
                            conf=replace(GuideConfig(), fusion=fusion),
                        )
                    except InputError as e:  # no video performs it in its timeline: every step unplaced
                        print(f"{root.name}/{scene} {task}: {e}")
                        g = {
                            "task": task,
                            "steps": [
                                {"step": s, "point": None, "moments": []}
                                for s in read_task_file(path).tasks[task].steps
                            ],
                        }
                    r = evaluation.eval_guide(gt, world, g)
                    pooled[fusion] += r["steps"]
                    print(
                        f"{root.name}/{scene} {task:<22} {fusion:<8} placed {r['placed']:.2f}  moment shows "
                        f"{r['moment_shows']:.2f}  inside {r['moment_inside']:.2f}  ({len(r['steps'])} steps)",
                        flush=True,
                    )
    hits, near = [], []
    for root in args.ws:  # query answers' evidence: does the top moment show the asked-for part?
        ws = Workspace.open(root)
        for scene in ws.scenes():
            if not ws.ground_truth_path(scene).exists():
                continue
            gt = evaluation.load_gt(ws.ground_truth_path(scene))
            world = evaluation.world_from_shared(ws, scene, scenes.shared_scene(ws, scene))
            filmed = sorted(
                {s["part"] for r in gt["videos"].values() for s in r.get("steps", [])} & set(PARAPHRASE_QUERIES)
            )
            texts = [(p, q) for p in filmed for q in PARAPHRASE_QUERIES[p]]
            answers = grounding_cmds.query(ws, scene, [q for _, q in texts], with_moments=True)
            for (p, _), a in zip(texts, answers, strict=True):
                hits.append(bool(a["moments"]) and evaluation.moment_shows(gt, a["moments"][0], p))
                X = np.asarray(world * np.array([a["point"]])).reshape(3)
                near.append(float(np.linalg.norm(X - np.asarray(gt["parts"][p]))) <= 0.3)
            print(
                f"{root.name}/{scene} queries: top moment shows the asked-for part "
                f"{sum(hits[-len(texts) :])}/{len(texts)}"
            )
    good = [h for h, n in zip(hits, near, strict=True) if n]
    print(
        f"\nquery answers (paraphrase set): top moment shows the asked-for part {sum(hits)}/{len(hits)} "
        f"= {sum(hits) / max(len(hits), 1):.2f}; of the answers within 30 cm {sum(good)}/{len(good)} "
        f"= {sum(good) / max(len(good), 1):.2f}"
    )
    print("\n| fusion | steps | placed ≤ 30 cm | median error (cm) | top moment shows the part | inside the step |")
    print("|---|---|---|---|---|---|")
    for fusion, rows in pooled.items():
        if not rows:
            continue
        errs = sorted(r["error_m"] for r in rows if r["error_m"] is not None)
        med = 100 * errs[len(errs) // 2] if errs else float("nan")
        n = len(rows)
        print(
            f"| {fusion} | {n} | {sum(e <= 0.3 for e in errs) / n:.2f} | {med:.1f} | "
            f"{sum(r['moment_shows'] for r in rows) / n:.2f} | {sum(r['moment_inside'] for r in rows) / n:.2f} |"
        )


if __name__ == "__main__":
    main()
