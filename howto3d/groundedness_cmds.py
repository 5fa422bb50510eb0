"""Workspace adapter of ``howto3d groundedness``: how well each narration line is localized in its own video ([003]).

The stage code is ``temporal.groundedness``; this module finds its inputs (clip features, subtitles, the grounding
encoder), runs it through :meth:`Workspace.run_step` and hands ``train`` the line weights. Writes (through the
stage's artefact type) ``WS/scenes/<scene>/temporal/groundedness.json``::

    {"scene", "videos": {video: {"auc", "lines": [{"start", "end", "text", "groundedness", "segment_auc"}]}}}

and ``WS/grounding/scenes/<scene>/lines.json`` (every line, its groundedness, whether training used it).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict

import numpy as np
import torch

from grounding.model_transformers import load_encoder, tokenize
from grounding.narration import Narration
from howto3d import scenes
from howto3d.temporal_cmds import arrays_fingerprint, features_of, narration_lines
from howto3d.workspace import StepSpec, Workspace
from recon.io import InputError, ProgressFn, atomic_write_json
from temporal.groundedness import GroundednessConfig, GroundednessJSON, GroundednessReport
from temporal.groundedness import groundedness as line_groundedness

log = logging.getLogger("howto3d")


def sentence_encoder(ws: Workspace):
    """Frozen sentence embedding with the grounding encoder (mean-pooled BERT)."""
    enc, tok = load_encoder(ws.config.grounding.encoder)
    enc.eval()

    @torch.no_grad()
    def embed(texts: Sequence[str]) -> np.ndarray:
        out = []
        for i in range(0, len(texts), 64):
            b = tokenize(tok, list(texts[i : i + 64]), ws.config.grounding.max_tokens)
            h = enc(**b).last_hidden_state
            m = b["attention_mask"][..., None].to(h.dtype)
            out.append(((h * m).sum(1) / m.sum(1).clamp(min=1)).numpy())
        return np.concatenate(out) if out else np.zeros((0, enc.config.hidden_size), np.float32)

    return embed


def groundedness_step(
    ws: Workspace, scene: str, features: Mapping[str, np.ndarray], conf: GroundednessConfig | None = None
) -> StepSpec:
    """Groundedness from these features, the subtitles and the encoder."""
    params = {
        "conf": asdict(conf or ws.config.groundedness),
        "encoder": ws.config.grounding.encoder,
        "max_tokens": ws.config.grounding.max_tokens,
    }
    return StepSpec(
        "groundedness", scene, {"features": arrays_fingerprint(features), **scenes.subtitle_inputs(ws, scene)}, params
    )


def groundedness(
    ws: Workspace,
    scene: str,
    progress: ProgressFn | None = None,
    conf: GroundednessConfig | None = None,
    features: dict[str, np.ndarray] | None = None,
) -> GroundednessJSON:
    """Groundedness of every narration line of the scene (segment-level AUC in its own video); saved and returned.

    Redone only when the features, the subtitles, the encoder or the settings change."""
    lines = narration_lines(ws, scene)
    if not any(lines.values()):
        raise InputError(
            f"{ws.scene_dir(scene) / 'videos'}: no video of scene {scene!r} has subtitles; add "
            ".srt/.vtt/.json files next to the videos"
        )
    feats = features if features is not None else features_of(ws, scene, progress=progress)
    conf = conf or ws.config.groundedness
    folder = ws.temporal_dir(scene)

    def compute() -> GroundednessJSON:
        torch.set_num_threads(1)
        res = line_groundedness(feats, lines, sentence_encoder(ws), conf, progress)
        for v in sorted(set(lines) - set(res)):
            log.info("%s/%s: no groundedness (no subtitles or no clip features)", scene, v)
        report = GroundednessReport.of(scene, lines, res)
        report.save(folder)
        return report.to_json()

    return ws.run_step(
        *groundedness_step(ws, scene, feats, conf), compute, load=lambda: GroundednessReport.load(folder).to_json()
    )


def _scores_for(
    ws: Workspace, scene: str, narrations: dict[str, list[Narration]], progress: ProgressFn | None
) -> dict[str, list[float]]:
    """Per-line groundedness of exactly these narration lines (computed now unless saved from the same inputs)."""
    scores = GroundednessReport(scene, groundedness(ws, scene, progress)["videos"]).scores()
    for v, ns in narrations.items():
        if v in scores and len(scores[v]) != len(ns):
            raise InputError(
                f"{ws.temporal_dir(scene) / 'groundedness.json'}: scores {len(scores[v])} lines of "
                f"{v}, its subtitles have {len(ns)}; delete the file and rerun"
            )
    return scores


def groundedness_weights(
    ws: Workspace,
    scene: str,
    narrations: dict[str, list[Narration]],
    threshold: float,
    progress: ProgressFn | None = None,
) -> dict[str, list[float]]:
    """Line weights for the grounding pairs: 0 for lines below ``threshold`` (grounding.min_groundedness), else 1;
    videos without scores keep all their lines."""
    out = line_weights(_scores_for(ws, scene, narrations, progress), narrations, threshold)
    dropped = sum(w == 0 for ws_ in out.values() for w in ws_)
    log.info(
        "%s: %d of %d narration lines below groundedness %.2f are left out of the grounding pairs",
        scene,
        dropped,
        sum(len(w) for w in out.values()),
        threshold,
    )
    return out


def line_weights(
    scores: Mapping[str, list[float]], narrations: Mapping[str, list[Narration]], threshold: float
) -> dict[str, list[float]]:
    """Per video with scores, 1 for each line at or above ``threshold``, else 0 (what training is given)."""
    return {v: [1.0 if g >= threshold else 0.0 for g in scores[v]] for v in narrations if v in scores}


def saved_line_weights(
    ws: Workspace, scene: str, narrations: dict[str, list[Narration]], threshold: float
) -> dict[str, list[float]]:
    """:func:`groundedness_weights` from the saved report, never computed (``howto3d check`` reads it when the
    groundedness step is current)."""
    return line_weights(GroundednessReport.load(ws.temporal_dir(scene)).scores(), narrations, threshold)


def write_line_record(ws: Workspace, scene: str, narrations: dict[str, list[Narration]], threshold: float) -> None:
    """``WS/grounding/scenes/<scene>/lines.json``: every line, its groundedness and whether training used it."""
    scores = _scores_for(ws, scene, narrations, None)
    atomic_write_json(
        ws.grounding_dir / "scenes" / scene / "lines.json",
        {
            "min_groundedness": threshold,
            "videos": {
                v: [
                    {"start": n.start, "end": n.end, "text": n.text, "groundedness": g, "kept": g >= threshold}
                    for n, g in zip(ns, scores[v], strict=True)
                ]
                for v, ns in narrations.items()
                if v in scores
            },
        },
    )
