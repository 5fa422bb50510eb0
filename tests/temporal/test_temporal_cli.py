"""CLI smoke tests: synth -> stats -> train -> localize -> evaluate, dp, and readable errors."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from howto3d.cli_temporal import app

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("ct")
    res = run("synth", root, "--primary", 2, "--related", 1, "--unseen", 1, "--train-videos", 4,
              "--test-videos", 3, "--related-videos", 3, "--json")
    assert res.exit_code == 0, res.output
    return root


def test_pipeline(folder):
    res = run("stats", folder, "--json")
    assert res.exit_code == 0, res.output
    stats = json.loads(res.output)["tasks"]
    assert len(stats) == 3 and all(0 < s["background"] < 1 for s in stats)
    res = run("train", folder, "--out", folder / "model", "--pretrain-epochs", 2, "--epochs", 2, "--json")
    assert res.exit_code == 0, res.output
    assert (folder / "model" / "model.safetensors").is_file()
    res = run("actionness", folder, "--out", folder / "act", "--epochs", 2, "--json")
    assert res.exit_code == 0, res.output
    assert all(set(v) == {"ours", "chance", "trim"} for v in json.loads(res.output)["ap"].values())
    pred = folder / "pred.json"
    res = run("localize", folder, "--model", folder / "model", "--actionness", folder / "act", "--out", pred, "--json")
    assert res.exit_code == 0, res.output
    assert sum(json.loads(res.output)["videos"].values()) == 9  # unseen task included
    res = run("evaluate", folder, pred, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert len(out["recall"]) == 3 and 0 <= out["mean_recall"] <= 1


def test_dp_command(tmp_path):
    S = np.array([[4.0, 0, 0], [0, 0, 5], [0, 2, 0], [0, 0, 1]])
    np.save(tmp_path / "s.npy", S)
    res = run("dp", tmp_path / "s.npy", "--json")
    assert res.exit_code == 0 and json.loads(res.output) == {"steps": [0, 2, 3]}
    res = run("dp", tmp_path / "s.npy", "--minimize", "--json")
    assert json.loads(res.output) == {"steps": [1, 2, 3]}
    res = run("dp", tmp_path / "s.npy", "--mode", "contiguous", "--json")
    labels = json.loads(res.output)["labels"]
    assert len(labels) == 4 and sorted(set(labels) - {0}) == [1, 2, 3]


def test_bad_input_is_one_readable_line(tmp_path, folder):
    np.save(tmp_path / "v.npy", np.zeros(4))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "tasks_primary.txt").write_text("1\nT\nu\nnot-a-number\na\n\n")
    (bad / "videos.csv").write_text("")
    for args in [("dp", tmp_path / "v.npy"), ("stats", tmp_path / "missing"), ("stats", bad),
                 ("evaluate", folder, tmp_path / "none.json")]:
        res = run(*args)
        assert res.exit_code == 2, res.output
        lines = [ln for ln in res.output.strip().splitlines() if ln.strip()]
        assert len(lines) == 1 and "error" in lines[0] and "Traceback" not in res.output
