"""Narration groundedness (003) on reconstructed synthetic workspaces: does it tell step lines from the others?

    python benchmarks/groundedness.py WS [WS ...] [--seeds 0,1]

For every scene of every workspace (synthetic worlds: ``ground_truth.json`` labels each narration line
``step``, ``mention`` — a part named while the camera is elsewhere — or ``filler``), the clip features are
computed once (``howto3d actionness`` would compute the same), and the groundedness of every line is scored with
each ``GroundednessConfig.against`` (``same_time``: the other videos' windows at the same relative time;
``own_video``: 003's segment-level AUC) and with the shuffled control. Printed per scene and pooled: AUC of
the score for step lines against the others (0.5 = no separation), mean score per kind, mean intra-video AUC.
Seeds vary the folds and the model's initialisation (same seed, same scores).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

# Run as a script, this file's folder leads sys.path and its name would shadow packages.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402
from sklearn.metrics import roc_auc_score  # noqa: E402

from howto3d.discover_cmds import _encoder  # noqa: E402
from howto3d.temporal_cmds import features_of, narration_lines  # noqa: E402
from howto3d.workspace import Workspace  # noqa: E402
from recon.io import read_json  # noqa: E402
from temporal.groundedness import GroundednessConfig, groundedness  # noqa: E402

VARIANTS = {
    "same_time (default)": GroundednessConfig(),
    "own_video (003 segment AUC)": GroundednessConfig(against="own_video"),
    "same_time, shuffled control": GroundednessConfig(shuffle=True),
}


def scene_data(ws: Workspace, scene: str):
    """Features, lines, the encoder and the GT kind of every line of one scene."""
    lines = narration_lines(ws, scene)
    gt = read_json(ws.ground_truth_path(scene))["videos"]
    kinds = {v: [n["kind"] for n in gt[v]["narrations"]] for v in lines if lines[v] and v in gt}
    for v, k in kinds.items():
        assert len(k) == len(lines[v]), f"{scene}/{v}: subtitles and ground truth differ"
    return features_of(ws, scene), {v: lines[v] for v in kinds}, kinds


def main(workspaces: list[Path], seeds: list[int]) -> None:
    torch.set_num_threads(1)
    console = Console()
    pooled: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {k: [] for k in VARIANTS}
    table = Table("world / scene", "lines (step/mention/filler)", *VARIANTS, title="AUC step lines vs the others "
                  "(mean over seeds); mean groundedness step | mention | filler")
    for root in workspaces:
        ws = Workspace.open(root)
        embed = _encoder(ws)
        for scene in ws.scenes():
            feats, lines, kinds = scene_data(ws, scene)
            k = np.concatenate([kinds[v] for v in sorted(kinds)])
            y = k == "step"
            cells = []
            for name, conf in VARIANTS.items():
                aucs, means = [], []
                for seed in seeds:
                    res = groundedness(feats, lines, embed, replace(conf, seed=seed))
                    s = np.concatenate([res[v].lines for v in sorted(kinds)])
                    pooled[name].append((y, s))
                    aucs.append(roc_auc_score(y, s) if 0 < y.sum() < len(y) else np.nan)
                    means.append([s[k == kind].mean() if (k == kind).any() else np.nan
                                  for kind in ("step", "mention", "filler")])
                m = np.nanmean(means, 0)
                cells.append(f"{np.mean(aucs):.2f}  ({m[0]:.2f} | {m[1]:.2f} | {m[2]:.2f})")
            counts = "/".join(str(int((k == kind).sum())) for kind in ("step", "mention", "filler"))
            table.add_row(f"{root.name} / {scene}", counts, *cells)
    pool = [roc_auc_score(np.concatenate([y for y, _ in p]), np.concatenate([s for _, s in p]))
            for p in pooled.values()]
    table.add_row("pooled", "", *(f"{a:.2f}" for a in pool))
    console.print(table)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workspaces", nargs="+", type=Path, help="reconstructed + aligned synthetic workspaces")
    ap.add_argument("--seeds", default="0,1", help="comma-separated seeds")
    a = ap.parse_args()
    main(a.workspaces, [int(s) for s in a.seeds.split(",")])
