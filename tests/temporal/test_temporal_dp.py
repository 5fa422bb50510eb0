"""Order-constrained DP against brute force, masks, baselines, and O(TK) scaling."""

import itertools
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from temporal.dp import align_contiguous, align_one, fuse_actionness, oracle_scores, steps_to_labels, uniform_steps


def brute_one(S):
    T, K = S.shape
    return max(S[list(c), range(K)].sum() for c in itertools.combinations(range(T), K))


def brute_contiguous(C, bg):
    T, K = C.shape
    best = np.inf
    for y in itertools.product(range(K + 1), repeat=T):
        runs = [v for i, v in enumerate(y) if v and (i == 0 or y[i - 1] != v)]
        if runs == list(range(1, K + 1)):
            best = min(best, sum(C[t, y[t] - 1] if y[t] else bg for t in range(T)))
    return best


@st.composite
def score_matrix(draw, max_t=8, max_k=4):
    T = draw(st.integers(1, max_t))
    K = draw(st.integers(1, min(T, max_k)))
    seed = draw(st.integers(0, 2**31))
    return np.random.default_rng(seed).normal(size=(T, K))


@settings(max_examples=60, deadline=None)
@given(score_matrix(), st.booleans())
def test_align_one_equals_brute_force(S, maximize):
    steps = align_one(S, maximize=maximize)
    assert np.all(np.diff(steps) > 0) and steps.min() >= 0 and steps.max() < len(S)
    val = S[steps, np.arange(S.shape[1])].sum()
    ref = brute_one(S) if maximize else -brute_one(-S)
    assert np.isclose(val, ref)


@settings(max_examples=40, deadline=None)
@given(score_matrix(max_t=6, max_k=3), st.floats(-1, 1))
def test_align_contiguous_equals_brute_force(C, bg):
    y = align_contiguous(C, bg_cost=bg)
    runs = [v for i, v in enumerate(y) if v and (i == 0 or y[i - 1] != v)]
    assert runs == list(range(1, C.shape[1] + 1))  # every step once, in order, contiguous
    val = sum(C[t, y[t] - 1] if y[t] else bg for t in range(len(y)))
    assert np.isclose(val, brute_contiguous(C, bg))


def test_masks_are_respected(rng):
    T, K = 50, 4
    S = rng.normal(size=(T, K))
    mask = np.zeros((T, K))
    windows = [(2, 8), (15, 20), (21, 30), (40, 45)]
    for k, (a, b) in enumerate(windows):
        mask[a:b, k] = 1
    steps = align_one(S, mask=mask)
    assert all(a <= t < b for t, (a, b) in zip(steps, windows, strict=True))
    y = align_contiguous(-S, mask=mask)
    for k, (a, b) in enumerate(windows):
        idx = np.flatnonzero(y == k + 1)
        assert len(idx) and idx.min() >= a and idx.max() < b


def test_unconstrained_step_column_is_free(rng):
    S = rng.normal(size=(30, 2))
    mask = np.zeros_like(S)  # no constraint rows at all: uniform penalty changes nothing
    assert np.array_equal(align_one(S, mask=mask), align_one(S))


def test_too_short_video():
    S = np.zeros((2, 3))
    with pytest.raises(ValueError, match="allow_shared"):
        align_one(S)
    steps = align_one(np.array([[1.0, 0, 0], [0, 1.0, 1.0]]), allow_shared=True)
    assert list(steps) == [0, 1, 1]
    with pytest.raises(ValueError):
        align_contiguous(S)


def test_baselines_and_fusion(rng):
    assert list(uniform_steps(100, 4)) == [12, 38, 62, 88]
    S = rng.normal(size=(20, 3))
    Y = np.zeros((20, 3), dtype=np.uint8)
    Y[[3, 9, 15], [0, 1, 2]] = 1
    assert list(align_one(oracle_scores(S, Y))) == [3, 9, 15]
    a = rng.random(20)
    assert np.allclose(fuse_actionness(S, a, 0.0), S) and np.allclose(fuse_actionness(S, a, 1.0)[:, 1], a)
    assert steps_to_labels(np.array([1, 4]), 6).sum(0).tolist() == [1, 1]


def _best_time(f, *args, n=3):
    best = np.inf
    for _ in range(n):
        t = time.perf_counter()
        f(*args)
        best = min(best, time.perf_counter() - t)
    return best


def test_linear_scaling_in_t(rng):
    """10x more clips costs about 10x (O(TK)), far from the 100x of an O(T^2) solver."""
    small, big = rng.normal(size=(3000, 10)), rng.normal(size=(30000, 10))
    assert _best_time(align_one, big) / _best_time(align_one, small) < 35
    small, big = rng.normal(size=(400, 5)), rng.normal(size=(4000, 5))
    assert _best_time(align_contiguous, big) / _best_time(align_contiguous, small) < 35
