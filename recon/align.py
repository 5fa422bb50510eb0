"""Cross-video alignment without a joint reconstruction ([001] §5.3.2–5.3.4).

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
import time
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import networkx as nx
import numpy as np
import pycolmap
from scipy.spatial import cKDTree

from recon.config import AlignConfig
from recon.io import InputError, ProgressFn, atomic_dir, atomic_write_json, read_json
from recon.matching import match_frame_pairs
from recon.polish import polish
from recon.reconstruct import Model, load_model, segment_dirs
from recon.retrieval import learn_codebook, top_pairs, vlad
from recon.sim3 import estimate_sim3d_robust, sim3_from_json, sim3_to_json
from recon.types import Array, FloatArray, IntArray, JSONDict

log = logging.getLogger(__name__)


@dataclass
class VideoModel:
    """What alignment needs of one reconstructed video: its model and each registered frame's features."""

    name: str
    image_ids: list[int]
    keypoints: list[np.ndarray]
    """Per registered frame, (n, 2) keypoint positions."""
    descriptors: list[np.ndarray]
    """Per registered frame, (n, 128) uint8 SIFT descriptors as the database stores them (what COLMAP's matcher
    takes; a quarter of the float size when a pair travels to another process)."""
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
        return VideoModel(
            self.name,
            [self.image_ids[i] for i in keep],
            [self.keypoints[i] for i in keep],
            [self.descriptors[i] for i in keep],
            pids,
            self.points3d_ids[used],
            self.points3d_xyz[used],
            self.size,
        )


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
            kp = db.read_keypoints(db_id)[:, :2].astype(np.float64)
            d = db.read_descriptors(db_id).data
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


def _lift(points: Array, kp: Array, pid: IntArray, radius: float) -> IntArray:
    """3D point id for each keypoint index in ``points`` (own point, else nearest observed within radius)."""
    out: IntArray = pid[points].copy()
    observed = np.nonzero(pid >= 0)[0]
    missing = np.nonzero(out < 0)[0]
    if len(observed) and len(missing) and radius > 0:
        dist, j = cKDTree(kp[observed]).query(kp[points[missing]], distance_upper_bound=radius)
        ok = np.isfinite(dist)
        out[missing[ok]] = pid[observed[j[ok]]]
    return out


