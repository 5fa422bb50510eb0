"""A scene's stage outputs as the later stages need them: its reconstructed videos, their shared frame,
its narrations and the grounding model — found in the workspace once, here, instead of by every command.

Reading goes through each stage's own artefact type (``recon.reconstruct.Model``, ``recon.align.Alignment``,
``grounding.query.load``); nothing here parses a stage's files or knows about ground truth.
"""

from __future__ import annotations

import logging

import pycolmap

from grounding import query as gquery
from grounding.narration import Narration, load_narrations
from howto3d.workspace import Video, Workspace
from recon.align import Alignment
from recon.io import InputError
from recon.reconstruct import Model
from recon.scene import SharedScene, load_shared_scene

log = logging.getLogger("howto3d")


def video(ws: Workspace, scene: str, name: str) -> Video:
    """One video of a scene, with a clear error naming the scene's videos when there is no such video."""
    videos = {v.name: v for v in ws.videos(ws.require_scene(scene))}
    if name not in videos:
        raise InputError(f"{ws.root}: scene {scene!r} has no video {name!r}; videos: {', '.join(videos) or 'none'}")
    return videos[name]


def reconstructed_videos(ws: Workspace, scene: str) -> list[str]:
    """Videos of a scene whose reconstruction finished."""
    return [v.name for v in ws.videos(scene) if Model.is_done(ws.sfm_dir(scene, v.name))]


def model_fingerprints(ws: Workspace, scene: str) -> dict[str, str]:
    """Fingerprint of every reconstructed video's models: the input of whatever reads the scene's geometry."""
    return {v: Model(ws.sfm_dir(scene, v)).fingerprint() for v in reconstructed_videos(ws, scene)}


def shared_from_segment(ws: Workspace, scene: str) -> dict[str, dict[int, pycolmap.Sim3d]]:
    """Each aligned segment's Sim(3) into the scene's shared frame, by video then segment.

    Before ``align`` a single-video scene is its own shared frame; a multi-video scene needs ``align``.
    """
    if Alignment.is_done(ws.align_dir(scene)):
        return Alignment.load(ws.align_dir(scene)).shared_from_segment
    videos = reconstructed_videos(ws, scene)
    if len(videos) == 1:
        return {videos[0]: {0: pycolmap.Sim3d()}}
    if not videos:
        raise InputError(f"{ws.root}: scene {scene!r} has no reconstructed video yet; run `howto3d reconstruct`")
    raise InputError(f"{ws.root}: scene {scene!r} has {len(videos)} reconstructed videos but no shared frame yet; "
                     "run `howto3d align`")


def shared_scene(ws: Workspace, scene: str) -> SharedScene:
    """The scene's aligned videos, every aligned segment of each, in its shared frame (points, registered frames)."""
    ws.require_scene(scene)
    transforms = shared_from_segment(ws, scene)
    return load_shared_scene(scene, {v: ws.sfm_dir(scene, v) for v in transforms},
                             {v: ws.frames_dir(scene, v) for v in transforms}, transforms)


def shared_or_none(ws: Workspace, scene: str, without: str) -> SharedScene | None:
    """:func:`shared_scene`, or ``None`` with one warning saying what goes ``without`` it."""
    try:
        return shared_scene(ws, scene)
    except InputError as e:
        log.warning("%s: no shared reconstruction (%s): %s", scene, e, without)
        return None


def narrations(ws: Workspace, scene: str) -> dict[str, list[Narration]]:
    """Every video's narration lines (``[]`` without subtitles or with an unreadable file: logged once, the
    other videos go on)."""
    out = {}
    for v in ws.videos(scene):
        if v.subtitles is None:
            log.info("%s/%s: no subtitles: no narration", scene, v.name)
        out[v.name] = load_narrations(v.subtitles, f"{scene}/{v.name}")
    return out


def subtitle_inputs(ws: Workspace, scene: str) -> dict[str, object]:
    """The subtitle file of each video as a step input (``None`` for a video without one)."""
    return {f"subtitles/{scene}/{v.name}": v.subtitles for v in ws.videos(scene)}


def grounder(ws: Workspace, scene: str | None = None) -> gquery.Grounder:
    """The trained grounding model; with ``scene``, also checked to know that scene (else an input error)."""
    model = gquery.load(ws.grounding_dir)
    if scene is not None:
        model.scores(scene, [])  # raises when the model has no head for this scene
    return model
