"""Narration subtitles: step talk around the dwells, filler talk and off-screen part mentions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta

import numpy as np
import srt

from synth.camera import Visit
from synth.tasks import TASKS
from synth.world import PARTS

SYNONYMS: dict[str, tuple[str, ...]] = {
    "dipstick": ("dipstick", "oil dipstick", "dip stick", "oil level dipstick", "yellow dipstick"),
    "oil_filler_cap": ("oil filler cap", "oil cap", "oil fill cap", "filler cap", "oil filler"),
    "battery": ("battery", "car battery", "old battery", "12 volt battery"),
    "battery_positive_terminal": (
        "positive terminal",
        "positive battery terminal",
        "plus terminal",
        "red positive clamp",
        "positive cable",
    ),
    "battery_negative_terminal": (
        "negative terminal",
        "negative battery terminal",
        "ground terminal",
        "black negative clamp",
        "negative cable",
    ),
    "air_filter": ("air filter", "engine air filter", "air filter box", "air cleaner", "air box"),
    "spark_plugs": ("spark plugs", "plugs", "spark plug", "sparkplugs"),
    "coolant_reservoir": (
        "coolant reservoir",
        "coolant tank",
        "overflow tank",
        "antifreeze reservoir",
        "expansion tank",
    ),
    "brake_fluid_reservoir": (
        "brake fluid reservoir",
        "brake fluid tank",
        "master cylinder reservoir",
        "brake reservoir",
    ),
}

_LEADS = (
    "",
    "now ",
    "next ",
    "okay so ",
    "alright, ",
    "then ",
    "so now we ",
    "the next thing is to ",
    "what you want to do is ",
)
_INTROS = (
    "hey guys, welcome back to the channel",
    "hi everyone, today I'm going to show you how to {title} on a {car}",
    "in this video we {title} on my {car}",
    "what's up guys, quick video today",
    "this is a really easy job you can do at home",
)
_FILLERS = (
    "you don't need any special tools for this",
    "make sure the engine is cold before you start",
    "this only takes a couple of minutes",
    "I'll put the part numbers in the description",
    "it's a pretty straightforward job",
)
_OUTROS = (
    "and that's it, thanks for watching",
    "don't forget to like and subscribe",
    "if this helped you, hit the subscribe button",
    "see you in the next video",
)
_ASIDES = (  # mid-video talk about nothing on screen (``extra_talk`` only)
    "don't forget to like and subscribe",
    "my last car had the same problem",
    "I got this one at the local parts store",
    "let me know in the comments if you have any questions",
    "this car has about a hundred thousand miles on it",
    "sorry, the light is not great in here",
    "I'll link the tools I use below",
)
_MENTIONS = (
    "we'll look at the {p} in another video",
    "the {p} is over there but we don't need it today",
    "by the way, you should also check your {p} regularly",
    "some people also replace the {p} at this point",
)


@dataclass
class Narration:
    """One subtitle line."""

    start: float
    """Start time (s)."""
    end: float
    """End time (s)."""
    text: str
    """Spoken text."""
    part: str | None
    """Part mentioned (None for filler talk)."""
    kind: str
    """``step`` (about the part on screen), ``mention`` (part off screen) or ``filler``."""


def narrate(
    rng: np.random.Generator,
    visits: list[Visit],
    car: str,
    task_names: list[str],
    seconds: float,
    extra_talk: float = 0.0,
    visible: Callable[[float, float], set[str]] | None = None,
) -> list[Narration]:
    """Timed narration for one video: lines near each step with timing noise, plus noise talk.

    ``extra_talk``: extra ungrounded lines per 10 s of video (half filler talk, half mentions of a part the
    camera does not show while the line is said: ``visible(start, end)`` gives the parts in view, else the parts
    this video never visits), at random times. They take their time from step talk (a step line they overlap is
    cut to its longer free side, or dropped under 1 s), so the ungrounded share grows with the knob instead of
    being squeezed out by the steps; 0 draws nothing more, so existing worlds stay identical.
    """

    def pick(options):
        return options[int(rng.integers(len(options)))]

    def line(start: float, text: str, part: str | None, kind: str) -> Narration:
        length = float(np.clip(0.3 * len(text.split()) + rng.uniform(0.3, 0.8), 1.2, 4.0))
        return Narration(start, start + length, text, part, kind)

    title = " and ".join(TASKS[t].title for t in task_names)
    steps = []
    for visit in visits:
        span = (visit.end - visit.start) / len(visit.steps)
        for k, (_, step) in enumerate(visit.steps):
            text = pick(_LEADS) + pick(step.phrasings).format(p=pick(SYNONYMS[step.part]))
            start = visit.start + k * span + rng.normal(0.2, 0.4)
            steps.append(line(max(0.0, start), text, step.part, "step"))
    extras = [line(rng.uniform(0.1, 0.6), pick(_INTROS).format(title=title, car=car), None, "filler")]
    if rng.random() < 0.5:
        extras.append(line(rng.uniform(1.0, 1.8), pick(_FILLERS), None, "filler"))
    extras.append(line(seconds - rng.uniform(1.6, 2.2), pick(_OUTROS), None, "filler"))
    off_screen = [p for p in PARTS if p not in {v.part for v in visits}]
    mentions = int(rng.integers(1, 3))
    for _ in range(mentions if off_screen else 0):  # a long video may visit every part
        part = pick(off_screen)
        extras.append(
            line(rng.uniform(0.5, seconds - 2.0), pick(_MENTIONS).format(p=pick(SYNONYMS[part])), part, "mention")
        )
    if extra_talk <= 0:
        return _fit(_sequential(steps, seconds), extras, seconds)
    talk = []
    for n in range(int(rng.poisson(extra_talk * seconds / 10.0))):
        start = rng.uniform(0.0, max(seconds - 2.0, 0.1))
        unseen = [p for p in PARTS if p not in visible(start, start + 4.0)] if visible else off_screen
        if n % 2 and unseen:
            part = pick(unseen)
            talk.append(line(start, pick(_MENTIONS).format(p=pick(SYNONYMS[part])), part, "mention"))
        else:
            talk.append(line(start, pick(_FILLERS + _ASIDES), None, "filler"))
    talk = _fit([], talk, seconds)
    return _fit(talk + _around(_sequential(steps, seconds), talk), extras, seconds)


def _around(steps: list[Narration], talk: list[Narration]) -> list[Narration]:
    """Step lines cut around the ``talk`` lines that interrupt them: the longer free side, if >= 1 s."""
    out = []
    for n in steps:
        lo, hi = n.start, n.end
        for m in talk:
            if m.start - 0.1 < hi and lo < m.end + 0.1:
                before, after = (lo, min(hi, m.start - 0.1)), (max(lo, m.end + 0.1), hi)
                lo, hi = max(before, after, key=lambda span: span[1] - span[0])
        if hi - lo >= 1.0:
            out.append(Narration(lo, hi, n.text, n.part, n.kind))
    return out


def _sequential(lines: list[Narration], seconds: float) -> list[Narration]:
    """Step lines in order, one speaker: shift overlapping lines later, clip to the video."""
    out: list[Narration] = []
    for n in sorted(lines, key=lambda n: n.start):
        start = max(n.start, out[-1].end + 0.1) if out else n.start
        end = min(start + n.end - n.start, seconds)
        if end - start >= 0.8:
            out.append(Narration(start, end, n.text, n.part, n.kind))
    return out


def _fit(steps: list[Narration], extras: list[Narration], seconds: float) -> list[Narration]:
    """Add filler/mention lines only where they fit between step lines (steps have priority)."""
    out = list(steps)
    for n in extras:
        busy = sorted((m.start - 0.1, m.end + 0.1) for m in out)
        end = min(n.end, seconds, *(s for s, _ in busy if s > n.start))
        if any(s <= n.start < e for s, e in busy) or end - n.start < 1.0:
            continue
        out.append(Narration(n.start, end, n.text, n.part, n.kind))
    out.sort(key=lambda n: n.start)
    return [Narration(round(n.start, 3), round(n.end, 3), n.text, n.part, n.kind) for n in out]


def to_srt(lines: list[Narration]) -> str:
    """Compose an SRT file body."""
    subs = [
        srt.Subtitle(i + 1, timedelta(seconds=n.start), timedelta(seconds=n.end), n.text) for i, n in enumerate(lines)
    ]
    return srt.compose(subs)


def to_json(lines: list[Narration]) -> list[dict]:
    """Ground-truth records."""
    return [asdict(n) for n in lines]


def renarrate(video: dict, car: str, extra_talk: float, seed: int = 0) -> list[Narration]:
    """A rendered video's narration drawn anew from its ground-truth record (``ground_truth.json``: steps, dwells,
    tasks, cameras, part positions), e.g. with more ungrounded talk: the pictures do not depend on the narration,
    so tests and benchmarks can vary the talk over an already reconstructed world."""
    steps = {(t, s.text): s for t, task in TASKS.items() for s in task.steps}
    visits = []
    for d in video["dwells"]:
        inside = [s for s in video["steps"] if d["start"] - 1e-6 <= s["start"] < d["end"] and s["part"] == d["part"]]
        if inside:
            visits.append(Visit(d["part"], [(s["task"], steps[s["task"], s["step"]]) for s in inside],
                                d["start"], d["end"]))
    parts = {p: np.asarray(x) for p, x in video["parts"].items()}
    frames = [f for f in video["frames"] if f.get("cam_from_world") is not None]
    times = np.array([f["time"] for f in frames])

    def visible(a: float, b: float) -> set[str]:
        return set().union(*(in_view(parts, np.array(frames[i]["cam_from_world"]), np.array(frames[i]["K"]),
                                     frames[i].get("k1", 0.0), video["width"], video["height"])
                             for i in np.flatnonzero((times >= a) & (times <= b))))

    seconds = len(video["frames"]) / video["fps"]
    return narrate(np.random.default_rng(seed), visits, car, video["tasks"], seconds, extra_talk, visible)


def in_view(parts: dict[str, np.ndarray], cam_from_world: np.ndarray, K: np.ndarray, k1: float, width: int,
            height: int) -> set[str]:
    """Parts whose anchor is in front of this camera and inside its image (10 % margin); occlusion is ignored, so
    a part hidden behind another counts as visible, which only errs on the safe side for off-screen mentions."""
    from synth.render import project

    names = list(parts)
    X = np.array([parts[p] for p in names])
    uv = project(K, k1, cam_from_world, X)
    ok = (X @ cam_from_world[2, :3] + cam_from_world[2, 3] > 0.05) & (uv[:, 0] > -0.1 * width) \
        & (uv[:, 0] < 1.1 * width) & (uv[:, 1] > -0.1 * height) & (uv[:, 1] < 1.1 * height)
    return {n for n, o in zip(names, ok, strict=True) if o}
