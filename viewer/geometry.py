"""Scene geometry shared by the window, the screenshots and the exports, so all three show the same thing.

Colours are floats in [0, 1]. The default view is derived from the registered cameras (where people
filmed from is where the object is best seen from), not from the point cloud's arbitrary SfM axes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import open3d as o3d
from matplotlib import colormaps

from recon.scene import SharedScene
from recon.shared_frame import camera_up

Heatmap = tuple[np.ndarray, np.ndarray, "float | np.ndarray"]
"""(centers (N, 3), scores (N,) non-negative, voxel size: a float or per-axis (3,))."""

VIDEO_COLORS: list[tuple[float, float, float]] = [
    (float(r), float(g), float(b)) for r, g, b, _ in (colormaps["tab10"](i) for i in range(10))
]
"""One colour per video (cycled), used for frusta, camera paths and timeline labels."""

HEATMAP_CMAP = "inferno"
MIN_SHOWN = 0.05
"""Voxels below this fraction of the best score are not drawn: a softmax over thousands of voxels is mostly noise."""
MAX_SHOWN = 4000


def video_color(index: int) -> tuple[float, float, float]:
    return VIDEO_COLORS[index % len(VIDEO_COLORS)]


def robust_bounds(points: np.ndarray, q: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Percentile box of the points: SfM clouds have far outliers that would otherwise shrink the view."""
    if len(points) == 0:
        return -np.ones(3), np.ones(3)
    return np.percentile(points, q, axis=0), np.percentile(points, 100 - q, axis=0)


def scene_extent(scene: SharedScene) -> float:
    lo, hi = robust_bounds(scene.points)
    return max(float(np.linalg.norm(hi - lo)), 1e-6)


def normalised(scores: np.ndarray) -> np.ndarray:
    """Scores over the best one: confidence in [0, 1] independent of how many voxels the softmax spreads over."""
    scores = np.clip(np.asarray(scores, float), 0, None)
    top = scores.max() if len(scores) else 0.0
    return scores / top if top > 0 else scores


def shown_voxels(scores: np.ndarray, min_score: float = MIN_SHOWN, limit: int = MAX_SHOWN) -> np.ndarray:
    """Indices of the voxels worth drawing, best first."""
    s = normalised(scores)
    order = np.argsort(-s, kind="stable")[:limit]
    return order[s[order] >= min_score]


def heatmap_colors(scores: np.ndarray) -> np.ndarray:
    """(N, 3) colours of normalised scores under the heatmap colour map (low = dark purple, high = yellow)."""
    return colormaps[HEATMAP_CMAP](0.25 + 0.75 * np.asarray(scores, float))[:, :3]


def point_cloud(scene: SharedScene) -> o3d.geometry.PointCloud:
    pc = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(np.asarray(scene.points, float)))
    pc.colors = o3d.utility.Vector3dVector(np.asarray(scene.colors, float) / 255.0)
    return pc


def frustum_lines(
    cam_from_world: np.ndarray, K: np.ndarray, width: int, height: int, size: float
) -> tuple[np.ndarray, np.ndarray]:
    """Vertices (5, 3) (centre, then image corners at depth ``size``) and the 8 line index pairs of one frustum."""
    R, t = cam_from_world[:, :3], cam_from_world[:, 3]
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], float)
    rays = np.c_[(corners - K[:2, 2]) / np.diag(K)[:2], np.ones(4)] * size
    verts = np.vstack([-R.T @ t, (rays - t) @ R])
    lines = np.array([[0, 1], [0, 2], [0, 3], [0, 4], [1, 2], [2, 3], [3, 4], [4, 1]])
    return verts, lines


def frusta(scene: SharedScene, size: float | None = None, every: int = 1) -> o3d.geometry.LineSet:
    """Every ``every``-th registered camera as a frustum plus each video's camera path, one colour per video."""
    size = size if size is not None else 0.04 * scene_extent(scene)
    verts: list[np.ndarray] = []
    lines: list[np.ndarray] = []
    colors: list[np.ndarray] = []
    n = 0
    for vi, video in enumerate(scene.videos):
        frames = sorted(scene.frames_of(video), key=lambda f: f.time)
        color = video_color(vi)
        for f in frames[::every]:
            v, ln = frustum_lines(f.cam_from_world, f.K, f.camera.width, f.camera.height, size)
            verts.append(v)
            lines.append(ln + n)
            colors.append(np.tile(color, (len(ln), 1)))
            n += len(v)
        if len(frames) > 1:
            centers = np.array([f.center for f in frames])
            verts.append(centers)
            path = np.c_[np.arange(len(frames) - 1), np.arange(1, len(frames))] + n
            lines.append(path)
            colors.append(np.tile(color, (len(path), 1)))
            n += len(centers)
    ls = o3d.geometry.LineSet()
    if verts:
        ls.points = o3d.utility.Vector3dVector(np.vstack(verts))
        ls.lines = o3d.utility.Vector2iVector(np.vstack(lines))
        ls.colors = o3d.utility.Vector3dVector(np.vstack(colors))
    return ls


