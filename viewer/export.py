"""Export a scene (points, cameras, heatmap) for other tools: GLB for AR apps and Blender, PLY for point tools.

GLB keeps the shared-frame coordinates in its meshes and puts the frame's "up" on glTF's +Y through the
root node's transform, so viewers show the scene upright while the numbers stay those of ``howto3d query``.
Cameras are small pyramids (triangles) rather than lines: many AR viewers do not draw line primitives.
Anchors (named parts and guide steps) are empty nodes an AR engine finds by name, their fields in the node's
``extras``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import trimesh

from recon.scene import SharedScene
from viewer.geometry import Heatmap, frustum_lines, scene_extent, scene_up, shown_heatmap, video_color, voxel_cubes

log = logging.getLogger(__name__)


def _rgba(colors: np.ndarray) -> np.ndarray:
    c = np.asarray(colors, float)
    c = c * 255 if c.max(initial=0) <= 1.0 else c
    return np.c_[np.clip(c, 0, 255), np.full(len(c), 255)].astype(np.uint8)


def camera_pyramids(scene: SharedScene, size: float) -> trimesh.Trimesh:
    """One open pyramid (apex at the camera centre) per registered frame, coloured by video."""
    verts: list[np.ndarray] = []
    faces: list[np.ndarray] = []
    colors: list[np.ndarray] = []
    for vi, video in enumerate(scene.videos):
        for f in scene.frames_of(video):
            v, _ = frustum_lines(f.cam_from_world, f.K, f.camera.width, f.camera.height, size)
            n = sum(len(x) for x in verts)
            verts.append(v)
            faces.append(np.array([[0, 1, 2], [0, 2, 3], [0, 3, 4], [0, 4, 1]]) + n)
            colors.append(np.tile(video_color(vi), (len(v), 1)))
    if not verts:
        return trimesh.Trimesh()
    return trimesh.Trimesh(np.vstack(verts), np.vstack(faces), vertex_colors=_rgba(np.vstack(colors)), process=False)


def up_to_y(up: np.ndarray) -> np.ndarray:
    """4x4 rotation taking ``up`` to +Y (glTF's up)."""
    y = np.array([0.0, 1.0, 0.0])
    v, c = np.cross(up, y), float(up @ y)
    if np.linalg.norm(v) < 1e-9:
        R = np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    else:
        vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
        R = np.eye(3) + vx + vx @ vx / (1 + c)
    T = np.eye(4)
    T[:3, :3] = R
    return T


def _write_ply(path: Path, xyz: np.ndarray, rgb: np.ndarray, score: np.ndarray) -> None:
    """Binary PLY with a per-vertex ``score`` (0 for scene points) so tools can filter the heatmap."""
    dtype = np.dtype(
        [("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1"), ("score", "<f4")]
    )
    data = np.empty(len(xyz), dtype)
    data["x"], data["y"], data["z"] = xyz.T
    data["red"], data["green"], data["blue"] = rgb.T
    data["score"] = score
    header = (
        f"ply\nformat binary_little_endian 1.0\nelement vertex {len(xyz)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nproperty float score\nend_header\n"
    )
    path.write_bytes(header.encode() + data.tobytes())


def add_anchors(s: trimesh.Scene, root: np.ndarray, anchors: Mapping[str, Any]) -> None:
    """An ``anchors`` node under the upright root, its ``extras`` the frame (units, the shared frame's up, glTF's
    +Y up), and one child node per anchor at its point (shared-frame coordinates, as in the anchors file), named
    by the anchor and carrying its fields in ``extras``."""
    taken = set(s.graph.nodes)
    base = s.graph.base_frame
    frame = {k: v for k, v in anchors.items() if k != "anchors"}
    s.graph.update(frame_to="anchors", frame_from=base, matrix=root, metadata=frame)
    for a in anchors["anchors"]:
        name, k = a["name"], 2
        while name in taken:  # glTF allows repeated names; trimesh's graph and AR engines' lookups do not
            name, k = f"{a['name']} ({k})", k + 1
        taken.add(name)
        at = np.eye(4)
        at[:3, 3] = a["point"]
        s.graph.update(frame_to=name, frame_from="anchors", matrix=at, metadata=dict(a))


def export(
    scene: SharedScene,
    out: Path,
    fmt: str = "glb",
    heatmap: Heatmap | None = None,
    anchors: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``out``: GLB (points, camera pyramids, heatmap cubes, ``anchors`` as named nodes) or PLY (points,
    then heatmap voxel centres)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    hm = shown_heatmap(*heatmap) if heatmap is not None else None
    if fmt == "ply":
        xyz, rgb, score = [scene.points], [np.asarray(scene.colors, np.uint8)], [np.zeros(len(scene.points))]
        if hm is not None:
            xyz.append(hm.centers)
            rgb.append(_rgba(hm.colors)[:, :3])
            score.append(hm.scores)
        _write_ply(out, np.concatenate(xyz), np.concatenate(rgb), np.concatenate(score))
    elif fmt == "glb":
        root = up_to_y(scene_up(scene))
        s = trimesh.Scene()
        s.add_geometry(
            trimesh.PointCloud(scene.points, colors=_rgba(scene.colors)),
            node_name="points",
            geom_name="points",
            transform=root,
        )
        cams = camera_pyramids(scene, 0.03 * scene_extent(scene))
        if len(cams.vertices):
            s.add_geometry(cams, node_name="cameras", geom_name="cameras", transform=root)
        if hm is not None and len(hm.scores):
            v, t, c = voxel_cubes(hm.centers, hm.size, hm.colors, 0.35 + 0.65 * hm.scores)
            s.add_geometry(
                trimesh.Trimesh(v, t, vertex_colors=_rgba(c), process=False),
                node_name="heatmap",
                geom_name="heatmap",
                transform=root,
            )
        if anchors is not None:
            add_anchors(s, root, anchors)
        out.write_bytes(s.export(file_type="glb"))
    else:
        raise ValueError(f"unknown export format {fmt!r}; use 'glb' or 'ply'")
    log.info("exported scene %s as %s -> %s", scene.scene, fmt, out)
    return out
