"""Training pairs (narration segment → 3D point) from narrations and registered frames ([001] §5.4.1).

A segment's frames are the registered frames inside its time window. ``center`` back-projects each frame's
centre onto the reconstructed surface (depth = median depth of the observed 3D points nearest that pixel) and
takes the per-axis median over the frames; ``gaze`` intersects the frames' optical axes in the least-squares
sense, weakly tied to those back-projected centres so near-parallel axes still give a finite point.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np

from grounding.config import GroundingConfig
from grounding.narration import Narration
from recon.config import choices
from recon.scene import RegisteredFrame, SharedScene

log = logging.getLogger(__name__)

SUPERVISION = choices(GroundingConfig, "supervision")


@dataclass
class Pair:
    """One training pair: a narration segment and the 3D point (and later the voxel) it refers to."""

    scene: str
    video: str
    text: str
    start: float
    end: float
    point: list[float]
    """3D point in the scene's shared frame."""
    frames: int
    """Registered frames of the segment that gave a surface point."""
    voxel: int = -1
    """Class index into the scene's kept voxels."""
    anchors: list[list[float]] = field(default_factory=list)
    """Surface point under the centre of each of those frames (the 'window' target spreads over them)."""
    weight: float = 1.0
    """How much the pair counts: how centred and close its frames look at ``point`` (``seen_weight``), times the
    narration line's weight when one is given."""

    def to_json(self) -> dict:
        return asdict(self)


def segments(narrations: list[Narration], max_seconds: float, min_seconds: float) -> list[Narration]:
    """Subtitle lines as segments: short lines merged with a close next line, long ones split by time."""
    merged: list[Narration] = []
    for n in narrations:
        prev = merged[-1] if merged else None
        if (
            prev is not None
            and prev.end - prev.start < min_seconds
            and n.start - prev.end < 0.5
            and n.end - prev.start <= max_seconds
        ):
            merged[-1] = Narration(f"{prev.text} {n.text}", prev.start, n.end)
        else:
            merged.append(n)
    out: list[Narration] = []
    for n in merged:
        pieces = max(1, int(np.ceil((n.end - n.start) / max_seconds - 1e-9)))
        words = n.text.split()
        pieces = min(pieces, len(words))
        if pieces <= 1:
            out.append(n)
            continue
        cuts = np.linspace(0, len(words), pieces + 1).round().astype(int)
        step = (n.end - n.start) / pieces
        out += [
            Narration(" ".join(words[a:b]), n.start + i * step, n.start + (i + 1) * step)
            for i, (a, b) in enumerate(zip(cuts[:-1], cuts[1:], strict=True))
        ]
    return out


def surface_point(
    frame: RegisteredFrame, scene: SharedScene, xy: np.ndarray, radius: float, neighbors: int
) -> np.ndarray | None:
    """Back-project pixel ``xy`` onto the reconstructed surface, or ``None`` when no 3D point is observed near it.

    ``radius`` is a fraction of the image diagonal; the depth is the median camera depth of the (at most
    ``neighbors``) nearest observations, robust to a few points from the background or a foreground edge.
    """
    if len(frame.xy) == 0:
        return None
    diag = float(np.hypot(frame.camera.width, frame.camera.height))
    dist = np.linalg.norm(frame.xy - xy, axis=1)
    near = np.flatnonzero(dist <= radius * diag)
    if len(near) == 0:
        return None
    near = near[np.argsort(dist[near], kind="stable")[:neighbors]]
    X = scene.points[frame.point_index[near]]
    depth = X @ frame.cam_from_world[2, :3] + frame.cam_from_world[2, 3]
    depth = depth[depth > 0]
    if len(depth) == 0:
        return None
    ray = frame.ray(xy)[0]
    return frame.center + ray * float(np.median(depth)) / float(ray @ frame.axis)


def gaze_point(frames: list[RegisteredFrame], anchors: np.ndarray, prior_weight: float) -> np.ndarray:
    """Least-squares intersection of the frames' optical axes, plus ``prior_weight`` × distance² to ``anchors``."""
    A = np.zeros((3, 3))
    b = np.zeros(3)
    for f in frames:
        P = np.eye(3) - np.outer(f.axis, f.axis)
        A += P
        b += P @ f.center
    A += prior_weight * len(anchors) * np.eye(3)
    b += prior_weight * anchors.sum(0)
    return np.linalg.solve(A, b)


def frame_center(frame: RegisteredFrame) -> np.ndarray:
    return np.array([[frame.camera.width / 2, frame.camera.height / 2]], float)


