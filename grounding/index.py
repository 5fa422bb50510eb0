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

from dataclasses import dataclass

import numpy as np
import torch


def normalize(x: torch.Tensor) -> torch.Tensor:
    """Unit rows (cosine similarity = dot product)."""
    return torch.nn.functional.normalize(x, dim=-1)


@dataclass
class LineIndex:
    """One scene's narration segments: unit embeddings, voxel targets and weights."""

    embeddings: torch.Tensor
    """(N, D) unit sentence embeddings of the segments."""
    targets: torch.Tensor
    """(N, N_V) each segment's distribution over the scene's voxels."""
    weights: torch.Tensor
    """(N,) each segment's weight (how well its frames look at what it votes for)."""

    def votes(self, queries: torch.Tensor, k: int, temperature: float, weight_power: float = 1.0) -> torch.Tensor:
        """(Q, N_V) voxel distribution per query from its ``k`` nearest segments (``queries``: unit (Q, D)),
        each voter counting softmax(cosine / ``temperature``) × its weight ** ``weight_power``."""
        sims = queries @ self.embeddings.T
        k = min(k, sims.shape[1])
        top, idx = sims.topk(k, dim=1)
        a = torch.softmax(top / temperature, dim=1) * self.weights[idx].pow(weight_power).clamp(min=1e-12)
        a = a / a.sum(1, keepdim=True)
        return torch.einsum("qk,qkv->qv", a, self.targets[idx])

    def prior(self) -> torch.Tensor:
        """(N_V,) where the scene's narration points overall: the weighted mean of all segments' targets."""
        w = self.weights.clamp(min=1e-6)
        return (w @ self.targets) / w.sum()

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.embeddings": self.embeddings.contiguous(), f"{prefix}.targets": self.targets.contiguous(),
                f"{prefix}.weights": self.weights.contiguous()}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], prefix: str) -> LineIndex:
        return cls(tensors[f"{prefix}.embeddings"], tensors[f"{prefix}.targets"], tensors[f"{prefix}.weights"])


def targets(voxel_lists: list[np.ndarray], smooth: torch.Tensor) -> torch.Tensor:
    """(N, N_V) per pair: the histogram of its voxels (one per frame, or a single one) smoothed by ``smooth``."""
    n_v = smooth.shape[0]
    hist = np.zeros((len(voxel_lists), n_v))
    for i, vox in enumerate(voxel_lists):
        np.add.at(hist[i], np.asarray(vox, int), 1.0)
    hist /= hist.sum(1, keepdims=True)
    return torch.from_numpy(hist).float() @ smooth