def voxel_cubes(
    centers: np.ndarray, size: np.ndarray, colors: np.ndarray, scale: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vertices (8N, 3), triangles (12N, 3) and vertex colours (8N, 3) of axis-aligned cubes (``size`` x ``scale``)."""
    unit = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    tri = np.array(
        [
            [0, 2, 1],
            [1, 2, 3],
            [4, 5, 6],
            [5, 7, 6],
            [0, 1, 4],
            [1, 5, 4],
            [2, 6, 3],
            [3, 6, 7],
            [0, 4, 2],
            [2, 4, 6],
            [1, 3, 5],
            [3, 7, 5],
        ]
    )
    n = len(centers)
    scale = np.ones(n) if scale is None else np.asarray(scale, float)
    verts = (centers[:, None, :] + unit[None] * size[None, None, :] * scale[:, None, None]).reshape(-1, 3)
    tris = (tri[None] + 8 * np.arange(n)[:, None, None]).reshape(-1, 3)
    return verts, tris, np.repeat(colors, 8, axis=0)


@dataclass
class ShownHeatmap:
    """The drawn part of a heatmap: which voxels, their normalised scores and colours."""

    centers: np.ndarray
    scores: np.ndarray
    colors: np.ndarray
    size: np.ndarray


def shown_heatmap(
    centers: np.ndarray, scores: np.ndarray, voxel_size: float | np.ndarray, shrink: float = 0.8
) -> ShownHeatmap:
    """The voxels worth drawing; cubes are shrunk a little so neighbouring voxels stay distinguishable."""
    keep = shown_voxels(scores)
    s = normalised(scores)[keep]
    size = np.broadcast_to(np.asarray(voxel_size, float), (3,)) * shrink
    return ShownHeatmap(np.asarray(centers, float)[keep], s, heatmap_colors(s), size)


def heatmap_voxels(
    centers: np.ndarray, scores: np.ndarray, voxel_size: float | np.ndarray
) -> o3d.geometry.TriangleMesh:
    """The heatmap as coloured cubes, faint voxels left out.

    Colour and size grow with the normalised score, so a shell of weak voxels does not hide the best ones.
    """
    h = shown_heatmap(centers, scores, voxel_size)
    v, t, c = voxel_cubes(h.centers, h.size, h.colors, 0.35 + 0.65 * h.scores)
    mesh = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(v), o3d.utility.Vector3iVector(t))
    mesh.vertex_colors = o3d.utility.Vector3dVector(c)
    return mesh


def markers_mesh(
    markers: list[tuple[np.ndarray, tuple[float, float, float]]], radius: float
) -> o3d.geometry.TriangleMesh:
    """Small spheres at given points (e.g. the ground-truth part in green)."""
    mesh = o3d.geometry.TriangleMesh()
    for xyz, color in markers:
        s = o3d.geometry.TriangleMesh.create_sphere(radius, resolution=10)
        s.translate(np.asarray(xyz, float))
        s.paint_uniform_color(color)
        mesh += s
    mesh.compute_vertex_normals()
    return mesh


@dataclass
class View:
    """A look-at camera: where it is, what it looks at, which way is up, and its vertical field of view."""

    eye: np.ndarray
    center: np.ndarray
    up: np.ndarray
    fov: float = 50.0


def scene_up(scene: SharedScene) -> np.ndarray:
    """Upward direction of the shared frame, from the cameras as ``align`` estimates it
    (``recon.shared_frame.camera_up``): +z to a fraction of a degree in an upright frame (the default), and still
    right for frames made before or with ``[align] upright = false``."""
    if len(scene.frames) < 2:
        return np.array([0.0, 0.0, 1.0])
    return camera_up(np.array([f.cam_from_world for f in scene.frames]))[0]


def default_view(scene: SharedScene, aspect: float = 16 / 9, fov: float = 50.0) -> View:
    """Look at the points' robust box from where the videos were filmed (front-above), fitting it in view."""
    lo, hi = robust_bounds(scene.points)
    center = (lo + hi) / 2
    radius = max(float(np.linalg.norm(hi - lo)) / 2, 1e-6)
    up = scene_up(scene)
    if scene.frames:
        back = center - np.mean([f.center for f in scene.frames], axis=0)
        back = back - 0.5 * (back @ up) * up  # flatten towards a frontal view, still from above
    else:
        back = np.array([0.0, 1.0, -1.0])
    back = back / max(np.linalg.norm(back), 1e-9)
    half = np.radians(fov / 2) * min(1.0, aspect)
    dist = radius / np.sin(half) * 0.75
    return View(center - back * dist, center, up, fov)
