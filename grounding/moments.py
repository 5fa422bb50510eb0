"""The video moments that show a 3D point: evidence a user can watch.

An answer ("the dipstick is here") is checkable when it comes with the seconds of video that look at that place.
Every registered frame of the scene scores how well it shows the point: inside the image, near its centre, close,
and not hidden behind the surface the frame observed there. Frames said while a narration line that voted for the
answer was spoken score higher (someone was talking about it then). Neighbouring good frames of one video form a
clip, and clips are ranked by their few best frames (a camera that stays on the point beats one swinging past).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, TypedDict

import numpy as np

from grounding.narration import Narration
from recon.scene import RegisteredFrame, SharedScene

if TYPE_CHECKING:
    from grounding.query import Evidence as Voter

CENTRE_SIGMA = 0.25
"""How centred the point must be: Gaussian over its distance to the image centre, this fraction of the diagonal."""
OCCLUSION_RADIUS = 0.05
"""Observed points within this fraction of the diagonal of the point's pixel tell what surface is seen there ..."""
OCCLUSION_MARGIN = 0.85
"""... and the point counts as hidden when that surface is nearer than this fraction of the point's depth."""
CLIP_GAP = 3.0
"""Good frames of one video at most this many seconds apart (and of one segment) form one clip."""
CLIP_KEEP = 0.5
"""A frame is part of a clip when it scores at least this fraction of its video's best frame."""
CLIP_FRAMES = 3
"""A clip scores the mean of this many of its best frames."""
SAID_PAD = 2.0
"""A voting line counts for the frames this many seconds before and after it."""


class Moment(TypedDict):
    """One clip that shows a point (a ``query --moments`` answer's and a ``guide`` step's ``moments``)."""

    video: str
    start: float
    end: float
    time: float
    """Its best frame (seconds)."""
    xy: list[float]
    """The point in that frame, in the displayed video's pixels."""
    score: float
    text: str
    """What was said during the clip (lines joined by " … ")."""
    track: list[list[float]]
    """``[time, x, y]`` of the point in each of the clip's frames."""


def frame_score(frame: RegisteredFrame, scene: SharedScene, point: np.ndarray) -> tuple[float, np.ndarray, float]:
    """(how centred ``point`` is in ``frame``, in [0, 1]; its pixel in the frame's camera; its depth): 0 when behind
    the camera, outside the image or hidden behind the surface the frame observed at that pixel."""
    pixels, depths = frame.project(np.asarray(point, float)[None])
    xy, depth = pixels[0], float(depths[0])
    w, h = frame.camera.width, frame.camera.height
    if depth <= 0 or not (0 <= xy[0] < w and 0 <= xy[1] < h):
        return 0.0, xy, depth
    diag = float(np.hypot(w, h))
    if len(frame.xy):
        near = np.linalg.norm(frame.xy - xy, axis=1) <= OCCLUSION_RADIUS * diag
        if near.any():
            X = scene.points[frame.point_index[near]]
            seen = X @ frame.cam_from_world[2, :3] + frame.cam_from_world[2, 3]
            if np.median(seen) < OCCLUSION_MARGIN * depth:
                return 0.0, xy, depth
    off = np.linalg.norm(xy - [w / 2, h / 2]) / (CENTRE_SIGMA * diag)
    return float(np.exp(-0.5 * off**2)), xy, depth


def _centrality(t: float, a: float, b: float) -> float:
    """1 at the middle of [a, b], 0.5 at its ends."""
    return 1.0 - 0.5 * abs(2.0 * (t - a) / (b - a) - 1.0) if b > a else 1.0


def _said(voters: Sequence[Voter], video: str, t: float) -> float:
    """Similarity to the question of the best voting line of ``video`` spoken around ``t`` (0 when none)."""
    return max(
        (
            float(v.get("similarity", 0.0))
            for v in voters
            if v.get("video") == video and v["start"] - SAID_PAD <= t <= v["end"] + SAID_PAD
        ),
        default=0.0,
    )


