"""Workspace-level grounding commands (``train``, ``query``, ``eval-grounding`` on synthetic worlds or on the
user's own part positions and queries).

The grounding package works on in-memory scenes and a model folder; this module finds them in the workspace
(shared scenes and narrations through ``howto3d.scenes``, the model under ``WS/grounding``) and trains through
``Workspace.run_step``, so an unchanged workspace is not trained again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, NotRequired, TypedDict

from grounding import evaluate as geval
from grounding import query as gquery
from grounding.config import GroundingConfig
from howto3d import scenes as wscenes
from howto3d.workspace import StepSpec, Workspace
from recon.io import InputError, ProgressFn, read_json

# Training, evaluation and the synthetic query sets (pycolmap, scipy, Open3D) are imported by the functions that
# use them: a cold `howto3d query` imports this module and must not pay for them (tests/cli/test_startup.py).
if TYPE_CHECKING:
    import numpy as np
    import pycolmap

    from grounding.narration import Narration
    from recon.scene import SharedScene
    from recon.transfer import Localize

log = logging.getLogger("howto3d")

LineWeights = dict[str, dict[str, list[float]]]
"""Per scene and video, a weight per narration line (``grounding.min_groundedness``); ``None``: every line 1."""


class WorldScore(TypedDict):
    """One workspace's PCK in a pooled ``eval-grounding`` report (``per_world``)."""

    workspace: str
    pck_at: float
    chance_at: float
    pck_fine: float
    chance_fine: float


class SyntheticGroundingReport(geval.GroundingReport):
    """``eval-grounding --json`` on synthetic worlds: the stage's report, with the parts no video films
    (per scene; per workspace, then per scene, when pooled), the workspace and the query set."""

    not_filmed: NotRequired[dict[str, list[str]] | dict[str, dict[str, list[str]]]]
    workspace: NotRequired[str]
    query_set: NotRequired[str]
    per_world: NotRequired[list[WorldScore]]


class UserGroundingReport(geval.GroundingReport):
    """``eval-grounding --parts --json``: the stage's report on the user's scene, parts and queries."""

    scene: str
    units: str
    distance_unit: str
    """"m", or "scene_size" (distances in units of the scene's robust size)."""
    scene_size: float
    parts_file: str
    queries_file: str


class EvalInputs(TypedDict):
    """What :func:`grounding.evaluate.evaluate` is given for a synthetic workspace (:func:`eval_inputs`)."""

    queries: list[tuple[str, str, str]]
    gt_points: dict[str, dict[str, list[float]]]
    chance: dict[str, np.ndarray]
    to_metric: dict[str, Callable[[np.ndarray], np.ndarray]]
    not_filmed: dict[str, list[str]]


def trainable_scenes(ws: Workspace) -> list[str]:
    """Scenes with a shared frame (the others are logged and skipped)."""
    out = []
    for s in ws.select_scenes(None):
        try:
            wscenes.shared_from_segment(ws, s)
        except InputError as e:
            log.warning("scene %s skipped: %s", s, e)
            continue
        out.append(s)
    if not out:
        raise InputError(
            f"{ws.root}: no scene is reconstructed and aligned yet; run `howto3d reconstruct` and `howto3d align` first"
        )
    return out


def train_step(
    ws: Workspace, names: list[str], conf: GroundingConfig | None = None, line_weights: LineWeights | None = None
) -> StepSpec:
    """Training on these scenes: their models, shared frames and subtitles, with the workspace's settings unless
    given. Shared with ``howto3d check``."""
    inputs: dict[str, Path | str | None] = {}
    for s in names:
        inputs |= {f"models/{s}/{v}": fp for v, fp in wscenes.model_fingerprints(ws, s).items()}
        inputs |= {f"align/{s}": ws.align_dir(s) / "transforms.json", **wscenes.subtitle_inputs(ws, s)}
    return StepSpec("train", "grounding", inputs, [asdict(conf or ws.config.grounding), names, line_weights])