def correspondences_3d(
    a: VideoModel,
    b: VideoModel,
    pairs: list[tuple[int, int, float]],
    conf: AlignConfig,
    seconds: dict[str, float] | None = None,
    threads: int = -1,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Aggregated unique 3D–3D correspondences over the frame pairs, as point id pairs (ids in ``a``, ids in
    ``b``: the joint refinement fuses these very points), and the verified 2D match count.

    ``seconds`` (when given) accumulates the time spent in ``match`` (mutual NN + ratio test by COLMAP's
    matcher on ``threads`` cores, then fundamental RANSAC) and ``lift`` (2D matches to 3D point ids)."""
    links: set[tuple[int, int]] = set()
    verified = 0
    seconds = {} if seconds is None else seconds
    ransac = pycolmap.RANSACOptions()
    ransac.max_error = conf.fundamental_max_error
    ransac.random_seed = conf.seed
    t = time.perf_counter()
    matches = match_frame_pairs(
        [a.keypoints, b.keypoints], [a.descriptors, b.descriptors], [(i, j) for i, j, _ in pairs], conf.ratio, threads
    )
    seconds["match"] = seconds.get("match", 0.0) + time.perf_counter() - t
    for (i, j, _), m in zip(pairs, matches, strict=True):
        t = time.perf_counter()
        geo = None
        if len(m) >= max(8, conf.min_pair_matches):
            geo = pycolmap.estimate_fundamental_matrix(a.keypoints[i][m[:, 0]], b.keypoints[j][m[:, 1]], ransac)
        seconds["match"] = seconds.get("match", 0.0) + time.perf_counter() - t
        if geo is None or geo["num_inliers"] < conf.min_pair_matches:
            continue
        t = time.perf_counter()
        m = m[np.asarray(geo["inlier_mask"], bool)]
        verified += len(m)
        pa = _lift(m[:, 0], a.keypoints[i], a.point_ids[i], conf.lift_radius_px)
        pb = _lift(m[:, 1], b.keypoints[j], b.point_ids[j], conf.lift_radius_px)
        ok = (pa >= 0) & (pb >= 0)
        links.update(zip(pa[ok].tolist(), pb[ok].tolist(), strict=True))
        seconds["lift"] = seconds.get("lift", 0.0) + time.perf_counter() - t
    if not links:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), verified
    la, lb = np.array(sorted(links), np.int64).T
    return la, lb, verified


@dataclass
class Edge:
    """One tried node pair of the alignment graph (accepted or not): ``graph.json`` stores :meth:`to_json` of each.

    The fields up to ``reused`` are that record; the ones after it live in memory only (never saved)."""

    a: str
    b: str
    frame_pairs: int = 0
    """Retrieved frame pairs matched between the two nodes."""
    matches_2d: int = 0
    """2D matches verified by the fundamental matrix, over all frame pairs."""
    correspondences_3d: int = 0
    inliers: int = 0
    inlier_ratio: float = 0.0
    accepted: bool = False
    """Whether it is an edge of the graph (enough Sim(3) inliers)."""
    residual: float | None = None
    """Mean inlier residual over the size of ``b``'s model (``None`` without inliers); recorded with ``b_from_a``."""
    b_from_a: JSONDict | None = None
    """The fitted Sim(3) as JSON (``None`` when none was fitted)."""
    reason: str | None = None
    """Why it was rejected (``None`` when accepted)."""
    reused: bool = False
    """Kept from the previous alignment rather than matched in this run."""
    sim: pycolmap.Sim3d | None = field(default=None, repr=False, compare=False)
    """``b_from_a`` as a Sim(3), for an accepted edge (what composing the graph walks along)."""
    points: tuple[FloatArray, FloatArray] | None = field(default=None, repr=False, compare=False)
    """An edge matched in this run: its 3D–3D correspondences, positions in ``a`` and in ``b`` (refinement)."""
    ids: tuple[IntArray, IntArray] | None = field(default=None, repr=False, compare=False)
    """... and their 3D point ids (the joint adjustment fuses these points)."""
    seconds: dict[str, float] | None = field(default=None, repr=False, compare=False)
    """An edge matched in this run: its time split into match, lift, sim3."""

    def to_json(self) -> JSONDict:
        """The record ``graph.json`` holds (key order as written since the first release)."""
        out: JSONDict = {
            "a": self.a,
            "b": self.b,
            "frame_pairs": self.frame_pairs,
            "matches_2d": self.matches_2d,
            "correspondences_3d": self.correspondences_3d,
            "inliers": self.inliers,
            "inlier_ratio": self.inlier_ratio,
            "accepted": self.accepted,
        }
        if self.b_from_a is not None:
            out |= {"residual": self.residual, "b_from_a": self.b_from_a}
        if self.reason is not None:
            out["reason"] = self.reason
        return out | {"reused": self.reused}

    @classmethod
    def from_json(cls, d: JSONDict) -> Edge:
        """An edge as ``graph.json`` stores it; an accepted one gets its Sim(3) back."""
        return cls(
            d["a"],
            d["b"],
            d["frame_pairs"],
            d["matches_2d"],
            d["correspondences_3d"],
            d["inliers"],
            d["inlier_ratio"],
            d["accepted"],
            d.get("residual"),
            d.get("b_from_a"),
            d.get("reason"),
            d.get("reused", False),
            sim=sim3_from_json(d["b_from_a"]) if d["accepted"] else None,
        )


def align_pair(
    a: VideoModel, b: VideoModel, pairs: list[tuple[int, int, float]], conf: AlignConfig, threads: int = -1
) -> Edge:
    """Robust Sim(3) ``b_from_a`` of one video pair and its quality; ``accepted`` says if it makes an edge.

    Its ``seconds`` (never saved) split its time into match, lift, sim3; an accepted edge keeps its correspondences
    in memory as ``points`` (positions) and ``ids`` (3D point ids)."""
    seconds = {"match": 0.0, "lift": 0.0, "sim3": 0.0}
    ids_a, ids_b, verified = correspondences_3d(a, b, pairs, conf, seconds, threads)
    xa, xb = a.xyz(ids_a), b.xyz(ids_b)
    edge = Edge(
        a.name, b.name, frame_pairs=len(pairs), matches_2d=verified, correspondences_3d=len(xa), seconds=seconds
    )
    if len(xa) < 3:
        edge.reason = "too few 3D-3D correspondences"
        return edge
    threshold = conf.inlier_threshold * b.size
    ransac = pycolmap.RANSACOptions()
    ransac.max_error = threshold
    ransac.random_seed = conf.seed
    t = time.perf_counter()
    fit = estimate_sim3d_robust(xa, xb, ransac)
    seconds["sim3"] = time.perf_counter() - t
    if fit is None:
        edge.reason = "Sim(3) RANSAC failed"
        return edge
    sim = fit["tgt_from_src"]
    residual = np.linalg.norm(sim * xa - xb, axis=1)
    inliers = residual < threshold
    edge.inliers, edge.inlier_ratio = int(inliers.sum()), round(float(inliers.mean()), 4)
    edge.residual = round(float(residual[inliers].mean() / b.size), 5) if inliers.any() else None
    edge.b_from_a = sim3_to_json(sim)
    if inliers.sum() < conf.min_inliers or inliers.mean() < conf.min_inlier_ratio:
        edge.reason = (
            f"{int(inliers.sum())} inliers ({inliers.mean():.0%}) below the thresholds "
            f"({conf.min_inliers}, {conf.min_inlier_ratio:.0%})"
        )
        return edge
    edge.accepted = True
    edge.points, edge.ids = (xa, xb), (ids_a, ids_b)
    return edge


@dataclass
class PairJob:
    """One node pair's matching, self-contained (no paths, plain arrays) so any process or machine can run it."""

    a: VideoModel
    b: VideoModel
    frame_pairs: list[tuple[int, int, float]]
    """Retrieved frame pairs, indexing the frames of ``a`` and ``b`` as sliced here."""
    conf: AlignConfig
    threads: int = -1
    """Cores its matching may use: all in this process (-1), one as a Ray task (what the task requests)."""


def pair_job(
    a: VideoModel, b: VideoModel, ga: np.ndarray, gb: np.ndarray, conf: AlignConfig, threads: int = -1
) -> PairJob:
    """Retrieve a node pair's most similar frames and slice both models down to them."""
    pairs = top_pairs(ga, gb, conf.frame_pairs)
    fa, fb = sorted({i for i, _, _ in pairs}), sorted({j for _, j, _ in pairs})
    ia, ib = {f: n for n, f in enumerate(fa)}, {f: n for n, f in enumerate(fb)}
    return PairJob(a.frames(fa), b.frames(fb), [(ia[i], ib[j], s) for i, j, s in pairs], conf, threads)


def run_pair_job(job: PairJob) -> Edge:
    """:func:`align_pair` of a :class:`PairJob`: the per-pair work a caller's ``map`` may run anywhere."""
    return align_pair(job.a, job.b, job.frame_pairs, job.conf, job.threads)


MapPairs = Callable[[Callable[[PairJob], Edge], Iterable[PairJob]], Iterator[Edge]]
"""``map_pairs(run_pair_job, jobs)``: how :func:`main` runs the per-pair work (results in order), anywhere."""


def node_similarity(globals_: list[Array]) -> FloatArray:
    """Whole-node retrieval score: cosine similarity of the nodes' mean frame VLADs (n × n)."""
    means: FloatArray = np.stack([g.mean(axis=0) for g in globals_])
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


def _graph(nodes: list[str], edges: list[Edge]) -> nx.Graph:
    """Accepted edges between the given nodes, weighted 1/inliers (strong links are short)."""
    g = nx.Graph()
    g.add_nodes_from(nodes)
    for e in edges:
        if e.accepted and e.a in g and e.b in g:
            g.add_edge(e.a, e.b, weight=1.0 / e.inliers, sim=e.sim, src=e.a)
    return g


def compose_graph(videos: list[str], edges: list[Edge]) -> tuple[str | None, dict[str, pycolmap.Sim3d], dict[str, str]]:
    """Reference video and ``shared_from_video`` for every video connected to it (Dijkstra over 1/inliers).

    The reference is the best-connected video (largest total inliers) of the largest component.
    """
    if not videos:
        return None, {}, {}
    g = _graph(videos, edges)
    component = max(nx.connected_components(g), key=lambda c: (len(c), sorted(c)))
    strength = dict(g.degree(weight=None))
    inliers = {v: sum(1.0 / d["weight"] for _, _, d in g.edges(v, data=True)) for v in component}
    reference = max(sorted(component), key=lambda v: (inliers[v], strength[v]))
    shared, unaligned = compose_onto(videos, edges, {reference: pycolmap.Sim3d()}, reference)
    return reference, shared, unaligned


def compose_onto(
    nodes: list[str], edges: list[Edge], fixed: dict[str, pycolmap.Sim3d], reference: str
) -> tuple[dict[str, pycolmap.Sim3d], dict[str, str]]:
    """``frame_from_node`` of every node linked to the ``fixed`` ones, which keep the transforms given: each other
    node is composed along its shortest path (Dijkstra over 1/inliers) from the nearest fixed node.

    With only the reference fixed (at the identity) this is a first alignment; with the nodes of a previous
    alignment fixed, new videos join a frame that does not move. Unlinked nodes come back with the reason."""
    g = _graph(nodes, edges)
    paths = nx.multi_source_dijkstra_path(g, sorted(fixed), weight="weight")
    shared: dict[str, pycolmap.Sim3d] = {}
    for v, path in paths.items():
        t = fixed[path[0]]  # frame_from_v, built from the fixed node outwards
        for u, w in itertools.pairwise(path):
            d = g.edges[u, w]
            w_from_u = d["sim"] if d["src"] == u else d["sim"].inverse()
            t = t * w_from_u.inverse()
        shared[v] = t
    unaligned = {
        v: f"no accepted alignment links it to the reference video {reference} or the videos aligned with it"
        for v in nodes
        if v not in shared
    }  # one wording: a rerun that moved nothing rewrites the same file
    return shared, unaligned


def refine(
    reference: str,
    shared: dict[str, pycolmap.Sim3d],
    edges: list[Edge],
    conf: AlignConfig,
    reference_size: float,
    fixed: Collection[str] = (),
) -> tuple[dict[str, pycolmap.Sim3d], dict[str, dict[str, int]]]:
    """Use every accepted edge, not just the shortest-path tree: robust block-coordinate refitting.

    Each non-reference video's Sim(3) is refitted by RANSAC to *all* its 3D–3D correspondences with its
    aligned neighbours, the neighbours' points placed in the shared frame by their current transforms; the
    reference fixes the gauge. Static structure agrees across neighbours while a moved part's offset
    differs per neighbour, so a tight threshold keeps the static majority. Sweeps spread cycle redundancy.
    The ``fixed`` nodes (kept from a previous alignment) keep their transforms and only pull the others;
    edges reused from a previous run carry no correspondences and pull nothing.
    """
    links: dict[str, list[tuple[FloatArray, str, FloatArray]]] = {v: [] for v in shared}
    for e in edges:
        if e.accepted and e.points is not None and e.a in shared and e.b in shared:
            xa, xb = e.points
            links[e.a].append((xa, e.b, xb))
            links[e.b].append((xb, e.a, xa))
    ransac = pycolmap.RANSACOptions()
    ransac.max_error = conf.refine_threshold * reference_size
    ransac.random_seed = conf.seed
    out, stats = dict(shared), {}
    for _ in range(conf.refine_sweeps):
        for v in sorted(out):
            if v == reference or v in fixed or not links[v]:
                continue
            src = np.concatenate([own for own, _, _ in links[v]])
            tgt = np.concatenate([out[u] * other for _, u, other in links[v]])
            fit = estimate_sim3d_robust(src, tgt, ransac)
            if fit is not None and fit["num_inliers"] >= conf.min_inliers:
                out[v] = fit["tgt_from_src"]
                stats[v] = {"correspondences_3d": len(src), "inliers": int(fit["num_inliers"])}
    return out, stats


def _match(
    pairs: list[tuple[int, int]],
    models: list[VideoModel],
    globals_: list[Array],
    conf: AlignConfig,
    map_pairs: MapPairs | None,
    progress: ProgressFn | None,
) -> list[Edge]:
    """Match node pairs through ``map_pairs`` (results in order; None: here, one after another, on every core);
    accepted edges get their Sim(3) back."""
    threads = -1 if map_pairs is None else 1
    jobs = (pair_job(models[i], models[j], globals_[i], globals_[j], conf, threads) for i, j in pairs)
    edges = []
    for n, e in enumerate((map_pairs or map)(run_pair_job, jobs)):
        e.reused = False
        if e.accepted and e.b_from_a is not None:
            e.sim = sim3_from_json(e.b_from_a)
        log.info(
            "%s ↔ %s: %d 3D–3D, %d inliers (%s)",
            e.a,
            e.b,
            e.correspondences_3d,
            e.inliers,
            "accepted" if e.accepted else e.reason,
        )
        edges.append(e)
        if progress:
            progress("aligning video pairs", n + 1, len(pairs))
    return edges


def _video_of(node: str) -> str:
    """The video of a graph node (inverse of :func:`node_name`)."""
    video, _, k = node.rpartition("#")
    return video if video and k.isdigit() else node


_FRAME_ONLY = {"upright"}
"""Settings that shape only a new frame: changing them keeps the edges and transforms of a kept frame."""


@dataclass
class _Kept:
    """What a run keeps of the previous alignment (see :func:`main`)."""

    frame: JSONDict
    fixed: dict[str, pycolmap.Sim3d]
    """Aligned nodes whose transform is kept exactly (their video's models are unchanged)."""
    edges: list[Edge]
    """Tried edges between nodes of unchanged videos (accepted ones with their Sim(3) back)."""
    rematch: set[str]
    """Nodes whose pairs are matched: new or changed videos (every node when the matching settings changed)."""
    codebook: Array | None


def _keep(
    previous: Alignment | None, conf: AlignConfig, fingerprints: dict[str, str], names: list[str], reanchor: bool
) -> tuple[_Kept | None, JSONDict]:
    """What of ``previous`` this run keeps (``None``: create the frame anew) and why, as graph.json records it."""
    if previous is None:
        return None, {"status": "created", "why": "first alignment"}
    if reanchor:
        return None, {"status": "reanchored", "why": "asked for (--reanchor)"}
    old_fps, reference = previous.graph.get("fingerprints"), previous.frame.get("reference")
    if old_fps is None or reference is None:
        return None, {"status": "created", "why": "the previous alignment predates recorded shared frames"}
    video = _video_of(reference)
    if video not in fingerprints:
        return None, {"status": "reanchored", "why": f"the reference video {video} was removed"}
    if fingerprints[video] != old_fps.get(video) or reference not in names:
        return None, {"status": "reanchored", "why": f"the reference video {video} was reconstructed again"}
    unchanged = {v for v, fp in fingerprints.items() if old_fps.get(v) == fp}
    old_conf, new_conf = previous.graph.get("config", {}), asdict(conf)
    same = all(old_conf[k] == new_conf[k] for k in old_conf.keys() & new_conf.keys() - _FRAME_ONLY)
    stored = {node_name(v, k): s for v, segs in previous.shared_from_segment.items() for k, s in segs.items()}
    if not same:
        log.info(
            "align settings changed since the last alignment: every pair is matched again; the shared frame "
            "(reference %s) is kept",
            reference,
        )
        return _Kept(previous.frame, {reference: stored[reference]}, [], set(names), None), {
            "status": "kept",
            "why": "settings changed: every pair matched again",
        }
    keep = {n for n in names if _video_of(n) in unchanged}
    edges = [
        replace(Edge.from_json(e), reused=True)
        for e in previous.graph.get("edges", [])
        if e["a"] in keep and e["b"] in keep
    ]
    return _Kept(
        previous.frame, {n: s for n, s in stored.items() if n in keep}, edges, set(names) - keep, previous.codebook
    ), {"status": "kept", "why": None}


_UPRIGHT_MAX_POINTS = 200_000
"""Points handed to the gravity-up estimate (a seeded sample): a median and a plane need no more."""


def _new_frame(
    conf: AlignConfig,
    reference: str,
    ref_from_node: dict[str, pycolmap.Sim3d],
    sources: dict[str, tuple[Path, int, VideoModel]],
    previous: Alignment | None,
    fingerprints: dict[str, str],
) -> tuple[JSONDict, pycolmap.Sim3d]:
    """A new frame record and ``frame_from_reference``: upright (``conf.upright``) around the aligned cameras and
    points, metric when the previous frame was and a video aligned in both carries its scale over."""
    frame_from_reference, up = pycolmap.Sim3d(), {"method": "off: the reference video's own SfM frame"}
    if conf.upright:
        from recon.shared_frame import upright  # imports open3d: paid only when a frame is created

        cams, points = [], []
        for node, sim in sorted(ref_from_node.items()):
            sfm_dir, segment, model = sources[node]
            rec = load_model(sfm_dir, segment)
            rec.transform(sim)
            cams += [rec.images[i].cam_from_world().matrix() for i in sorted(rec.reg_image_ids())]
            points.append(sim * model.points3d_xyz)
        pts = np.concatenate(points)
        if len(pts) > _UPRIGHT_MAX_POINTS:
            pts = pts[np.sort(np.random.default_rng(conf.seed).choice(len(pts), _UPRIGHT_MAX_POINTS, replace=False))]
        try:
            frame_from_reference, up = upright(cams, pts)
        except InputError as e:
            log.warning("the shared frame keeps the reference video's orientation: %s", e)
            up = {"method": "none", "why": str(e)}
    frame: JSONDict = {
        "reference": reference,
        "frame_from_reference": None,
        "metric_scale": None,
        "units": "model",
        "up": up,
    }
    if previous is not None and previous.frame.get("units") == "metres":
        old_fps = previous.graph.get("fingerprints", {})
        ratios = [
            old.scale / ref_from_node[n].scale
            for n, old in (
                (node_name(v, k), s) for v, segs in previous.shared_from_segment.items() for k, s in segs.items()
            )
            if n in ref_from_node and old_fps.get(_video_of(n)) == fingerprints.get(_video_of(n))
        ]
        if ratios:
            factor = float(np.median(ratios))
            frame_from_reference = pycolmap.Sim3d(factor, pycolmap.Rotation3d(), np.zeros(3)) * frame_from_reference
            frame |= {
                "metric_scale": factor,
                "units": "metres",
                "scale_from": f"carried over from the previous frame through {len(ratios)} unchanged segment(s)",
            }
            log.warning(
                "the metric scale of the previous frame was carried over through %d video segment(s) aligned "
                "in both frames; run `howto3d scale` again for the full accuracy of a measured length",
                len(ratios),
            )
        else:
            log.warning(
                "the metric scale of the previous frame is lost (no unchanged video aligned in both frames): "
                "outputs are in model units until you run `howto3d scale` again"
            )
    frame["frame_from_reference"] = sim3_to_json(frame_from_reference)
    return frame, frame_from_reference


@dataclass
class _Nodes:
    """The graph's nodes, in one order: each usable segment's (video, k), node name and model."""

    segments: list[tuple[str, int]]
    names: list[str]
    models: list[VideoModel]


def _load_nodes(sfm_dirs: dict[str, Path], clock: _Clock) -> _Nodes:
    """Nodes: every kept model (segment) of every video, so the two sides of a cut align like two videos; a model
    without registered frames links nothing and is left out."""
    segments = [(v, k) for v in sorted(sfm_dirs) for k in segment_dirs(sfm_dirs[v])]
    names = [node_name(v, k) for v, k in segments]
    models = [load_video_model(node_name(v, k), sfm_dirs[v], k) for v, k in segments]
    clock.lap("load")
    usable = [i for i, m in enumerate(models) if m.descriptors]
    return _Nodes([segments[i] for i in usable], [names[i] for i in usable], [models[i] for i in usable])


def _keep_frame(
    previous: Alignment | None, conf: AlignConfig, fingerprints: dict[str, str], names: list[str], reanchor: bool
) -> tuple[_Kept | None, JSONDict]:
    """Frame: keep the previous shared frame, so adding a video moves nothing already aligned, unless it must (or
    was asked to) be made anew; an unasked re-anchoring is a warning: outputs made in the old frame are stale."""
    kept, status = _keep(previous, conf, fingerprints, names, reanchor)
    if status["status"] == "reanchored" and not reanchor:
        log.warning(
            "re-anchoring the shared frame from scratch: %s (new reference and up; every pair matched "
            "again; outputs made in the old frame must be redone)",
            status["why"],
        )
    elif status["status"] == "reanchored":
        log.info(
            "re-anchoring the shared frame from scratch, as asked (new reference and up; every pair matched again)"
        )
    return kept, status


@dataclass
class _Pairs:
    """Which node pairs a run matches, and the retrieval that chose them."""

    codebook: Array
    globals_: list[Array]
    """Per node, its frames' VLAD descriptors."""
    similarity: FloatArray
    """Node × node retrieval score."""
    rematch: set[str]
    """Nodes whose pairs are matched (all of them unless the frame is kept)."""
    pairs: list[tuple[int, int]]
    """Node index pairs matched in this run (more join when top pairs leave a node unlinked)."""
    reused: list[Edge]
    """Edges between unchanged videos, kept from the previous alignment."""
    total: int
    """Node pairs there are."""


def _plan_pairs(nodes: _Nodes, kept: _Kept | None, conf: AlignConfig, clock: _Clock) -> _Pairs:
    """Pairs: retrieval keeps the matching O(n·k) (each node's most similar nodes, kept connected), and with a kept
    frame only pairs with a new or changed video are matched, the others' edges reused."""
    names, models = nodes.names, nodes.models
    if kept is not None and kept.codebook is not None:
        codebook = kept.codebook
    else:
        codebook = learn_codebook([d for m in models for d in m.descriptors], k=conf.codebook_size, seed=conf.seed)
    globals_ = [np.stack([vlad(d, codebook) for d in m.descriptors]) for m in models]
    similarity = node_similarity(globals_) if models else np.zeros((0, 0))
    candidates = candidate_pairs(similarity, conf.video_pairs_per_node)
    clock.lap("retrieve")
    rematch = kept.rematch if kept else set(names)
    pairs = [(i, j) for i, j in candidates if names[i] in rematch or names[j] in rematch]
    reused = kept.edges if kept else []
    total = len(names) * (len(names) - 1) // 2
    if len(candidates) < total:
        log.info(
            "candidate node pairs: %d of %d (each node's %d most similar + a spanning tree)",
            len(candidates),
            total,
            conf.video_pairs_per_node,
        )
    if kept is not None:
        log.info(
            "shared frame kept (reference %s); %d edge(s) between unchanged videos reused (%s); matching %d "
            "pair(s) with new or changed videos (%s); retrieval codebook %s",
            kept.frame["reference"],
            len(reused),
            ", ".join(f"{e.a}↔{e.b}" for e in reused) or "none",
            len(pairs),
            ", ".join(sorted(rematch)) or "none",
            "reused" if kept.codebook is not None else "learned again",
        )
    return _Pairs(codebook, globals_, similarity, rematch, pairs, reused, total)


@dataclass
class _Placement:
    """Where the nodes are: each linked node's Sim(3) (in the reference's frame), the unlinked ones' reason, and
    how refinement and the frame came out."""

    reference: str | None
    shared: dict[str, pycolmap.Sim3d]
    """``reference_from_node`` of every node linked to the reference."""
    unaligned: dict[str, str]
    fixed: dict[str, pycolmap.Sim3d]
    """Kept nodes (their transforms do not move), in the reference's frame."""
    refined: dict[str, dict[str, int]] = field(default_factory=dict)
    joint: JSONDict = field(default_factory=dict)
    frame: JSONDict = field(default_factory=dict)
    frame_from_reference: pycolmap.Sim3d = field(default_factory=pycolmap.Sim3d)


def _compose(
    nodes: _Nodes,
    plan: _Pairs,
    edges: list[Edge],
    kept: _Kept | None,
    conf: AlignConfig,
    map_pairs: MapPairs | None,
    progress: ProgressFn | None,
    clock: _Clock,
) -> _Placement:
    """Compose: each node into the reference's frame along its strongest path (onto the kept nodes, which do not
    move, when the frame is kept). Nodes their top pairs left unlinked get their next pairs towards the aligned
    ones matched, then all are composed again: those pairs and edges are added to ``plan.pairs`` and ``edges``."""
    names = nodes.names
    fixed: dict[str, pycolmap.Sim3d] = {}
    if kept is not None:  # work in the reference model's units (thresholds are relative to its size)
        reference_from_frame = sim3_from_json(kept.frame["frame_from_reference"]).inverse()
        fixed = {n: reference_from_frame * s for n, s in kept.fixed.items()}

    def compose() -> tuple[str | None, dict[str, pycolmap.Sim3d], dict[str, str]]:
        if kept is None:
            return compose_graph(names, edges)
        return (kept.frame["reference"], *compose_onto(names, edges, fixed, kept.frame["reference"]))

    reference, shared, unaligned = compose()
    index = {n: i for i, n in enumerate(names)}
    tried = set(plan.pairs) | {(min(index[e.a], index[e.b]), max(index[e.a], index[e.b])) for e in plan.reused}
    if unaligned and len(tried) < plan.total:  # top-k missed their partners: try each one's next k towards the aligned
        more = []
        for u in (names.index(v) for v in unaligned):
            ranked = [
                int(j)
                for j in np.argsort(-plan.similarity[u], kind="stable")
                if names[j] in shared
                and (min(u, j), max(u, j)) not in tried
                and (names[u] in plan.rematch or names[j] in plan.rematch)
            ]
            more += [(min(u, j), max(u, j)) for j in ranked[: conf.video_pairs_per_node]]
        more = sorted(set(more))
        if more:
            log.info(
                "%d node(s) not linked by their top pairs (%s): matching %d more pair(s)",
                len(unaligned),
                ", ".join(sorted(unaligned)),
                len(more),
            )
            edges.extend(_match(more, nodes.models, plan.globals_, conf, map_pairs, progress))
            plan.pairs.extend(more)
            clock.lap("pairs")
            reference, shared, unaligned = compose()
    return _Placement(reference, shared, unaligned, fixed)


def _refine(
    placed: _Placement, nodes: _Nodes, edges: list[Edge], conf: AlignConfig, sfm_dirs: dict[str, Path], clock: _Clock
) -> _Placement:
    """Refine: the shortest paths use a fraction of the evidence, so each node is refitted to all its accepted
    edges (robustly: parts moved between videos do not pull), then optionally bundle-adjusted with the others
    (self-calibrated models differ by a little more than a Sim(3))."""
    assert placed.reference is not None
    reference, size = placed.reference, nodes.models[nodes.names.index(placed.reference)].size
    shared, refined = refine(reference, placed.shared, edges, conf, size, fixed=placed.fixed)
    clock.lap("refine")
    joint: JSONDict = {}
    if conf.joint_refine and len(shared) > 1:
        named = list(zip(nodes.segments, nodes.names, strict=True))
        recs = {n: load_model(sfm_dirs[v], k) for (v, k), n in named if n in shared}
        shared, joint = polish(
            recs, shared, edges, conf, reference, size, fixed=placed.fixed, video_of={n: v for (v, _), n in named}
        )
        log.info(
            "joint adjustment: %d images, %d observations, %d points fused into %d tracks, reprojection "
            "error %.3f → %.3f px, %.1f s",
            joint["images"],
            joint["observations"],
            joint["points_fused"],
            joint["tracks_fused"],
            *joint["reprojection_error_px"].values(),
            joint["seconds"],
        )
        clock.lap("joint")
    return replace(placed, shared=shared, refined=refined, joint=joint)


def _frame(
    placed: _Placement,
    nodes: _Nodes,
    kept: _Kept | None,
    conf: AlignConfig,
    sfm_dirs: dict[str, Path],
    previous: Alignment | None,
    fingerprints: dict[str, str],
) -> _Placement:
    """New frame: a kept frame stays exactly as recorded; else one is made around the aligned nodes (upright,
    metric when the previous frame was and an unchanged video carries the scale over)."""
    assert placed.reference is not None
    if kept is not None:
        return replace(
            placed, frame=kept.frame, frame_from_reference=sim3_from_json(kept.frame["frame_from_reference"])
        )
    sources = {n: (sfm_dirs[v], k, m) for (v, k), n, m in zip(nodes.segments, nodes.names, nodes.models, strict=True)}
    frame, frame_from_reference = _new_frame(conf, placed.reference, placed.shared, sources, previous, fingerprints)
    return replace(placed, frame=frame, frame_from_reference=frame_from_reference)


def _alignment(
    conf: AlignConfig,
    nodes: _Nodes,
    plan: _Pairs,
    edges: list[Edge],
    placed: _Placement,
    kept: _Kept | None,
    status: JSONDict,
    fingerprints: dict[str, str],
    sfm_dirs: dict[str, Path],
) -> Alignment:
    """What is saved: every segment's Sim(3) into the shared frame (a kept node keeps its stored transform bit for
    bit) or why it is not aligned, and graph.json recording how the alignment was made."""
    graph = {
        "nodes": nodes.names,
        "reference": placed.reference,
        "config": asdict(conf),
        "refined": placed.refined,
        "joint": placed.joint,
        "frame": status,
        "kept": sorted(placed.fixed),
        "fingerprints": dict(sorted(fingerprints.items())),
        "pairs": {"matched": len(plan.pairs), "reused": len(plan.reused), "all": plan.total},
        "edges": [e.to_json() for e in edges],
    }
    alignment = Alignment(
        reference=placed.reference,
        shared_from_segment={},
        unaligned={},
        unaligned_segments={},
        graph=graph,
        frame=placed.frame,
        codebook=plan.codebook,
    )
    for (video, k), node in zip(nodes.segments, nodes.names, strict=True):
        if node in placed.shared:
            alignment.shared_from_segment.setdefault(video, {})[k] = (
                kept.fixed[node]
                if kept is not None and node in kept.fixed
                else placed.frame_from_reference * placed.shared[node]
            )
        else:
            alignment.unaligned_segments.setdefault(video, {})[str(k)] = placed.unaligned[node]
    alignment.unaligned.update(
        {
            v: placed.unaligned[v]
            for v in sorted(sfm_dirs)
            if v not in alignment.shared_from_segment and v in placed.unaligned
        }
    )
    return alignment


def main(
    conf: AlignConfig,
    sfm_dirs: dict[str, Path],
    out_dir: Path,
    progress: ProgressFn | None = None,
    map_pairs: MapPairs | None = None,
    fingerprints: dict[str, str] | None = None,
    reanchor: bool = False,
) -> JSONDict:
    """Align every segment of the given reconstructed videos of one scene into its shared frame; write graph.json,
    transforms.json and codebook.npy atomically.

    The frame (reference, gravity-up rotation, origin, later a metric scale) is created once and kept: with a
    previous alignment in ``out_dir``, videos whose models are unchanged (``fingerprints``: video → model
    fingerprint, computed here when not given) keep their transforms exactly, their tried edges are reused and
    only pairs involving a new or changed video are matched, so adding a video moves nothing already aligned. The
    frame is created anew with ``reanchor`` or when the reference video was removed or reconstructed again.
    ``map_pairs(fn, jobs)`` (default: the built-in ``map``) runs the per-pair work, so a caller can spread it over
    processes or machines; the jobs carry arrays only, no paths.

    Phases: frame (kept or not), pairs, match, compose, refine, new frame; then the folder is written."""
    out_dir = Path(out_dir)
    clock = _Clock()
    if fingerprints is None:
        fingerprints = {v: Model(d).fingerprint() for v, d in sfm_dirs.items()}
    nodes = _load_nodes(sfm_dirs, clock)
    previous = _previous(out_dir)
    kept, status = _keep_frame(previous, conf, fingerprints, nodes.names, reanchor)
    plan = _plan_pairs(nodes, kept, conf, clock)
    edges = plan.reused + _match(plan.pairs, nodes.models, plan.globals_, conf, map_pairs, progress)
    clock.lap("pairs")
    placed = _compose(nodes, plan, edges, kept, conf, map_pairs, progress, clock)
    if placed.reference is not None:
        clock.lap("compose")
        placed = _refine(placed, nodes, edges, conf, sfm_dirs, clock)
        placed = _frame(placed, nodes, kept, conf, sfm_dirs, previous, fingerprints)
    for v, why in placed.unaligned.items():
        log.warning("%s: not aligned (%s)", v, why)
    alignment = _alignment(conf, nodes, plan, edges, placed, kept, status, fingerprints, sfm_dirs)
    alignment.save(out_dir)
    clock.lap("frame")
    seconds = clock.split([e.seconds for e in edges if e.seconds is not None])
    log.info(
        "align: %.1f s (%s)", seconds["total"], ", ".join(f"{k} {v:.1f}" for k, v in seconds.items() if k != "total")
    )
    return alignment.summary() | {"seconds": seconds}


def _previous(out_dir: Path) -> Alignment | None:
    """The alignment ``main`` builds on: ``None`` without one, or for a folder an earlier release wrote (no
    per-segment transforms), which is aligned anew (a warning says so)."""
    if not Alignment.is_done(out_dir):
        return None
    if "shared_from_segment" not in read_json(Path(out_dir) / "transforms.json"):
        log.warning("%s: written by an earlier release: the scene is aligned anew, in a new shared frame", out_dir)
        return None
    return Alignment.load(out_dir)


class _Clock:
    """Wall time per phase of :func:`main`: each ``lap`` adds the time since the previous one to its phase."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, phase: str) -> None:
        now = time.perf_counter()
        self.laps[phase] = self.laps.get(phase, 0.0) + now - self.last
        self.last = now

    def split(self, per_pair: list[dict[str, float]]) -> dict[str, float]:
        """The phases, with the node pairs' wall time split into match / lift / sim3 by their own timings (a
        worker's time when pairs run elsewhere, so the split is scaled to the wall time it took here) plus
        ``pairs_other`` (job slicing, transfer, what the split does not cover); ``total`` is their sum."""
        laps = dict(self.laps)
        wall = laps.pop("pairs", 0.0)
        inner = {k: sum(p.get(k, 0.0) for p in per_pair) for k in ("match", "lift", "sim3")}
        scale = min(1.0, wall / sum(inner.values())) if sum(inner.values()) > 0 else 1.0
        out = {k: v * scale for k, v in inner.items()} | {"pairs_other": max(0.0, wall - sum(inner.values()))}
        out = {"load": laps.pop("load", 0.0), "retrieve": laps.pop("retrieve", 0.0), **out, **laps}
        out = {k: round(v, 3) for k, v in out.items()}
        out["total"] = round(time.perf_counter() - self.start, 3)
        return out


FRAME_UNITS = ("model", "metres")


@dataclass
class Alignment:
    """A scene's alignment as saved in its folder — the one reader and writer of these files::

        graph.json        nodes, accepted and rejected edges (inliers, ratio, residual, ``b_from_a`` Sim(3), whether
                          reused from the previous run), each video's model fingerprint, how the frame was made
        transforms.json   {"reference", "shared_from_video": {video: Sim(3) of segment 0},
                           "shared_from_segment": {video: {"<k>": Sim(3)}}, "unaligned": {video: why},
                           "unaligned_segments": {video: {"<k>": why}},
                           "frame": {"reference", "frame_from_reference": Sim(3), "metric_scale", "units",
                                     "up"}}
        codebook.npy      the VLAD retrieval codebook, reused when videos are added

    Every ``shared_from_segment`` is ``frame_from_reference ∘ reference_from_segment``: whatever reads it is in
    the upright (and, after ``scale``, metric) frame.
    """

    reference: str | None
    shared_from_segment: dict[str, dict[int, pycolmap.Sim3d]]
    """Each aligned segment's Sim(3) into the shared frame, by video then segment (0 = the largest model)."""
    unaligned: dict[str, str]
    """Videos none of whose segments reached the shared frame, with the reason."""
    unaligned_segments: dict[str, dict[str, str]]
    graph: JSONDict = field(default_factory=dict)
    """``graph.json``: nodes, reference, config, refinement and every tried edge (each an :meth:`Edge.to_json`)."""
    frame: JSONDict = field(default_factory=dict)
    """The shared frame as recorded once (JSON-ready; empty for alignments made before frames were recorded):
    ``reference`` node, ``frame_from_reference`` Sim(3), ``metric_scale`` (None or model → metres), ``units``
    ("model" | "metres") and ``up`` (how gravity was estimated)."""
    codebook: Array | None = None
    """The retrieval codebook alignment used (``None`` for older folders)."""

    @property
    def shared_from_video(self) -> dict[str, pycolmap.Sim3d]:
        """Segment 0 of each video whose largest model is aligned (the per-video transform of older releases)."""
        return {v: segs[0] for v, segs in self.shared_from_segment.items() if 0 in segs}

    @property
    def units(self) -> str:
        """Units of the shared frame: "metres" after ``scale``, else "model" (arbitrary SfM units)."""
        units: str = self.frame.get("units", "model")
        return units

    def accepted_edges(self) -> dict[tuple[str, str], pycolmap.Sim3d]:
        """``b_from_a`` of every accepted edge, in both directions, keyed by (a, b) node names."""
        out: dict[tuple[str, str], pycolmap.Sim3d] = {}
        for e in map(Edge.from_json, self.graph.get("edges", [])):
            if e.sim is not None:  # an accepted edge
                out[(e.a, e.b)], out[(e.b, e.a)] = e.sim, e.sim.inverse()
        return out

    def rescaled(self, factor: float, units: str) -> Alignment:
        """The same alignment in a frame scaled by ``factor`` about its origin (orientation and origin kept): every
        stored transform is scaled alike and ``metric_scale`` accumulates, so ``scale`` can be run again."""
        if not (np.isfinite(factor) and factor > 0):
            raise ValueError(f"a frame's scale factor must be positive and finite, got {factor}")
        if units not in FRAME_UNITS:
            raise ValueError(f"units must be one of {FRAME_UNITS}, got {units!r}")
        by = pycolmap.Sim3d(float(factor), pycolmap.Rotation3d(), np.zeros(3))
        frame_from_reference = sim3_from_json(self.frame["frame_from_reference"]) if self.frame else pycolmap.Sim3d()
        frame = {
            **self.frame,
            "reference": self.frame.get("reference", self.reference),
            "frame_from_reference": sim3_to_json(by * frame_from_reference),
            "metric_scale": float(factor) * (self.frame.get("metric_scale") or 1.0),
            "units": units,
        }
        if units == "model":
            frame["metric_scale"] = None
        return replace(
            self,
            frame=frame,
            shared_from_segment={
                v: {k: by * s for k, s in segs.items()} for v, segs in self.shared_from_segment.items()
            },
        )

    def summary(self) -> JSONDict:
        """What ``align`` reports (and the CLI prints): reference, aligned/unaligned videos, segments, edges, and
        the frame (kept, created or re-anchored, and why; pairs matched and reused)."""
        return {
            "reference": self.reference,
            "aligned": sorted(self.shared_from_segment),
            "unaligned": self.unaligned,
            "segments": {v: sorted(s) for v, s in self.shared_from_segment.items()},
            "unaligned_segments": self.unaligned_segments,
            "edges": self.graph.get("edges", []),
            "frame": self.frame,
            "anchoring": self.graph.get("frame"),
            "pairs": self.graph.get("pairs"),
        }

    def save(self, out_dir: Path) -> None:
        transforms = {
            "reference": self.reference,
            "shared_from_video": {v: sim3_to_json(s) for v, s in sorted(self.shared_from_video.items())},
            "shared_from_segment": {
                v: {str(k): sim3_to_json(s) for k, s in sorted(segs.items())}
                for v, segs in sorted(self.shared_from_segment.items())
            },
            "unaligned": self.unaligned,
            "unaligned_segments": self.unaligned_segments,
            "frame": self.frame,
        }
        with atomic_dir(Path(out_dir)) as tmp:
            atomic_write_json(tmp / "graph.json", self.graph)
            atomic_write_json(tmp / "transforms.json", transforms)
            if self.codebook is not None:
                np.save(tmp / "codebook.npy", np.asarray(self.codebook, np.float32), allow_pickle=False)

    @staticmethod
    def is_done(out_dir: Path) -> bool:
        return (Path(out_dir) / "transforms.json").is_file()

    @classmethod
    def load(cls, out_dir: Path) -> Alignment:
        """Read a scene's alignment (an input error for a folder an earlier release wrote without segments)."""
        out_dir = Path(out_dir)
        if not cls.is_done(out_dir):
            raise InputError(f"{out_dir}: no alignment there; run `howto3d align`")
        data = read_json(out_dir / "transforms.json")
        if "shared_from_segment" not in data:  # `align`/`run` redo an output they cannot load
            raise InputError(
                f"{out_dir / 'transforms.json'}: written by an earlier release (no per-segment "
                "transforms); run `howto3d align` (or `howto3d run`) again"
            )
        by_segment = {
            v: {int(k): sim3_from_json(s) for k, s in segs.items()} for v, segs in data["shared_from_segment"].items()
        }
        graph = read_json(out_dir / "graph.json") if (out_dir / "graph.json").is_file() else {}
        codebook = out_dir / "codebook.npy"
        return cls(
            reference=data.get("reference"),
            shared_from_segment=by_segment,
            unaligned=data.get("unaligned", {}),
            unaligned_segments=data.get("unaligned_segments", {}),
            graph=graph,
            frame=data.get("frame") or {},
            codebook=np.load(codebook, allow_pickle=False) if codebook.is_file() else None,
        )
