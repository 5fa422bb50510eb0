"""Metric definitions on hand-made cases."""

import numpy as np
import pytest

from temporal.metrics import (
    action_ap,
    frame_prf,
    mean_over_tasks,
    mean_std,
    random_splits,
    segment_labels,
    step_recall,
)


def test_step_recall_counts_like_reference():
    Yt = np.zeros((10, 3), dtype=np.uint8)
    Yt[1:3, 0] = 1
    Yt[5:7, 1] = 1  # step 3 missing: not counted in the denominator
    Yp = np.zeros((10, 3), dtype=np.uint8)
    Yp[[2, 4, 8], [0, 1, 2]] = 1
    rec = step_recall({"a": {"v": Yt}, "b": {"w": Yt}}, {"a": {"v": Yp}, "b": {"w": Yt * 0}})
    assert rec == {"a": 0.5, "b": 0.0}
    assert mean_over_tasks(rec) == 0.25


def test_action_ap_segments():
    assert segment_labels([(1, 0.3, 0.5)], 1.0).tolist() == [0, 1, 1, 0, 0]
    a = np.array([0.0, 1.0, 1.0, 0.0])
    assert action_ap([a], [[(1, 1.0, 3.0)]]) == pytest.approx(1.0)
    assert action_ap([-a], [[(1, 1.0, 3.0)]]) < 0.6


def test_frame_precision_recall_f1():
    p, r, f = frame_prf(np.array([0, 1, 1, 2]), np.array([1, 1, 0, 2]))
    assert (p, r) == (pytest.approx(2 / 3), pytest.approx(2 / 3)) and f == pytest.approx(2 / 3)


def test_random_splits_and_mean_std():
    splits = list(random_splits({"t": [str(i) for i in range(10)]}, 3, n_runs=4, seed=0))
    assert len(splits) == 4 and all(len(tr["t"]) == 3 and len(te["t"]) == 7 for tr, te in splits)
    assert len({tuple(tr["t"]) for tr, _ in splits}) > 1
    assert mean_std([1.0, 3.0]) == (2.0, 1.0)
