"""Hand-held camera paths: overview of the bay, then dwells on the parts of the chosen tasks.

Paths are smooth (PCHIP through keyframes, plus low-frequency hand shake) and
always translate, never purely rotate, so consecutive frames have parallax
for SfM. Poses are world-to-camera (OpenCV: x right, y down, z forward).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.interpolate import PchipInterpolator
from scipy.spatial.transform import Rotation

from synth.maintenance import TASKS, Step
from synth.render import Renderer

BAY_CENTER = np.array([0.7, 0.45, 0.15])
OVERVIEW_SECONDS = (2.0, 3.0)
OUTRO_SECONDS = 1.0
MIN_DWELL = 2.5


@dataclass
class Visit:
    """Consecutive steps on the same part, filmed in one dwell."""

    part: str
    """Part the camera dwells on."""
    steps: list[tuple[str, Step]]
    """(task name, step) pairs performed during the dwell."""
    start: float = 0.0
    """Dwell start (s)."""
    end: float = 0.0
    """Dwell end (s)."""


@dataclass
class CameraPath:
    """Per-frame camera of one video plus what it looks at when."""

    K: np.ndarray
    """Intrinsics (3, 3), constant over the video."""
    poses: np.ndarray
    """World-to-camera poses (n_frames, 3, 4)."""
    times: np.ndarray
    """Frame timestamps (n_frames,), index / fps."""
    visits: list[Visit]
    """Dwells in temporal order."""
    pose_at: Callable[[np.ndarray], np.ndarray]
    """Poses (n, 3, 4) at any times of the path (sub-frame times for motion blur, skipped footage after cuts)."""


def look_at(eye: np.ndarray, target: np.ndarray, roll: float = 0.0) -> np.ndarray:
    """World-to-camera [R | t] looking from ``eye`` at ``target`` with world z up (plus roll, rad)."""
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    R = Rotation.from_rotvec([0.0, 0.0, roll]).as_matrix() @ np.stack([x, y, z])
    return np.hstack([R, (-R @ eye)[:, None]])


def _direction(az: float, el: float) -> np.ndarray:
    """Unit vector from a target towards a camera in front (−y) of it; az/el in degrees."""
    a, e = np.deg2rad(az), np.deg2rad(el)
    return np.array([np.sin(a) * np.cos(e), -np.cos(a) * np.cos(e), np.sin(e)])


def _clear_view(renderer: Renderer, eye: np.ndarray, target: np.ndarray, K: np.ndarray, size: tuple[int, int]) -> bool:
    """True if the target is visible from ``eye`` and nothing sits right in front of the lens."""
    dist = np.linalg.norm(target - eye)
    w, h = size
    u, v = np.meshgrid(np.linspace(0, w, 9), np.linspace(0, h, 6))
    pix = np.stack([u.ravel(), v.ravel(), np.ones(u.size)], axis=1) @ np.linalg.inv(K).T
    R = look_at(eye, target)[:, :3]
    dirs = np.vstack([(target - eye) / dist, pix @ R])
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    t, _, _ = renderer.cast(np.broadcast_to(eye, dirs.shape), dirs)
    return bool(t[0] > dist - 0.06 and t[1:].min() > 0.15)


def _visits(task_names: list[str]) -> list[Visit]:
    visits: list[Visit] = []
    for name in task_names:
        for step in TASKS[name].steps:
            if visits and visits[-1].part == step.part:
                visits[-1].steps.append((name, step))
            else:
                visits.append(Visit(step.part, [(name, step)]))
    return visits


def plan_path(
    rng: np.random.Generator,
    renderer: Renderer,
    parts: dict[str, np.ndarray],
    task_names: list[str],
    K: np.ndarray,
    seconds: float,
    fps: float,
    size: tuple[int, int],
    dwell: float = 0.0,
    swing: float = 0.0,
    cuts: Sequence[tuple[float, float]] = (),
) -> CameraPath:
    """Plan overview → (transition → dwell)* → pull-back, keeping visits that fit in ``seconds``.

    ``dwell`` > 0 paces like real footage: dwells of about ``dwell`` seconds hovering over the part (a slow orbit
    of about 0.6–1° per second round it, up to 70°, with hand-held wobble, always pointed at it), swings of about
    ``swing`` seconds between parts; 0 keeps the short pacing (the first dwell sized by its steps, later ones by
    the previous dwell ±20 % with swing-length transitions, a 10–20° orbit each).
    ``cuts`` (footage time, skipped seconds): a cut inside a dwell resumes from another side of the part,
    as when a presenter stops and restarts the recording; the skipped footage hides the move.
    """
    overview = rng.uniform(*OVERVIEW_SECONDS)
    keys: list[tuple[float, np.ndarray, np.ndarray]] = []  # (time, eye, target)
    az, el, dist = rng.uniform(-20, 20), rng.uniform(45, 60), rng.uniform(1.1, 1.5)
    sweep = rng.choice([-1, 1]) * rng.uniform(15, 25)
    center = BAY_CENTER + rng.normal(0, 0.03, 3)
    keys.append((0.0, center + dist * _direction(az, el), center))
    keys.append((overview, center + (dist - 0.1) * _direction(az + sweep, el + 5), center))

    planned = _visits(task_names)
    visits: list[Visit] = []
    t, target, length = overview, center, 0.0
    for visit in planned:
        goal = parts[visit.part]
        if dwell > 0:  # the orbit grows with the hover, so its length is drawn first
            transition = max(swing, 0.5) * rng.uniform(0.8, 1.25)
            wanted = dwell * rng.uniform(0.8, 1.2)
            hover = min(wanted, seconds - OUTRO_SECONDS - t - transition)
            eye0, eye1 = _dwell_views(rng, renderer, goal, K, size, orbit=min(hover * rng.uniform(0.6, 1.0), 70.0))
        else:
            eye0, eye1 = _dwell_views(rng, renderer, goal, K, size)
            # Slow enough that frames sampled ~1 s apart still overlap (zooming from the overview matters most).
            if visits:
                transition = max(swing, 0.5) * rng.uniform(0.8, 1.25)
                wanted = length * rng.uniform(0.8, 1.2)
            else:
                transition = 1.0 + 2.0 * float(np.linalg.norm(eye0 - keys[-1][1]))
                wanted = max(MIN_DWELL, 1.6 * len(visit.steps)) * rng.uniform(1.0, 1.4)
        if t + transition + MIN_DWELL > seconds - OUTRO_SECONDS:
            break
        length = min(wanted, seconds - OUTRO_SECONDS - t - transition)
        mid_target = 0.5 * (target + goal)
        mid_eye = mid_target + 0.5 * (keys[-1][1] - target + eye0 - goal) + np.array([0, -0.1, 0.15])
        keys.append((t + transition / 2, mid_eye, mid_target))
        visit.start, visit.end = t + transition, t + transition + length
        keys.append((visit.start, eye0, goal))
        keys.append((visit.end, eye1, goal))
        visits.append(visit)
        t, target = visit.end, goal
    # Spread leftover time over the dwells so the video ends with a short pull-back.
    slack = seconds - OUTRO_SECONDS - t
    if visits and slack > 0:
        keys, visits = _stretch(keys, visits, slack)
    last_t, last_eye, last_target = keys[-1]
    keys.append((max(seconds, last_t + 0.5), last_eye + 0.35 * (last_eye - last_target), last_target))
    keys = _hover(rng, keys, visits, around=dwell > 0)
    for cut, skipped in cuts:
        keys = _reframe(rng, renderer, keys, visits, cut, skipped, K, size)

    kt = np.array([k[0] for k in keys])
    eye_curve = PchipInterpolator(kt, np.array([k[1] for k in keys]))
    target_curve = PchipInterpolator(kt, np.array([k[2] for k in keys]))
    eye_shake, target_shake = _Shake(rng, 0.004), _Shake(rng, 0.006)
    roll_shake = _Shake(rng, np.deg2rad(1.0))

    def pose_at(t: np.ndarray) -> np.ndarray:
        t = np.asarray(t, dtype=np.float64)
        eyes, targets = eye_curve(t) + eye_shake(t), target_curve(t) + target_shake(t)
        roll = roll_shake(t)[:, 0]
        return np.stack([look_at(e, g, r) for e, g, r in zip(eyes, targets, roll, strict=True)]).reshape(-1, 3, 4)

    times = np.arange(int(round(seconds * fps))) / fps
    return CameraPath(K=K, poses=pose_at(times), times=times, visits=visits, pose_at=pose_at)


def _reframe(
    rng: np.random.Generator,
    renderer: Renderer,
    keys: list,
    visits: list[Visit],
    cut: float,
    skipped: float,
    K: np.ndarray,
    size: tuple[int, int],
) -> list:
    """After a cut inside a dwell, film the rest of the dwell from 25–50° further round the part."""
    visit = next((v for v in visits if v.start < cut and cut + skipped < v.end - 0.5), None)
    if visit is None:
        return keys  # the skipped footage already changes the view (a swing or another part)
    kt = np.array([k[0] for k in keys])
    eye_at = PchipInterpolator(kt, np.array([k[1] for k in keys]))
    target_at = PchipInterpolator(kt, np.array([k[2] for k in keys]))
    goal = target_at(visit.start)
    resume = cut + skipped
    for _ in range(10):
        rot = Rotation.from_rotvec([0, 0, rng.choice([-1, 1]) * np.deg2rad(rng.uniform(25, 50))]).as_matrix()
        if _clear_view(renderer, goal + rot @ (eye_at(resume) - goal), goal, K, size):
            break
    out = [k for k in keys if k[0] <= cut or k[0] > visit.end]
    out += [(t, goal + rot @ (e - goal), g) for t, e, g in keys if resume < t <= visit.end]
    out += [(cut, eye_at(cut), target_at(cut)), (resume, goal + rot @ (eye_at(resume) - goal), target_at(resume))]
    out = sorted(out, key=lambda k: k[0])
    return [k for i, k in enumerate(out) if i == 0 or k[0] - out[i - 1][0] > 1e-6]


def _hover(rng: np.random.Generator, keys: list, visits: list[Visit], around: bool) -> list:
    """Hand-held hovering inside dwells: a keyframe every 4–7 s, a few cm off the drift from the start to the end
    eye; ``around``: the drift follows the orbit round the part (azimuth, elevation and distance interpolated),
    which keeps a long hover's camera at its distance instead of cutting the chord towards the part."""
    out = list(keys)
    by_time = {round(k[0], 9): k for k in keys}
    for visit in visits:
        start, end = by_time.get(round(visit.start, 9)), by_time.get(round(visit.end, 9))
        if start is None or end is None:
            continue
        n = int((visit.end - visit.start) // rng.uniform(4.0, 7.0))
        arc0, arc1 = _spherical(start[1] - start[2]), _spherical(end[1] - end[2])
        for a in np.arange(1, n) / n:
            t = visit.start + a * (visit.end - visit.start)
            target = (1 - a) * start[2] + a * end[2]
            if around:
                az, el, d = (1 - a) * arc0 + a * arc1
                eye = target + d * _direction(az, el) + rng.normal(0, 0.025, 3)
            else:
                eye = (1 - a) * start[1] + a * end[1] + rng.normal(0, 0.025, 3)
            out.append((t, eye, target + rng.normal(0, 0.012, 3)))
    return sorted(out, key=lambda k: k[0])


def _spherical(offset: np.ndarray) -> np.ndarray:
    """(azimuth°, elevation°, distance) of a camera at ``offset`` from its target: the inverse of ``_direction``."""
    d = float(np.linalg.norm(offset))
    return np.array([np.degrees(np.arctan2(offset[0], -offset[1])), np.degrees(np.arcsin(offset[2] / d)), d])


def _dwell_views(
    rng: np.random.Generator,
    renderer: Renderer,
    goal: np.ndarray,
    K: np.ndarray,
    size: tuple[int, int],
    orbit: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Start/end eyes of a dwell: 0.3–0.6 m from the part, orbiting 10–20° for parallax, unoccluded.

    ``orbit`` (degrees, if more than the drawn 10–20°): a long hover's arc, centred on the drawn azimuth and
    unoccluded every 10° along it, so the part stays in sight all the way round.
    """
    best = None
    for _ in range(40):
        az, el, d = rng.uniform(-40, 40), rng.uniform(40, 70), rng.uniform(0.4, 0.6)
        daz, del_, dd = rng.choice([-1, 1]) * rng.uniform(10, 20), rng.uniform(-5, 5), rng.uniform(-0.05, 0.05)
        if abs(daz) < orbit:
            az, daz = az - np.sign(daz) * orbit / 2, np.sign(daz) * orbit
        arc = np.linspace(0.0, 1.0, 2 + int(abs(daz) // 10) if orbit else 2)
        eyes = [goal + (d + a * dd) * _direction(az + a * daz, el + a * del_) for a in arc]
        best = best or (eyes[0], eyes[-1])
        if all(_clear_view(renderer, eye, goal, K, size) for eye in eyes):
            return eyes[0], eyes[-1]
    assert best is not None  # set by the first of the 40 tries
    return best


def _stretch(keys: list, visits: list[Visit], slack: float) -> tuple[list, list[Visit]]:
    """Lengthen each dwell by an equal share of ``slack``, shifting later keyframes."""
    share = slack / len(visits)
    out, shift = [], 0.0
    ends = {v.end: v for v in visits}
    starts = {v.start: v for v in visits}
    for t, eye, target in keys:
        if t in starts:
            starts[t].start = t + shift
        if t in ends:
            shift += share
            ends[t].end = t + shift
        out.append((t + shift, eye, target))
    return out, visits


class _Shake:
    """Smooth hand-held jitter: a few random low-frequency sinusoids per axis, evaluable at any time."""

    def __init__(self, rng: np.random.Generator, amplitude: float) -> None:
        self.freqs = rng.uniform(0.2, 1.5, (3, 3))
        self.phases = rng.uniform(0, 2 * np.pi, (3, 3))
        self.amps = amplitude * rng.uniform(0.3, 1.0, (3, 3)) / 1.7

    def __call__(self, times: np.ndarray) -> np.ndarray:
        return np.stack(
            [
                (self.amps[a] * np.sin(2 * np.pi * self.freqs[a] * times[:, None] + self.phases[a])).sum(1)
                for a in range(3)
            ],
            axis=1,
        )