def moments(
    scene: SharedScene,
    point: np.ndarray,
    narrations: dict[str, list[Narration]],
    voters: Sequence[Voter] | None = None,
    top: int = 5,
    per_video: int = 2,
    spans: dict[str, list[tuple[float, float]]] | None = None,
    centred: bool = False,
) -> list[Moment]:
    """The best clips that show ``point``, ranked: ``video``, ``start``, ``end``, ``time`` (its best frame),
    ``xy`` (the point there, in video pixels), ``score``, ``text`` (what was said during the clip) and ``track``
    (``[time, x, y]`` of the point in each of the clip's frames, for a player that follows it).

    ``voters`` (the answer's evidence lines that support it, with ``video``, ``start``, ``end``, ``similarity``)
    raise the frames said while they were spoken; at most ``per_video`` clips of one video, ``top`` in all.
    ``spans`` (per video, (start, end) seconds) keeps only the frames inside them (a guide step's segments);
    ``centred`` then prefers frames near a span's middle (half weight at its ends): a predicted step segment is
    most often shifted, and its middle is the part most likely inside the true step."""
    frames = (
        scene.frames
        if spans is None
        else [f for f in scene.frames if any(a <= f.time <= b for a, b in spans.get(f.video, []))]
    )
    scored = {id(f): frame_score(f, scene, point) for f in frames}
    depths = [d for s, _, d in scored.values() if s > 0]
    if not depths:
        return []
    ref = float(np.median(depths))  # closeness counts 1 up to the median viewing depth, then falls as 1/depth
    clips: list[Moment] = []
    for video in scene.videos:
        rows = []
        for f in sorted(scene.frames_of(video), key=lambda f: f.time):
            if id(f) not in scored:
                continue
            s, xy, depth = scored[id(f)]
            if s > 0:
                s *= min(1.0, ref / depth) * (1.0 + _said(voters or [], video, f.time))
                if centred and spans is not None:
                    s *= max(_centrality(f.time, a, b) for a, b in spans.get(video, []) if a <= f.time <= b)
                rows.append((f, s, xy))
        if not rows:
            continue
        best = max(s for _, s, _ in rows)
        good = [r for r in rows if r[1] >= CLIP_KEEP * best]
        run: list[tuple[RegisteredFrame, float, np.ndarray]] = []
        for r in good + [None]:
            if r is not None and run and r[0].time - run[-1][0].time <= CLIP_GAP and r[0].segment == run[-1][0].segment:
                run.append(r)
                continue
            if run:
                clips.append(_clip(video, run, narrations.get(video, [])))
            run = [r] if r is not None else []
    clips.sort(key=lambda c: (-c["score"], c["video"], c["start"]))
    out: list[Moment] = []
    count: dict[str, int] = {}
    for c in clips:
        if count.get(c["video"], 0) < per_video:
            out.append(c)
            count[c["video"]] = count.get(c["video"], 0) + 1
        if len(out) == top:
            break
    return out


def _clip(video: str, run: Sequence[tuple[RegisteredFrame, float, np.ndarray]], lines: list[Narration]) -> Moment:
    """One clip of good frames; its score is the mean of its ``CLIP_FRAMES`` best frames (missing ones count 0), so
    a camera that stays on the point beats one that swings past it."""
    f, _, xy = max(run, key=lambda r: r[1])
    score = sum(sorted((r[1] for r in run), reverse=True)[:CLIP_FRAMES]) / CLIP_FRAMES
    start, end = run[0][0].time, run[-1][0].time
    if end - start < 1.0:  # a single sampled frame stands for the second around it
        mid = (start + end) / 2
        start, end = max(0.0, mid - 0.5), mid + 0.5
    said = " … ".join(n.text for n in lines if n.start < end and n.end > start)
    track = [[round(g.time, 3), *(round(float(v), 2) for v in gxy * g.video_scale)] for g, _, gxy in run]
    return Moment(
        video=video,
        start=round(start, 3),
        end=round(end, 3),
        time=round(f.time, 3),
        xy=[round(float(v), 2) for v in xy * f.video_scale],
        score=round(float(score), 4),
        text=said,
        track=track,
    )
