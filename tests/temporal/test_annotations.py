"""Step evaluation on your own labels (``eval-steps --annotations``) and ``howto3d crosstask export``.

One workspace for the file: ``small_world``'s scene with step timelines from small settings (no reconstruction,
no grounding model: this is about the labels, not the quality of the timelines).
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from howto3d import temporal_cmds
from howto3d.workspace import Workspace
from temporal.tasks import TaskFile
from temporal.video_steps import StepsConfig


@pytest.fixture(scope="module")
def labelled(small_world, tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, str, dict]:
    """(workspace, scene, the synthetic ground truth's videos) with saved step timelines and actionness."""
    _, (scene_dir,) = small_world
    ws = Workspace.init(tmp_path_factory.mktemp("labelled") / "ws")
    shutil.copytree(scene_dir, ws.root / "scenes" / scene_dir.name)
    # colour features alone: the labels are compared with the same timelines either way, and SIFT words cost most
    temporal_cmds.steps(
        ws, scene_dir.name, feature_kinds=["color"], conf=StepsConfig(epochs=4, pretrain_epochs=2, order_epochs=3)
    )
    return ws, scene_dir.name, json.loads(ws.ground_truth_path(scene_dir.name).read_text())["videos"]


def write_labels(folder: Path, truth: dict, tf: TaskFile, crosstask: bool) -> None:
    """The synthetic ground truth as label files: ``<video>.csv`` with a header, step texts and a task column, or
    CrossTask's shape (1-based step numbers, no header) in one ``<video>.<task>.csv`` per task (empty: performed,
    nothing labelled)."""
    folder.mkdir(parents=True, exist_ok=True)
    for v, g in truth.items():
        if not crosstask:
            with open(folder / f"{v}.csv", "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["step", "start", "end", "task"])
                w.writerows([s["step"], s["start"], s["end"], s["task"]] for s in g["steps"])
            continue
        for t in g["tasks"]:
            with open(folder / f"{v}.{t}.csv", "w", newline="") as f:
                csv.writer(f).writerows(
                    [tf.tasks[t].steps.index(s["step"]) + 1, s["start"], s["end"]] for s in g["steps"] if s["task"] == t
                )


def _numbers(report: dict, scene: str) -> dict:
    """Everything the evaluation measured (per video without ``true_tasks``, which names the labels' tasks)."""
    r = report["scenes"][scene]
    return {
        "methods": r["methods"],
        "annotated": r["annotated"],
        "actionness": r["actionness"],
        "videos": {v: {k: x for k, x in e.items() if k != "true_tasks"} for v, e in r["videos"].items()},
    }


@pytest.mark.parametrize("crosstask", [False, True], ids=["text-header-task-column", "crosstask-numbers-per-task"])
def test_ground_truth_written_as_labels_reproduces_the_synthetic_evaluation(labelled, tmp_path, cli, crosstask):
    ws, scene, truth = labelled
    write_labels(tmp_path / "labels", truth, temporal_cmds.task_file(ws, scene), crosstask)
    synthetic = temporal_cmds.eval_steps(ws, scene)
    ours = temporal_cmds.eval_steps(ws, scene, tmp_path / "labels")
    assert synthetic["scenes"][scene]["annotated"] >= 4 and synthetic["scenes"][scene]["actionness"]
    assert _numbers(ours, scene) == _numbers(synthetic, scene)
    assert ours["skipped"] == synthetic["skipped"] == []
    for v, e in ours["scenes"][scene]["videos"].items():  # per-task files name even a task with no step labelled
        labelled_tasks = {s["task"] for s in truth[v]["steps"]}
        assert set(e["true_tasks"]) == (set(truth[v]["tasks"]) if crosstask else labelled_tasks)

    rc = cli("eval-steps", str(ws.root), "--scene", scene, "--annotations", str(tmp_path / "labels"), "--json")
    assert rc.returncode == 0, rc.stderr
    assert _numbers(json.loads(rc.stdout), scene) == _numbers(synthetic, scene)
    rc = cli("eval-steps", str(ws.root), "--scene", scene, "--annotations", str(tmp_path / "labels"))
    text = rc.stdout + rc.stderr  # the tables go to the console (stderr), --json to stdout
    assert rc.returncode == 0 and "actionness AP" in text and "uniform recall" in text, rc

    # the labels are what is scored: moving one step elsewhere changes the numbers
    v, step = next((v, s) for v, g in truth.items() for s in g["steps"])
    moved = {
        **truth,
        v: {**truth[v], "steps": [{**s, "start": 0.0, "end": 1.0} if s is step else s for s in truth[v]["steps"]]},
    }
    shutil.rmtree(tmp_path / "labels")
    write_labels(tmp_path / "labels", moved, temporal_cmds.task_file(ws, scene), crosstask)
    assert _numbers(temporal_cmds.eval_steps(ws, scene, tmp_path / "labels"), scene) != _numbers(synthetic, scene)


BAD = [
    ("1,2.0,3.0\n", ":1: step 1 is ambiguous"),  # six tasks and no 'videos' table: a number needs its task
    ("remove dipstick,5,3\n", ":1: end 3 is before start 5; swap them"),
    ("step,start,end\n\nremove dipstik,1,3\n", ":3: unknown step 'remove dipstik'"),
    ("remove dipstick,1,x\n", ":1: start '1' / end 'x' must be numbers"),
    ("remove dipstick,1,nan\n", ":1: start 1 / end nan must be finite"),
    ("remove dipstick,1\n", ":1: 2 columns"),
    ("9,1,2,check_oil\n", ":1: step 9: task check_oil has steps 1–5"),
    ("remove dipstick,1,2,fix_the_car\n", ":1: unknown task 'fix_the_car'"),
    ("remove dipstick;1;2\n", ":1: 1 columns"),
    ("begin,finish\n", ":1: 2 columns"),
    ("step,begin,end\n", ":1: header lacks column(s) start"),
]


def test_bad_label_files_are_one_line_naming_file_line_and_fix(labelled, tmp_path, cli):
    ws, scene, _ = labelled
    labels = tmp_path / "labels"
    labels.mkdir()
    args = ("eval-steps", str(ws.root), "--scene", scene, "--annotations", str(labels))
    cases = [(text.encode(), where) for text, where in BAD] + [(b"\xff\xfe\x00garbage", ": not a readable CSV")]
    for content, expected in cases:
        (labels / "video_00.csv").write_bytes(content)
        rc = cli(*args)
        assert rc.returncode == 2 and "Traceback" not in rc.stderr, (content, rc)
        assert len(rc.stderr.strip().splitlines()) == 1, rc.stderr
        assert f"{labels / 'video_00.csv'}{expected}" in " ".join(rc.stderr.split()), (content, rc.stderr)

    # a video without a file is skipped, and said so; so is a file that names no video (a typo)
    (labels / "video_00.csv").write_text("step,start,end\nremove dipstick,5.7,7\n")
    (labels / "vidoe_01.csv").write_text("1,2,3\n")
    rc = cli(*args, "--json")
    assert rc.returncode == 0, rc.stderr
    report = json.loads(rc.stdout)
    assert list(report["scenes"][scene]["videos"]) == ["video_00"]
    assert report["scenes"][scene]["annotated"] == 1
    assert any("video_01: no labels" in n for n in report["skipped"]), report["skipped"]
    assert any("vidoe_01.csv: names no video" in n for n in report["skipped"]), report["skipped"]
    rc = cli(*args)
    assert rc.returncode == 0 and f"skipped {scene}/video_01: no labels" in rc.stdout + rc.stderr, rc

    for name in ("video_00.csv", "vidoe_01.csv"):
        (labels / name).unlink()
    rc = cli(*args)
    assert rc.returncode == 2 and "no labels of any video" in rc.stderr and "Traceback" not in rc.stderr, rc
    rc = cli("eval-steps", str(ws.root), "--scene", scene, "--annotations", str(tmp_path / "missing"))
    assert rc.returncode == 2 and "not a folder" in rc.stderr, rc


def test_crosstask_export_is_read_by_crosstask_stats_and_round_trips(labelled, tmp_path, cli):
    ws, scene, truth = labelled
    tf = temporal_cmds.task_file(ws, scene)
    root = tmp_path / "ct"
    rc = cli("crosstask", "export", str(ws.root), "--scene", scene, "--out", str(root))
    assert rc.returncode == 0, rc.stderr
    assert "annotations from the synthetic ground truth" in " ".join((rc.stdout + rc.stderr).split()), rc

    rc = cli("crosstask", "stats", str(root), "--json")
    assert rc.returncode == 0, rc.stderr
    stats = {r["task_id"]: r for r in json.loads(rc.stdout)["tasks"]}
    assert list(stats) == list(tf.tasks)
    assert {t: r["steps"] for t, r in stats.items()} == {t: len(d.steps) for t, d in tf.tasks.items()}
    labelled = {t: sum(any(s["task"] == t for s in g["steps"]) for g in truth.values()) for t in tf.tasks}
    assert {t: r["videos"] for t, r in stats.items()} == labelled  # pairs with a step labelled (no 0/0 recall)
    assert sum(r["videos"] for r in stats.values()) >= len(truth) == 2
    rc = cli("crosstask", "stats", str(root))
    assert rc.returncode == 0 and "order" in rc.stdout + rc.stderr, rc

    # CrossTask's annotations/<task>_<video>.csv are labels too: the same numbers as the synthetic evaluation
    synthetic = temporal_cmds.eval_steps(ws, scene)
    assert _numbers(temporal_cmds.eval_steps(ws, scene, root / "annotations"), scene) == _numbers(synthetic, scene)

    # without ground truth the saved timelines are exported: the fused timeline then scores perfectly against them
    copy = Workspace(shutil.copytree(ws.root, tmp_path / "ws"))
    copy.ground_truth_path(scene).unlink()
    got = temporal_cmds.crosstask_export(copy, scene, tmp_path / "ct2")
    assert "saved step timelines" in got["labels"] and got["annotated"] >= 2, got
    fused = temporal_cmds.eval_steps(copy, scene, tmp_path / "ct2" / "annotations")["scenes"][scene]["methods"]
    assert fused["fused"] == {"recall": 1.0, "frame_f1": 1.0}, fused
    assert fused["uniform"]["frame_f1"] < 1.0
