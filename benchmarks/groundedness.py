"""Narration groundedness (003) on reconstructed synthetic workspaces: does it tell step lines from the others,
and does leaving the low ones out of the grounding pairs help grounding?

    python benchmarks/groundedness.py WS [WS ...] [--seeds 0,1] [--pck] [--thresholds 0.4,0.5,0.6]

For every scene of every workspace (synthetic worlds: ``ground_truth.json`` labels each narration line
``step``, ``mention`` — a part named while the camera does not show it — or ``filler``; ``howto3d synth --set
extra_talk=1`` makes about 40 % of the lines ungrounded), the clip features are computed once (``howto3d
actionness`` would compute the same), and every line is scored by each variant: the clip–caption model
(``method = "model"``) and the non-parametric text-neighbour score (``method = "neighbours"``), each ranked
against the other videos' windows at the same relative time (``same_time``) or against its own video's other
windows (``own_video``: 003's segment-level AUC), and shuffled controls. Printed per scene and pooled: AUC of the
score for step lines against the others (0.5 = no separation) and the mean score per kind. Seeds vary the folds
and the model's initialisation (same seed, same scores).

``--pck`` then retrains the grounding model of each workspace (it overwrites that workspace's ``grounding/``) with
every line (``min_groundedness = 0``), with the lines below each threshold of the default score left out, with
every line weighted ``floor + (1 − floor) · min(1, 2 · max(score − 0.5, 0))`` (down-weighting instead of
dropping), and with the ground-truth step lines only (the best any filter could do), and prints ``howto3d
eval-grounding``'s PCK@10/@30cm (paraphrase queries, pooled over the workspaces) per grounding seed and their mean.

Measured (README "Which narration is grounded"): ``howto3d synth W --seconds 20 --seed S --set extra_talk=1`` for
S = 0, 1 (2 scenes × 4 videos, ~40 % of the lines ungrounded), ``[frames] num_frames = 30, sampling =
"uniform"``, ``howto3d run W``, then ``python benchmarks/groundedness.py W0 W1 --pck``.
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

from howto3d import grounding_cmds, scenes  # noqa: E402
from howto3d.config import Config  # noqa: E402
from howto3d.groundedness_cmds import sentence_encoder  # noqa: E402
from howto3d.temporal_cmds import features_of, narration_lines  # noqa: E402
from howto3d.workspace import Workspace  # noqa: E402
from recon.io import read_json  # noqa: E402
from temporal.groundedness import GroundednessConfig, groundedness  # noqa: E402

VARIANTS = {
    "model, same_time (default)": GroundednessConfig(),
    "model, own_video (003)": GroundednessConfig(against="own_video"),
    "model, shuffled": GroundednessConfig(shuffle=True),
    "neighbours, same_time": GroundednessConfig(method="neighbours"),
    "neighbours, own_video": GroundednessConfig(method="neighbours", against="own_video"),
    "neighbours, shuffled": GroundednessConfig(method="neighbours", shuffle=True),
}
KINDS = ("step", "mention", "filler")


class _Seeded(Workspace):
    """A workspace whose grounding seed is overridden (the benchmark's, not the user's howto3d.toml)."""

    def __init__(self, root: Path, seed: int):
        super().__init__(root)
        self.seed = seed

    @property
    def config(self) -> Config:
        conf = super().config
        conf.grounding = replace(conf.grounding, seed=self.seed)
        return conf


def scene_data(ws: Workspace, scene: str):
    """Features, lines and the GT kind of every line of one scene."""
    lines = narration_lines(ws, scene)
    gt = read_json(ws.ground_truth_path(scene))["videos"]
    kinds = {v: [n["kind"] for n in gt[v]["narrations"]] for v in lines if lines[v] and v in gt}
    for v, k in kinds.items():
        assert len(k) == len(lines[v]), f"{scene}/{v}: subtitles and ground truth differ"
    return features_of(ws, scene), {v: lines[v] for v in kinds}, kinds


def separation(workspaces: list[Path], seeds: list[int], console: Console) -> dict:
    """Step-vs-other AUC of every variant; returns the default variant's scores per workspace, scene and video."""
    rows: dict[str, dict[str, list[float]]] = {k: {} for k in VARIANTS}
    pooled: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {k: [] for k in VARIANTS}
    counts: dict[str, str] = {}
    default_scores: dict = {}
    for root in workspaces:
        ws = Workspace.open(root)
        embed = sentence_encoder(ws)
        for scene in ws.scenes():
            feats, lines, kinds = scene_data(ws, scene)
            k = np.concatenate([kinds[v] for v in sorted(kinds)])
            y = k == "step"
            col = f"{root.name}/{scene}"
            counts[col] = "/".join(str(int((k == kind).sum())) for kind in KINDS)
            for name, conf in VARIANTS.items():
                for seed in seeds if conf.method == "model" or conf.shuffle else seeds[:1]:
                    res = groundedness(feats, lines, embed, replace(conf, seed=seed))
                    if name.endswith("(default)") and seed == seeds[0]:
                        default_scores.setdefault(str(root), {})[scene] = {v: r.lines for v, r in res.items()}
                    s = np.concatenate([res[v].lines for v in sorted(kinds)])
                    pooled[name].append((k, s))
                    rows[name].setdefault(col, []).append(roc_auc_score(y, s) if 0 < y.sum() < len(y) else np.nan)
    table = Table(
        "variant",
        *(f"{c}\n{n}" for c, n in counts.items()),
        "pooled",
        "mean step | mention | filler",
        title="AUC of the score, step lines vs the others (per scene: mean over seeds; lines "
        "step/mention/filler under each scene)",
    )
    for name in VARIANTS:
        k = np.concatenate([k for k, _ in pooled[name]])
        s = np.concatenate([s for _, s in pooled[name]])
        means = " | ".join(f"{s[k == kind].mean():.2f}" if (k == kind).any() else "-" for kind in KINDS)
        table.add_row(
            name, *(f"{np.nanmean(rows[name][c]):.2f}" for c in counts), f"{roc_auc_score(k == 'step', s):.2f}", means
        )
    console.print(table)
    return default_scores


