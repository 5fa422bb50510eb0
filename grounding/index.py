"""Training-free grounding: a per-scene index of narration segments, queried by sentence similarity.

The packaged encoder is a sentence-embedding model trained for semantic similarity, so a reworded question
("where do I check the oil level") lands near the narration lines about the same part ("pull the dipstick
out"). Every segment is embedded once; a query's ``k`` nearest segments vote with their voxel targets, weighted
by a softmax of their cosine similarity and by a power of the pair's own weight (how closely its frames look at
what it points to: the words of a line spoken over an overview may match best, but its place is vague).
Nothing is fitted, so a dozen narrated lines per part are enough and no word of the query needs to have been
heard in training.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from grounding.model_numpy import softmax


def normalize(x):
    """Unit rows (cosine similarity = dot product), of a NumPy array (queries) or a torch tensor (training)."""
    if isinstance(x, np.ndarray):
        return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), x.dtype.type(1e-12))
    import torch  # training only: loaded already there, and a query must not pay for it

    return torch.nn.functional.normalize(x, dim=-1)


@dataclass
class LineIndex:
    """One scene's narration segments: unit embeddings, voxel targets and weights (float32 NumPy arrays;
    training hands in torch tensors, converted here)."""

    embeddings: np.ndarray
    """(N, D) unit sentence embeddings of the segments."""
    targets: np.ndarray
    """(N, N_V) each segment's distribution over the scene's voxels."""
    weights: np.ndarray
    """(N,) each segment's weight (how well its frames look at what it votes for)."""

    def __post_init__(self) -> None:
        self.embeddings, self.targets, self.weights = (
            np.ascontiguousarray(x, np.float32) for x in (self.embeddings, self.targets, self.weights)
        )

    def voters(
        self, queries: np.ndarray, k: int, temperature: float, weight_power: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each query's ``k`` nearest segments (``queries``: unit (Q, D)): their indices (Q, k), cosine
        similarities (Q, k) and vote shares (Q, k; softmax(cosine / ``temperature``) × weight ** ``weight_power``,
        normalised)."""
        sims = np.asarray(queries, np.float32) @ self.embeddings.T
        k = min(k, sims.shape[1])
        idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        top = np.take_along_axis(sims, idx, axis=1)
        a = softmax(top / np.float32(temperature), axis=1) * np.maximum(
            self.weights[idx] ** np.float32(weight_power), np.float32(1e-12)
        )
        return idx, top, a / a.sum(1, keepdims=True)

    def votes(self, queries: np.ndarray, k: int, temperature: float, weight_power: float = 1.0) -> np.ndarray:
        """(Q, N_V) voxel distribution per query from its :meth:`voters`.

        The voters' shares go into a sparse (Q, N) matrix, so all queries vote in one matmul with the targets."""
        idx, _, a = self.voters(queries, k, temperature, weight_power)
        share = np.zeros((len(idx), len(self.embeddings)), np.float32)
        np.put_along_axis(share, idx, a, axis=1)
        return share @ self.targets

    def prior(self) -> np.ndarray:
        """(N_V,) where the scene's narration points overall: the weighted mean of all segments' targets."""
        w = np.maximum(self.weights, np.float32(1e-6))
        return (w @ self.targets) / w.sum()

    def tensors(self, prefix: str) -> dict:
        """The arrays as torch tensors under ``prefix`` (training saves them with ``safetensors.torch``)."""
        import torch  # training only

        return {
            f"{prefix}.{name}": torch.from_numpy(getattr(self, name)) for name in ("embeddings", "targets", "weights")
        }

    @classmethod
    def from_tensors(cls, tensors: dict, prefix: str) -> LineIndex:
        return cls(tensors[f"{prefix}.embeddings"], tensors[f"{prefix}.targets"], tensors[f"{prefix}.weights"])


def targets(voxel_lists: Sequence[np.ndarray | Sequence[int]], smooth):
    """(N, N_V) torch tensor per pair: the histogram of its voxels (one per frame, or a single one) smoothed by
    ``smooth`` (training)."""
    import torch  # training only

    n_v = smooth.shape[0]
    hist = np.zeros((len(voxel_lists), n_v))
    for i, vox in enumerate(voxel_lists):
        np.add.at(hist[i], np.asarray(vox, int), 1.0)
    hist /= hist.sum(1, keepdims=True)
    return torch.from_numpy(hist).float() @ smooth
