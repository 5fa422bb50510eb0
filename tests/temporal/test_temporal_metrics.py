"""Metric definitions on hand-made cases, and proposals on a clean actionness curve."""

import numpy as np
import pytest

from temporal.metrics import (
    action_ap,
    ar_at_an,
    frame_accuracy,
    frame_prf,
    mean_over_tasks,
    mean_std,
    random_splits,
    segment_labels,
    step_recall,
)
from temporal.proposals import nms, tag_proposals


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


def test_ar_at_an_and_frames():
    gt = [np.array([[10.0, 20.0]])]
    props = [np.array([[10.0, 20.0, 0.9], [0.0, 5.0, 0.95]])]
    ar = ar_at_an(props, gt, ans=(1, 2))
    assert ar.tolist() == [0.0, 1.0]
    assert frame_accuracy([0, 1, 2], [0, 1, 1]) == pytest.approx(2 / 3)
    p, r, f = frame_prf(np.array([0, 1, 1, 2]), np.array([1, 1, 0, 2]))
    assert (p, r) == (pytest.approx(2 / 3), pytest.approx(2 / 3)) and f == pytest.approx(2 / 3)


def test_random_splits_and_mean_std():
    splits = list(random_splits({"t": [str(i) for i in range(10)]}, 3, n_runs=4, seed=0))
    assert len(splits) == 4 and all(len(tr["t"]) == 3 and len(te["t"]) == 7 for tr, te in splits)
    assert len({tuple(tr["t"]) for tr, _ in splits}) > 1
    assert mean_std([1.0, 3.0]) == (2.0, 1.0)


def test_tag_proposals_recover_blocks(rng):
    a = rng.random(200) * 0.2
    blocks = [(20, 40), (90, 130), (160, 170)]
    for s, e in blocks:
        a[s:e] += 1.0
    a[100] = 0.0  # a dip that grouping should tolerate
    P = tag_proposals(a)
    ar = ar_at_an([P], [np.array(blocks, dtype=float)], ans=(10,))
    assert ar[0] > 0.9
    assert len(nms(np.array([[0, 10, 1.0], [0, 10.5, 0.9], [50, 60, 0.5]]), 0.8)) == 2
