"""CrossTask readers round-trip exactly; labels, statistics and error messages."""

import numpy as np
import pytest

from temporal.data import (
    CrossTask,
    DataError,
    dense_to_intervals,
    intervals_to_labels,
    labels_to_dense,
    order_consistency,
    read_features,
    read_intervals,
    read_tasks,
    read_videos,
    write_intervals,
    write_tasks,
    write_videos,
)

TASKS = (
    "16815\nChange a Tire\nhttp://www.wikihow.com/Change-a-Tire\n3\nbrake on,loosen nuts,raise jack\n\n"
    "23521\nMake Lemonade\nhttp://www.wikihow.com/Make-Lemonade\n2\ncut lemon,stir mixture\n\n"
)
VIDEOS = "16815,abcDEF_-123,https://www.youtube.com/watch?v=abcDEF_-123\n23521,x1,https://y\n"
ANN = "1,22.0,35.5\n3,40.25,52.0\n1,60.0,61.0\n"


def test_crosstask_text_files_round_trip_exactly(tmp_path):
    for name, text, read, write in [
        ("tasks.txt", TASKS, read_tasks, write_tasks),
        ("videos.csv", VIDEOS, read_videos, write_videos),
        ("ann.csv", ANN, read_intervals, write_intervals),
    ]:
        src, dst = tmp_path / name, tmp_path / f"out_{name}"
        src.write_text(text)
        write(dst, read(src))
        assert dst.read_text() == text
    tasks = read_tasks(tmp_path / "tasks.txt")
    assert tasks["16815"].steps == ["brake on", "loosen nuts", "raise jack"]
    assert read_intervals(tmp_path / "ann.csv")[1] == (3, 40.25, 52.0)


def test_synthetic_folder_round_trips(tmp_path, small_ds):
    small_ds.write(tmp_path)
    data = CrossTask.load(tmp_path)
    v = small_ds.by_split("train")[0]
    assert np.array_equal(data.features(v.video_id), v.X)
    assert data.annotation(v.task_id, v.video_id) == v.intervals
    assert data.constraints(v.task_id, v.video_id) == [(s, float(a), float(b)) for s, a, b in v.constraints]
    assert data.narration(v.video_id) == [(w, round(t, 3)) for w, t in v.narration]
    assert {t: task.steps for t, task in data.tasks.items()} == small_ds.steps()
    assert len(data.train) + len(data.test) == len(small_ds.videos)


def test_labels_follow_reference_floor_ceil():
    Y = intervals_to_labels([(1, 1.5, 3.2), (2, 5.0, 6.0)], 8, 2)
    assert Y[:, 0].tolist() == [0, 1, 1, 1, 0, 0, 0, 0]
    assert Y[:, 1].tolist() == [0, 0, 0, 0, 0, 1, 0, 0]
    y = labels_to_dense(Y)
    assert dense_to_intervals(y) == [(1, 1.0, 4.0), (2, 5.0, 6.0)]


def test_order_consistency_example():
    ivs = [(2, 0.0, 1.0), (1, 5.0, 6.0), (3, 9.0, 10.0)]  # 2 -> 1 -> 3
    assert order_consistency(ivs) == pytest.approx(2 / 3)
    assert order_consistency(ivs, "lis") == pytest.approx(2 / 3)
    assert order_consistency([(3, 0, 1), (2, 2, 3), (1, 4, 5)]) == 0.0


def test_synthetic_statistics_match_crosstask(small_ds):
    from temporal.data import task_stats

    stats = [
        task_stats(small_ds.tasks[t], [len(v.X) for v in vs], [v.intervals for v in vs])
        for t in small_ds.tasks
        if small_ds.kind[t] == "primary"
        for vs in [small_ds.by_split("train", t) + small_ds.by_split("test", t)]
    ]
    assert np.mean([s.background for s in stats]) == pytest.approx(0.72, abs=0.04)
    assert np.mean([s.missing_steps for s in stats]) == pytest.approx(0.31, abs=0.08)
    assert np.mean([s.order_consistency for s in stats]) == pytest.approx(0.86, abs=0.08)


def test_malformed_files_name_the_file(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2\n")
    with pytest.raises(DataError, match="bad.csv:1"):
        read_intervals(bad)
    (tmp_path / "t.txt").write_text("1\nT\nu\n3\na,b\n\n")
    with pytest.raises(DataError, match="declares 3 steps"):
        read_tasks(tmp_path / "t.txt")
    np.save(tmp_path / "f.npy", np.zeros(5))
    with pytest.raises(DataError, match=r"shape \[T, D\]"):
        read_features(tmp_path / "f.npy")
    with pytest.raises(DataError, match="not found"):
        CrossTask.load(tmp_path / "missing")