def seen_weight(frames: list[RegisteredFrame], point: np.ndarray, ref_depth: float) -> float:
    """Mean over the frames of how centred ``point`` is in the image (Gaussian, sigma a quarter of the image
    diagonal) times how close the camera is (1 up to the scene's median viewing depth, then falling as 1/depth)."""
    w = []
    for f in frames:
        X = f.cam_from_world[:, :3] @ point + f.cam_from_world[:, 3]
        if X[2] <= 0:
            w.append(0.0)
            continue
        K = f.camera.calibration_matrix()
        uv = (K @ (X / X[2]))[:2]
        diag = float(np.hypot(f.camera.width, f.camera.height))
        off = np.linalg.norm(uv - [f.camera.width / 2, f.camera.height / 2]) / (0.25 * diag)
        w.append(float(np.exp(-0.5 * off**2) * min(1.0, ref_depth / X[2])))
    return float(np.mean(w)) if w else 0.0


def _segment_weight(seg: Narration, lines: list[Narration], weights: list[float] | None) -> float:
    """A segment's line weight: the largest weight of the subtitle lines it overlaps (1 without weights)."""
    if weights is None:
        return 1.0
    over = [w for n, w in zip(lines, weights, strict=True) if n.start < seg.end and n.end > seg.start]
    return max(over, default=1.0)


def make_pairs(
    conf: GroundingConfig,
    scene: SharedScene,
    narrations: dict[str, list[Narration]],
    supervision: str,
    line_weights: dict[str, list[float]] | None = None,
) -> tuple[list[Pair], Counter]:
    """Pairs of one scene; the counter says how many segments/frames were skipped and why.

    ``line_weights`` (optional, per video: one weight in [0, 1] per narration line, e.g. how grounded the line
    is) scales each pair's weight; segments whose lines all weigh 0 are skipped.
    """
    if supervision not in SUPERVISION:
        raise ValueError(f"supervision must be one of {SUPERVISION}, got {supervision!r}")
    skipped: Counter = Counter()
    pairs: list[Pair] = []
    used_frames: list[list[RegisteredFrame]] = []
    for video in sorted(narrations):
        frames = scene.frames_of(video)
        if not frames:
            skipped["videos without registered frames"] += 1
            log.info("%s/%s: no registered frames in the shared frame; its narrations are skipped", scene.scene, video)
            continue
        times = np.array([f.time for f in frames])
        weights = (line_weights or {}).get(video)
        for seg in segments(narrations[video], conf.segment_max_seconds, conf.segment_min_seconds):
            line_weight = _segment_weight(seg, narrations[video], weights)
            if line_weight <= 0:
                skipped["segments with line weight 0"] += 1
                continue
            lo = seg.start - conf.window_pad_seconds - conf.window_shift_seconds
            hi = seg.end + conf.window_pad_seconds - conf.window_shift_seconds
            inside = np.flatnonzero((times >= lo) & (times <= hi))
            if len(inside) == 0:
                skipped["segments without registered frames"] += 1
                continue
            used, anchors = [], []
            for i in inside:
                X = surface_point(frames[i], scene, frame_center(frames[i]), conf.depth_radius, conf.depth_neighbors)
                if X is None:
                    skipped["frames without 3D points near the centre"] += 1
                    continue
                used.append(frames[i])
                anchors.append(X)
            if not anchors:
                skipped["segments without a surface point"] += 1
                continue
            anchors_a = np.array(anchors)
            point = (
                np.median(anchors_a, axis=0)
                if supervision == "center" or len(used) < 2
                else gaze_point(used, anchors_a, conf.gaze_prior_weight)
            )
            pairs.append(
                Pair(
                    scene.scene,
                    video,
                    seg.text,
                    round(seg.start, 3),
                    round(seg.end, 3),
                    [float(x) for x in point],
                    len(used),
                    anchors=[[round(float(x), 6) for x in a] for a in anchors_a],
                    weight=line_weight,
                )
            )
            used_frames.append(used)
    if conf.seen_weighting and pairs:
        depths = [
            f.cam_from_world[2, :3] @ np.asarray(p.point) + f.cam_from_world[2, 3]
            for p, fs in zip(pairs, used_frames, strict=True)
            for f in fs
        ]
        ref = float(np.median(depths))
        for p, fs in zip(pairs, used_frames, strict=True):
            p.weight = round(p.weight * seen_weight(fs, np.asarray(p.point), ref), 6)
    for why, n in sorted(skipped.items()):
        log.info("%s: skipped %d %s", scene.scene, n, why)
    return pairs, skipped
