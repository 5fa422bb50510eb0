"""Narration groundedness (003): a clip–caption model finds the lines that are about what the camera shows."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.metrics import roc_auc_score

from howto3d import run, temporal_cmds
from howto3d.groundedness_cmds import sentence_encoder
from recon.io import read_json
from temporal.groundedness import GroundednessConfig, auc, groundedness, window_features
from temporal.procedure import step_names

PARTS = ["dipstick", "battery", "filter", "coolant", "spark"]
FILLER = [
    "welcome back to the channel",
    "thanks for watching",
    "like and subscribe",
    "this is an easy job",
    "you need no special tools",
    "see you in the next video",
]


def planted_scene(seed: int = 0, videos: int = 6, T: int = 80):
    """Clips show one part at a time (a planted direction + noise); step lines name the part on screen,
    filler lines are spoken at random times about nothing on screen."""
    rng = np.random.default_rng(seed)
    dirs = rng.normal(size=(len(PARTS), 24))
    feats, lines, kinds = {}, {}, {}
    for v in range(videos):
        order = rng.permutation(len(PARTS))
        bounds = np.linspace(0, T, len(PARTS) + 1).astype(int)
        X = rng.normal(scale=0.7, size=(T, 24))
        ls, ks = [], []
        for p, a, b in zip(order, bounds[:-1], bounds[1:], strict=True):
            X[a:b] += dirs[p]
            s = float(rng.uniform(a + 2, b - 6))
            ls.append((f"now take the {PARTS[p]} out", s, s + 3.0))
            ks.append(True)
        for _ in range(3):
            s = float(rng.uniform(0, T - 3))
            ls.append((FILLER[int(rng.integers(len(FILLER)))], s, s + 3.0))
            ks.append(False)
        feats[f"v{v}"], lines[f"v{v}"], kinds[f"v{v}"] = X.astype(np.float32), ls, ks
    return feats, lines, kinds


def embed_factory(lines):
    vec = CountVectorizer().fit([t for ls in lines.values() for t, _, _ in ls])
    return lambda texts: vec.transform(list(texts)).toarray().astype(np.float32)


def test_auc_ties_and_windows():
    assert auc(1.0, np.array([0.0, 1.0, 2.0])) == pytest.approx(0.5)
    assert auc(1.0, np.array([])) == 0.5
    X = np.arange(10, dtype=np.float32)[:, None]
    assert window_features(X, np.array([0.2, 5.0, 9.9]), 4.0)[:, 0].tolist() == [2.0, 6.0, 9.0]  # clips 0-2, 3-6, 8-9


def test_step_lines_score_higher_than_filler_and_shuffled_model_is_chance():
    feats, lines, kinds = planted_scene()
    embed = embed_factory(lines)
    res = groundedness(feats, lines, embed, GroundednessConfig(epochs=80))
    y = np.concatenate([kinds[v] for v in sorted(res)])
    s = np.concatenate([res[v].lines for v in sorted(res)])
    # Step vs filler AUC, measured on planted seeds 0/1/2: 0.86/0.74/0.79 trained, 0.63/0.33/0.47 shuffled; the
    # bound sits between (seed 0) with a 0.1 margin each way, so a model that learns nothing fails it.
    bound = 0.75
    assert roc_auc_score(y, s) > bound, (s[y].mean(), s[~y].mean())
    assert np.mean([r.auc for r in res.values()]) > 0.65
    again = groundedness(feats, lines, embed, GroundednessConfig(epochs=80))
    assert [r.lines for r in again.values()] == [r.lines for r in res.values()]  # same seed, same scores
    shuffled = groundedness(feats, lines, embed, GroundednessConfig(epochs=80, shuffle=True))
    assert abs(np.mean([r.auc for r in shuffled.values()]) - 0.5) < 0.12
    assert roc_auc_score(y, np.concatenate([shuffled[v].lines for v in sorted(res)])) < bound
    # the non-parametric text-neighbour score (no training) separates them too, and its control does not
    near = groundedness(feats, lines, embed, GroundednessConfig(method="neighbours"))
    assert roc_auc_score(y, np.concatenate([near[v].lines for v in sorted(res)])) > bound
    near = groundedness(feats, lines, embed, GroundednessConfig(method="neighbours", shuffle=True))
    assert roc_auc_score(y, np.concatenate([near[v].lines for v in sorted(res)])) < bound


@pytest.mark.slow
def test_workspace_groundedness_and_discovered_steps(pipeline_ws, cli):
    ws, scene = pipeline_ws
    res = cli("groundedness", str(ws.root), "--scene", scene, "--json")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["scene"] == scene and "intruder" not in report["videos"]  # no subtitles, nothing to score
    gt = read_json(ws.ground_truth_path(scene))["videos"]
    for v, r in report["videos"].items():
        assert 0 <= r["auc"] <= 1
        assert len(r["lines"]) == len(gt[v]["narrations"])
        assert all(
            set(ln) == {"start", "end", "text", "groundedness", "segment_auc"} and 0 <= ln["groundedness"] <= 1
            for ln in r["lines"]
        )

    # Step lines (about the part on screen) against the others (here: one intro per video). Every video opens on
    # a similar view, so 003's within-video segment AUC tends to rank the intros first (measured on one build of
    # this world, seeds 0/1/2: step-vs-other AUC 0.37/0.16/0.35; 0.60 on another build, seed 0); ranked against
    # what the other videos show at the same moment (the default) they lose that edge (0.80/0.70/0.38; > 0.65 on
    # the other build). Four intros make the AUC coarse and seed- and build-dependent, so the bound is only
    # "steps rank above intros" (a score that prefers intros, as 003's does here, fails it).
    videos = sorted(report["videos"])
    is_step = np.array([n["kind"] == "step" for v in videos for n in gt[v]["narrations"]])
    score = np.array([ln["groundedness"] for v in videos for ln in report["videos"][v]["lines"]])
    assert 0 < is_step.sum() < len(is_step)
    assert roc_auc_score(is_step, score) > 0.5, (score[is_step].mean(), score[~is_step].mean())
    feats, lines = temporal_cmds.features_of(ws, scene), temporal_cmds.narration_lines(ws, scene)
    embed = sentence_encoder(ws)
    own = groundedness(feats, lines, embed, GroundednessConfig(against="own_video"))
    own_score = np.concatenate([own[v].lines for v in videos])
    assert [ln["segment_auc"] for v in videos for ln in report["videos"][v]["lines"]] == pytest.approx(
        own_score, abs=0.01
    )  # the report keeps 003's score too (same seed, same model)
    # control: trained on lines paired with random windows of their video, the model localizes nothing
    shuffled = groundedness(feats, lines, embed, GroundednessConfig(shuffle=True))
    assert abs(np.mean([r.auc for r in shuffled.values()]) - 0.5) < 0.12
    assert abs(np.mean(np.concatenate([r.lines for r in shuffled.values()])) - 0.5) < 0.1

    # a scene without a task file: `run`'s temporal stage discovers named key steps instead of skipping
    task_file = ws.scene_dir(scene) / "tasks.json"
    hidden = task_file.with_name("tasks.json.hidden")
    steps_dir = ws.temporal_dir(scene) / "steps"
    before = {p.name: p.read_bytes() for p in steps_dir.glob("*.json")}
    task_file.rename(hidden)
    try:
        done = run.timelines(ws)
        assert temporal_cmds.load_steps(ws, scene)["video_00"]["steps"] == done[scene]["video_00"]["steps"]
    finally:
        hidden.rename(task_file)
        for p in steps_dir.glob("*.json"):  # leave the shared fixture's saved steps as they were
            p.unlink()
        for name, data in before.items():
            (steps_dir / name).write_bytes(data)
    steps = done[scene]
    assert {f"video_0{i}" for i in range(4)} <= set(steps)
    for r in steps.values():
        assert r["task_source"] == "discovered" and r["tasks"] == [scene]
        assert len(r["methods"]["discovered"]["labels"]) == r["clips"]
        assert all(st["step"] and 0 <= st["start"] < st["end"] <= r["clips"] for st in r["steps"])
    assert sum(len(r["steps"]) for r in steps.values()) >= 4  # measured: 1-3 named key steps per video
    names = step_names(
        [("remove the dipstick", 0, 3), ("now wipe the dipstick clean", 4, 6), ("open the oil filler cap", 10, 12)],
        {1: [(0, 7)], 2: [(9, 13)], 3: []},
    )
    assert names[1].split()[0] == "dipstick" and "cap" in names[2] and names[3] == "key step 3"
