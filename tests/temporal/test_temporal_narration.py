"""Narration -> constraints: ordered matching, pluggable embedder, quality report."""

import numpy as np

from temporal.step_windows import (
    NarrationConfig,
    constraint_mask,
    constraint_report,
    constraints_from_narration,
    tokens,
)

WORDS = [
    (w, float(i))
    for i, w in enumerate(
        [
            "so",
            "today",
            "we",
            "make",
            "tea",
            "first",
            "boil",
            "the",
            "water",
            "then",
            "wait",
            "a",
            "bit",
            "now",
            "pour",
            "water",
            "in",
            "the",
            "cup",
            "and",
            "finally",
            "stir",
            "the",
            "tea",
            "slowly",
            "okay",
        ]
    )
]
STEPS = ["boil water", "pour water", "stir tea"]


def test_tokens_stem_and_drop_stop_words():
    assert tokens("Pouring the milk into bowls") == ["pour", "milk", "bowl"]


def test_constraints_follow_mentions_in_order():
    cons = constraints_from_narration(WORDS, STEPS, NarrationConfig(window=3, min_duration=4.0))
    centres = [(a + b) / 2 for _, a, b in cons]
    assert [s for s, _, _ in cons] == [1, 2, 3]
    assert np.all(np.diff(centres) > 0)
    for (_, a, b), word in zip(cons, ["boil", "pour", "stir"], strict=True):
        t = next(t for w, t in WORDS if w == word)
        assert a <= t <= b


def test_embedder_is_pluggable():
    calls = []

    def onehot(texts):
        calls.append(len(texts))
        vocab = sorted({w for t in texts for w in t.split()})
        return np.array([[w in t.split() for w in vocab] for t in texts], dtype=float)

    cons = constraints_from_narration(WORDS, STEPS, NarrationConfig(window=3), embedder=onehot)
    assert calls and len(cons) == 3


def test_report_and_mask():
    M = constraint_mask([(2, 3.0, 5.0)], 8, 3)
    assert M[:, 0].sum() == 0 and M[3:5, 1].all()
    rep = constraint_report([[(1, 0.0, 4.0)]], [[(1, 2.0, 6.0)]], [10], [2])
    assert rep["precision"] == 0.5 and rep["recall"] == 0.5 and rep["iou"] == 2 / 6 and rep["outside"] == 0.0


def test_synthetic_constraints_are_noisy_like_crosstask(small_ds):
    vids = small_ds.by_split("train") + small_ds.by_split("related")
    vids = [v for v in vids if small_ds.kind[v.task_id] == "primary"]
    rep = constraint_report(
        [v.constraints for v in vids],
        [v.intervals for v in vids],
        [len(v.X) for v in vids],
        [len(small_ds.tasks[v.task_id].steps) for v in vids],
    )
    assert 0.02 < rep["iou"] < 0.3 and 0.3 < rep["outside"] < 0.8
