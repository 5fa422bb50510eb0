"""Cross-video alignment without a joint reconstruction (source §5.3.2–5.3.4).

The nodes are *segments*: each kept model of a video (segment 0, the largest, is named like the video;
segment k > 0 is ``<video>#<k>``), so the two sides of a cut are aligned like two videos. For each candidate
pair of nodes (every pair in a small scene; each node's most similar ones by whole-node VLAD, kept connected, in
a large one: O(n·k) pairs, not O(n²)): retrieve similar frames (VLAD), match SIFT between
them (mutual nearest neighbours + ratio test + fundamental-matrix RANSAC), lift the 2D matches to 3D–3D
through both models, and fit a robust Sim(3). Accepted alignments are the edges of a graph whose shortest
paths compose every node into the reference's frame, the scene's *shared frame*. The output folder is
read and written by :class:`Alignment` only.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import networkx as nx
import numpy as np
import pycolmap
from scipy.spatial import cKDTree

from recon.io import InputError, atomic_dir, atomic_write_json, read_json
from recon.reconstruct import Model, load_model, read_features, segment_dirs
from recon.retrieval import learn_codebook, mutual_matches, top_pairs, vlad
from recon.sim3 import sim3_from_json, sim3_to_json

log = logging.getLogger(__name__)


@dataclass
class AlignConfig:
    """How videos of a scene are aligned into one shared frame."""

    frame_pairs: int = 30
    """Top-N_M retrieved frame pairs matched per video pair."""
    codebook_size: int = 64
    """VLAD codebook size (learned on the scene's own SIFT descriptors)."""
    ratio: float = 0.85
    """Lowe ratio test on SIFT matches (lower is stricter)."""
    fundamental_max_error: float = 4.0
    """RANSAC threshold (pixels) of the fundamental-matrix check on each frame pair."""
    min_pair_matches: int = 15
    """Frame pairs with fewer geometrically verified matches are dropped."""
    lift_radius_px: float = 3.0
    """A matched keypoint without a 3D point takes the 3D point of the nearest observed keypoint within this radius."""
    inlier_threshold: float = 0.03
    """Sim(3) RANSAC inlier threshold, as a fraction of the target model's robust size (median point spread)."""
    min_inliers: int = 40
    """An alignment needs at least this many 3D–3D inliers to become an edge."""
    min_inlier_ratio: float = 0.25
    """... and at least this inlier ratio."""
    refine_threshold: float = 0.01
    """Inlier threshold of the graph-wide refinement, as a fraction of the reference model's robust size.

    Parts that moved between videos can outnumber the static structure in one video pair, so a pair's
    own Sim(3) may follow them; across all of a video's neighbours only the static structure agrees."""
    refine_sweeps: int = 5
    """Sweeps of the graph-wide refinement (0: keep the composed shortest-path transforms)."""
    video_pairs_per_node: int = 5
    """Node pairs matched per node: each node's top-k most similar nodes by mean-VLAD retrieval, plus a maximum
    spanning tree of that similarity so the candidates connect every node, plus, for a node left unlinked, its
    next k candidates towards the aligned ones; 0 matches every pair. Pairs grow as O(n·k) instead of O(n²); with
    k = 5 a scene of up to 6 nodes still matches every pair (as before), and redundant edges beyond the top few
    add little to the graph-wide refinement."""
    seed: int = 0
    """Seed of the codebook and of RANSAC."""


@dataclass
class VideoModel:
    """What alignment needs of one reconstructed video: its model and each registered frame's features."""

    name: str
    image_ids: list[int]
    keypoints: list[np.ndarray]
    """Per registered frame, (n, 2) keypoint positions."""
    descriptors: list[np.ndarray]
    """Per registered frame, (n, 128) L2-normalised float32 SIFT descriptors."""
    point_ids: list[np.ndarray]
    """Per registered frame, (n,) 3D point id observed by each keypoint (-1 when none)."""
    points3d_ids: np.ndarray
    """(m,) sorted ids of the model's 3D points ..."""
    points3d_xyz: np.ndarray
    """... and their (m, 3) positions: plain arrays, so a model (or a slice of it) can travel to another process."""
    size: float
    """Robust size of the whole model: median distance of its points to their median."""

    def xyz(self, ids: np.ndarray) -> np.ndarray:
        """Positions of the given 3D point ids."""
        return self.points3d_xyz[np.searchsorted(self.points3d_ids, ids)].reshape(-1, 3)

    def frames(self, keep: list[int]) -> VideoModel:
        """Only the given frames (in that order) and the 3D points they observe: what one pair's matching needs."""
        pids = [self.point_ids[i] for i in keep]
        used = np.isin(self.points3d_ids, np.concatenate([p[p >= 0] for p in pids]) if pids else [])
        return VideoModel(self.name, [self.image_ids[i] for i in keep], [self.keypoints[i] for i in keep],
                          [self.descriptors[i] for i in keep], pids, self.points3d_ids[used],
                          self.points3d_xyz[used], self.size)


def node_name(video: str, segment: int) -> str:
    """Graph node of a video's segment: the video's name for segment 0 (the largest), ``<video>#<k>`` else."""
    return video if segment == 0 else f"{video}#{segment}"


def load_video_model(name: str, sfm_dir: Path, segment: int = 0) -> VideoModel:
    """Read one of a video's models and the SIFT features of its registered frames from its database."""
    rec = load_model(sfm_dir, segment)
    db = pycolmap.Database.open(str(Model(sfm_dir).database))
    try:
        by_name = {im.name: im.image_id for im in db.read_all_images()}
        ids, kps, descs, pids = [], [], [], []
        for image_id in sorted(rec.reg_image_ids()):
            image = rec.images[image_id]
            db_id = by_name[image.name]
            kp, d = read_features(db, db_id)
            pid = np.full(len(kp), -1, np.int64)
            for k, p in enumerate(image.points2D):
                if p.has_point3D():
                    pid[k] = p.point3D_id
            ids.append(image_id)
            kps.append(kp)
            descs.append(d)
            pids.append(pid)
    finally:
        db.close()
    point_ids = np.array(sorted(rec.points3D), np.int64)
    xyz = np.array([rec.points3D[p].xyz for p in point_ids]).reshape(-1, 3)
    size = float(np.median(np.linalg.norm(xyz - np.median(xyz, axis=0), axis=1))) if len(xyz) else 0.0
    return VideoModel(name, ids, kps, descs, pids, point_ids, xyz, size)


def _lift(points: np.ndarray, kp: np.ndarray, pid: np.ndarray, radius: float) -> np.ndarray:
    """3D point id for each keypoint index in ``points`` (own point, else nearest observed within radius)."""
    out = pid[points].copy()
    observed = np.nonzero(pid >= 0)[0]
    missing = np.nonzero(out < 0)[0]
    if len(observed) and len(missing) and radius > 0:
        dist, j = cKDTree(kp[observed]).query(kp[points[missing]], distance_upper_bound=radius)
        ok = np.isfinite(dist)
        out[missing[ok]] = pid[observed[j[ok]]]
    return out


def correspondences_3d(a: VideoModel, b: VideoModel, pairs: list[tuple[int, int, float]],
                       conf: AlignConfig) -> tuple[np.ndarray, np.ndarray, int]:
    """Aggregated unique 3D–3D correspondences (Xa, Xb) over the frame pairs, and the verified 2D match count."""
    links: set[tuple[int, int]] = set()
    verified = 0
    ransac = pycolmap.RANSACOptions()
    ransac.max_error = conf.fundamental_max_error
    ransac.random_seed = conf.seed
    for i, j, _ in pairs:
        m = mutual_matches(a.descriptors[i], b.descriptors[j], conf.ratio)
        if len(m) < max(8, conf.min_pair_matches):
            continue
        geo = pycolmap.estimate_fundamental_matrix(a.keypoints[i][m[:, 0]], b.keypoints[j][m[:, 1]], ransac)
        if geo is None or geo["num_inliers"] < conf.min_pair_matches:
            continue
        m = m[np.asarray(geo["inlier_mask"], bool)]
        verified += len(m)
        pa = _lift(m[:, 0], a.keypoints[i], a.point_ids[i], conf.lift_radius_px)
        pb = _lift(m[:, 1], b.keypoints[j], b.point_ids[j], conf.lift_radius_px)
        ok = (pa >= 0) & (pb >= 0)
        links.update(zip(pa[ok].tolist(), pb[ok].tolist(), strict=True))
    if not links:
        return np.zeros((0, 3)), np.zeros((0, 3)), verified
    la, lb = np.array(sorted(links)).T
    return a.xyz(la), b.xyz(lb), verified


def align_pair(a: VideoModel, b: VideoModel, pairs: list[tuple[int, int, float]], conf: AlignConfig) -> dict:
    """Robust Sim(3) ``b_from_a`` of one video pair and its quality; ``accepted`` says if it makes an edge."""
    xa, xb, verified = correspondences_3d(a, b, pairs, conf)
    result = {"a": a.name, "b": b.name, "frame_pairs": len(pairs), "matches_2d": verified,
              "correspondences_3d": len(xa), "inliers": 0, "inlier_ratio": 0.0, "accepted": False}
    if len(xa) < 3:
        result["reason"] = "too few 3D-3D correspondences"
        return result
    threshold = conf.inlier_threshold * b.size
    ransac = pycolmap.RANSACOptions()
    ransac.max_error = threshold
    ransac.random_seed = conf.seed
    fit = pycolmap.estimate_sim3d_robust(xa, xb, ransac)
    if fit is None:
        result["reason"] = "Sim(3) RANSAC failed"
        return result
    sim = fit["tgt_from_src"]
    residual = np.linalg.norm(sim * xa - xb, axis=1)
    inliers = residual < threshold
    result |= {"inliers": int(inliers.sum()), "inlier_ratio": round(float(inliers.mean()), 4),
               "residual": round(float(residual[inliers].mean() / b.size), 5) if inliers.any() else None,
               "b_from_a": sim3_to_json(sim)}
    if inliers.sum() < conf.min_inliers or inliers.mean() < conf.min_inlier_ratio:
        result["reason"] = (f"{int(inliers.sum())} inliers ({inliers.mean():.0%}) below the thresholds "
                            f"({conf.min_inliers}, {conf.min_inlier_ratio:.0%})")
        return result
    result["accepted"] = True
    result["_points"] = (xa, xb)
    return result


@dataclass
class PairJob:
    """One node pair's matching, self-contained (no paths, plain arrays) so any process or machine can run it."""

    a: VideoModel
    b: VideoModel
    frame_pairs: list[tuple[int, int, float]]
    """Retrieved frame pairs, indexing the frames of ``a`` and ``b`` as sliced here."""
    conf: AlignConfig


def pair_job(a: VideoModel, b: VideoModel, ga: np.ndarray, gb: np.ndarray, conf: AlignConfig) -> PairJob:
    """Retrieve a node pair's most similar frames and slice both models down to them."""
    pairs = top_pairs(ga, gb, conf.frame_pairs)
    fa, fb = sorted({i for i, _, _ in pairs}), sorted({j for _, j, _ in pairs})
    ia, ib = {f: n for n, f in enumerate(fa)}, {f: n for n, f in enumerate(fb)}
    return PairJob(a.frames(fa), b.frames(fb), [(ia[i], ib[j], s) for i, j, s in pairs], conf)


def run_pair_job(job: PairJob) -> dict:
    """:func:`align_pair` of a :class:`PairJob`: the per-pair work a caller's ``map`` may run anywhere."""
    return align_pair(job.a, job.b, job.frame_pairs, job.conf)


def node_similarity(globals_: list[np.ndarray]) -> np.ndarray:
    """Whole-node retrieval score: cosine similarity of the nodes' mean frame VLADs (n × n)."""
    means = np.stack([g.mean(axis=0) for g in globals_])
    means /= np.linalg.norm(means, axis=1, keepdims=True) + 1e-12
    return means @ means.T


def candidate_pairs(similarity: np.ndarray, k: int) -> list[tuple[int, int]]:
    """Node pairs worth matching: each node's ``k`` most similar nodes plus a maximum spanning tree of the
    similarity (so the candidates connect every node); every pair when ``k`` is 0 or covers them all.

    At most n·k + n − 1 pairs, however many nodes."""
    n = len(similarity)
    if k <= 0 or k >= n - 1:
        return list(itertools.combinations(range(n), 2))
    chosen: set[tuple[int, int]] = set()
    for i in range(n):
        others = [j for j in np.argsort(-similarity[i], kind="stable") if j != i][:k]
        chosen.update((min(i, j), max(i, j)) for j in map(int, others))
    g = nx.Graph()
    g.add_weighted_edges_from((i, j, float(similarity[i, j])) for i, j in itertools.combinations(range(n), 2))
    g.add_nodes_from(range(n))
    chosen.update((min(i, j), max(i, j)) for i, j in nx.maximum_spanning_tree(g).edges())
    return sorted(chosen)


def compose_graph(videos: list[str], edges: list[dict]) -> tuple[str | None, dict[str, pycolmap.Sim3d], dict[str, str]]:
    """Reference video and ``shared_from_video`` for every video connected to it (Dijkstra over 1/inliers).

    The reference is the best-connected video (largest total inliers) of the largest component.
    """
    g = nx.Graph()
    g.add_nodes_from(videos)
    for e in edges:
        if e["accepted"]:
            g.add_edge(e["a"], e["b"], weight=1.0 / e["inliers"], sim=e["_sim"], src=e["a"])
    if not videos:
        return None, {}, {}
    component = max(nx.connected_components(g), key=lambda c: (len(c), sorted(c)))
    strength = dict(g.degree(weight=None))
    inliers = {v: sum(1.0 / d["weight"] for _, _, d in g.edges(v, data=True)) for v in component}
    reference = max(sorted(component), key=lambda v: (inliers[v], strength[v]))
    paths = nx.single_source_dijkstra_path(g, reference, weight="weight")
    shared: dict[str, pycolmap.Sim3d] = {}
    for v, path in paths.items():
        t = pycolmap.Sim3d()  # ref_from_v, built from the reference outwards
        for u, w in itertools.pairwise(path):
            d = g.edges[u, w]
            w_from_u = d["sim"] if d["src"] == u else d["sim"].inverse()
            t = t * w_from_u.inverse()
        shared[v] = t
    unaligned = {v: "no accepted alignment links it to the reference video " + reference
                 for v in videos if v not in shared}
    return reference, shared, unaligned


def refine(reference: str, shared: dict[str, pycolmap.Sim3d], edges: list[dict], conf: AlignConfig,
           reference_size: float) -> tuple[dict[str, pycolmap.Sim3d], dict[str, dict]]:
    """Use every accepted edge, not just the shortest-path tree: robust block-coordinate refitting.

    Each non-reference video's Sim(3) is refitted by RANSAC to *all* its 3D–3D correspondences with its
    aligned neighbours, the neighbours' points placed in the shared frame by their current transforms; the
    reference fixes the gauge. Static structure agrees across neighbours while a moved part's offset
    differs per neighbour, so a tight threshold keeps the static majority. Sweeps spread cycle redundancy.
    """
    links: dict[str, list[tuple[np.ndarray, str, np.ndarray]]] = {v: [] for v in shared}
    for e in edges:
        if e["accepted"] and e["a"] in shared and e["b"] in shared:
            xa, xb = e["_points"]
            links[e["a"]].append((xa, e["b"], xb))
            links[e["b"]].append((xb, e["a"], xa))
    ransac = pycolmap.RANSACOptions()
    ransac.max_error = conf.refine_threshold * reference_size
    ransac.random_seed = conf.seed
    out, stats = dict(shared), {}
    for _ in range(conf.refine_sweeps):
        for v in sorted(out):
            if v == reference or not links[v]:
                continue
            src = np.concatenate([own for own, _, _ in links[v]])
            tgt = np.concatenate([out[u] * other for _, u, other in links[v]])
            fit = pycolmap.estimate_sim3d_robust(src, tgt, ransac)
            if fit is not None and fit["num_inliers"] >= conf.min_inliers:
                out[v] = fit["tgt_from_src"]
                stats[v] = {"correspondences_3d": len(src), "inliers": int(fit["num_inliers"])}
    return out, stats


def _match(pairs: list[tuple[int, int]], models: list[VideoModel], globals_: list[np.ndarray], conf: AlignConfig,
           map_pairs: Callable[[Callable, Iterable], Iterator], progress) -> list[dict]:
    """Match node pairs through ``map_pairs`` (results in order); accepted edges get their Sim(3) back."""
    jobs = (pair_job(models[i], models[j], globals_[i], globals_[j], conf) for i, j in pairs)
    edges = []
    for n, e in enumerate(map_pairs(run_pair_job, jobs)):
        if e["accepted"]:
            e["_sim"] = sim3_from_json(e["b_from_a"])
        log.info("%s ↔ %s: %d 3D–3D, %d inliers (%s)", e["a"], e["b"], e["correspondences_3d"], e["inliers"],
                 "accepted" if e["accepted"] else e["reason"])
        edges.append(e)
        if progress:
            progress("aligning video pairs", n + 1, len(pairs))
    return edges


def main(conf: AlignConfig, sfm_dirs: dict[str, Path], out_dir: Path, progress=None,
         map_pairs: Callable[[Callable, Iterable], Iterator] | None = None) -> dict:
    """Align every segment of the given reconstructed videos of one scene; write graph.json and transforms.json
    atomically. ``map_pairs(fn, jobs)`` (default: the built-in ``map``) runs the per-pair work, so a caller can
    spread it over processes or machines; the jobs carry arrays only, no paths."""
    segments = [(v, k) for v in sorted(sfm_dirs) for k in segment_dirs(sfm_dirs[v])]
    names = [node_name(v, k) for v, k in segments]
    models = [load_video_model(node_name(v, k), sfm_dirs[v], k) for v, k in segments]
    kept = [i for i, m in enumerate(models) if m.descriptors]  # a model without registered frames links nothing
    segments, names, models = [segments[i] for i in kept], [names[i] for i in kept], [models[i] for i in kept]
    codebook = learn_codebook([d for m in models for d in m.descriptors], k=conf.codebook_size, seed=conf.seed)
    globals_ = [np.stack([vlad(d, codebook) for d in m.descriptors]) for m in models]
    similarity = node_similarity(globals_) if models else np.zeros((0, 0))
    pairs = candidate_pairs(similarity, conf.video_pairs_per_node)
    total = len(names) * (len(names) - 1) // 2
    if len(pairs) < total:
        log.info("matching %d of %d node pairs (each node's %d most similar + a spanning tree)", len(pairs), total,
                 conf.video_pairs_per_node)
    edges = _match(pairs, models, globals_, conf, map_pairs or map, progress)
    reference, shared, unaligned = compose_graph(names, edges)
    if unaligned and len(pairs) < total:  # top-k missed their partners: try each one's next k towards the aligned
        tried = set(pairs)
        more = []
        for u in (names.index(v) for v in unaligned):
            ranked = [int(j) for j in np.argsort(-similarity[u], kind="stable")
                      if names[j] in shared and (min(u, j), max(u, j)) not in tried]
            more += [(min(u, j), max(u, j)) for j in ranked[:conf.video_pairs_per_node]]
        more = sorted(set(more))
        log.info("%d node(s) not linked by their top pairs (%s): matching %d more pair(s)", len(unaligned),
                 ", ".join(sorted(unaligned)), len(more))
        edges += _match(more, models, globals_, conf, map_pairs or map, progress)
        pairs += more
        reference, shared, unaligned = compose_graph(names, edges)
    refined: dict[str, dict] = {}
    if reference is not None:
        shared, refined = refine(reference, shared, edges, conf, models[names.index(reference)].size)
    for v, why in unaligned.items():
        log.warning("%s: not aligned (%s)", v, why)
    alignment = Alignment(reference, {}, {}, {}, {
        "nodes": names, "reference": reference, "config": asdict(conf), "refined": refined,
        "pairs": {"matched": len(pairs), "all": total},
        "edges": [{k: v for k, v in e.items() if not k.startswith("_")} for e in edges]})
    for (video, k), node in zip(segments, names, strict=True):
        if node in shared:
            alignment.shared_from_segment.setdefault(video, {})[k] = shared[node]
        else:
            alignment.unaligned_segments.setdefault(video, {})[str(k)] = unaligned[node]
    alignment.unaligned.update({v: unaligned[v] for v in sorted(sfm_dirs)
                                if v not in alignment.shared_from_segment and v in unaligned})
    alignment.save(out_dir)
    return alignment.summary()


@dataclass
class Alignment:
    """A scene's alignment as saved in its folder — the one reader and writer of these files::

        graph.json        nodes, accepted and rejected edges (inliers, ratio, residual, ``b_from_a`` Sim(3))
        transforms.json   {"reference", "shared_from_video": {video: Sim(3) of segment 0},
                           "shared_from_segment": {video: {"<k>": Sim(3)}}, "unaligned": {video: why},
                           "unaligned_segments": {video: {"<k>": why}}}
    """

    reference: str | None
    shared_from_segment: dict[str, dict[int, pycolmap.Sim3d]]
    """Each aligned segment's Sim(3) into the shared frame, by video then segment (0 = the largest model)."""
    unaligned: dict[str, str]
    """Videos none of whose segments reached the shared frame, with the reason."""
    unaligned_segments: dict[str, dict[str, str]]
    graph: dict = field(default_factory=dict)
    """``graph.json``: nodes, reference, config, refinement and every tried edge."""

    @property
    def shared_from_video(self) -> dict[str, pycolmap.Sim3d]:
        """Segment 0 of each video whose largest model is aligned (the per-video transform of older releases)."""
        return {v: segs[0] for v, segs in self.shared_from_segment.items() if 0 in segs}

    def accepted_edges(self) -> dict[tuple[str, str], pycolmap.Sim3d]:
        """``b_from_a`` of every accepted edge, in both directions, keyed by (a, b) node names."""
        out = {}
        for e in self.graph.get("edges", []):
            if e["accepted"]:
                s = sim3_from_json(e["b_from_a"])
                out[(e["a"], e["b"])], out[(e["b"], e["a"])] = s, s.inverse()
        return out

    def summary(self) -> dict:
        """What ``align`` reports (and the CLI prints): reference, aligned/unaligned videos, segments, edges."""
        return {"reference": self.reference, "aligned": sorted(self.shared_from_segment),
                "unaligned": self.unaligned,
                "segments": {v: sorted(s) for v, s in self.shared_from_segment.items()},
                "unaligned_segments": self.unaligned_segments, "edges": self.graph.get("edges", [])}

    def save(self, out_dir: Path) -> None:
        transforms = {
            "reference": self.reference,
            "shared_from_video": {v: sim3_to_json(s) for v, s in sorted(self.shared_from_video.items())},
            "shared_from_segment": {v: {str(k): sim3_to_json(s) for k, s in sorted(segs.items())}
                                    for v, segs in sorted(self.shared_from_segment.items())},
            "unaligned": self.unaligned, "unaligned_segments": self.unaligned_segments}
        with atomic_dir(Path(out_dir)) as tmp:
            atomic_write_json(tmp / "graph.json", self.graph)
            atomic_write_json(tmp / "transforms.json", transforms)

    @staticmethod
    def is_done(out_dir: Path) -> bool:
        return (Path(out_dir) / "transforms.json").is_file()

    @classmethod
    def load(cls, out_dir: Path) -> Alignment:
        """Read a scene's alignment; folders written before segments existed read as segment 0 of each video."""
        out_dir = Path(out_dir)
        if not cls.is_done(out_dir):
            raise InputError(f"{out_dir}: no alignment there; run `howto3d align`")
        data = read_json(out_dir / "transforms.json")
        if "shared_from_segment" in data:
            by_segment = {v: {int(k): sim3_from_json(s) for k, s in segs.items()}
                          for v, segs in data["shared_from_segment"].items()}
        else:
            by_segment = {v: {0: sim3_from_json(s)} for v, s in data["shared_from_video"].items()}
        graph = read_json(out_dir / "graph.json") if (out_dir / "graph.json").is_file() else {}
        return cls(data.get("reference"), by_segment, data.get("unaligned", {}), data.get("unaligned_segments", {}),
                   graph)
