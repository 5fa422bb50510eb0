"""Order-constrained dynamic programming over step scores ``S[T, K]`` (spec §2, A1–A5).

Both solvers are O(TK): A1 vectorises over time with a running prefix max per step; A2 loops over
time with vector operations over the 2K+1 states. Ties resolve to the earliest clip.
"""

from __future__ import annotations

import numpy as np

MASK_PENALTY = 1e4
"""Cost added outside a constraint mask (reference ``lambda``)."""


def _penalised(S: np.ndarray, mask: np.ndarray | None, sign: float, lam: float) -> np.ndarray:
    if mask is None:
        return S
    if mask.shape != S.shape:
        raise ValueError(f"mask shape {mask.shape} must equal score shape {S.shape}")
    return S - sign * lam * (1.0 - np.asarray(mask, dtype=np.float64))


def _prefix_argmax(D: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Running max of ``D`` and the index where it was (first) attained, both vectorised."""
    pmax = np.maximum.accumulate(D)
    rec = np.r_[True, D[1:] > pmax[:-1]]
    arg = np.maximum.accumulate(np.where(rec, np.arange(len(D)), 0))
    return pmax, arg


def align_one(S: np.ndarray, maximize: bool = True, mask: np.ndarray | None = None,
              allow_shared: bool = False, lam: float = MASK_PENALTY) -> np.ndarray:
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
        raise ValueError(f"cannot place K={K} ordered steps on T={T} clips (one clip each); "
                         "pass allow_shared=True to let steps share clips")
    sign = 1.0 if maximize else -1.0
    G = sign * _penalised(S, mask, sign, lam)  # maximise G
    back = np.zeros((K, T), dtype=np.int64)
    D = G[:, 0].copy()
    if not shared:
        D[T - K + 1:] = -np.inf  # leave room for the later steps
    for k in range(1, K):
        pmax, arg = _prefix_argmax(D)
        if shared:
            prev, parg = pmax, arg
        else:  # strictly earlier clip
            prev = np.r_[-np.inf, pmax[:-1]]
            parg = np.r_[0, arg[:-1]]
        D = G[:, k] + prev
        back[k] = parg
        if not shared:
            D[:k] = -np.inf
            D[T - K + k + 1:] = -np.inf
    steps = np.zeros(K, dtype=np.int64)
    steps[-1] = int(np.argmax(D))
    for k in range(K - 1, 0, -1):
        steps[k - 1] = back[k, steps[k]]
    return steps


def align_contiguous(cost: np.ndarray, bg_cost: float | np.ndarray = 0.0, mask: np.ndarray | None = None,
                     lam: float = MASK_PENALTY) -> np.ndarray:
    """A2: each step one contiguous run (at least one clip), in order, background anywhere.

    Minimises ``sum_t cost[t, y_t]`` with ``y_t in 0..K`` (0 = background at ``bg_cost``). The states
    are ``(0, z)`` (background after step z) and ``(z, z)`` (inside step z). Returns ``y[T]``.
    """
    C = _penalised(np.asarray(cost, dtype=np.float64), mask, -1.0, lam)
    if C.ndim != 2:
        raise ValueError(f"cost must be a [T, K] matrix, got shape {C.shape}")
    T, K = C.shape
    if T < K:
        raise ValueError(f"cannot place K={K} contiguous steps on T={T} clips (each needs one)")
    bg = np.broadcast_to(np.asarray(bg_cost, dtype=np.float64), (T,))
    inf = np.inf
    # B[z]: background state (0, z), z = 0..K; A[z]: step state (z, z), z = 1..K (A[0] unused = inf)
    B = np.full(K + 1, inf)
    A = np.full(K + 1, inf)
    B[0] = bg[0]
    A[1] = C[0, 0]
    # back-pointers: for A, 0 = stay, 1 = from A[z-1], 2 = from B[z-1]; for B, 0 = stay, 1 = from A[z]
    backA = np.zeros((T, K + 1), dtype=np.int8)
    backB = np.zeros((T, K + 1), dtype=np.int8)
    pad = np.full(K + 1, inf)  # shifted views of A and B, reused every step
    padB = np.full(K + 1, inf)
    step_cost = np.full((T, K + 1), inf)
    step_cost[:, 1:] = C
    for t in range(1, T):
        pad[2:] = A[1:-1]  # A[z-1]
        padB[1:] = B[:-1]  # B[z-1]
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


# ----------------------------------------------------------------------------- baselines (A4), fusion (A5)

def uniform_steps(T: int, K: int) -> np.ndarray:
    """Uniform baseline: ``t_k = round(T/K * (k + 0.5))`` (clipped to the video)."""
    return np.minimum(np.round(T / K * (np.arange(K) + 0.5)).astype(np.int64), T - 1)


def oracle_scores(S: np.ndarray, Y_true: np.ndarray, maximize: bool = True) -> np.ndarray:
    """Oracle upper bound: ground-truth background clips get the worst score for every step.

    The spec's ``-inf`` is a finite margin here so the order constraint still holds when a video has
    fewer foreground clips than steps.
    """
    fg = np.asarray(Y_true).any(1)[:, None]
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
