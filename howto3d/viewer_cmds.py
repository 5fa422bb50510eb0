"""Workspace-level viewer commands: ``view``, ``overlay``, ``export`` and the demo's pictures.

They gather what the ``viewer`` stage draws (shared scene, grounding heatmap, subtitles, synthetic ground
truth) from a workspace; the viewer modules themselves only take arrays and never load a model. The viewer and
localization modules are imported where they are used: they pull in Open3D and PIL, whose start-up every other
command (``howto3d query`` above all) would otherwise pay.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from howto3d import scenes as wscenes
from howto3d.evaluation import world_from_shared
from howto3d.scenes import shared_scene
from howto3d.temporal_cmds import timeline_inputs
from howto3d.workspace import Workspace
from recon.io import InputError, atomic_write_bytes, read_json
from recon.reconstruct import Model
from recon.scene import SharedScene
from recon.video import probe

if TYPE_CHECKING:
    import pycolmap

    from recon.config import LocalizeConfig
    from recon.localize import LocalizeJSON

log = logging.getLogger(__name__)

GT_COLOR = (0.1, 0.9, 0.2)


def query_heatmap(ws: Workspace, scene: str, query: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The query's heatmap; refused when the scene's shared frame moved since training (never drawn stale)."""
    return wscenes.grounder(ws, scene).heatmap(scene, query)


def overlay_target(
    ws: Workspace,
    scene: str,
    query: str | None,
    target: tuple[tuple[np.ndarray, np.ndarray, float], list] | None = None,
):
    """What an overlay draws, (heatmap, markers): ``target`` when given (a guide step's, from
    ``guide_cmds.step_target``), else the query's heatmap."""
    if target is not None:
        return target
    if query is None:
        raise InputError("give either --query TEXT or --task TASK --step N")
    return query_heatmap(ws, scene, query), []


def gt_markers(
    ws: Workspace, scene: str, shared: SharedScene, part: str | None, video: str | None = None
) -> list[tuple[np.ndarray, tuple[float, float, float]]]:
    """Synthetic worlds only: the ground-truth position of ``part`` in the shared frame, as a green marker.

    A video's own part positions are used when given (each synthetic video films a slightly varied car).
    """
    if part is None:
        return []
    path = ws.ground_truth_path(scene)
    sim = world_from_shared(ws, scene, shared)
    if not path.exists() or sim is None:
        log.warning("scene %s has no ground truth to place %r; drawing no marker", scene, part)
        return []
    gt = read_json(path)
    parts = gt["videos"][video]["parts"] if video and video in gt.get("videos", {}) else gt["parts"]
    if part not in parts:
        raise InputError(f"{path}: no part {part!r}; parts: {', '.join(sorted(parts))}")
    xyz = np.asarray(sim.inverse() * np.asarray(parts[part], float), float).reshape(3)
    return [(xyz, GT_COLOR)]