def train(
    ws: Workspace,
    epochs: int | None = None,
    progress: ProgressFn | None = None,
    *,
    line_weights: LineWeights | None = None,
    force: bool = False,
) -> dict:
    """Train the shared grounding model on every scene that has a shared frame; skipped when no scene's geometry,
    narration or setting changed since the last training."""
    from grounding import train as gtrain

    conf = ws.config.grounding
    if epochs is not None:
        conf = replace(conf, epochs=epochs)
    names = trainable_scenes(ws)

    def fit() -> dict:
        shared = {s: wscenes.shared_scene(ws, s) for s in names}
        narrations = {s: wscenes.narrations(ws, s) for s in names}
        frames = {s: wscenes.frame_state(ws, s) for s in names}  # what later commands check for staleness
        return gtrain.main(
            conf, shared, narrations, ws.grounding_dir, progress, line_weights=line_weights, frames=frames
        )

    return ws.run_step(
        *train_step(ws, names, conf, line_weights), fit, load=lambda: gtrain.load_summary(ws.grounding_dir), force=force
    )


def query(
    ws: Workspace, scene: str, texts: list[str], heatmap_ply: Path | None = None, with_moments: bool = False
) -> list[gquery.Answer]:
    """Ground each text in ``scene``; with ``heatmap_ply`` the (first) query's heatmap is written there too, and
    ``with_moments`` gives each answer its ``moments`` (:func:`add_moments`: loads the scene's cameras, which a
    plain query does not pay for).
    Refused when the scene's shared frame moved since training (:class:`howto3d.scenes.StaleFrameError`)."""
    grounder = wscenes.grounder(ws, scene)
    results = grounder.query(scene, texts)
    if with_moments and (shared := wscenes.shared_or_none(ws, scene, "answers come without video moments")):
        add_moments(shared, wscenes.narrations(ws, scene), results)
    if heatmap_ply is not None and texts:
        centers, scores, _ = grounder.heatmap(scene, texts[0])
        gquery.write_heatmap_ply(heatmap_ply, centers, scores)
    return results


def add_moments(shared: SharedScene, narrations: dict[str, list[Narration]], results: list[gquery.Answer]) -> None:
    """Give each answer its ``moments``: the video clips that show its point, preferring those said while a line
    that voted for it (and supports it) was spoken (:func:`grounding.moments.moments`)."""
    import numpy as np

    from grounding.moments import moments

    for r in results:
        voters = [e for e in r.get("evidence", []) if e.get("supports", 0) >= 0.5]
        r["moments"] = moments(shared, np.asarray(r["point"]), narrations, voters)


QUERY_SETS = ("paraphrase", "heldout")


def query_set(name: str) -> Mapping[str, Sequence[str]]:
    """The evaluation queries: 'paraphrase' (questions and descriptions worded unlike any narration, the
    default) or 'heldout' (wikiHow-style instructions, closer to the narration)."""
    from synth.queries import PARAPHRASE_QUERIES

    if name not in QUERY_SETS:
        raise InputError(f"unknown query set {name!r}: use one of {', '.join(QUERY_SETS)}")
    return PARAPHRASE_QUERIES if name == "paraphrase" else geval.HELDOUT_QUERIES


def eval_inputs(ws: Workspace, scenes: list[str], queries: Mapping[str, Sequence[str]]) -> EvalInputs:
    """Per evaluable scene: queries of its filmed parts, true part positions (m), chance points (m) and the map
    from the shared frame to metres. Scenes without ground truth or a usable alignment are logged and skipped."""
    from howto3d.evaluation import world_from_shared

    parts: dict[str, list[str]] = {}
    gt_points: dict[str, dict[str, list[float]]] = {}
    chance: dict[str, np.ndarray] = {}
    to_metric: dict[str, Callable[[np.ndarray], np.ndarray]] = {}
    not_filmed: dict[str, list[str]] = {}
    for scene in scenes:
        path = ws.ground_truth_path(scene)
        if not path.exists():
            log.warning("scene %s: no %s (only synthetic worlds have one): not evaluated", scene, path.name)
            continue
        gt = read_json(path)
        shared = wscenes.shared_scene(ws, scene)
        sim = world_from_shared(ws, scene, shared)
        if sim is None:
            log.warning("scene %s: too few registered frames match the ground truth: not evaluated", scene)
            continue
        filmed = sorted({st["part"] for v in gt["videos"].values() for st in v["steps"]} & set(queries))
        parts[scene] = filmed
        not_filmed[scene] = sorted(set(gt["parts"]) & set(queries) - set(filmed))
        gt_points[scene] = gt["parts"]
        chance[scene] = sim * shared.points
        to_metric[scene] = _metric(sim)
    if not parts:
        raise InputError(
            f"{ws.root}: no trained scene has a ground_truth.json; eval-grounding needs a synthetic "
            "world (`howto3d synth`)"
        )
    return {
        "queries": geval.queries_for(parts, queries),
        "gt_points": gt_points,
        "chance": chance,
        "to_metric": to_metric,
        "not_filmed": not_filmed,
    }


