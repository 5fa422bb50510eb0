"""A scene's voxel space: the classes of its text → voxel classifier ([001] §5.5).

A box around the aligned model (percentiles, robust to stray SfM points) split into ``divisions``³ cells;
the ``num_voxels`` cells holding most training points are kept, ties and the rest filled by model points, so
the heatmap also covers parts of the model that no narration pointed at.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recon.io import InputError


@dataclass
class VoxelSpace:
    """Kept voxels of one scene's box, in the scene's shared frame."""

    origin: np.ndarray
    """(3,) lower box corner."""
    size: np.ndarray
    """(3,) edge lengths of one voxel."""
    divisions: int
    """Cells per box axis."""
    cells: np.ndarray
    """(N_V,) flat grid index of each kept voxel (the class order)."""

    @property
    def centers(self) -> np.ndarray:
        ijk = np.stack(np.unravel_index(self.cells, (self.divisions,) * 3), axis=1)
        return self.origin + (ijk + 0.5) * self.size

    def cell_of(self, points: np.ndarray) -> np.ndarray:
        """Flat grid index of the cell holding each point (points outside the box go to the nearest cell)."""
        ijk = np.floor((np.asarray(points, float).reshape(-1, 3) - self.origin) / self.size).astype(int)
        ijk = np.clip(ijk, 0, self.divisions - 1)
        return np.ravel_multi_index(ijk.T, (self.divisions,) * 3)

    def assign(self, points: np.ndarray) -> np.ndarray:
        """Class (index into the kept voxels) of each point: its own cell when kept, else the nearest kept one."""
        points = np.asarray(points, float).reshape(-1, 3)
        lookup = {int(c): i for i, c in enumerate(self.cells)}
        cells = self.cell_of(points)
        out = np.array([lookup.get(int(c), -1) for c in cells], int)
        missing = out < 0
        if missing.any():
            d = np.linalg.norm(points[missing, None] - self.centers[None], axis=2)
            out[missing] = d.argmin(1)
        return out

    def to_json(self) -> dict:
        return {
            "origin": self.origin.tolist(),
            "size": self.size.tolist(),
            "divisions": self.divisions,
            "cells": self.cells.tolist(),
        }

    @classmethod
    def from_json(cls, d: dict) -> VoxelSpace:
        return cls(
            np.array(d["origin"], float), np.array(d["size"], float), int(d["divisions"]), np.array(d["cells"], int)
        )


def box(points: np.ndarray, percentile: float) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper corners of the robust box around ``points``."""
    if len(points) < 4:
        raise InputError(
            f"only {len(points)} 3D points in the scene: too few to build a voxel space; reconstruct more frames"
        )
    lo, hi = np.percentile(points, [percentile, 100 - percentile], axis=0)
    pad = 1e-6 * max(float(np.max(hi - lo)), 1e-9)
    return lo - pad, hi + pad


def build(
    model_points: np.ndarray, training_points: np.ndarray, divisions: int, num_voxels: int, percentile: float
) -> VoxelSpace:
    """Keep the ``num_voxels`` cells with most training points, then most model points (deterministic order)."""
    lo, hi = box(np.asarray(model_points, float), percentile)
    space = VoxelSpace(lo, (hi - lo) / divisions, divisions, np.zeros(0, int))
    inside = np.all((model_points >= lo) & (model_points <= hi), axis=1)
    n_cells = divisions**3
    train = (
        np.bincount(space.cell_of(training_points), minlength=n_cells)
        if len(training_points)
        else np.zeros(n_cells, int)
    )
    model = np.bincount(space.cell_of(model_points[inside]), minlength=n_cells)
    # Sort by training points, then model points, then cell index; never keep cells with neither.
    order = np.lexsort((np.arange(n_cells), -model, -train))
    occupied = order[(train[order] > 0) | (model[order] > 0)]
    space.cells = np.sort(occupied[:num_voxels])
    return space
