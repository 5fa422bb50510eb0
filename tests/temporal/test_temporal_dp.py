"""Order-constrained DP against brute force, the previous NumPy solvers (oracle), masks, baselines, O(TK)."""

import inspect
import itertools
import subprocess
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import temporal.dp
from temporal.dp import (
    MASK_PENALTY,
    align_contiguous,
    align_one,
    fuse_actionness,
    oracle_scores,
    steps_to_labels,
    uniform_steps,
)

# ----------------------------------------------------------------------------- oracle: the previous NumPy solvers
# Kept verbatim (vectorised over time for A1, over states for A2): the compiled solvers must return exactly
# these labels, ties and non-finite scores included. benchmarks/dp.py times them as "previous".


def _ref_penalised(S, mask, sign, lam):
    if mask is None:
        return S
    if mask.shape != S.shape:
        raise ValueError(f"mask shape {mask.shape} must equal score shape {S.shape}")
    return S - sign * lam * (1.0 - np.asarray(mask, dtype=np.float64))


def _ref_prefix_argmax(D):
    pmax = np.maximum.accumulate(D)
    rec = np.r_[True, D[1:] > pmax[:-1]]
    arg = np.maximum.accumulate(np.where(rec, np.arange(len(D)), 0))
    return pmax, arg


def ref_align_one(S, maximize=True, mask=None, allow_shared=False, lam=MASK_PENALTY):
    S = np.asarray(S, dtype=np.float64)
    T, K = S.shape
    if K == 0:
        return np.zeros(0, dtype=np.int64)
    shared = T < K
    if shared and not allow_shared:
        raise ValueError("T < K")
    sign = 1.0 if maximize else -1.0
    G = sign * _ref_penalised(S, mask, sign, lam)
    back = np.zeros((K, T), dtype=np.int64)
    D = G[:, 0].copy()
    if not shared:
        D[T - K + 1 :] = -np.inf
    for k in range(1, K):
        pmax, arg = _ref_prefix_argmax(D)
        if shared:
            prev, parg = pmax, arg
        else:
            prev = np.r_[-np.inf, pmax[:-1]]
            parg = np.r_[0, arg[:-1]]
        D = G[:, k] + prev
        back[k] = parg
        if not shared:
            D[:k] = -np.inf
            D[T - K + k + 1 :] = -np.inf
    steps = np.zeros(K, dtype=np.int64)
    steps[-1] = int(np.argmax(D))
    for k in range(K - 1, 0, -1):
        steps[k - 1] = back[k, steps[k]]
    return steps


def ref_align_contiguous(cost, bg_cost=0.0, mask=None, lam=MASK_PENALTY):
    C = _ref_penalised(np.asarray(cost, dtype=np.float64), mask, -1.0, lam)
    T, K = C.shape
    if T < K:
        raise ValueError("T < K")
    bg = np.broadcast_to(np.asarray(bg_cost, dtype=np.float64), (T,))
    inf = np.inf
    B = np.full(K + 1, inf)
    A = np.full(K + 1, inf)
    B[0] = bg[0]
    A[1] = C[0, 0]
    backA = np.zeros((T, K + 1), dtype=np.int8)
    backB = np.zeros((T, K + 1), dtype=np.int8)
    pad = np.full(K + 1, inf)
    padB = np.full(K + 1, inf)
    step_cost = np.full((T, K + 1), inf)
    step_cost[:, 1:] = C
    for t in range(1, T):
        pad[2:] = A[1:-1]
        padB[1:] = B[:-1]
        best = np.minimum(pad, padB)
        from_b = padB < pad
        stay = best >= A
        backA[t] = np.where(stay, 0, np.where(from_b, 2, 1))
        newA = np.where(stay, A, best) + step_cost[t]
        stayB = B <= A
        backB[t] = ~stayB
        B = np.where(stayB, B, A) + bg[t]
        A = newA
    y = np.zeros(T, dtype=np.int64)
    in_step = A[K] <= B[K]
    z = K
    for t in range(T - 1, -1, -1):
        if in_step:
            y[t] = z
            move = backA[t, z]
            if move == 1:
                z -= 1
            elif move == 2:
                z, in_step = z - 1, False
        else:
            if backB[t, z] == 1:
                in_step = True
    return y


KINDS = [
    "normal",
    "integer_ties",
    "all_equal",
    "neg_inf",
    "nonfinite",
    "mask_binary",
    "mask_fractional",
    "mask_bool",
    "t_equals_k",
    "k1",
    "t1",
    "shared",
]


