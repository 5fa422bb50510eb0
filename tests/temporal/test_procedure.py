"""Key-step discovery without step lists (004): subset selection, Hungarian frame F1, the CLI contract."""

import json

import numpy as np
import pytest

from temporal.data import CrossTask
from temporal.procedure import (
    ProcedureConfig,
    discover,
    discover_crosstask,
    greedy_selection,
    hungarian_prf,
    subset_cost,
)
from temporal.synthetic_crosstask import SynthConfig, generate


def test_greedy_selection_recovers_planted_states():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(12, 8)) * 5
    planted = [2, 7, 9]
    decoys = [i for i in range(12) if i not in planted]
    centres[decoys, 0] += 20  # latent states no clip of this task is near (other tasks' steps)
    videos = []
    for _ in range(5):
        T = int(rng.integers(40, 80))
        X = centres[rng.choice(planted, T)] + rng.normal(scale=0.3, size=(T, 8))
        videos.append(X)
    assert sorted(greedy_selection(videos, centres, 3)) == planted
    costs = [subset_cost(videos, centres, greedy_selection(videos, centres, k)) for k in range(1, 9)]
    assert all(b <= a + 1e-12 for a, b in zip(costs, costs[1:], strict=False))
    assert costs[2] < 0.2 * costs[0]  # the planted three explain the data, one state does not


def test_hungarian_prf_hand_checked():
    # discovered 2 ↔ true 1 (2 frames), discovered 1 ↔ true 2 (2 of its 3 frames); predicted fg 5, true fg 4
    r = hungarian_prf([np.array([0, 1, 1, 2, 2, 0])], [np.array([1, 2, 2, 1, 1, 1])])
    assert r["mapping"] == [[1, 2], [2, 1]]
    assert r["precision"] == pytest.approx(4 / 6) and r["recall"] == pytest.approx(1.0)
    assert r["f1"] == pytest.approx(2 * (4 / 6) / (4 / 6 + 1))
    assert hungarian_prf([np.zeros(4, int)], [np.ones(4, int)])["f1"] == 0.0


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("ct_discover")
    generate(
        SynthConfig(n_primary=3, n_related=0, train_videos=8, test_videos=5, length_range=(60, 150), seed=1)
    ).write(root)
    return root


def test_discovery_beats_random_at_every_k(folder):
    data = CrossTask.load(folder)
    for k in (7, 10, 12, 15):  # measured F1 0.13-0.14 against Random 0.07-0.09
        _, report = discover_crosstask(data, ProcedureConfig(k=k, epochs=2), "test")
        assert report["videos"] == 15
        assert report["ours"]["f1"] > 1.3 * report["random"]["f1"], (k, report["ours"], report["random"])
        assert report["ours"]["recall"] > report["random"]["recall"]


def test_multi_task_classifies_and_background_states_label_background(folder):
    data = CrossTask.load(folder)
    videos = [(v.task_id, data.features(v.video_id)) for v in data.train]
    model = discover(videos, ProcedureConfig(k=7, multi_task=True, epochs=6, lam=2.0, background="states"))
    test = [(v.task_id, data.features(v.video_id)) for v in data.test]
    assert np.mean([model.classify(X) == t for t, X in test]) >= 0.5  # chance 1/3; measured 0.6
    y = np.concatenate([model.labels(X, t) for t, X in test])
    assert 0.2 < (y == 0).mean() < 0.95 and y.max() <= 7


def test_cli_contract_and_determinism(folder, tmp_path, cli):
    outs = []
    for n in range(2):
        pred = tmp_path / f"pred{n}.json"
        res = cli("crosstask", "discover", str(folder), "--k", "7", "--epochs", "2", "--out", str(pred), "--json")
        assert res.returncode == 0, res.stderr
        assert {"ours", "random"} <= set(json.loads(res.stdout))
        outs.append(json.loads(pred.read_text()))
    data = CrossTask.load(folder)
    assert set(outs[0]) == {v.video_id for v in data.test}
    assert all(len(y) == data.length(v) and min(y) >= 0 and max(y) <= 7 for v, y in outs[0].items())
    assert outs[0] == outs[1]
    res = cli("crosstask", "discover", str(folder / "missing"), "--out", str(tmp_path / "x.json"))
    assert res.returncode == 2 and "not found" in res.stderr and "Traceback" not in res.stderr
