"""CPU ray-cast renderer: Open3D ``RaycastingScene`` + vectorised texture lookup and Lambert shading.

Cameras follow the OpenCV/COLMAP convention: ``cam_from_world`` = [R | t]
maps world to camera coordinates (x right, y down, z forward) and pixel
(u, v) covers [u, u+1) × [v, v+1), i.e. its centre is at (u + 0.5, v + 0.5)
as in COLMAP. Lens distortion, when asked for, is COLMAP's SIMPLE_RADIAL model
(normalised x_d = x (1 + k1 r²)), rendered exactly by casting each pixel's
undistorted ray rather than by resampling a pinhole image.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal, overload

import numpy as np
import open3d as o3d

from synth.textures import MIP_LEVELS
from synth.world import Scene, VideoVariant, canonical_variant

_BACKGROUND = np.array([0.35, 0.37, 0.4], dtype=np.float32)


class Renderer:
    """Ray-casting scene for one (scene, variant) pair; reused across frames."""

    def __init__(self, scene: Scene, variant: VideoVariant) -> None:
        self.scene = scene
        self.variant = variant
        self.raycaster = o3d.t.geometry.RaycastingScene()
        self.centers, gid_to_obj = [], {}
        for i, obj in enumerate(scene.objects):
            center = obj.center + variant.offset(obj.part)
            mesh = o3d.t.geometry.TriangleMesh.from_legacy(obj.mesh(variant.offset(obj.part)))
            gid_to_obj[self.raycaster.add_triangles(mesh)] = i
            self.centers.append(center)
        self.gid_to_obj = np.full(max(gid_to_obj) + 2, -1, dtype=np.int64)
        for gid, i in gid_to_obj.items():
            self.gid_to_obj[gid] = i

    def cast(self, origins: np.ndarray, dirs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Cast rays; returns hit distance (inf on miss), object index (-1 on miss), world normals."""
        rays = o3d.core.Tensor(
            np.hstack([origins, dirs]).astype(np.float32), o3d.core.float32, o3d.core.Device("CPU:0")
        )
        hit = self.raycaster.cast_rays(rays)
        t = hit["t_hit"].numpy()
        gid = hit["geometry_ids"].numpy().astype(np.int64)
        gid[~np.isfinite(t)] = len(self.gid_to_obj) - 1
        return t, self.gid_to_obj[gid], hit["primitive_normals"].numpy()

    @overload
    def render(
        self,
        K: np.ndarray,
        cam_from_world: np.ndarray,
        width: int,
        height: int,
        k1: float = 0.0,
        exposure: float = 1.0,
        points: Literal[False] = False,
    ) -> np.ndarray: ...

    @overload
    def render(
        self,
        K: np.ndarray,
        cam_from_world: np.ndarray,
        width: int,
        height: int,
        k1: float = 0.0,
        exposure: float = 1.0,
        *,
        points: Literal[True],
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def render(
        self,
        K: np.ndarray,
        cam_from_world: np.ndarray,
        width: int,
        height: int,
        k1: float = 0.0,
        exposure: float = 1.0,
        points: bool = False,
    ) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Render one RGB uint8 image (height, width, 3).

        ``k1``: SIMPLE_RADIAL distortion; ``exposure``: linear gain before the tone curve (auto-exposure);
        ``points``: also return each pixel's world point (height, width, 3), 50 m along the ray on a miss.
        """
        K = np.asarray(K, dtype=np.float64)
        pose = np.asarray(cam_from_world, dtype=np.float64)
        R, tvec = pose[:, :3], pose[:, 3]
        dirs = _camera_rays(K.tobytes(), width, height, float(k1)) @ R.astype(np.float32)  # == (R^T d)^T
        origin = (-R.T @ tvec).astype(np.float32)
        t, obj, normals = self.cast(np.broadcast_to(origin, dirs.shape), dirs)
        color = np.empty((dirs.shape[0], 3), dtype=np.float32)
        color[:] = _BACKGROUND
        hit = obj >= 0
        obj16 = obj.astype(np.int16)
        order = np.argsort(obj16, kind="stable")  # radix sort for small ints: cheap grouping by object
        bounds = np.searchsorted(obj16[order], np.arange(len(self.scene.objects) + 1))
        focal = float(K[0, 0])
        for i in range(len(self.scene.objects)):
            sel = order[bounds[i] : bounds[i + 1]]
            if sel.size:
                d, n = dirs[sel], normals[sel]
                p = origin + d * t[sel, None]
                color[sel] = self._texture(i, p, n, d, t[sel], focal)
        n = normals
        flip = np.sum(n * dirs, axis=1) > 0
        n = np.where(flip[:, None], -n, n)
        v = self.variant
        shade = v.ambient + v.light * np.clip(n @ v.light_dir.astype(np.float32), 0, None)
        shade += 0.15 * np.clip(-np.sum(n * dirs, axis=1), 0, None)  # camera-side fill light
        shade = np.where(hit, shade, 1.0)
        gain = v.gain.astype(np.float32) if exposure == 1.0 else (v.gain * exposure).astype(np.float32)
        linear = np.clip(color * shade[:, None] * gain, 0, 1)
        image = _tone_curve(v.gamma)[(linear * 4095).astype(np.int32)].reshape(height, width, 3)
        if not points:
            return image
        depth = np.where(np.isfinite(t), t, 50.0)
        return image, (origin + dirs * depth[:, None]).reshape(height, width, 3)

    def _texture(self, i: int, p: np.ndarray, n: np.ndarray, d: np.ndarray, t: np.ndarray, focal: float) -> np.ndarray:
        """Planar (box) projection of object ``i``'s texture over its extent, mip-mapped, bilinear."""
        obj = self.scene.objects[i]
        rot = obj.rotation.astype(np.float32)
        local = (p - self.centers[i].astype(np.float32)) @ rot
        nl = n @ rot
        axis = np.argmax(np.abs(nl), axis=1)
        size = np.asarray(obj.size, dtype=np.float32)
        rel = local / size + 0.5  # [0, 1] over the object's extent: the texture never repeats
        a_idx = np.array([[1, 2], [0, 2], [0, 1]])[axis]
        uv = np.take_along_axis(rel, a_idx, axis=1)
        negative = np.take_along_axis(nl, axis[:, None], axis=1)[:, 0] < 0
        uv[negative] = uv[negative][:, ::-1]  # opposite faces get transposed (different) content
        tex = obj.texture
        assert tex is not None  # build_scene textures every object
        texel = float(size.max()) / tex.size
        cos = np.clip(np.abs(np.sum(n * d, axis=1)), 0.25, 1.0)
        footprint = t / (focal * cos)
        level = np.clip(np.floor(np.log2(np.maximum(footprint / texel, 1e-6))), 0, MIP_LEVELS - 1).astype(np.int64)
        out = np.empty((p.shape[0], 3), dtype=np.float32)
        for lv in np.unique(level):
            m = level == lv
            out[m] = _bilinear(tex.levels[lv], uv[m])
        return out


@lru_cache(maxsize=32)
def _tone_curve(gamma: float) -> np.ndarray:
    """12-bit → 8-bit gamma lookup table (a LUT is much cheaper than a per-pixel power)."""
    return (np.linspace(0, 1, 4096) ** gamma * 255 + 0.5).astype(np.uint8)


def _bilinear(img: np.ndarray, uv: np.ndarray) -> np.ndarray:
    """Bilinear lookup with clamped borders; uv in [0, 1] (u → columns, v → rows)."""
    h, w = img.shape[:2]
    x = np.clip(uv[:, 0], 0, 1) * (w - 1)
    y = np.clip(uv[:, 1], 0, 1) * (h - 1)
    x0 = np.minimum(x.astype(np.int64), w - 2)
    y0 = np.minimum(y.astype(np.int64), h - 2)
    fx = (x - x0)[:, None]
    fy = (y - y0)[:, None]
    flat = img.reshape(-1, 3)
    i00 = y0 * w + x0
    top = flat[i00] * (1 - fx) + flat[i00 + 1] * fx
    bottom = flat[i00 + w] * (1 - fx) + flat[i00 + w + 1] * fx
    return top * (1 - fy) + bottom * fy


@lru_cache(maxsize=8)
def _camera_rays(k_bytes: bytes, width: int, height: int, k1: float = 0.0) -> np.ndarray:
    """Unit camera-frame ray directions of every pixel centre (row-major), undistorted when ``k1`` != 0."""
    K = np.frombuffer(k_bytes, dtype=np.float64).reshape(3, 3)
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    pix = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], axis=1)
    d = pix @ np.linalg.inv(K).T
    if k1:
        d[:, :2] *= (undistort_radius(np.hypot(d[:, 0], d[:, 1]), k1) / np.maximum(np.hypot(d[:, 0], d[:, 1]), 1e-12))[
            :, None
        ]
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return d.astype(np.float32)


