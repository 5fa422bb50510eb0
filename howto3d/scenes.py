"""A scene's stage outputs as the later stages need them: its reconstructed videos, their shared frame,
its narrations and the grounding model — found in the workspace once, here, instead of by every command.

Reading goes through each stage's own artefact type (``recon.reconstruct.Model``, ``recon.align.Alignment``,
``grounding.query.load``); nothing here parses a stage's files or knows about ground truth.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import TYPE_CHECKING, Literal

import numpy as np

from grounding import query as gquery
from grounding.narration import Narration, load_narrations
from howto3d.workspace import Video, Workspace
from recon.io import InputError, read_json

# The recon readers (pycolmap, networkx, scipy) are imported by the functions that read geometry, not here:
# a query only loads the grounding model and checks the frame from JSON (cold start, tests/cli/test_startup.py).
if TYPE_CHECKING:
    from pathlib import Path

    import pycolmap

    from recon.scene import SharedScene

log = logging.getLogger("howto3d")


def video(ws: Workspace, scene: str, name: str) -> Video:
    """One video of a scene, with a clear error naming the scene's videos when there is no such video."""
    videos = {v.name: v for v in ws.videos(ws.require_scene(scene))}
    if name not in videos:
        raise InputError(f"{ws.root}: scene {scene!r} has no video {name!r}; videos: {', '.join(videos) or 'none'}")
    return videos[name]


def reconstructed_videos(ws: Workspace, scene: str) -> list[str]:
    """Videos of a scene whose reconstruction finished."""
    from recon.reconstruct import Model

    return [v.name for v in ws.videos(scene) if Model.is_done(ws.sfm_dir(scene, v.name))]


def model_fingerprints(ws: Workspace, scene: str) -> dict[str, str]:
    """Fingerprint of every reconstructed video's models: the input of whatever reads the scene's geometry."""
    from recon.reconstruct import Model

    return {v: Model(ws.sfm_dir(scene, v)).fingerprint() for v in reconstructed_videos(ws, scene)}


def shared_from_segment(ws: Workspace, scene: str) -> dict[str, dict[int, pycolmap.Sim3d]]:
    """Each aligned segment's Sim(3) into the scene's shared frame, by video then segment.

    Before ``align`` a single-video scene is its own shared frame; a multi-video scene needs ``align``.
    """
    import pycolmap

    from recon.align import Alignment

    if Alignment.is_done(ws.align_dir(scene)):
        return Alignment.load(ws.align_dir(scene)).shared_from_segment
    videos = reconstructed_videos(ws, scene)
    if len(videos) == 1:
        return {videos[0]: {0: pycolmap.Sim3d()}}
    if not videos:
        raise InputError(f"{ws.root}: scene {scene!r} has no reconstructed video yet; run `howto3d reconstruct`")
    raise InputError(
        f"{ws.root}: scene {scene!r} has {len(videos)} reconstructed videos but no shared frame yet; "
        "run `howto3d align`"
    )


class StaleFrameError(InputError):
    """An artefact was made in a shared frame that has moved since (re-alignment, ``--reanchor``, ``scale``), or
    does not record the frame it was made in.

    Not a usage mistake but work to redo, hence exit code 1 (``howto3d.cli.main`` reads ``exit_code``)."""

    exit_code = 1


def _digest(data) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _sim3_digest(sim: dict) -> str:
    """Digest of one stored Sim(3) as the 3×4 matrix it applies (``q`` and ``-q`` are one rotation), quantized
    to 1e-9 of its largest entry: a transform re-read and re-written is the same frame, a real move is not."""
    x, y, z, w = np.asarray(sim["rotation_xyzw"], float) / np.linalg.norm(sim["rotation_xyzw"])
    R = np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ]
    )
    M = np.hstack([float(sim["scale"]) * R, np.asarray(sim["translation"], float)[:, None]])
    ref = float(np.abs(M).max()) or 1.0
    return _digest(np.round(M / ref * 1e9).astype(np.int64).tolist() + [f"{ref:.6e}"])


