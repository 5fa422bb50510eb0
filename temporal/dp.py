"""Order-constrained dynamic programming over step scores ``S[T, K]`` (CrossTask, [001] ch. 3).

Both solvers are O(TK) loops over time compiled with numba (they run per video per training epoch, so they
must be far cheaper than the model). numba is imported and the loops compiled on the first call only, so
importing this module stays cheap; the machine code is cached on disk (``__pycache__`` next to this file, else
numba's user cache folder or ``NUMBA_CACHE_DIR``; a read-only install without either compiles once per
process). Results, ties included, equal the earlier NumPy formulation (kept as the oracle in the tests): ties
resolve to the earliest clip.
"""

from __future__ import annotations

from functools import cache

import numpy as np

MASK_PENALTY = 1e4
"""Cost added outside a constraint mask (reference ``lambda``)."""

_NO_MASK = np.zeros((0, 0))


def _mask_array(mask: np.ndarray | None, shape: tuple[int, ...]) -> np.ndarray:
    if mask is None:
        return _NO_MASK
    mask = _writable(mask)
    if mask.shape != shape:
        raise ValueError(f"mask shape {mask.shape} must equal score shape {shape}")
    return mask


def _writable(a: np.ndarray) -> np.ndarray:
    """C-contiguous, writable float64 (copied only when needed): numba compiles one variant per layout."""
    return np.require(a, np.float64, ["C", "W"])


def _one_loop(S: np.ndarray, M: np.ndarray, has_mask: bool, sign: float, sl: float, shared: bool) -> np.ndarray:
    """A1 forward pass, one clip (all steps) at a time, and backtrack; ``sl = sign * lam``.

    Per step k it keeps the running max of ``D_k`` (and where it was first attained) over the clips seen so
    far, so ``D_k[t] = G[t, k] + max_{t' < t} D_{k-1}[t']`` streams row by row through ``S``. NaN propagates
    through the running max and wins ``argmax`` exactly as in NumPy.
    """
    T, K = S.shape
    back = np.zeros((T, K), np.int32)  # back[t, k]: clip of step k-1 when step k is at clip t
    run = np.full(K, -np.inf)  # running max of D_k over the clips processed so far
    arg = np.zeros(K, np.int64)  # where that max was first attained
    fin_best, fin_arg, fin_nan = -np.inf, 0, False  # np.argmax of the last step's D
    last = -np.inf
    for t in range(T):
        if shared:  # t_k >= t_{k-1}: D_k[t] sees D_{k-1} up to clip t, so steps go up
            for k in range(K):
                g = S[t, k]
                if has_mask:
                    g = g - sl * (1.0 - M[t, k])
                d = sign * g
                if k > 0:
                    d += run[k - 1]
                    back[t, k] = arg[k - 1]
                if d > run[k]:
                    arg[k] = t
                    run[k] = d
                elif d != d:
                    run[k] = d
                last = d
        else:  # t_k > t_{k-1}: steps go down, so D_{k-1} has not seen clip t yet
            for k in range(K - 1, -1, -1):
                g = S[t, k]
                if has_mask:
                    g = g - sl * (1.0 - M[t, k])
                d = sign * g
                if k > 0:
                    d += run[k - 1]
                    back[t, k] = arg[k - 1]
                if t < k or t > T - K + k:  # no room for the earlier or the later steps
                    d = -np.inf
                if k == K - 1:
                    last = d
                if d > run[k]:
                    arg[k] = t
                    run[k] = d
                elif d != d:
                    run[k] = d
        if not fin_nan:
            if last != last:
                fin_nan, fin_arg = True, t
            elif last > fin_best:
                fin_best, fin_arg = last, t
    steps = np.zeros(K, np.int64)
    steps[K - 1] = fin_arg
    for k in range(K - 1, 0, -1):
        steps[k - 1] = back[steps[k], k]
    return steps


def _contiguous_loop(C: np.ndarray, M: np.ndarray, has_mask: bool, sl: float, bg: np.ndarray) -> np.ndarray:
    """A2 forward pass over the 2K+1 states and backtrack (see ``align_contiguous``); ``sl = -lam``.

    States are updated in place from the last step down, so ``A[z-1]`` and ``B[z-1]`` still hold clip
    ``t-1``'s values when state z reads them.
    """
    T, K = C.shape
    inf = np.inf
    B = np.full(K + 1, inf)
    A = np.full(K + 1, inf)
    B[0] = bg[0]
    A[1] = C[0, 0] - sl * (1.0 - M[0, 0]) if has_mask else C[0, 0]
    # back-pointers: for A, 0 = stay, 1 = from A[z-1], 2 = from B[z-1]; for B, 0 = stay, 1 = from A[z]
    backA = np.empty((T, K + 1), np.int8)
    backB = np.empty((T, K + 1), np.int8)
    backA[0] = 0
    backB[0] = 0
    for t in range(1, T):
        bt = bg[t]
        for z in range(K, 0, -1):
            pa = A[z - 1]  # A[0] is inf throughout
            pb = B[z - 1]
            best = pa if (pa < pb) | (pa != pa) else pb  # np.minimum: NaN propagates
            a = A[z]
            b = B[z]
            stay = best >= a  # arithmetic and selects, not branches: these follow the data, unpredictably
            stay_b = b <= a
            backA[t, z] = (1 - np.int8(stay)) * (1 + np.int8(pb < pa))  # 0 stay, 1 from A[z-1], 2 from B[z-1]
            backB[t, z] = 1 - np.int8(stay_b)
            sc = C[t, z - 1]
            if has_mask:
                sc = sc - sl * (1.0 - M[t, z - 1])
            B[z] = (b if stay_b else a) + bt
            A[z] = (a if stay else best) + sc
        # z = 0: no step state (A[0] stays inf, never left), only background before the first step
        backA[t, 0] = 0
        b = B[0]
        if b <= inf:
            backB[t, 0] = 0
            B[0] = b + bt
        else:  # NaN
            backB[t, 0] = 1
            B[0] = inf + bt
    y = np.zeros(T, np.int64)
    in_step = bool(A[K] <= B[K])
    z = K
    for t in range(T - 1, -1, -1):
        if in_step:
            y[t] = z
            move = backA[t, z]
            if move == 1:
                z -= 1
            elif move == 2:
                z -= 1
                in_step = False
        elif backB[t, z] == 1:
            in_step = True
    return y


