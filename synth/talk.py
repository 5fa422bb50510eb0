"""Narration subtitles: step talk around the dwells, filler talk and off-screen part mentions.

Two styles (``WorldConfig.talk``): ``sparse``, one or two lines naming the part per step and little else, and
``dense``, a presenter who talks all the time (a line every 3–4 s) and mostly about nothing that names a part:
generic actions at every part, pronouns for the part on screen, transit and off-topic talk, the part named about
once per visit, a little before the camera arrives or after it leaves.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import timedelta

import numpy as np
import srt

from synth.camera import Visit
from synth.maintenance import TASKS
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


# ---- dense talk (``narrate(..., talk="dense")``): none of these name a part but the {p} templates -------------

_GREETINGS = (  # dense intros: the sparse ones say the task titles, which name parts
    "hey guys, welcome back to the channel",
    "what's up guys, quick video today",
    "this is a really easy job you can do at home",
    "hey everyone, we're working on my {car} today",
    "alright, let's get into it",
    "welcome back, it's the {car} again today",
    "good morning everybody, back in the garage",
)
_TALK_LEADS = ("", "", "", "okay ", "alright ", "so ", "now ", "and ", "yeah ", "um, ", "then ", "right, ")
_TALK_TAILS = (
    "",
    "",
    "",
    ", just like that",
    ", there we go",
    ", nice and easy",
    ", no big deal",
    ", you know",
    ", see",
    " real quick",
)
_CHATTER = (  # generic actions, said at every part
    "give it a little wiggle",
    "pull that straight out",
    "make sure it's seated all the way down",
    "hand tight is fine",
    "wipe it off",
    "don't force it",
    "twist it about a quarter turn",
    "push down and twist",
    "there's a little clip on the side",
    "it should pop right out",
    "go slow here",
    "wiggle it back and forth",
    "you might need a flat head screwdriver for this",
    "careful, the edges can be a bit sharp",
    "you'll feel it click",
    "that's nice and snug",
    "not too tight",
    "back it out counterclockwise",
    "lefty loosey, righty tighty",
    "keep a rag handy",
    "it's a little stubborn",
    "there it goes",
    "get your fingers underneath",
    "line up the tabs",
    "it only goes in one way",
    "snug it down",
    "looks pretty clean actually",
    "that's a little dirty",
    "some crud on there, wipe that off",
    "don't drop anything down there",
    "hold it steady",
    "a little more",
    "almost there",
    "and it's out",
    "put it back the way it came out",
    "double check that it's seated",
    "spin it on by hand first",
    "don't cross thread it",
    "ten millimeter on this one",
    "give it a tug to make sure it's on",
    "that's all it takes",
    "rock it side to side",
    "press it down firmly",
    "nothing fancy here",
)
_POINTERS = (  # the part on screen, unnamed; {n}: a generic word for it (``_NOUNS``)
    "this one right here",
    "this guy right here",
    "see this {n} right here",
    "that {n} right there",
    "this {n} here",
    "you can see the {n}",
    "right here, this {n}",
    "this is the one",
    "grab this {n}",
    "that's the one we want",
    "this {n} is what we're after",
    "this thing right here",
    "see this right here",
    "take a look at this {n}",
    "here it is, this {n}",
    "that's our {n}",
    "this {n}, right in the middle",
    "focus on this {n}",
)
_NOUNS: dict[str, tuple[str, ...]] = {
    "dipstick": ("handle", "little yellow handle", "ring", "thing"),
    "oil_filler_cap": ("cap", "lid", "black cap", "thing"),
    "battery": ("box", "big guy", "unit", "thing"),
    "battery_positive_terminal": ("red one", "clamp", "post", "nut"),
    "battery_negative_terminal": ("black one", "clamp", "post", "nut"),
    "air_filter": ("housing", "cover", "lid", "box"),
    "spark_plugs": ("coil", "coil pack", "connector", "thing"),
    "coolant_reservoir": ("tank", "bottle", "cap", "thing"),
    "brake_fluid_reservoir": ("little tank", "cap", "bottle", "thing"),
}
_TRANSIT = (
    "alright, let's move on",
    "now over to the other side",
    "okay, next up",
    "let me move the camera over here",
    "moving on",
    "now let's head over here",
    "okay so that's done",
    "next thing",
    "now the fun part",
    "let me reposition real quick",
    "over on this side now",
    "alright, on to the next one",
    "let's go to the next step",
    "let me grab the camera",
    "now we'll come around this way",
    "so from here",
    "one sec, let me get a better angle",
    "alright, what's next",
    "let's keep going",
    "okay, back over here",
)
_OFF_TOPIC = (
    (  # comments, sponsors, tools, life
        "some of you asked about this in the comments",
        "a lot of you asked me about that last time",
        "leave a comment if you have a different car",
        "I read all the comments, so ask away",
        "this video is sponsored by the parts store down the road",
        "check out the link below for a discount",
        "thanks to our sponsor for making this video possible",
        "use my code at checkout",
        "I'm not sponsored, I just like this brand",
        "I'm using a cheap socket set from the hardware store",
        "a headlamp really helps in here",
        "you want a good pair of gloves for this",
        "these pliers were my grandpa's",
        "a magnetic pickup tool will save your life",
        "it's freezing in the garage today",
        "my dog is barking, sorry",
        "the neighbours must love me",
        "I do this every spring",
        "this car has been really reliable",
        "I bought it used a few years back",
        "the dealer wanted three hundred bucks for this",
        "it's a lot cheaper to do it yourself",
        "hold on, my phone is ringing",
        "sorry about the noise",
        "okay, where was I",
        "I'll put a card up here",
        "if you're new here, welcome",
        "hit that like button if this helps",
        "I'll leave the torque specs in the description",
        "this is my first time filming with this camera",
        "I've done this like a hundred times",
        "my buddy showed me this trick years ago",
        "don't do this right after driving",
        "grab a coffee, this part takes a minute",
    )
    + _FILLERS
    + _ASIDES
)
_CALLOUTS = (  # the dwell's part named ({p}), as the camera arrives or while it is there
    "here's our {p}",
    "okay, we're at the {p} now",
    "let's get to the {p}",
    "next up, the {p}",
    "now for the {p}",
    "over here we've got the {p}",
    "this here, that's your {p}",
    "now let's deal with the {p}",
    "time for the {p}",
    "on to the {p}",
    "the {p} sits right here",
    "let's sort out the {p}",
)
_WRAPS = (  # the dwell's part named as the camera leaves it
    "and that's the {p} done",
    "okay, {p} finished",
    "that's it for the {p}",
    "so the {p} is all good",
    "and we're done with the {p}",
    "{p} looks good now",
)
_MORE_MENTIONS = (  # a part off screen, named
    "I did a whole video on the {p} last month",
    "while you're in there, have a look at the {p} too",
    "you can't really see the {p} from here",
    "someone asked about the {p}, that's for another day",
    "the {p} on this car is a pain",
    "don't mix this up with the {p}",
)
NAMING_SHARE = 0.18
"""Dense talk: off-screen mentions top the part-naming lines up to about this share of all lines, but never
outnumber the lines that name a part on screen (a presenter mentions other parts now and then; a world where the
dipstick is named once on screen and ten times off screen cannot be learned from, and measures only noise)."""
SECONDS_PER_LINE = 3.5
"""Dense talk: about one line this often (s), pauses included."""


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
    """Part the line names or points at (None for filler talk)."""
    kind: str
    """``step`` (names or points at the part on screen), ``mention`` (names a part off screen) or ``filler``."""
    refers: str | None = None
    """How the line points at ``part``: ``name`` (says one of its names), ``pronoun`` (this one, that cap: the
    part on screen, unnamed) or None (no part)."""
    talk: str = "filler"
    """Finer kind: ``intro``, ``outro``, ``filler``, ``step`` (names the part on screen), ``pronoun``,
    ``chatter`` (generic action talk at a part), ``transit`` (between parts), ``aside`` (off-topic talk) or
    ``mention``."""
    dwell: int | None = None
    """Index of the dwell (ground truth ``dwells``) the line belongs to: a line about the part on screen, its
    visit's dwell piece nearest in time (a naming line may start before the camera arrives or end after it
    leaves); any other line, the dwell on screen halfway through it; None between dwells."""


def narrate(
    rng: np.random.Generator,
    visits: list[Visit],
    car: str,
    task_names: list[str],
    seconds: float,
    extra_talk: float = 0.0,
    visible: Callable[[float, float], set[str]] | None = None,
    talk: str = "sparse",
    pieces: list[tuple[int, float, float]] | None = None,
) -> list[Narration]:
    """Timed narration for one video: lines near each step with timing noise, plus noise talk.

    ``talk``: ``sparse`` (the step lines, intro, outro, a few fillers and mentions) or ``dense`` (see
    :func:`_dense`). ``pieces``: (visit index, start, end) of every on-screen piece of the dwells, in the order
    of the ground truth's ``dwells`` (a cut or insert splits a visit); None: one per visit. Lines' ``dwell``
    index into it.

    ``extra_talk``: extra ungrounded lines per 10 s of video (half filler talk, half mentions of a part the
    camera does not show while the line is said: ``visible(start, end)`` gives the parts in view, else the parts
    this video never visits), at random times. They take their time from step talk (a step line they overlap is
    cut to its longer free side, or dropped under 1 s), so the ungrounded share grows with the knob instead of
    being squeezed out by the steps; 0 draws nothing more, so existing worlds stay identical.
    """
    if pieces is None:
        pieces = [(k, v.start, v.end) for k, v in enumerate(visits)]

    def pick(options):
        return options[int(rng.integers(len(options)))]

    def line(start: float, text: str, part: str | None, kind: str, talk: str, visit: int | None = None) -> Narration:
        length = float(np.clip(0.3 * len(text.split()) + rng.uniform(0.3, 0.8), 1.2, 4.0))
        refers = None if part is None else "pronoun" if talk == "pronoun" else "name"
        middle = start + length / 2
        dwell = _piece_at(pieces, middle) if visit is None else _piece_of(pieces, visit, middle)
        return Narration(start, start + length, text, part, kind, refers, talk, dwell)

    title = " and ".join(TASKS[t].title for t in task_names)
    off_screen = [p for p in PARTS if p not in {v.part for v in visits}]

    def unseen(start: float) -> list[str]:
        return [p for p in PARTS if p not in visible(start, start + 4.0)] if visible else off_screen

    if talk == "dense":
        return _dense(rng, visits, pieces, pick(_GREETINGS).format(car=car), seconds, unseen, pick, line)
    steps = []
    for v, visit in enumerate(visits):
        span = (visit.end - visit.start) / len(visit.steps)
        for k, (_, step) in enumerate(visit.steps):
            text = pick(_LEADS) + pick(step.phrasings).format(p=pick(SYNONYMS[step.part]))
            start = visit.start + k * span + rng.normal(0.2, 0.4)
            steps.append(line(max(0.0, start), text, step.part, "step", "step", v))
    extras = [line(rng.uniform(0.1, 0.6), pick(_INTROS).format(title=title, car=car), None, "filler", "intro")]
    if rng.random() < 0.5:
        extras.append(line(rng.uniform(1.0, 1.8), pick(_FILLERS), None, "filler", "filler"))
    extras.append(line(seconds - rng.uniform(1.6, 2.2), pick(_OUTROS), None, "filler", "outro"))
    mentions = int(rng.integers(1, 3))
    for _ in range(mentions if off_screen else 0):  # a long video may visit every part
        part = pick(off_screen)
        extras.append(
            line(
                rng.uniform(0.5, seconds - 2.0),
                pick(_MENTIONS).format(p=pick(SYNONYMS[part])),
                part,
                "mention",
                "mention",
            )
        )
    if extra_talk <= 0:
        return _fit(_sequential(steps, seconds), extras, seconds)
    noise = []
    for n in range(int(rng.poisson(extra_talk * seconds / 10.0))):
        start = rng.uniform(0.0, max(seconds - 2.0, 0.1))
        hidden = unseen(start)
        if n % 2 and hidden:
            part = pick(hidden)
            noise.append(line(start, pick(_MENTIONS).format(p=pick(SYNONYMS[part])), part, "mention", "mention"))
        else:
            noise.append(line(start, pick(_FILLERS + _ASIDES), None, "filler", "filler"))
    noise = _fit([], noise, seconds)
    return _fit(noise + _around(_sequential(steps, seconds), noise), extras, seconds)


def _dense(
    rng: np.random.Generator,
    visits: list[Visit],
    pieces: list[tuple[int, float, float]],
    intro: str,
    seconds: float,
    unseen: Callable[[float], list[str]],
    pick: Callable,
    line: Callable[..., Narration],
) -> list[Narration]:
    """A presenter who never stops talking: about one line every ``SECONDS_PER_LINE`` with pauses, most naming no
    part, as in real downloads (where the narration alone rarely says what is on screen).

    Each visit's part is named once (a second time in 30 % of dwells of 20 s or more), in 20 % of visits never: as
    the camera arrives (40 % of named visits start 0.5–2.5 s before it), while it hovers (40 %), or as a wrap-up
    that ends after it leaves (20 %). The rest is said where it is: on a dwell generic action talk, pronouns for
    the part on screen, off-topic talk and mentions of parts out of view (topping the naming lines up to
    ``NAMING_SHARE``); between dwells and near their ends, transit talk; over cuts, inserts and the overview,
    off-topic talk.
    """
    planned = [line(rng.uniform(0.1, 0.6), intro, None, "filler", "intro")]
    for k, visit in enumerate(visits):
        if rng.random() < 0.2:
            continue
        s, e, part = visit.start, visit.end, visit.part
        name, when = pick(SYNONYMS[part]), rng.random()
        if when < 0.4:  # on the way there
            start = s - rng.uniform(0.5, 2.5)
        elif when < 0.6:  # a wrap-up that runs past the camera leaving
            start = e - rng.uniform(0.3, 1.2)
        else:
            start = s + rng.uniform(0.0, min(8.0, 0.4 * (e - s)))
        if 0.4 <= when < 0.6:
            text = pick(_WRAPS).format(p=name)
        elif rng.random() < 0.5:
            text = pick(_CALLOUTS).format(p=name)
        else:  # the visit's first step, as the sparse talk says it
            text = pick(_LEADS) + pick(visit.steps[0][1].phrasings).format(p=name)
        planned.append(line(max(start, 0.0), text, part, "step", "step", k))
        if e - s >= 20.0 and rng.random() < 0.3:
            step = pick(visit.steps)[1]
            text = pick(_LEADS) + pick(step.phrasings).format(p=pick(SYNONYMS[part]))
            planned.append(line(s + rng.uniform(0.5, 0.9) * (e - s), text, part, "step", "step", k))
    planned.append(line(seconds - rng.uniform(1.6, 2.2), pick(_OUTROS), None, "filler", "outro"))
    planned = _sequential(planned, seconds)
    named = sum(n.refers == "name" for n in planned)
    mentions = min(round(NAMING_SHARE * seconds / SECONDS_PER_LINE) - named, max(named, 1))
    first, last = (visits[0].start, visits[-1].end) if visits else (seconds, seconds)
    said: list[Narration] = []

    def say(t: float) -> Narration:
        """A line starting at ``t``, chosen by what the camera does then."""
        nonlocal mentions
        probe = t + 1.0
        on = _piece_at(pieces, probe)
        r = rng.random()
        mention = min(max(mentions, 0) * SECONDS_PER_LINE / max(seconds - t, SECONDS_PER_LINE), 0.5)
        hidden = unseen(t) if r < mention and not (said and said[-1].talk == "mention") else []
        if hidden:
            mentions -= 1
            part = pick(hidden)
            return line(t, pick(_MENTIONS + _MORE_MENTIONS).format(p=pick(SYNONYMS[part])), part, "mention", "mention")
        visit = visits[pieces[on][0]] if on is not None else None
        leaving = visit is not None and visit is not visits[-1] and probe > visit.end - 5.0
        between = on is None and first < probe < last and not any(v.start <= probe <= v.end for v in visits)
        if (leaving and r < 0.5) or (between and r < 0.65):
            return line(t, pick(_TALK_LEADS) + pick(_TRANSIT), None, "filler", "transit")
        if visit is None or on is None or r > 0.8:  # on is None exactly when visit is
            return line(t, pick(_OFF_TOPIC), None, "filler", "aside")
        if r < mention + 0.25:
            text = pick(_POINTERS).format(n=pick(_NOUNS[visit.part]))
            return line(t, pick(_TALK_LEADS) + text, visit.part, "step", "pronoun", pieces[on][0])
        return line(t, pick(_TALK_LEADS) + pick(_CHATTER) + pick(_TALK_TAILS), None, "filler", "chatter")

    for lo, hi in zip(
        [0.0] + [n.end + 0.1 for n in planned], [n.start - 0.1 for n in planned] + [seconds], strict=True
    ):
        t = lo + _pause(rng)
        while t < hi:
            n = next((n for n in (say(t) for _ in range(3)) if n.end <= hi), None)  # a shorter one may fit
            if n is None:
                break
            said.append(n)
            t = n.end + 0.1 + _pause(rng)
    out = sorted(planned + said, key=lambda n: n.start)
    return [replace(n, start=round(n.start, 3), end=round(n.end, 3)) for n in out]


def _pause(rng: np.random.Generator) -> float:
    """Silence before a dense line: mostly a breath, sometimes a few seconds of work."""
    return float(rng.uniform(0.2, 1.0) if rng.random() > 0.1 else rng.uniform(2.0, 4.0))


def _piece_at(pieces: list[tuple[int, float, float]], t: float) -> int | None:
    """The dwell piece on screen at ``t`` (None between dwells)."""
    return next((i for i, (_, a, b) in enumerate(pieces) if a <= t <= b), None)


def _piece_of(pieces: list[tuple[int, float, float]], visit: int, t: float) -> int | None:
    """Visit ``visit``'s dwell piece nearest to ``t`` (None if the edit left none)."""
    mine = [(max(a - t, t - b, 0.0), i) for i, (v, a, b) in enumerate(pieces) if v == visit]
    return min(mine)[1] if mine else None


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
            out.append(replace(n, start=lo, end=hi))
    return out


