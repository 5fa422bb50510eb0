"""Paraphrase queries: how people *ask* about a part, worded unlike anything the synthetic narration says.

The narration templates (``synth.talk``, ``synth.maintenance``) name parts with a few synonyms inside short
instructions. These queries are questions, descriptions (colour, shape, markings, purpose), other synonyms and
other verbs, so grounding is judged on language the model never heard. They were written once, by hand, and
:func:`narration_overlap` asserts they share no word 4-gram with any narration line the generator can produce
(after lower-casing and dropping punctuation) and that no query equals such a line.
"""

from __future__ import annotations

import itertools
import re

from synth.maintenance import TASKS
from synth.talk import (
    _CALLOUTS,
    _CHATTER,
    _FILLERS,
    _GREETINGS,
    _INTROS,
    _LEADS,
    _MENTIONS,
    _MORE_MENTIONS,
    _NOUNS,
    _OFF_TOPIC,
    _OUTROS,
    _POINTERS,
    _TALK_LEADS,
    _TALK_TAILS,
    _TRANSIT,
    _WRAPS,
    SYNONYMS,
)

PARAPHRASE_QUERIES: dict[str, tuple[str, ...]] = {
    "dipstick": (
        "where is the dipstick",
        "where do I see how much oil is in the engine",
        "the yellow loop handle sticking out of a thin tube",
        "which thing do I pull to measure the engine oil",
        "oil gauge rod",
        "the bright yellow ring next to the engine block",
        "how can I tell if my motor is low on oil",
        "engine oil measuring stick",
        "where would I read the oil marks",
        "that long metal rod with the yellow grip",
        "what do I wipe with a paper towel to see the oil film",
        "the thing you dip to check lubricant",
    ),
    "oil_filler_cap": (
        "where do I pour new motor oil",
        "the round lid on top of the valve cover with an oil can symbol",
        "oil fill port",
        "where does fresh engine oil go in",
        "which cap do I twist off to add oil",
        "the screw-on lid where you put in 5W-30",
        "engine oil inlet",
        "the cap marked with a little oil can",
        "where is the oil filler",
        "where would I put a funnel to refill the engine",
        "that black round cap on the top of the motor",
        "opening for adding lubricant to the engine",
    ),
    "battery": (
        "where is the battery",
        "the big black box that powers the car",
        "12V accumulator",
        "what do I swap if the car will not start and the lights are dim",
        "the heavy rectangular block held down by a clamp",
        "where does the car get its electricity from with the motor off",
        "the box with two posts on top",
        "where would I hook up jumper cables",
        "lead acid unit",
        "which component has the red and black leads on top",
        "the thing you charge with a battery charger",
        "starter battery location",
    ),
    "battery_positive_terminal": (
        "where does the red jumper cable go",
        "the plus post",
        "the post marked with a + sign",
        "positive pole of the battery",
        "where do I clip the red lead",
        "which battery post is the live one",
        "the connector under the red plastic cover",
        "where is the positive battery post",
        "the red side of the battery",
        "which terminal is hot",
        "battery + connection",
        "the post that gets connected first when putting a battery in",
    ),
    "battery_negative_terminal": (
        "where does the black jumper cable go",
        "the minus post",
        "the post marked with a - sign",
        "negative pole of the battery",
        "where do I clip the black lead",
        "which battery post is the ground",
        "the earth connection on the battery",
        "where is the negative battery post",
        "the black side of the battery",
        "which clamp comes off before anything else",
        "battery minus connection",
        "the post you unhook first for safety",
    ),
    "air_filter": (
        "where is the air filter",
        "the big plastic box the intake air goes through",
        "where is the engine's air intake cleaned",
        "the housing with clips that holds a paper element",
        "what catches the dust before air gets into the motor",
        "intake filter element",
        "where is the filter for the engine breathing",
        "the rectangular airbox on the side of the bay",
        "the pleated paper filter",
        "where do I check if the intake filter is dirty",
        "the lid held down by metal clips",
        "cabin of the engine intake, the filter housing",
    ),
    "spark_plugs": (
        "where are the spark plugs",
        "what fires the fuel in each cylinder",
        "the ignition plugs under the coil packs",
        "the row of four plugs on top of the engine",
        "where do the ignition coils sit",
        "which parts do I gap with a feeler gauge",
        "plugs that make the spark",
        "where is the ignition for each cylinder",
        "the little ceramic things screwed into the cylinder head",
        "what do I remove with a 5/8 socket and an extension",
        "where do I fix a misfire",
        "ignition plug location",
    ),
    "coolant_reservoir": (
        "where is the coolant reservoir",
        "the tank with the MIN/MAX marks near the radiator",
        "where do I add antifreeze",
        "the translucent plastic bottle for engine coolant",
        "the radiator overflow bottle",
        "where does the green or pink fluid go",
        "which tank keeps the engine from overheating",
        "the round see-through bottle for coolant",
        "where do I put 50/50 coolant",
        "the coolant expansion bottle",
        "the jug that holds the radiator fluid",
        "what do I refill when the temperature gauge runs hot",
    ),
    "brake_fluid_reservoir": (
        "where can I find the reservoir for brake fluid",
        "where do I add DOT 4 fluid",
        "the small container on top of the master cylinder",
        "the little yellowish tank by the firewall",
        "which reservoir feeds the brakes",
        "brake fluid, where is it",
        "the brake master cylinder bottle",
        "what do I top up when the brake warning light comes on",
        "the small tank for the hydraulic brakes",
        "the brake oil container",
        "where is the fluid for the brake pedal",
        "the reservoir with a brake symbol on its cap",
    ),
}
"""Twelve queries per part: questions, descriptions and synonyms none of the narration templates use."""


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _ngrams(words: list[str], n: int) -> set[tuple[str, ...]]:
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def narration_lines() -> list[str]:
    """Every line the narration generator can say (all templates, synonyms, leads, cars and task titles)."""
    steps = [ph for task in TASKS.values() for step in task.steps for ph in step.phrasings]
    lines = [lead + ph.format(p=syn) for ph in steps for syn in SYNONYMS[_part_of(ph)] for lead in _LEADS]
    titles = [t.title for t in TASKS.values()] + [
        " and ".join(p) for p in itertools.permutations([t.title for t in TASKS.values()], 2)
    ]
    lines += [i.format(title=t, car="car") for i in _INTROS for t in titles]
    lines += list(_FILLERS) + list(_OUTROS)
    lines += [m.format(p=syn) for m in _MENTIONS for syns in SYNONYMS.values() for syn in syns]
    # Dense talk (``talk = "dense"``).
    lines += [g.format(car="car") for g in _GREETINGS] + list(_OFF_TOPIC)
    lines += [lead + c + tail for lead in _TALK_LEADS for c in _CHATTER for tail in _TALK_TAILS]
    lines += [lead + x for lead in _TALK_LEADS for x in _TRANSIT]
    nouns = {n for ns in _NOUNS.values() for n in ns}
    lines += [lead + ptr.format(n=n) for lead in _TALK_LEADS for ptr in _POINTERS for n in nouns]
    lines += [
        t.format(p=syn) for t in _CALLOUTS + _WRAPS + _MORE_MENTIONS for syns in SYNONYMS.values() for syn in syns
    ]
    return lines


def _part_of(phrasing: str) -> str:
    for task in TASKS.values():
        for step in task.steps:
            if phrasing in step.phrasings:
                return step.part
    raise KeyError(phrasing)


def narration_overlap(queries: dict[str, tuple[str, ...]] = PARAPHRASE_QUERIES, n: int = 4) -> list[str]:
    """Queries that repeat narration phrasing: equal to a narration line or sharing a word ``n``-gram with one."""
    lines = narration_lines()
    exact = {" ".join(_words(t)) for t in lines}
    grams = set().union(*(_ngrams(_words(t), n) for t in lines))
    bad = []
    for q in (q for qs in queries.values() for q in qs):
        w = _words(q)
        if " ".join(w) in exact or _ngrams(w, n) & grams:
            bad.append(q)
    return bad