@cache
def _kernels():
    """numba-compiled ``(_one_loop, _contiguous_loop)``, built on first use."""
    import numba  # here, not at the top: importing numba costs ~0.2 s at every CLI start-up

    def jit(f):
        try:
            return numba.njit(cache=True, nogil=True)(f)
        except RuntimeError:  # numba found no writable cache folder: compile in memory only
            return numba.njit(nogil=True)(f)

    return jit(_one_loop), jit(_contiguous_loop)


def align_one(
    S: np.ndarray,
    maximize: bool = True,
    mask: np.ndarray | None = None,
    allow_shared: bool = False,
    lam: float = MASK_PENALTY,
) -> np.ndarray:
    """A1: one clip per step, ``t_1 < ... < t_K``, optimising ``sum_k S[t_k, k]``.

    ``mask[T, K]`` (1 = allowed) adds ``lam`` cost outside the allowed region (A3). With ``T < K``
    this raises unless ``allow_shared``, which then lets consecutive steps share a clip
    (``t_1 <= ... <= t_K``). Returns 0-based clip indices ``[K]``.
    """
    S = np.asarray(S, dtype=np.float64)
    if S.ndim != 2:
        raise ValueError(f"scores must be a [T, K] matrix, got shape {S.shape}")
    T, K = S.shape
    if K == 0:
        return np.zeros(0, dtype=np.int64)
    shared = T < K
    if shared and not allow_shared:
        raise ValueError(
            f"cannot place K={K} ordered steps on T={T} clips (one clip each); "
            "pass allow_shared=True to let steps share clips"
        )
    if T == 0:
        raise ValueError(f"cannot place K={K} steps on a video without clips")
    M = _mask_array(mask, S.shape)
    sign = 1.0 if maximize else -1.0
    return _kernels()[0](_writable(S), M, mask is not None, sign, float(sign * lam), shared)


def align_contiguous(
    cost: np.ndarray, bg_cost: float | np.ndarray = 0.0, mask: np.ndarray | None = None, lam: float = MASK_PENALTY
) -> np.ndarray:
    """A2: each step one contiguous run (at least one clip), in order, background anywhere.

    Minimises ``sum_t cost[t, y_t]`` with ``y_t in 0..K`` (0 = background at ``bg_cost``). The states
    are ``(0, z)`` (background after step z) and ``(z, z)`` (inside step z). Returns ``y[T]``.
    """
    C = np.asarray(cost, dtype=np.float64)
    M = _mask_array(mask, C.shape)
    if C.ndim != 2:
        raise ValueError(f"cost must be a [T, K] matrix, got shape {C.shape}")
    T, K = C.shape
    if T < K:
        raise ValueError(f"cannot place K={K} contiguous steps on T={T} clips (each needs one)")
    if K == 0:
        return np.zeros(T, dtype=np.int64)  # no steps: every clip is background
    bg = np.array(np.broadcast_to(np.asarray(bg_cost, dtype=np.float64), (T,)))
    return _kernels()[1](_writable(C), M, mask is not None, float(-lam), bg)


# ----------------------------------------------------------------------------- baselines (A4), fusion (A5)


def uniform_steps(T: int, K: int) -> np.ndarray:
    """Uniform baseline: ``t_k = round(T/K * (k + 0.5))`` (clipped to the video)."""
    return np.minimum(np.round(T / K * (np.arange(K) + 0.5)).astype(np.int64), T - 1)


def oracle_scores(S: np.ndarray, Y_true: np.ndarray, maximize: bool = True) -> np.ndarray:
    """Oracle upper bound: ground-truth background clips get the worst score for every step.

    The spec's ``-inf`` is a finite margin here so the order constraint still holds when a video has
    fewer foreground clips than steps.
    """
    fg = np.asarray(Y_true).any(axis=1, keepdims=True)
    margin = 1e6 * (1.0 + np.abs(S).max())
    return np.where(fg, S, S.min() - margin if maximize else S.max() + margin)


def znorm(x: np.ndarray) -> np.ndarray:
    """Per-video z-normalisation (whole array), so scores on different scales can be mixed."""
    return (x - x.mean()) / (x.std() + 1e-8)


def fuse_actionness(S: np.ndarray, a: np.ndarray, alpha: float, normalize: bool = False) -> np.ndarray:
    """A5: ``S' = (1 - alpha) S + alpha a(t)`` (higher is better for both)."""
    if normalize:
        S, a = znorm(S), znorm(a)
    return (1.0 - alpha) * S + alpha * np.asarray(a)[:, None]


def steps_to_labels(steps: np.ndarray, T: int) -> np.ndarray:
    """One-hot ``Y[T, K]`` from one clip per step (what ``step_recall`` compares)."""
    Y = np.zeros((T, len(steps)), dtype=np.uint8)
    Y[steps, np.arange(len(steps))] = 1
    return Y
