"""Joint bundle adjustment of the aligned models: the last step of alignment (bundle adjustment across videos).

Why: each video's model is self-calibrated (focal, radial distortion per shot, weakly observed on hovering
footage), so two models of one object differ by a little more than a Sim(3), and a Sim(3) fitted on their matched
3D points misplaces the other model's *cameras* even where every point agrees. Here all aligned models are merged
into one reconstruction in the shared frame, the matched points the current transforms agree on are fused into
single tracks, and poses, points and intrinsics are bundle-adjusted together under a robust loss (some fused tracks
are wrong: hands, parts that moved), so each video's observations correct the others'. Each node's transform then
becomes the Sim(3) that maps its own camera centres onto their adjusted positions: the per-video models stay
untouched and only the transforms change.

Limit: only points the transforms already agree on are fused, so an edge that followed a part moved between
videos (its matches consistent with each other, not with the static structure) is not undone here.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import TYPE_CHECKING

import networkx as nx
import numpy as np
import pycolmap

from recon.config import AlignConfig
from recon.types import FloatArray, JSONDict

if TYPE_CHECKING:  # recon.align imports this module
    from recon.align import Edge


def fused_points(
    shared: dict[str, pycolmap.Sim3d],
    edges: list[Edge],
    models: dict[str, pycolmap.Reconstruction],
    max_distance: float,
) -> list[list[tuple[str, int]]]:
    """Groups of (node, point id) to fuse: the accepted edges' 3D–3D correspondences whose two points lie within
    ``max_distance`` of each other in the shared frame (the transforms agree on them), chained across edges."""
    links = nx.Graph()
    for e in edges:
        a, b = e.a, e.b
        if not (e.accepted and e.ids is not None and a in shared and a in models and b in shared and b in models):
            continue
        ids_a, ids_b = e.ids
        xa = shared[a] * np.array([models[a].points3D[i].xyz for i in ids_a]).reshape(-1, 3)
        xb = shared[b] * np.array([models[b].points3D[i].xyz for i in ids_b]).reshape(-1, 3)
        agree = np.linalg.norm(xa - xb, axis=1) < max_distance
        links.add_edges_from(
            ((a, i), (b, j))
            for i, j in zip(np.asarray(ids_a)[agree].tolist(), np.asarray(ids_b)[agree].tolist(), strict=True)
        )
    groups = (sorted(c) for c in nx.connected_components(links))
    # a group holding two points of one model is ambiguous: left out
    return sorted(g for g in groups if len({n for n, _ in g}) == len(g))


def merge(
    models: dict[str, pycolmap.Reconstruction],
    shared: dict[str, pycolmap.Sim3d],
    groups: list[list[tuple[str, int]]],
    lens_of: dict[str, str] | None = None,
) -> tuple[pycolmap.Reconstruction, dict[str, list[int]]]:
    """One reconstruction in the shared frame holding every node's cameras, images and points (ids renumbered),
    the ``groups`` fused into one point each at their mean position; and each node's merged image ids, in the
    order of its own sorted registered image ids.

    Each node keeps its own cameras, or with ``lens_of`` (node → lens, e.g. its video) the nodes of one lens
    share one camera, started at the median of theirs."""
    merged = pycolmap.Reconstruction()
    fused = {x: k for k, g in enumerate(groups) for x in g}
    tracks: list[list[tuple[int, int]]] = [[] for _ in groups]
    positions: list[list[FloatArray]] = [[] for _ in groups]
    images: dict[str, list[int]] = {}
    lens: dict[tuple[str, int], str | tuple[str, int]] = {
        (n, c): (lens_of or {}).get(n, (n, c)) for n in sorted(models) for c in sorted(models[n].cameras)
    }
    members: dict[str | tuple[str, int], list[pycolmap.Camera]] = {}
    for (n, c), key in lens.items():
        members.setdefault(key, []).append(models[n].cameras[c])
    camera_of = {key: k + 1 for k, key in enumerate(members)}
    for key, cams in members.items():
        merged.add_camera_with_trivial_rig(
            pycolmap.Camera(
                model=cams[0].model,
                width=cams[0].width,
                height=cams[0].height,
                params=np.median([c.params for c in cams], axis=0),
                camera_id=camera_of[key],
            )
        )
    next_image = 1
    for node in sorted(models):
        rec, sim = models[node], shared[node]
        cameras = {c: camera_of[lens[(node, c)]] for c in rec.cameras}
        image_of, images[node] = {}, []
        for image_id in sorted(rec.reg_image_ids()):
            im = rec.images[image_id]
            xy = np.array([p.xy for p in im.points2D]).reshape(-1, 2)
            new = pycolmap.Image(
                name=f"{node}/{im.name}", keypoints=xy, camera_id=cameras[im.camera_id], image_id=next_image
            )
            rotation = im.cam_from_world().rotation * sim.rotation.inverse()
            centre = sim * im.projection_center().reshape(1, 3)
            merged.add_image_with_trivial_frame(new, pycolmap.Rigid3d(rotation, -(rotation * centre)[0]))
            image_of[image_id], next_image = next_image, next_image + 1
            images[node].append(image_of[image_id])
        for point_id in sorted(rec.points3D):
            point = rec.points3D[point_id]
            elements = [(image_of[el.image_id], el.point2D_idx) for el in point.track.elements]
            xyz = sim * point.xyz.reshape(1, 3)
            if (node, point_id) in fused:
                k = fused[(node, point_id)]
                tracks[k] += elements
                positions[k].append(xyz[0])
            else:
                merged.add_point3D(
                    xyz[0], pycolmap.Track([pycolmap.TrackElement(i, j) for i, j in elements]), point.color
                )
    for elements, fused_xyz in zip(tracks, positions, strict=True):
        merged.add_point3D(
            np.mean(fused_xyz, axis=0), pycolmap.Track([pycolmap.TrackElement(i, j) for i, j in elements])
        )
    return merged, images


def _centres(rec: pycolmap.Reconstruction, image_ids: list[int]) -> FloatArray:
    return np.array([rec.images[i].projection_center() for i in image_ids]).reshape(-1, 3)


_LOSS_SCALE_PX = 1.0
"""Cauchy loss scale (pixels): a fused track on a hand or a moved part stops pulling (0.5–4 px measured alike)."""
_MAX_ITERATIONS = 50
"""Solver iterations at most (convergence comes first, see below)."""
_FUNCTION_TOLERANCE = 1e-4
"""Stop when the cost falls by less than this fraction per iteration: on 4 × 150-s videos (380 frames, 200k
observations) it stops after 10 iterations (6 s) with the cameras of 36 iterations (1e-6) to 0.01 cm."""


def adjust(
    merged: pycolmap.Reconstruction, constant_images: list[int], conf: AlignConfig
) -> pycolmap.BundleAdjustmentSummary:
    """Bundle-adjust ``merged`` in place: poses, points and (per ``conf.joint_intrinsics``) focal and distortion
    under a Cauchy loss; ``constant_images`` keep their poses and cameras, else two cameras fix the gauge. One
    solver thread: the same input gives the same output."""
    options = pycolmap.BundleAdjustmentOptions()
    options.refine_principal_point = False
    options.refine_focal_length = options.refine_extra_params = conf.joint_intrinsics != "fixed"
    options.print_summary = False
    options.ceres.loss_function_type = pycolmap.LossFunctionType.CAUCHY
    options.ceres.loss_function_scale = _LOSS_SCALE_PX
    options.ceres.solver_options.num_threads = 1
    options.ceres.solver_options.max_num_iterations = _MAX_ITERATIONS
    options.ceres.solver_options.function_tolerance = _FUNCTION_TOLERANCE
    config = pycolmap.BundleAdjustmentConfig()
    for image_id in sorted(merged.reg_image_ids()):
        config.add_image(image_id)
    for image_id in constant_images:
        config.set_constant_rig_from_world_pose(merged.images[image_id].frame_id)
        config.set_constant_cam_intrinsics(merged.images[image_id].camera_id)
    if len(constant_images) < 2:
        config.fix_gauge(pycolmap.BundleAdjustmentGauge.TWO_CAMS_FROM_WORLD)
    return pycolmap.create_default_bundle_adjuster(options, config, merged).solve()


def polish(
    models: dict[str, pycolmap.Reconstruction],
    shared: dict[str, pycolmap.Sim3d],
    edges: list[Edge],
    conf: AlignConfig,
    reference: str,
    reference_size: float,
    fixed: Collection[str] = (),
    video_of: dict[str, str] | None = None,
) -> tuple[dict[str, pycolmap.Sim3d], JSONDict]:
    """Bundle-adjust the aligned ``models`` together; each node's refitted ``shared`` Sim(3), and stats.

    ``shared`` is in the reference node's frame and stays so: the adjusted frame is mapped back through the
    reference's own refit (the reference keeps the identity). ``fixed`` nodes (kept from a previous alignment)
    hold their poses and intrinsics and keep their transforms exactly: they anchor the others. ``video_of``
    (node → video) gives the lenses when ``conf.joint_intrinsics`` is 'video'. Matched points are fused when
    the transforms put them within the graph refinement's threshold of each other."""
    t0 = time.perf_counter()
    nodes = {n: m for n, m in models.items() if n in shared}
    groups = fused_points(shared, edges, nodes, conf.refine_threshold * reference_size)
    lens_of = (
        {n: v for n, v in (video_of or {}).items() if n not in fixed} if conf.joint_intrinsics == "video" else None
    )
    merged, images = merge(nodes, shared, groups, lens_of)
    merged.update_point_3d_errors()
    before = merged.compute_mean_reprojection_error()
    constant = [i for n in sorted(fixed) if n in images for i in images[n]]
    summary = adjust(merged, constant, conf)
    merged.update_point_3d_errors()
    stats: JSONDict = {
        "images": merged.num_reg_images(),
        "observations": merged.compute_num_observations(),
        "points": merged.num_points3D(),
        "points_fused": sum(len(g) for g in groups),
        "tracks_fused": len(groups),
        "reprojection_error_px": {
            "before": round(before, 4),
            "after": round(merged.compute_mean_reprojection_error(), 4),
        },
        "termination": summary.termination_type.name,
        "applied": bool(summary.is_solution_usable()),
    }
    refit = {
        n: pycolmap.estimate_sim3d(_centres(nodes[n], sorted(nodes[n].reg_image_ids())), _centres(merged, images[n]))
        for n in images
        if n not in fixed
    }
    anchor = pycolmap.Sim3d() if constant else refit.get(reference)  # the fixed nodes held the frame
    out = dict(shared)
    stats["applied"] = stats["applied"] and anchor is not None
    if stats["applied"] and anchor is not None:
        out.update({n: anchor.inverse() * s for n, s in refit.items() if s is not None})
    stats["seconds"] = round(time.perf_counter() - t0, 3)
    return out, stats