def pck(
    workspaces: list[Path], scores: dict, thresholds: list[float], floor: float, seeds: list[int], console: Console
) -> None:
    """PCK@10/@30 of the grounding model trained with each line filter / weighting (mean over grounding seeds)."""

    def weights(root: Path, rule) -> dict:
        ws = Workspace.open(root)
        gt = {s: read_json(ws.ground_truth_path(s))["videos"] for s in ws.scenes()}
        out = {}
        for s in grounding_cmds.trainable_scenes(ws):
            nar = scenes.narrations(ws, s)
            out[s] = {
                v: [
                    float(rule(g, n["kind"]))
                    for g, n in zip(scores[str(root)][s][v], gt[s][v]["narrations"], strict=True)
                ]
                for v in nar
                if v in scores[str(root)][s]
            }
        return out

    rules = {"every line (min_groundedness 0)": None}
    rules |= {f"min_groundedness {t:g}": (lambda t: lambda g, _: g >= t)(t) for t in thresholds}  # noqa: B023
    rules[f"weighted {floor:g} + (1 − {floor:g})·min(1, 2·max(score − 0.5, 0))"] = lambda g, _: (
        floor + (1 - floor) * min(1.0, 2 * max(g - 0.5, 0.0))
    )
    rules["ground-truth step lines only (oracle)"] = lambda _, kind: kind == "step"
    table = Table(
        "training lines",
        "lines with weight > 0",
        "PCK@10cm",
        "PCK@30cm",
        title=f"grounding PCK (paraphrase queries, pooled over the workspaces; mean (each) over grounding "
        f"seeds {seeds})",
    )
    for name, rule in rules.items():
        lw = {str(r): weights(r, rule) for r in workspaces} if rule is not None else None
        kept = (
            "all"
            if lw is None
            else f"{np.mean([w > 0 for d in lw.values() for s in d.values() for ws_ in s.values() for w in ws_]):.0%}"
        )
        fine, at = [], []
        for seed in seeds:
            for root in workspaces:
                grounding_cmds.train(
                    _Seeded(root, seed), line_weights=None if lw is None else lw[str(root)], force=True
                )
            rep = grounding_cmds.eval_grounding([_Seeded(r, seed) for r in workspaces])
            fine.append(rep["pck_fine"])
            at.append(rep["pck_at"])
        table.add_row(
            name,
            kept,
            f"{np.mean(fine):.2f} ({', '.join(f'{x:.2f}' for x in fine)})",
            f"{np.mean(at):.2f} ({', '.join(f'{x:.2f}' for x in at)})",
        )
        console.print(f"  {name}: PCK@10 {fine}, PCK@30 {at}")
    console.print(table)


def main(
    workspaces: list[Path],
    seeds: list[int],
    with_pck: bool,
    thresholds: list[float],
    floor: float,
    train_seeds: list[int],
) -> None:
    torch.set_num_threads(1)
    console = Console(width=200)
    scores = separation(workspaces, seeds, console)
    if with_pck:
        pck(workspaces, scores, thresholds, floor, train_seeds, console)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("workspaces", nargs="+", type=Path, help="reconstructed + aligned synthetic workspaces")
    ap.add_argument("--seeds", default="0,1", help="comma-separated seeds of the groundedness model")
    ap.add_argument("--pck", action="store_true", help="also retrain grounding per filter (overwrites grounding/)")
    ap.add_argument("--thresholds", default="0.4,0.5,0.6", help="min_groundedness values to try")
    ap.add_argument("--floor", type=float, default=0.25, help="weight of a line scored 0.5 or below")
    ap.add_argument("--train-seeds", default="0,1", help="grounding seeds (each filter is trained with each)")
    a = ap.parse_args()
    main(
        a.workspaces,
        [int(s) for s in a.seeds.split(",")],
        a.pck,
        [float(t) for t in a.thresholds.split(",")],
        a.floor,
        [int(s) for s in a.train_seeds.split(",")],
    )