def frame_state(ws: Workspace, scene: str) -> dict:
    """The scene's shared frame as artefacts record it: its units and a digest of each aligned segment's Sim(3)
    (``"<video>#<k>"``), plus ``fingerprint``, one digest of it all.

    Read from ``align/transforms.json`` as plain JSON rather than through ``recon.align.Alignment`` so that a
    query's staleness check costs no pycolmap/networkx import. A scene without alignment (one video) is its own
    frame: the identity.
    """
    path = ws.align_dir(scene) / "transforms.json"
    data = read_json(path) if path.is_file() else {}
    if path.is_file() and "shared_from_segment" not in data:
        raise InputError(
            f"{path}: written by an earlier release (no per-segment transforms); run `howto3d align "
            f"{ws.root} --scene {scene}` (or `howto3d run {ws.root}`)"
        )
    by_segment = data.get("shared_from_segment", {})
    if not path.is_file():
        identity = {"scale": 1.0, "rotation_xyzw": [0.0, 0.0, 0.0, 1.0], "translation": [0.0, 0.0, 0.0]}
        by_segment = {v: {"0": identity} for v in reconstructed_videos(ws, scene)}
    frame = data.get("frame") or {}
    segments = {f"{v}#{k}": _sim3_digest(s) for v, segs in sorted(by_segment.items()) for k, s in sorted(segs.items())}
    state = {"units": frame.get("units", "model"), "segments": segments}
    return {**state, "fingerprint": _digest(state)}


def frame_moved(recorded: dict, current: dict) -> str | None:
    """Why an artefact made in frame ``recorded`` no longer holds in ``current`` (``None``: it holds).

    Only the segments the artefact was made from count: a video added (or removed) since leaves the others where
    they were, so it is not a move (``run`` retrains to include it).
    """
    if recorded.get("units") != current["units"]:
        return f"units {recorded.get('units')} → {current['units']}"
    old, new = recorded.get("segments", {}), current["segments"]
    common = set(old) & set(new)
    if not common:
        return "none of the videos it was made from is aligned any more"
    moved = sorted(s for s in common if old[s] != new[s])
    return f"{len(moved)} of {len(common)} aligned segments moved ({', '.join(moved[:3])})" if moved else None


def check_frame(ws: Workspace, scene: str, recorded: dict | None, made_by: str = "train") -> None:
    """Refuse (:class:`StaleFrameError`, one line) to answer in a frame that moved since ``made_by`` ran, or in one
    it did not record (``recorded`` is ``None``: made by an earlier release, so it cannot be checked)."""
    if recorded is None:
        raise StaleFrameError(
            f"scene {scene}: the output of `howto3d {made_by}` does not record its shared frame "
            f"(made by an earlier release); run `howto3d {made_by} {ws.root} --force`"
        )
    why = frame_moved(recorded, frame_state(ws, scene))
    if why:
        raise StaleFrameError(
            f"{ws.align_dir(scene) / 'transforms.json'}: the shared frame of scene {scene} changed "
            f"since `{made_by}`; run `howto3d {made_by}` (or `howto3d run`) ({why})"
        )


def shared_scene(ws: Workspace, scene: str) -> SharedScene:
    """The scene's aligned videos, every aligned segment of each, in its shared frame (points, registered frames)."""
    from recon.scene import load_shared_scene

    ws.require_scene(scene)
    transforms = shared_from_segment(ws, scene)
    return load_shared_scene(
        scene,
        {v: ws.sfm_dir(scene, v) for v in transforms},
        {v: ws.frames_dir(scene, v) for v in transforms},
        dict(transforms),
    )


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


def subtitle_inputs(ws: Workspace, scene: str) -> dict[str, Path | None]:
    """The subtitle file of each video as a step input (``None`` for a video without one)."""
    return {f"subtitles/{scene}/{v.name}": v.subtitles for v in ws.videos(scene)}


def grounder(ws: Workspace, scene: str | None = None, encoder: Literal["numpy", "torch"] = "numpy") -> gquery.Grounder:
    """The trained grounding model; with ``scene``, also checked to know that scene (else an input error) and to
    have been trained in the scene's current shared frame (else :class:`StaleFrameError`). ``encoder="torch"``
    for a long-lived process (see :func:`grounding.model_numpy.load`)."""
    model = gquery.load(ws.grounding_dir, encoder)
    if scene is not None:
        model.scores(scene, [])  # raises when the model has no head for this scene
        check_frame(ws, scene, model.frames.get(scene))
    return model
