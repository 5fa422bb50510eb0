"""Weight-free global image descriptors (VLAD over SIFT) for frame retrieval.

The source uses NetVLAD, whose weights cannot be loaded here; VLAD with a codebook learned on the
scene's own SIFT descriptors needs no download and is what NetVLAD approximates.
"""

from __future__ import annotations

import numpy as np
from sklearn.cluster import MiniBatchKMeans


def root_sift(desc: np.ndarray) -> np.ndarray:
    """RootSIFT (L1-normalise, square root): Euclidean distance then compares like the Hellinger kernel."""
    d = desc.astype(np.float32)
    d /= np.abs(d).sum(axis=1, keepdims=True) + 1e-8
    return np.sqrt(d)


def learn_codebook(
    descriptors: list[np.ndarray], k: int = 64, sample: int = 50_000, seed: int = 0, n_init: int = 3
) -> np.ndarray:
    """k-means centres over a seeded subsample of all frames' (RootSIFT) descriptors (``n_init`` seeded starts,
    the best kept: k-means is most of the cost)."""
    rng = np.random.default_rng(seed)
    pool = np.concatenate([d for d in descriptors if len(d)])
    if len(pool) > sample:
        pool = pool[rng.choice(len(pool), sample, replace=False)]
    pool = root_sift(pool)
    k = min(k, max(1, len(pool) // 20))
    km = MiniBatchKMeans(n_clusters=k, random_state=seed, n_init=n_init, batch_size=4096).fit(pool)
    centres: np.ndarray = km.cluster_centers_.astype(np.float32)
    return centres


def vlad(desc: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """Intra-normalised, power-normalised, L2-normalised VLAD of one image's descriptors."""
    k, d = codebook.shape
    out = np.zeros((k, d), np.float32)
    if len(desc):
        x = root_sift(desc)
        assign = _nearest_centre(x, codebook)
        np.add.at(out, assign, x - codebook[assign])
        out /= np.linalg.norm(out, axis=1, keepdims=True) + 1e-8
    out = np.sign(out) * np.sqrt(np.abs(out))
    flat = out.ravel()
    return flat / (np.linalg.norm(flat) + 1e-8)


def bow(desc: np.ndarray, codebook: np.ndarray) -> np.ndarray:
    """Visual-word counts of one image's descriptors (RootSIFT, nearest centre), ``[len(codebook)]``."""
    if not len(desc):
        return np.zeros(len(codebook))
    return np.bincount(_nearest_centre(root_sift(desc), codebook), minlength=len(codebook)).astype(np.float64)


def _nearest_centre(x: np.ndarray, codebook: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Index of the nearest codebook centre per row, in chunks to bound memory."""
    c2 = (codebook**2).sum(1)
    return np.concatenate(
        [np.argmin(c2[None] - 2 * x[i : i + chunk] @ codebook.T, axis=1) for i in range(0, len(x), chunk)]
    )


def top_pairs(a: np.ndarray, b: np.ndarray, k: int) -> list[tuple[int, int, float]]:
    """The ``k`` most similar (row of ``a``, row of ``b``) pairs by cosine similarity, best first."""
    sim = a @ b.T
    k = min(k, sim.size)
    flat = np.argpartition(-sim.ravel(), k - 1)[:k]
    flat = flat[np.argsort(-sim.ravel()[flat], kind="stable")]
    return [(int(i // sim.shape[1]), int(i % sim.shape[1]), float(sim.ravel()[i])) for i in flat]


def mutual_matches(da: np.ndarray, db: np.ndarray, ratio: float) -> np.ndarray:
    """(m, 2) index pairs that are mutual nearest neighbours and pass the ratio test."""
    if len(da) < 2 or len(db) < 2:
        return np.zeros((0, 2), int)
    sim = da @ db.T
    rows = np.arange(len(da))
    nn_ab = np.argmax(sim, axis=1)
    nn_ba = np.argmax(np.ascontiguousarray(sim.T), axis=1)  # a column-wise argmax is 20× slower (strided)
    best = sim[rows, nn_ab]
    sim[rows, nn_ab] = -np.inf  # the row maximum over the rest is the second best: two passes, no partition
    dist = np.sqrt(np.clip(2 - 2 * np.c_[best, sim.max(axis=1)], 0, None))
    keep = (nn_ba[nn_ab] == rows) & (dist[:, 0] < ratio * dist[:, 1])
    pairs: np.ndarray = np.c_[np.nonzero(keep)[0], nn_ab[keep]]
    return pairs
