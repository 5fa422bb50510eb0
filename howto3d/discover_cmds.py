"""Workspace glue for ``howto3d discover`` (step timelines without a task list, 004) and ``howto3d groundedness``
(how well each narration line is localized in its own video, 003).

Writes under ``WS/scenes/<scene>/temporal/``::

    steps/<video>.json        discovered key steps, ``"task_source": "discovered"`` (same shape as ``steps``)
    groundedness.json         {"scene", "videos": {video: {"auc", "lines": [{"start", "end", "text", "groundedness"}]}}}
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from sklearn.feature_extraction.text import TfidfVectorizer

from howto3d.progress import ProgressFn
from howto3d.workspace import Workspace
from recon.io import InputError, atomic_write_json, read_json
from temporal.groundedness import GroundednessConfig
from temporal.groundedness import groundedness as line_groundedness
from temporal.procedure import ProcedureConfig
from temporal.procedure import discover as train_discovery
from temporal.tasks import find_task_file, read_task_file

log = logging.getLogger("howto3d")


def _lines(ws: Workspace, scene: str) -> dict[str, list[tuple[str, float, float]]]:
    """The narration lines exactly as the grounding stage reads them (same loader, same order)."""
    from howto3d.grounding_cmds import _narrations

    return {v: [(n.text, n.start, n.end) for n in ns] for v, ns in _narrations(ws, scene).items()}


# ----------------------------------------------------------------------------- discover


def _video_tasks(ws: Workspace, scene: str, videos: Sequence[str]) -> dict[str, str]:
    """Each video's task: the task file's ``videos`` table when it has one, else one task for the whole scene."""
    path = find_task_file(ws.scene_dir(scene))
    table = read_task_file(path).videos if path is not None else {}
    return {v: "+".join(table[v]) if table.get(v) else scene for v in videos}


def step_names(lines: Sequence[tuple[str, float, float]], segments: dict[int, list[tuple[float, float]]],
               words: int = 3) -> dict[int, str]:
    """A readable name per key step: its most distinctive narration words.

    The lines overlapping a key step's segments form one document per key step; words are ranked by TF-IDF
    across the task's key steps (English stop words dropped), so words every step shares ("now", "oil") lose
    to the ones that single this step out. A key step with no narration is "key step N".
    """
    docs = {j: " ".join(t for t, s, e in lines if any(s < b and e > a for a, b in segs))
            for j, segs in segments.items()}
    names = {j: f"key step {j}" for j in segments}
    spoken = [j for j, d in docs.items() if d.strip()]
    if not spoken:
        return names
    try:
        tfidf = TfidfVectorizer(stop_words="english", token_pattern=r"(?u)\b[a-zA-Z][a-zA-Z]+\b")
        M = tfidf.fit_transform([docs[j] for j in spoken]).toarray()
    except ValueError:  # only stop words
        return names
    vocab = tfidf.get_feature_names_out()
    for row, j in zip(M, spoken, strict=True):
        top = [vocab[i] for i in np.argsort(-row, kind="stable")[:words] if row[i] > 0]
        if top:
            names[j] = " ".join(top)
    return names


def _runs(y: np.ndarray) -> list[tuple[int, int, int]]:
    """``(label, start, end)`` runs of non-zero labels."""
    change = np.flatnonzero(np.diff(y)) + 1
    starts, ends = np.r_[0, change], np.r_[change, len(y)]
    return [(int(y[s]), int(s), int(e)) for s, e in zip(starts, ends, strict=True) if y[s] != 0]


def discover(ws: Workspace, scene: str, k: int | None = None, progress: ProgressFn | None = None,
             conf: ProcedureConfig | None = None,
             features: dict[str, np.ndarray] | None = None) -> dict[str, dict]:
    """Named key-step timelines of every video of the scene from the videos (and task labels) alone."""
    from howto3d.temporal_cmds import clip_features

    feats = features if features is not None else clip_features(ws, scene, progress=progress)[0]
    names = sorted(feats)
    tasks = _video_tasks(ws, scene, names)
    conf = conf or ProcedureConfig(background="states")
    if k is not None:
        conf = ProcedureConfig(**{**conf.__dict__, "k": k})
    multi = len(set(tasks.values())) > 1
    conf = ProcedureConfig(**{**conf.__dict__, "multi_task": multi})
    torch.set_num_threads(1)
    model = train_discovery([(tasks[v], feats[v]) for v in names], conf, progress=progress)
    lines = _lines(ws, scene)
    labels = {v: model.labels(feats[v], tasks[v]) for v in names}
    folder = ws.temporal_dir(scene) / "steps"
    out = {}
    for task in sorted(set(tasks.values())):
        vids = [v for v in names if tasks[v] == task]
        runs = {v: _runs(labels[v]) for v in vids}
        named: dict[int, str] = {}
        # one document per key step over all of the task's videos, so names agree between videos
        task_lines = [(t, s + 1e6 * n, e + 1e6 * n) for n, v in enumerate(vids) for t, s, e in lines.get(v, [])]
        segs = {j: [(a + 1e6 * n, b + 1e6 * n) for n, v in enumerate(vids) for lab, a, b in runs[v] if lab == j]
                for j in range(1, conf.k + 1)}
        named = step_names(task_lines, segs)
        for v in vids:
            steps = []
            for j in range(1, conf.k + 1):
                mine = [(a, b) for lab, a, b in runs[v] if lab == j]
                if not mine:
                    continue
                a, b = max(mine, key=lambda r: r[1] - r[0])
                steps.append({"task": task, "step": named[j], "label": named[j], "key_step": j,
                              "clip": int((a + b - 1) // 2), "start": float(a), "end": float(b),
                              "segments": [[float(s), float(e)] for s, e in mine]})
            steps.sort(key=lambda st: st["start"])
            result = {"video": v, "scene": scene, "tasks": [task], "task_source": "discovered",
                      "clip_seconds": 1.0, "clips": len(labels[v]), "k": conf.k, "steps": steps,
                      "methods": {"discovered": {"labels": labels[v].tolist()}}}
            atomic_write_json(folder / f"{v}.json", result)
            out[v] = result
    log.info("%s: discovered %d key steps per task for %d videos (task %s)", scene, conf.k, len(names),
             "from the task file's videos table" if multi or find_task_file(ws.scene_dir(scene)) else "= the scene")
    return out


# ----------------------------------------------------------------------------- groundedness


def _encoder(ws: Workspace):
    """Frozen sentence embedding with the grounding encoder (mean-pooled BERT)."""
    from grounding.model import load_encoder, tokenize

    enc, tok = load_encoder(ws.config.grounding.encoder)
    enc.eval()

    @torch.no_grad()
    def embed(texts: Sequence[str]) -> np.ndarray:
        out = []
        for i in range(0, len(texts), 64):
            b = tokenize(tok, list(texts[i:i + 64]), ws.config.grounding.max_tokens)
            h = enc(**b).last_hidden_state
            m = b["attention_mask"][..., None].to(h.dtype)
            out.append(((h * m).sum(1) / m.sum(1).clamp(min=1)).numpy())
        return np.concatenate(out) if out else np.zeros((0, enc.config.hidden_size), np.float32)

    return embed


def groundedness(ws: Workspace, scene: str, progress: ProgressFn | None = None,
                 conf: GroundednessConfig | None = None,
                 features: dict[str, np.ndarray] | None = None) -> dict:
    """Groundedness of every narration line of the scene (segment-level AUC in its own video); saved and returned."""
    from howto3d.temporal_cmds import clip_features

    lines = _lines(ws, scene)
    if not any(lines.values()):
        raise InputError(f"{ws.scene_dir(scene) / 'videos'}: no video of scene {scene!r} has subtitles; add "
                         ".srt/.vtt/.json files next to the videos")
    feats = features if features is not None else clip_features(ws, scene, progress=progress)[0]
    torch.set_num_threads(1)
    res = line_groundedness(feats, lines, _encoder(ws), conf, progress)
    videos = {}
    for v in sorted(lines):
        r = res.get(v)
        if r is None:
            log.info("%s/%s: no groundedness (no subtitles or no clip features)", scene, v)
            continue
        videos[v] = {"auc": round(r.auc, 4),
                     "lines": [{"start": s, "end": e, "text": t, "groundedness": round(g, 4)}
                               for (t, s, e), g in zip(lines[v], r.lines, strict=True)]}
    report = {"scene": scene, "videos": videos}
    atomic_write_json(ws.temporal_dir(scene) / "groundedness.json", report)
    return report


def load_groundedness(ws: Workspace, scene: str) -> dict[str, list[float]] | None:
    """Saved per-line scores per video, or None when ``groundedness`` has not run for the scene."""
    path = ws.temporal_dir(scene) / "groundedness.json"
    if not path.exists():
        return None
    return {v: [ln["groundedness"] for ln in r["lines"]] for v, r in read_json(path)["videos"].items()}


def _scores_for(ws: Workspace, scene: str, narrations: dict[str, list], progress: ProgressFn | None
                ) -> dict[str, list[float]]:
    """Per-line groundedness of exactly these narration lines: the saved scores when they are of the same
    lines, else computed (and saved) now."""
    saved = ws.temporal_dir(scene) / "groundedness.json"
    if saved.exists():
        report = read_json(saved)["videos"]
        same = all(v in report and [(ln["text"], ln["start"], ln["end"]) for ln in report[v]["lines"]]
                   == [(n.text, n.start, n.end) for n in ns] for v, ns in narrations.items() if ns)
        if same:
            return {v: [ln["groundedness"] for ln in r["lines"]] for v, r in report.items()}
    report = groundedness(ws, scene, progress)["videos"]
    return {v: [ln["groundedness"] for ln in r["lines"]] for v, r in report.items()}


def groundedness_weights(ws: Workspace, scene: str, narrations: dict[str, list], threshold: float,
                         progress: ProgressFn | None = None) -> dict[str, list[float]]:
    """Line weights for the grounding pairs: 0 for lines below ``threshold`` (grounding.min_groundedness), else 1;
    videos without scores keep all their lines."""
    scores = _scores_for(ws, scene, narrations, progress)
    out = {v: [1.0 if g >= threshold else 0.0 for g in scores[v]] for v in narrations if v in scores}
    dropped = sum(w == 0 for ws_ in out.values() for w in ws_)
    log.info("%s: %d of %d narration lines below groundedness %.2f are left out of the grounding pairs", scene,
             dropped, sum(len(w) for w in out.values()), threshold)
    return out


def write_line_record(ws: Workspace, scene: str, narrations: dict[str, list], threshold: float) -> None:
    """``WS/grounding/scenes/<scene>/lines.json``: every line, its groundedness and whether training used it."""
    scores = _scores_for(ws, scene, narrations, None)
    atomic_write_json(ws.grounding_dir / "scenes" / scene / "lines.json", {
        "min_groundedness": threshold,
        "videos": {v: [{"start": n.start, "end": n.end, "text": n.text, "groundedness": g, "kept": g >= threshold}
                       for n, g in zip(ns, scores[v], strict=True)] for v, ns in narrations.items() if v in scores}})
