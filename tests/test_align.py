"""The alignment graph on synthetic 3D–3D correspondences with exact ground truth (no SfM needed)."""

from __future__ import annotations

import numpy as np
import pycolmap

from recon.align import AlignConfig, compose_graph, refine


def _sim(rng: np.random.Generator) -> pycolmap.Sim3d:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    return pycolmap.Sim3d(rng.uniform(0.5, 2.0), pycolmap.Rotation3d(q), rng.normal(size=3))


def _edge(a: str, b: str, xa: np.ndarray, xb: np.ndarray) -> dict:
    """An accepted edge whose own Sim(3) is a RANSAC fit on its points (as ``align_pair`` makes it)."""
    ransac = pycolmap.RANSACOptions()
    ransac.max_error = 0.03
    fit = pycolmap.estimate_sim3d_robust(xa, xb, ransac)
    return {"a": a, "b": b, "accepted": True, "inliers": int(fit["num_inliers"]), "_sim": fit["tgt_from_src"],
            "_points": (xa, xb)}


def test_refinement_keeps_the_static_structure_when_a_moved_part_dominates_one_pair():
    rng = np.random.default_rng(0)
    static = rng.uniform(-1, 1, (300, 3))
    part = rng.uniform(-0.1, 0.1, (600, 3)) + [0.5, 0.5, 0]
    videos = ["v0", "v1", "v2", "v3"]
    offsets = {v: np.r_[rng.uniform(-0.05, 0.05, 2), 0.0] for v in videos}  # the part moves a few cm per video
    world_from = {v: _sim(rng) for v in videos}
    seen = {v: np.r_[static, part + offsets[v]] for v in videos}
    local = {v: world_from[v].inverse() * (seen[v] + rng.normal(0, 1e-3, seen[v].shape)) for v in videos}
    edges = []
    for i, a in enumerate(videos):
        for b in videos[i + 1:]:
            # only v0↔v1 films the part up close: there it outnumbers the static points 2:1
            keep = np.arange(900) if (a, b) == ("v0", "v1") else np.r_[np.arange(300), rng.choice(600, 60) + 300]
            edges.append(_edge(a, b, local[a][keep], local[b][keep]))
    direct = edges[0]["_sim"]
    true_v1_from_v0 = world_from["v1"].inverse() * world_from["v0"]
    static_v0 = local["v0"][:300]
    assert np.abs(direct * static_v0 - true_v1_from_v0 * static_v0).max() > 0.01  # the pair alone follows the part

    reference, shared, unaligned = compose_graph(videos, edges)
    refined, stats = refine(reference, shared, edges, AlignConfig(refine_threshold=0.005), 1.0)
    assert not unaligned and set(stats) == set(videos) - {reference}
    for v in videos:  # every video's static points land where the reference's static points are
        ref_from_v = world_from[reference].inverse() * world_from[v]
        err = np.linalg.norm(refined[v] * local[v][:300] - ref_from_v * local[v][:300], axis=1)
        assert err.max() < 0.005, (v, err.max())