def random_case(rng, kind):
    """Scores ``S[T, K]``, a mask or None, and ``lam``: one case of the given kind."""
    T = int(rng.integers(1, 30))
    K = int(rng.integers(1, min(T, 7) + 1))
    if kind == "t_equals_k":
        K = T = int(rng.integers(1, 9))
    elif kind == "k1":
        K = 1
    elif kind == "t1":
        T, K = 1, 1
    elif kind == "shared":
        T, K = int(rng.integers(1, 5)), int(rng.integers(5, 9))
    if kind in ("integer_ties", "mask_binary", "mask_bool", "shared") or rng.random() < 0.3:
        S = rng.integers(-2, 3, size=(T, K)).astype(np.float64)  # exact ties everywhere
    elif kind == "all_equal":
        S = np.full((T, K), float(rng.integers(-1, 2)))
    else:
        S = rng.normal(size=(T, K))
    if kind == "neg_inf":
        S[rng.random((T, K)) < 0.3] = -np.inf
    elif kind == "nonfinite":
        for v, p in ((-np.inf, 0.2), (np.inf, 0.1), (np.nan, 0.05)):
            S[rng.random((T, K)) < p] = v
    mask = None
    if kind == "mask_binary":
        mask = (rng.random((T, K)) < 0.5).astype(np.float64)
    elif kind == "mask_fractional":
        mask = rng.random((T, K))
    elif kind == "mask_bool":
        mask = rng.random((T, K)) < 0.5
    lam = float(rng.choice([MASK_PENALTY, 1.0, 2.0])) if mask is not None else MASK_PENALTY
    return S, mask, lam


@pytest.mark.parametrize("kind", KINDS)
def test_align_one_equals_previous_solver(kind):
    rng = np.random.default_rng(KINDS.index(kind))
    for _ in range(150):
        S, mask, lam = random_case(rng, kind)
        for maximize in (True, False):
            with np.errstate(invalid="ignore"):
                ref = ref_align_one(S, maximize, mask, allow_shared=True, lam=lam)
            got = align_one(S, maximize, mask, allow_shared=True, lam=lam)
            assert got.dtype == np.int64 and np.array_equal(got, ref), (S, mask, maximize)


@pytest.mark.parametrize("kind", [k for k in KINDS if k != "shared"])
def test_align_contiguous_equals_previous_solver(kind):
    rng = np.random.default_rng(100 + KINDS.index(kind))
    for i in range(150):
        S, mask, lam = random_case(rng, kind)
        bg = [rng.normal(), float(rng.integers(-2, 3)), rng.integers(-2, 3, size=len(S)).astype(float)][i % 3]
        with np.errstate(invalid="ignore"):
            ref = ref_align_contiguous(S, bg, mask, lam)
        got = align_contiguous(S, bg, mask, lam)
        assert got.dtype == np.int64 and np.array_equal(got, ref), (S, bg, mask)


def test_long_videos_equal_previous_solver(rng):
    """Training-sized inputs, with many exact ties, masks, and layouts numba sees differently."""
    T, K = 3000, 10
    mask = (rng.random((T, K)) < 0.7).astype(np.float64)
    for S in (rng.normal(size=(T, K)), rng.integers(0, 3, size=(T, K)).astype(np.float64)):
        for m in (None, mask):
            assert np.array_equal(align_one(S, False, m), ref_align_one(S, False, m))
            assert np.array_equal(align_contiguous(S, 0.5, m), ref_align_contiguous(S, 0.5, m))
    S32 = np.asfortranarray(rng.random((T, K), dtype=np.float32))  # float32, not C-contiguous
    S32.flags.writeable = False
    assert np.array_equal(align_one(S32), ref_align_one(S32))
    assert np.array_equal(align_contiguous(S32, 0.5), ref_align_contiguous(S32, 0.5))


def test_degenerate_shapes():
    assert align_one(np.zeros((4, 0))).shape == (0,)
    assert align_contiguous(np.zeros((4, 0))).tolist() == [0, 0, 0, 0]  # no steps: all background
    with pytest.raises(ValueError, match="without clips"):
        align_one(np.zeros((0, 2)), allow_shared=True)
    with pytest.raises(ValueError, match="mask shape"):
        align_contiguous(np.zeros((4, 2)), mask=np.ones((4, 3)))
    with pytest.raises(ValueError, match="matrix"):
        align_one(np.zeros(4))


def test_import_does_not_load_numba():
    """numba (0.5 s to import) and the compile wait until the first DP call."""
    code = "import sys, temporal.dp; assert 'numba' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_works_without_a_writable_cache(tmp_path):
    """A read-only install with no usable cache folder compiles in memory instead of failing."""
    (tmp_path / "mod").mkdir()
    (tmp_path / "mod" / "dp.py").write_text(inspect.getsource(temporal.dp))
    (tmp_path / "mod" / "__pycache__").write_text("")  # a file: numba cannot cache next to the module
    blocked = tmp_path / "blocked"
    blocked.write_text("")  # nor under NUMBA_CACHE_DIR or the user cache folder, both below a file
    env = {
        "NUMBA_CACHE_DIR": str(blocked / "numba"),
        "HOME": str(blocked / "home"),
        "XDG_CACHE_HOME": str(blocked / "cache"),
        "PATH": "/usr/bin:/bin",
    }
    code = (
        "import dp, numpy as np; print(dp.align_contiguous(np.array([[0., 9], [9, 9], [9, 0]]), 1.0).tolist(),"
        " type(dp._kernels()[1]._cache).__name__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path / "mod", env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == ["[1,", "0,", "2]", "NullCache"]


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