def _metric(sim: pycolmap.Sim3d) -> Callable[[np.ndarray], np.ndarray]:
    """Shared-frame points to metres by the fitted ``sim``."""
    return lambda p: sim * p


def eval_grounding(
    ws: Workspace | list[Workspace], out_png: Path | None = None, queries: str = "paraphrase"
) -> SyntheticGroundingReport:
    """Queries vs ``ground_truth.json`` part positions, in metres (synthetic worlds only), pooled over worlds.

    Only parts that some video of the scene works on are queried (a part never filmed cannot be learned);
    the others are listed under ``not_filmed``. With several workspaces each is scored by its own model and the
    report pools them (``worlds`` holds each one's PCK@10/@30).
    """
    workspaces = ws if isinstance(ws, list) else [ws]
    qset = query_set(queries)
    reports: list[SyntheticGroundingReport] = []
    not_filmed: dict[str, dict[str, list[str]]] = {}
    for w in workspaces:
        grounder = wscenes.grounder(w)
        inputs = eval_inputs(w, grounder.scenes, qset)
        r = geval.evaluate(grounder, inputs["queries"], inputs["gt_points"], inputs["chance"], inputs["to_metric"])
        reports.append({**r, "not_filmed": inputs["not_filmed"], "workspace": str(w.root)})
        not_filmed[str(w.root)] = inputs["not_filmed"]
    report: SyntheticGroundingReport = {
        **(reports[0] if len(reports) == 1 else geval.combine(reports)),
        "query_set": queries,
    }
    if len(reports) > 1:
        report["not_filmed"] = not_filmed
        report["per_world"] = [
            WorldScore(
                workspace=str(w.root),
                pck_at=r["pck_at"],
                chance_at=r["chance_at"],
                pck_fine=r["pck_fine"],
                chance_fine=r["chance_fine"],
            )
            for w, r in zip(workspaces, reports, strict=True)
        ]
    if out_png is not None:
        geval.plot_pck(report, out_png)
    return report


def eval_user_grounding(
    ws: Workspace,
    scene: str,
    parts_path: Path,
    queries_path: Path,
    out_png: Path | None = None,
    metres_per_unit: float | None = None,
    localize_for: Callable[[str], Localize | None] | None = None,
) -> UserGroundingReport:
    """Grounding measured on the user's own scene: their queries ``{part: [texts]}`` against their part positions
    (points in the shared frame, or clicks triangulated like ``transfer``), as ``grounding.evaluate`` scores the
    synthetic worlds, chance included (a random point of the scene).

    Distances are in metres when the frame is metric (``howto3d scale``; or ``metres_per_unit`` given), else in
    units of the scene's robust size (median distance of its points to their median): thresholds 0.01–1 of it.
    ``localize_for(video)`` poses clicked frames SfM did not register (``viewer_cmds.frame_localizers``).
    """
    from howto3d import evaluation

    grounder = wscenes.grounder(ws, scene)
    shared = wscenes.shared_scene(ws, scene)
    units = wscenes.frame_state(ws, scene)["units"]
    parts = evaluation.user_parts(shared, parts_path, localize_for)
    queries = evaluation.user_queries(queries_path, parts)
    metric = units == "metres" or metres_per_unit is not None
    factor = (metres_per_unit or 1.0) if metric else 1.0 / evaluation.robust_size(shared.points)
    found = geval.evaluate(
        grounder,
        geval.queries_for({scene: sorted(queries)}, queries),
        {scene: {p: x * factor for p, x in parts.items()}},
        {scene: shared.points * factor},
        {scene: lambda p: p * factor},
    )
    report: UserGroundingReport = {
        **found,
        "scene": scene,
        "units": "metres" if metric else "model",
        "distance_unit": "m" if metric else "scene_size",
        "scene_size": round(evaluation.robust_size(shared.points) * (factor if metric else 1.0), 6),
        "parts_file": str(parts_path),
        "queries_file": str(queries_path),
    }
    if out_png is not None:
        geval.plot_pck(report, out_png)
    return report
