"""A perfect "reconstruction" of a synthetic scene from its ground truth, as a :class:`recon.scene.SharedScene`.

Unit tests of the later stages (grounding, viewer, temporal) use it to test their own logic on exact
geometry in seconds; end-to-end tests use the real pycolmap pipeline instead. Its shared frame is the
world frame (metres).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import open3d as o3d
import pycolmap

from recon.scene import RegisteredFrame, SharedScene


def oracle_scene(scene_dir: Path, frame_step: int = 3, pixel_step: int = 12) -> SharedScene:
    """Every ``frame_step``-th GT frame as registered, observing the mesh surface on a ``pixel_step`` grid."""
    scene_dir = Path(scene_dir)
    gt = json.loads((scene_dir / "ground_truth.json").read_text())
    mesh = o3d.io.read_triangle_mesh(scene_dir / "world.ply")
    rays_scene = o3d.t.geometry.RaycastingScene()
    rays_scene.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(mesh))
    vertex_colors = np.asarray(mesh.vertex_colors)
    triangles = np.asarray(mesh.triangles)
    points: list[np.ndarray] = []
    colors: list[np.ndarray] = []
    owner: list[np.ndarray] = []
    frames: list[RegisteredFrame] = []
    videos = sorted(gt["videos"])
    offset = 0
    for vi, video in enumerate(videos):
        v = gt["videos"][video]
        w, h = v["width"], v["height"]
        us, vs = np.meshgrid(np.arange(pixel_step / 2, w, pixel_step), np.arange(pixel_step / 2, h, pixel_step))
        xy = np.c_[us.ravel(), vs.ravel()]
        for f in v["frames"][::frame_step]:
            if f["cam_from_world"] is None:  # an insert: no view of the bay
                continue
            K, P = np.array(f["K"]), np.array(f["cam_from_world"])
            cam = pycolmap.Camera.create_from_model_name(1, "PINHOLE", float(K[0, 0]), w, h)
            cam.params = [K[0, 0], K[1, 1], K[0, 2], K[1, 2]]
            d = np.c_[(xy - K[:2, 2]) / np.diag(K)[:2], np.ones(len(xy))] @ P[:, :3]
            origin = -P[:, :3].T @ P[:, 3]
            rays = np.c_[np.broadcast_to(origin, d.shape), d].astype(np.float32)
            hit = rays_scene.cast_rays(o3d.core.Tensor(rays, o3d.core.float32, o3d.core.Device("CPU:0")))
            t = hit["t_hit"].numpy()
            ok = np.isfinite(t)
            X = origin + d[ok] * t[ok, None]
            tri = hit["primitive_ids"].numpy()[ok]
            col = (
                (vertex_colors[triangles[tri, 0]] * 255).astype(np.uint8)
                if len(vertex_colors)
                else np.full((len(X), 3), 128, np.uint8)
            )
            points.append(X)
            colors.append(col)
            owner.append(np.full(len(X), vi))
            frames.append(
                RegisteredFrame(
                    video,
                    f"{video}_{f['index']:06d}",
                    float(f["time"]),
                    cam,
                    P,
                    xy[ok].astype(float),
                    np.arange(offset, offset + len(X)),
                )
            )
            offset += len(X)
    return SharedScene(
        gt["scene"], videos, np.concatenate(points), np.concatenate(colors), np.concatenate(owner), frames
    )
