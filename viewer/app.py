"""The interactive viewer: the shared scene, every video's cameras, a query heatmap, a query box and a timeline.

It is an Open3D ``gui`` window around a ``SceneWidget``, filled by the same geometry and materials as the
headless screenshots. Queries run on a worker thread (a text encoder can take a second) and the heatmap is
swapped in on the GUI thread. The viewer never imports the grounding model: it calls ``query_fn``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import open3d as o3d
from open3d.visualization import gui, rendering

from recon.scene import SharedScene
from viewer.geometry import Heatmap, default_view, heatmap_voxels, normalised
from viewer.screenshot import BACKGROUND, Marker, add_to_scene, scene_geometries
from viewer.timeline import timeline_image

log = logging.getLogger(__name__)

QueryFn = Callable[[str], Heatmap]
PANEL_WIDTH = 300
TIMELINE_HEIGHT = 220


class ViewerWindow:
    """The window's widgets and their callbacks."""

    def __init__(
        self,
        app: gui.Application,
        scene: SharedScene,
        heatmap: Heatmap | None,
        query_fn: QueryFn | None,
        timeline: dict[str, dict[str, Any]] | None,
        markers: list[Marker] | None,
    ):
        self.app, self.scene, self.query_fn, self.timeline = app, scene, query_fn, timeline or {}
        self.window = app.create_window(f"howto3d — {scene.scene}", 1400, 900)
        em = self.window.theme.font_size

        self.widget = gui.SceneWidget()
        self.widget.scene = rendering.Open3DScene(self.window.renderer)
        self.widget.scene.set_background([*BACKGROUND, 1.0])
        self.widget.scene.view.set_post_processing(False)
        self.widget.scene.set_lighting(rendering.Open3DScene.LightingProfile.NO_SHADOWS, [0.3, -0.5, -1.0])
        self.geoms = scene_geometries(scene, heatmap, markers)
        add_to_scene(self.widget.scene, self.geoms)
        view = default_view(scene, 1.6)
        bounds = o3d.geometry.AxisAlignedBoundingBox(view.center - 1, view.center + 1)
        self.widget.setup_camera(view.fov, bounds, view.center)
        self.widget.look_at(view.center, view.eye, view.up)
        self.window.add_child(self.widget)

        self.panel = gui.Vert(0.4 * em, gui.Margins(0.6 * em, 0.6 * em, 0.6 * em, 0.6 * em))
        self.panel.add_child(gui.Label("Ask where (Enter):"))
        self.query = gui.TextEdit()
        self.query.placeholder_text = "e.g. pull out the dipstick"
        self.query.set_on_value_changed(self._on_query)
        self.panel.add_child(self.query)
        self.status = gui.Label("" if query_fn else "no grounding model: queries disabled")
        self.panel.add_child(self.status)
        for name in self.geoms:
            box = gui.Checkbox(f"show {name}")
            box.checked = True
            box.set_on_checked(self._toggle(name))
            self.panel.add_child(box)
        legend = ", ".join(f"{v}" for v in scene.videos)
        self.panel.add_child(gui.Label(f"videos (tab10 colours in order):\n{legend}"))
        self.window.add_child(self.panel)

        self.timeline_image = None
        if self.timeline:
            self.panel.add_child(gui.Label("Timeline of:"))
            self.choice = gui.Combobox()
            for v in self.timeline:
                self.choice.add_item(v)
            self.choice.set_on_selection_changed(lambda text, _i: self._show_timeline(text))
            self.panel.add_child(self.choice)
            self.timeline_image = gui.ImageWidget()
            self.window.add_child(self.timeline_image)
            self._show_timeline(next(iter(self.timeline)))
        self.window.set_on_layout(self._on_layout)

    def _toggle(self, name: str) -> Callable[[bool], None]:
        """The checkbox callback that shows or hides geometry ``name``."""
        return lambda on: self.widget.scene.show_geometry(name, on)

    def quit(self) -> None:
        """Leave the event loop (closing the window from a callback can deadlock Filament's teardown)."""
        self.widget.scene.clear_geometry()
        self.app.quit()

    def _on_layout(self, ctx: gui.LayoutContext) -> None:
        r = self.window.content_rect
        bottom = TIMELINE_HEIGHT if self.timeline_image is not None else 0
        self.widget.frame = gui.Rect(r.x, r.y, r.width - PANEL_WIDTH, r.height - bottom)
        self.panel.frame = gui.Rect(r.get_right() - PANEL_WIDTH, r.y, PANEL_WIDTH, r.height - bottom)
        if self.timeline_image is not None:
            self.timeline_image.frame = gui.Rect(r.x, r.get_bottom() - bottom, r.width, bottom)

    def _show_timeline(self, video: str) -> None:
        img = timeline_image(**{"title": video, "width": 14.0, **self.timeline[video]})
        widget = self.timeline_image
        assert widget is not None  # made with the timeline panel, before the first timeline is shown
        widget.update_image(o3d.geometry.Image(np.ascontiguousarray(img).data))

    def _on_query(self, text: str) -> None:
        query_fn = self.query_fn
        if not query_fn or not text.strip():
            return
        self.status.text = f"grounding '{text}'…"

        def work() -> None:
            try:
                hm = query_fn(text)
                msg = f"'{text}': best voxel score {float(np.max(hm[1])):.3f}"
            except Exception as e:  # noqa: BLE001 - show any query failure in the window instead of dying
                log.exception("query %r failed", text)
                hm, msg = None, f"query failed: {e}"
            self.app.post_to_main_thread(self.window, lambda: self._show_heatmap(hm, msg))

        threading.Thread(target=work, daemon=True).start()

    def _show_heatmap(self, heatmap: Heatmap | None, msg: str) -> None:
        self.status.text = msg
        if heatmap is not None and normalised(heatmap[1]).size:
            self.geoms["heatmap"] = heatmap_voxels(*heatmap)
            add_to_scene(self.widget.scene, {"heatmap": self.geoms["heatmap"]})
            self.window.post_redraw()


def run_viewer(
    scene: SharedScene,
    heatmap: Heatmap | None = None,
    query_fn: QueryFn | None = None,
    timeline: dict[str, dict[str, Any]] | None = None,
    markers: list[Marker] | None = None,
    close_after: float | None = None,
) -> float:
    """Open the window and block until it is closed (or ``close_after`` seconds after it is up).

    ``timeline`` maps a video name to :func:`viewer.timeline.plot_timeline` keyword arguments (``duration``,
    ``narrations``, ``steps``, ``gt_steps``, ``actionness``). Returns the seconds from the call until the
    window's event loop ran (the start-up time the user waits).
    """
    start = time.perf_counter()
    app = gui.Application.instance
    app.initialize()
    viewer = ViewerWindow(app, scene, heatmap, query_fn, timeline, markers)
    started: list[float] = []

    def on_started() -> None:
        started.append(time.perf_counter() - start)
        log.info("viewer up in %.2fs", started[0])
        if close_after is not None:
            threading.Timer(close_after, lambda: app.post_to_main_thread(viewer.window, viewer.quit)).start()

    app.post_to_main_thread(viewer.window, on_started)
    app.run()
    return started[0] if started else float("nan")