def _sequential(lines: list[Narration], seconds: float) -> list[Narration]:
    """Step lines in order, one speaker: shift overlapping lines later, clip to the video."""
    out: list[Narration] = []
    for n in sorted(lines, key=lambda n: n.start):
        start = max(n.start, out[-1].end + 0.1) if out else n.start
        end = min(start + n.end - n.start, seconds)
        if end - start >= 0.8:
            out.append(replace(n, start=start, end=end))
    return out


def _fit(steps: list[Narration], extras: list[Narration], seconds: float) -> list[Narration]:
    """Add filler/mention lines only where they fit between step lines (steps have priority)."""
    out = list(steps)
    for n in extras:
        busy = sorted((m.start - 0.1, m.end + 0.1) for m in out)
        end = min(n.end, seconds, *(s for s, _ in busy if s > n.start))
        if any(s <= n.start < e for s, e in busy) or end - n.start < 1.0:
            continue
        out.append(replace(n, end=end))
    out.sort(key=lambda n: n.start)
    return [replace(n, start=round(n.start, 3), end=round(n.end, 3)) for n in out]


def to_srt(lines: list[Narration]) -> str:
    """Compose an SRT file body."""
    subs = [
        srt.Subtitle(i + 1, timedelta(seconds=n.start), timedelta(seconds=n.end), n.text) for i, n in enumerate(lines)
    ]
    return srt.compose(subs)


def to_json(lines: list[Narration]) -> list[dict]:
    """Ground-truth records."""
    return [asdict(n) for n in lines]


def in_view(
    parts: dict[str, np.ndarray], cam_from_world: np.ndarray, K: np.ndarray, k1: float, width: int, height: int
) -> set[str]:
    """Parts whose anchor is in front of this camera and inside its image (10 % margin); occlusion is ignored, so
    a part hidden behind another counts as visible, which only errs on the safe side for off-screen mentions."""
    from synth.render import project

    names = list(parts)
    X = np.array([parts[p] for p in names])
    uv = project(K, k1, cam_from_world, X)
    ok = (
        (X @ cam_from_world[2, :3] + cam_from_world[2, 3] > 0.05)
        & (uv[:, 0] > -0.1 * width)
        & (uv[:, 0] < 1.1 * width)
        & (uv[:, 1] > -0.1 * height)
        & (uv[:, 1] < 1.1 * height)
    )
    return {n for n, o in zip(names, ok, strict=True) if o}