def undistort_radius(r_distorted: np.ndarray, k1: float) -> np.ndarray:
    """Invert r_d = r (1 + k1 r²) by Newton's method (monotonic for the moderate k1 of real lenses)."""
    r = np.array(r_distorted, dtype=np.float64)
    for _ in range(12):
        r -= (r + k1 * r**3 - r_distorted) / (1 + 3 * k1 * r**2)
    return r


def project(K: np.ndarray, k1: float, cam_from_world: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Pixel coordinates (n, 2) of world points under the SIMPLE_RADIAL camera (u + 0.5 convention of K)."""
    P = np.asarray(cam_from_world, dtype=np.float64)
    X, Y, Z = (np.asarray(points)[:, i] for i in range(3))  # per-column products: a small (n, 3) @ (3, 3)
    x, y, z = (P[r, 0] * X + P[r, 1] * Y + P[r, 2] * Z + P[r, 3] for r in range(3))  # matmul is 25× slower
    z = np.maximum(z, 1e-6)
    x, y = x / z, y / z
    radial = 1 + k1 * (x * x + y * y)
    return np.stack([K[0, 0] * x * radial + K[0, 1] * y * radial + K[0, 2], K[1, 1] * y * radial + K[1, 2]], axis=1)


@lru_cache(maxsize=8)
def renderer_for(scene: Scene, variant: VideoVariant | None = None) -> Renderer:
    """Cached renderer per (scene, variant); ``None`` means the canonical layout."""
    return Renderer(scene, variant if variant is not None else canonical_variant())


def render_frame(
    scene: Scene | Renderer,
    K: np.ndarray,
    cam_from_world: np.ndarray,
    width: int,
    height: int,
    video_variant: VideoVariant | None = None,
    k1: float = 0.0,
) -> np.ndarray:
    """Render an arbitrary view of a scene (canonical layout unless ``video_variant`` is given; ``k1``: distortion)."""
    renderer = scene if isinstance(scene, Renderer) else renderer_for(scene, video_variant)
    return renderer.render(K, cam_from_world, width, height, k1=k1)
