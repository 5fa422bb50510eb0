"""Headless pictures of a scene: the same Filament scene the window shows, rendered offscreen.

Filament's ``OffscreenRenderer`` runs on Mesa (llvmpipe, EGL/Vulkan) without a display, and it is the
renderer the GUI uses, so a screenshot is the window's picture. Where it cannot start (no EGL, old
drivers), the legacy OpenGL ``Visualizer`` with a hidden window is the fallback; the reason is logged.
``HOWTO3D_RENDERER=filament|legacy`` forces one.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import open3d as o3d
from open3d.visualization import rendering
from PIL import Image

from recon.scene import SharedScene
from viewer.geometry import (
    Heatmap,
    View,
    default_view,
    frusta,
    heatmap_voxels,
    markers_mesh,
    point_cloud,
    scene_extent,
)

log = logging.getLogger(__name__)

Marker = tuple[np.ndarray, tuple[float, float, float]]
BACKGROUND = (0.08, 0.08, 0.1)
_broken: dict[str, str] = {}
"""Backends that failed in this process, with the reason (tried once, not on every picture)."""


def look_at_extrinsic(view: View) -> np.ndarray:
    """4x4 OpenCV world-to-camera matrix of a look-at view."""
    f = view.center - view.eye
    f = f / np.linalg.norm(f)
    x = np.cross(f, view.up)
    x = x / max(np.linalg.norm(x), 1e-9)
    y = np.cross(f, x)
    R = np.stack([x, y, f])
    T = np.eye(4)
    T[:3, :3], T[:3, 3] = R, -R @ view.eye
    return T


def scene_geometries(
    scene: SharedScene,
    heatmap: Heatmap | None = None,
    markers: list[Marker] | None = None,
) -> dict[str, o3d.geometry.Geometry3D]:
    """Named geometries of a view: points, cameras, heatmap voxels, markers (the window and screenshots share it)."""
    geoms: dict[str, o3d.geometry.Geometry3D] = {"points": point_cloud(scene), "cameras": frusta(scene)}
    if heatmap is not None:
        geoms["heatmap"] = heatmap_voxels(*heatmap)
    if markers:
        geoms["markers"] = markers_mesh(markers, 0.012 * scene_extent(scene))
    return geoms


def material(name: str, scale: float = 1.0) -> rendering.MaterialRecord:
    """Filament material per geometry kind: unlit keeps photo and heatmap colours exact; lit markers read as 3D."""
    m = rendering.MaterialRecord()
    if name == "points":
        m.shader, m.point_size = "defaultUnlit", 3.0 * scale
    elif name == "cameras":
        m.shader, m.line_width = "unlitLine", 1.5 * scale
    elif name == "heatmap":
        m.shader = "defaultUnlit"
    else:
        m.shader = "defaultLit"
    return m


def add_to_scene(
    o3d_scene: rendering.Open3DScene, geoms: dict[str, o3d.geometry.Geometry3D], scale: float = 1.0
) -> None:
    for name, g in geoms.items():
        if o3d_scene.has_geometry(name):
            o3d_scene.remove_geometry(name)
        o3d_scene.add_geometry(name, g, material(name, scale))


def _render_filament(geoms: dict[str, o3d.geometry.Geometry3D], view: View, width: int, height: int) -> np.ndarray:
    r = rendering.OffscreenRenderer(width, height)
    try:
        r.scene.set_background([*BACKGROUND, 1.0])
        r.scene.view.set_post_processing(False)  # tone mapping would wash out photo and heatmap colours
        r.scene.set_lighting(rendering.Open3DScene.LightingProfile.NO_SHADOWS, [0.3, -0.5, -1.0])
        add_to_scene(r.scene, geoms, scale=max(1.0, height / 720))
        r.setup_camera(view.fov, view.center, view.eye, view.up)
        return np.asarray(r.render_to_image())[..., :3].copy()
    finally:
        del r


def _render_legacy(geoms: dict[str, o3d.geometry.Geometry3D], view: View, width: int, height: int) -> np.ndarray:
    vis = o3d.visualization.Visualizer()
    if not vis.create_window(visible=False, width=width, height=height):
        raise RuntimeError("legacy Visualizer could not create a hidden window (no display and no EGL)")
    try:
        for g in geoms.values():
            vis.add_geometry(g)
        opt = vis.get_render_option()
        opt.background_color = np.array(BACKGROUND)
        opt.point_size = 3.0 * max(1.0, height / 720)
        opt.mesh_show_back_face = True
        params = o3d.camera.PinholeCameraParameters()
        fy = height / 2 / np.tan(np.radians(view.fov) / 2)
        params.intrinsic = o3d.camera.PinholeCameraIntrinsic(width, height, fy, fy, width / 2 - 0.5, height / 2 - 0.5)
        params.extrinsic = look_at_extrinsic(view)
        vis.get_view_control().convert_from_pinhole_camera_parameters(params, allow_arbitrary=True)
        vis.poll_events()
        vis.update_renderer()
        img = np.asarray(vis.capture_screen_float_buffer(do_render=True))
        return (np.clip(img, 0, 1) * 255).astype(np.uint8)
    finally:
        vis.destroy_window()


_BACKENDS = {"filament": _render_filament, "legacy": _render_legacy}


def render_image(
    scene: SharedScene,
    heatmap: Heatmap | None = None,
    width: int = 1280,
    height: int = 720,
    markers: list[Marker] | None = None,
    view: View | None = None,
) -> np.ndarray:
    """(height, width, 3) uint8 picture of the scene from ``view`` (default: front-above, fitting the points)."""
    view = view or default_view(scene, width / height)
    geoms = scene_geometries(scene, heatmap, markers)
    forced = os.environ.get("HOWTO3D_RENDERER")
    if forced and forced not in _BACKENDS:
        raise ValueError(f"HOWTO3D_RENDERER={forced!r}: use one of {', '.join(_BACKENDS)}")
    order = [forced] if forced else [b for b in _BACKENDS if b not in _broken]
    errors = []
    for name in order:
        try:
            start = time.perf_counter()
            img = _BACKENDS[name](geoms, view, width, height)
            log.info("rendered %dx%d with %s in %.2fs", width, height, name, time.perf_counter() - start)
            return img
        except Exception as e:  # noqa: BLE001 - any renderer failure means: try the next backend
            _broken[name] = f"{type(e).__name__}: {e}"
            errors.append(f"{name}: {_broken[name]}")
            log.warning("%s renderer failed (%s); falling back", name, _broken[name])
    raise RuntimeError(
        "no Open3D renderer works here (" + "; ".join(errors) + "); install Mesa EGL "
        "(libegl1, mesa-vulkan-drivers) or run under xvfb-run"
    )


def screenshot(
    scene: SharedScene,
    out_png: Path,
    heatmap: Heatmap | None = None,
    width: int = 1280,
    height: int = 720,
    markers: list[Marker] | None = None,
) -> Path:
    """Write the default view of the scene (and heatmap) as a PNG, without a display."""
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(render_image(scene, heatmap, width, height, markers)).save(out_png)
    return out_png