def timelines(
    ws: Workspace,
    scene: str,
    steps: dict[str, list[dict]] | None = None,
    actionness: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict[str, dict[str, Any]]:
    """Per video the timeline inputs that exist: subtitles, given predicted steps/actionness, synthetic GT steps."""
    gt_path = ws.ground_truth_path(scene)
    gt = read_json(gt_path)["videos"] if gt_path.exists() else {}
    narrations = wscenes.narrations(ws, scene)
    out = {}
    for v in ws.videos(scene):
        entry: dict[str, Any] = {"duration": probe(v.path).duration}
        if narrations[v.name]:
            entry["narrations"] = narrations[v.name]
        if steps and v.name in steps:
            entry["steps"] = steps[v.name]
        if actionness and v.name in actionness:
            entry["actionness"] = actionness[v.name]
        if v.name in gt:
            entry["gt_steps"] = [
                {"label": s["step"], "start": s["start"], "end": s["end"]} for s in gt[v.name]["steps"]
            ]
        out[v.name] = entry
    return out


def view(ws: Workspace, scene: str, query: str | None = None, screenshot: Path | None = None) -> Path | None:
    """Open the viewer window, or with ``screenshot`` write the same picture headless and return its path."""
    from viewer.screenshot import screenshot as take

    shared = shared_scene(ws, scene)
    heatmap = query_heatmap(ws, scene, query) if query else None
    if screenshot is not None:
        return take(shared, screenshot, heatmap)
    from viewer.app import run_viewer

    try:
        grounder = wscenes.grounder(ws, scene)
        query_fn = lambda text: grounder.heatmap(scene, text)  # noqa: E731
    except wscenes.StaleFrameError:
        raise  # a query box answering in the old frame would look right and be wrong
    except InputError as e:
        log.warning("%s; the query box is disabled", e)
        query_fn = None
    run_viewer(shared, heatmap, query_fn, timelines(ws, scene, *timeline_inputs(ws, scene)))
    return None


def overlay(
    ws: Workspace,
    scene: str,
    video: str,
    query: str | None,
    out: Path,
    gt_part: str | None = None,
    every: int = 1,
    target: tuple | None = None,
) -> Path:
    """Write the AR preview of ``query`` (or of a guide step) over ``video`` (mp4 or a PNG folder), with the GT
    part when given."""
    from viewer.overlay import overlay as draw

    shared = shared_scene(ws, scene)
    heatmap, markers = overlay_target(ws, scene, query, target)
    return draw(
        shared,
        wscenes.video(ws, scene, video).path,
        video,
        heatmap,
        out,
        markers + gt_markers(ws, scene, shared, gt_part, video),
        every,
    )


def export(
    ws: Workspace,
    scene: str,
    fmt: str,
    query: str | None,
    out: Path,
    anchors: Mapping[str, Any] | None = None,
    shared: SharedScene | None = None,
) -> Path:
    """GLB/PLY of the scene with ``query``'s heatmap, and ``anchors`` (``howto3d.anchors_cmds``) as GLB nodes."""
    from viewer.export import export as write

    shared = shared or shared_scene(ws, scene)
    return write(shared, out, fmt, query_heatmap(ws, scene, query) if query else None, anchors)


def export_colmap(ws: Workspace, scene: str, out: Path) -> pycolmap.Reconstruction:
    """Write the scene's shared frame as a COLMAP model and its frames under ``out`` (``recon.colmap_export``)."""
    from recon.colmap_export import write_colmap

    shared = shared_scene(ws, scene)
    return write_colmap(shared, {v: ws.frames_dir(scene, v) for v in shared.videos}, out)


def demo_outputs(
    ws: Workspace,
    scene: str,
    query: str,
    out_dir: Path,
    gt_part: str | None = None,
    video: str | None = None,
    steps: dict[str, list[dict]] | None = None,
    actionness: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict[str, Path]:
    """The demo's pictures: a screenshot with the heatmap, an overlay clip and the videos' timelines."""
    from viewer.overlay import overlay as draw
    from viewer.screenshot import screenshot as take
    from viewer.timeline import plot_timelines

    out_dir = Path(out_dir)
    shared = shared_scene(ws, scene)
    heatmap = query_heatmap(ws, scene, query)
    video = video or shared.videos[0]
    return {
        "screenshot": take(shared, out_dir / "scene.png", heatmap, markers=gt_markers(ws, scene, shared, gt_part)),
        "overlay": draw(
            shared,
            wscenes.video(ws, scene, video).path,
            video,
            heatmap,
            out_dir / f"overlay_{video}.mp4",
            gt_markers(ws, scene, shared, gt_part, video),
        ),
        "timeline": plot_timelines(out_dir / "timeline.png", timelines(ws, scene, steps, actionness)),
    }


def _localize_inputs(
    ws: Workspace, scene: str, shared: SharedScene | None
) -> tuple[LocalizeConfig, SharedScene, dict[str, Path]]:

    shared = shared if shared is not None else shared_scene(ws, scene)
    conf = ws.config.localize
    return conf, shared, {v: Model(ws.sfm_dir(scene, v)).database for v in shared.videos}


def localizer(ws: Workspace, scene: str, shared: SharedScene | None = None):
    """The scene's registered frames indexed for photo localization (``recon.localize``)."""
    from recon.localize import build

    return build(*_localize_inputs(ws, scene, shared))


def frame_localizers(ws: Workspace, scene: str, shared: SharedScene):
    """``video -> FrameLocalizer`` for clicks on frames SfM did not register (``transfer``, evaluation on the
    user's clicks); the scene's localization index is built once, on the first video asked for."""
    from recon.transfer import FrameLocalizer

    index: list = []
    made: dict[str, FrameLocalizer] = {}

    def localize_for(video: str) -> FrameLocalizer:
        if video not in made:
            if not index:
                index.append(localizer(ws, scene, shared))
            made[video] = FrameLocalizer(index[0], wscenes.video(ws, scene, video).path, video)
        return made[video]

    return localize_for


def localize(ws: Workspace, scene: str, images: list[Path], progress=None) -> LocalizeJSON:
    """The ``localize --json`` contract for photos of ``scene``; a photo that fails is reported, never raised."""
    from recon.localize import main

    return main(*_localize_inputs(ws, scene, None), list(images), progress)


def photo_overlay(
    ws: Workspace,
    scene: str,
    image: Path,
    query: str | None,
    out: Path,
    gt_part: str | None = None,
    target: tuple | None = None,
) -> Path:
    """Localize a photo and write it (PNG) with the query's heatmap (or a guide step) drawn in: the AR loop on the
    user's camera."""
    from PIL import Image

    from recon.localize import read_photo
    from viewer.overlay import draw_frame

    shared = shared_scene(ws, scene)
    heatmap, markers = overlay_target(ws, scene, query, target)
    try:
        data = Path(image).read_bytes()  # decoded once below for the pose, once for drawing: read once
    except OSError as e:
        raise InputError(f"{image}: cannot read the photo ({e.strerror}); give a JPEG or PNG file") from None
    result = localizer(ws, scene, shared).localize(data, str(image))
    if result.frame is None:
        raise InputError(
            f"{image}: not localized in scene {scene!r} ({result.reason}); use a photo that shows more of the scene"
        )
    img = draw_frame(
        read_photo(data)[0],
        shared,
        result.frame,
        heatmap,
        markers + gt_markers(ws, scene, shared, gt_part),
        result.frame,
    )
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    atomic_write_bytes(Path(out), buf.getvalue())
    return Path(out)
