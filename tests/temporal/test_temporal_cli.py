"""`howto3d crosstask` through the real console entry: synth -> stats -> train -> localize -> evaluate, dp,
and readable errors."""

import json

import numpy as np
import pytest

from temporal.synthetic_crosstask import SynthConfig, generate


@pytest.fixture
def run(cli):
    def crosstask(*args):
        return cli("crosstask", *map(str, args))

    return crosstask


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("ct")
    generate(SynthConfig(n_primary=2, n_related=1, n_unseen=1, train_videos=4, test_videos=3, related_videos=3)).write(
        root
    )
    return root


def test_synth_command(run, tmp_path):
    res = run(
        "synth",
        tmp_path / "ds",
        "--primary",
        2,
        "--related",
        1,
        "--unseen",
        1,
        "--train-videos",
        4,
        "--test-videos",
        3,
        "--related-videos",
        3,
        "--json",
    )
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert out["tasks"] == 4 and out["kinds"] == {"primary": 2, "related": 1, "unseen": 1}
    assert (tmp_path / "ds" / "videos.csv").is_file()


def test_pipeline(folder, run):
    res = run("stats", folder, "--json")
    assert res.returncode == 0, res.stderr
    stats = json.loads(res.stdout)["tasks"]
    assert len(stats) == 3 and all(0 < s["background"] < 1 for s in stats)
    res = run("train", folder, "--out", folder / "model", "--pretrain-epochs", 2, "--epochs", 2, "--json")
    assert res.returncode == 0, res.stderr
    assert (folder / "model" / "model.safetensors").is_file()
    res = run("actionness", folder, "--out", folder / "act", "--epochs", 2, "--json")
    assert res.returncode == 0, res.stderr
    assert all(set(v) == {"ours", "chance", "trim"} for v in json.loads(res.stdout)["ap"].values())
    pred = folder / "pred.json"
    res = run("localize", folder, "--model", folder / "model", "--actionness", folder / "act", "--out", pred, "--json")
    assert res.returncode == 0, res.stderr
    assert sum(json.loads(res.stdout)["videos"].values()) == 9  # unseen task included
    res = run("evaluate", folder, pred, "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert len(out["recall"]) == 3 and 0 <= out["mean_recall"] <= 1


def test_dp_command(tmp_path, run, cli):
    S = np.array([[4.0, 0, 0], [0, 0, 5], [0, 2, 0], [0, 0, 1]])
    np.save(tmp_path / "s.npy", S)
    res = run("dp", tmp_path / "s.npy", "--json")
    assert res.returncode == 0 and json.loads(res.stdout) == {"steps": [0, 2, 3]}
    res = run("dp", tmp_path / "s.npy", "--minimize", "--json")
    assert json.loads(res.stdout) == {"steps": [1, 2, 3]}
    res = run("dp", tmp_path / "s.npy", "--mode", "contiguous", "--json")
    labels = json.loads(res.stdout)["labels"]
    assert len(labels) == 4 and sorted(set(labels) - {0}) == [1, 2, 3]


def test_bad_input_is_one_readable_line(tmp_path, folder, run):
    np.save(tmp_path / "v.npy", np.zeros(4))
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "tasks_primary.txt").write_text("1\nT\nu\nnot-a-number\na\n\n")
    (bad / "videos.csv").write_text("")
    for args in [
        ("dp", tmp_path / "v.npy"),
        ("stats", tmp_path / "missing"),
        ("stats", bad),
        ("evaluate", folder, tmp_path / "none.json"),
    ]:
        res = run(*args)
        assert res.returncode == 2, res.stderr
        lines = [ln for ln in res.stderr.strip().splitlines() if ln.strip()]
        assert len(lines) == 1 and "error" in lines[0] and "Traceback" not in res.stderr, res.stderr
        assert str(args[-1]) in lines[0] or "tasks_primary.txt" in lines[0]  # names the file to fix
