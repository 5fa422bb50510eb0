"""Where a step of a task happens, and the video moments that show it: the AR guide's answer per step.

A step's place is where people look while they do it. Every registered frame inside the step's segments (in every
video that performs it) contributes the surface point at its image centre; those looks are spread over the
scene's voxels and multiplied with the grounding heatmap of the step's words, which knows where the step's part
was talked about. Looks know *when* (the step timeline) and text knows *what*; each alone fails where the other is
strong: looks follow a camera that lingers on the wrong part during a mislocalized segment, and text follows the
narration's off-screen mentions. The step's moments are the clips inside its segments that show its place best
(:func:`grounding.moments.moments`), with what was said during them.
"""

from __future__ import annotations

from typing import TypedDict

import numpy as np

from grounding.config import GroundingConfig, GuideConfig
from grounding.moments import Moment
from grounding.moments import moments as video_moments
from grounding.narration import Narration
from grounding.pairs import frame_center, surface_point
from grounding.query import answer
from grounding.voxels import VoxelSpace
from recon.config import choices
from recon.scene import SharedScene

FUSIONS = choices(GuideConfig, "fusion")

Spans = dict[str, list[tuple[float, float]]]
"""Per video, the (start, end) seconds of one step's segments."""


class Segment(TypedDict):
    """One segment of a step in one video (seconds)."""

    video: str
    start: float
    end: float


class Said(Segment):
    """A narration line spoken during one of a step's moments."""

    text: str


class StepPlace(TypedDict):
    """Where one step happens (:func:`step_answer`; a ``guide --json`` step without its ``index``)."""

    step: str
    point: list[float]
    radius: float
    confidence: float
    uncertain: bool
    looks: int
    """Frames behind the point."""
    videos: list[str]
    segments: list[Segment]
    moments: list[Moment]
    narration: list[Said]


def looks(scene: SharedScene, spans: Spans, pad: float, conf: GroundingConfig | None = None) -> np.ndarray:
    """(M, 3) surface points at the image centre of the registered frames inside ``spans`` (± ``pad`` s)."""
    conf = conf or GroundingConfig()
    out = []
    for video, segs in spans.items():
        for f in scene.frames_of(video):
            if any(a - pad <= f.time <= b + pad for a, b in segs):
                X = surface_point(f, scene, frame_center(f), conf.depth_radius, conf.depth_neighbors)
                if X is not None:
                    out.append(X)
    return np.array(out, float).reshape(-1, 3)


def look_distribution(space: VoxelSpace, near: np.ndarray, points: np.ndarray) -> np.ndarray:
    """(N_V,) the looks as a distribution over the kept voxels (each in its nearest one), spread over the ``near``
    neighbourhood; zeros without looks."""
    counts = np.zeros(len(space.cells))
    if len(points):
        np.add.at(counts, space.assign(points), 1.0)
    spread = near @ counts
    total = spread.sum()
    return spread / total if total > 0 else spread


def fuse(look: np.ndarray, text: np.ndarray | None, conf: GuideConfig) -> np.ndarray:
    """One distribution over the voxels from the step's looks and its text heatmap (``None``: no model)."""
    if conf.fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {FUSIONS}, got {conf.fusion!r}")
    has_look = look.sum() > 0
    if text is None or conf.fusion == "look":
        if has_look:
            return look
        return np.full(len(look), 1.0 / len(look)) if text is None else text
    if not has_look or conf.fusion == "text":
        return text
    if conf.fusion == "mixture":
        p = 0.5 * look + 0.5 * text
    else:
        u = 1.0 / len(look)
        p = ((1 - conf.floor) * look + conf.floor * u) * ((1 - conf.floor) * text + conf.floor * u)
    return p / p.sum()


def step_answer(
    scene: SharedScene,
    space: VoxelSpace,
    near: np.ndarray,
    step: str,
    spans: Spans,
    text_probs: np.ndarray | None,
    narrations: dict[str, list[Narration]],
    conf: GuideConfig,
    score_radius: float,
    peak_separation: float,
    uncertain_ratio: float,
) -> StepPlace:
    """One step of the guide: ``point``, ``radius``, ``confidence`` (the fused mass within ``radius``),
    ``uncertain``, ``looks`` (frames behind the point), ``moments`` and ``narration``."""
    pts = looks(scene, spans, conf.pad_seconds)
    probs = fuse(look_distribution(space, near, pts), text_probs, conf)
    a = answer(scene.scene, step, probs, space, near, peak_separation, uncertain_ratio)
    clips = video_moments(
        scene, np.asarray(a["point"]), narrations, top=conf.moments, per_video=2, spans=spans, centred=conf.centred
    ) or video_moments(
        scene,
        np.asarray(a["point"]),
        narrations,
        top=conf.moments,
        per_video=2,
        spans={v: [(s - conf.pad_seconds, e + conf.pad_seconds) for s, e in segs] for v, segs in spans.items()},
        centred=conf.centred,
    )
    said: dict[tuple[str, float], Said] = {}
    for c in clips:
        for n in narrations.get(c["video"], []):
            if n.start < c["end"] and n.end > c["start"]:
                said.setdefault(
                    (c["video"], n.start),
                    Said(video=c["video"], start=round(n.start, 3), end=round(n.end, 3), text=n.text),
                )
    return {
        "step": step,
        "point": a["point"],
        "radius": round(score_radius * float(np.mean(space.size)), 6),
        "confidence": a["score"],
        "uncertain": a["uncertain"],
        "looks": len(pts),
        "videos": sorted(v for v, segs in spans.items() if segs),
        "segments": [
            Segment(video=v, start=round(s, 3), end=round(e, 3)) for v, segs in sorted(spans.items()) for s, e in segs
        ],
        "moments": clips,
        "narration": list(said.values()),
    }
