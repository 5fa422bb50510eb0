"""Temporal on a workspace's own videos: which clip features and fusion weights localize steps best.

Per feature combination and grounded/actionness weight: CrossTask step recall and frame F1 of the uniform
baseline, the learned step model, the 3D-grounded scores and their fusion, plus actionness AP against chance.
Needs a synthetic workspace that went through ``howto3d run`` up to ``train`` (e.g. ``demo/workspace``).

    python benchmarks/temporal_workspace.py WS [--quick]

``--quick`` (what ``make bench`` runs) builds a small world itself (1 scene x 4 videos x 16 s) when WS is not
given, and tries only the default settings against the purely visual model.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

# Run as a script, this file's folder comes first on sys.path and its name would shadow the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from howto3d import grounding_cmds, recon_cmds, run, synth_cmds  # noqa: E402
from howto3d import temporal_cmds as tc  # noqa: E402
from howto3d.workspace import Workspace  # noqa: E402
from temporal.video_steps import StepsConfig  # noqa: E402

COMBOS = (
    ["bovw", "color"],
    ["bovw", "color", "motion"],
    ["gaze"],
    ["motion", "gaze"],
    ["bovw", "color", "motion", "gaze"],
)


def build(root: Path) -> Workspace:
    ws = synth_cmds.make_synthetic_workspace(root, scenes=1, videos=4, seconds=16.0, seed=0, fps=5.0)
    recon_cmds.reconstruct(ws, None, frames=30)
    recon_cmds.align(ws, None)
    grounding_cmds.train(ws)
    return ws


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("ws", nargs="?", type=Path)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("howto3d").setLevel(logging.ERROR)
    if args.ws is None and not args.quick:
        ap.error("give a workspace (or --quick to build a small one)")
    ws = Workspace.open(args.ws) if args.ws else build(Path(tempfile.mkdtemp()) / "ws")
    default = ws.config.clip_features.kinds
    runs = (
        [(["bovw", "color"], StepsConfig(grounded_weight=0.0)), (default, StepsConfig())]
        if args.quick
        else [
            (k, StepsConfig(grounded_weight=g, actionness_weight=a))
            for k in COMBOS
            for g in (0.5, 0.75)
            for a in (0.0, 0.2)
        ]
    )
    for scene in ws.scenes():
        for kinds, conf in runs:
            tc.steps(ws, scene, feature_kinds=kinds, conf=conf)  # actionness of the same features comes with it
            r = tc.eval_steps(ws, scene)["scenes"][scene]
            cells = "  ".join(f"{m} {x['recall']:.2f}/{x['frame_f1']:.2f}" for m, x in r["methods"].items())
            print(
                f"{scene} {'+'.join(kinds):<26} grounded {conf.grounded_weight:.2f} act {conf.actionness_weight:.1f}"
                f"  recall/F1: {cells}  actionness AP {r['actionness']['ap']:.2f} "
                f"(chance {r['actionness']['chance']:.2f})",
                flush=True,
            )
    run.timelines(ws)  # leave the workspace with its own settings' results


if __name__ == "__main__":
    main()
