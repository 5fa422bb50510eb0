"""Maintenance tasks: ordered steps, each performed on one part."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """One step of a task."""

    text: str
    """Canonical step description, e.g. ``remove dipstick``."""
    part: str
    """Part the step is performed on (camera dwells there)."""
    phrasings: tuple[str, ...]
    """Narration templates; ``{p}`` is replaced by a synonym of the part."""


@dataclass(frozen=True)
class Task:
    """An ordered list of steps with a human title."""

    title: str
    """Human title used in narration, e.g. ``check the oil``."""
    steps: tuple[Step, ...]
    """Steps in the order they are performed."""


TASKS: dict[str, Task] = {
    "check_oil": Task(
        "check the oil",
        (
            Step(
                "remove dipstick",
                "dipstick",
                ("pull out the {p}", "remove the {p}", "grab the {p} and pull it all the way out", "take the {p} out"),
            ),
            Step(
                "wipe dipstick",
                "dipstick",
                ("wipe the {p} clean with a rag", "clean off the {p}", "give the {p} a wipe"),
            ),
            Step(
                "reinsert dipstick",
                "dipstick",
                ("push the {p} back in", "reinsert the {p} all the way", "put the {p} back in fully"),
            ),
            Step(
                "check oil level",
                "dipstick",
                (
                    "pull the {p} again and read the level",
                    "check the oil level on the {p}, it should sit between the two marks",
                    "look at the {p}, the oil is right at the full mark",
                ),
            ),
            Step(
                "top up oil",
                "oil_filler_cap",
                (
                    "open the {p} and top up the oil",
                    "take off the {p} and add a little oil",
                    "remove the {p} and pour in some oil",
                ),
            ),
        ),
    ),
    "replace_battery": Task(
        "replace the battery",
        (
            Step(
                "disconnect negative terminal",
                "battery_negative_terminal",
                ("always start with the {p}, loosen it", "disconnect the {p} first", "undo the nut on the {p}"),
            ),
            Step(
                "disconnect positive terminal",
                "battery_positive_terminal",
                ("now take off the {p}", "disconnect the {p}", "loosen the {p} and pull it off"),
            ),
            Step(
                "remove battery",
                "battery",
                (
                    "lift the {p} out of the tray",
                    "remove the hold down and take out the {p}",
                    "pull the {p} out, it is heavy",
                ),
            ),
        ),
    ),
    "replace_air_filter": Task(
        "replace the air filter",
        (
            Step(
                "open air filter housing",
                "air_filter",
                ("unclip the {p} cover", "open up the {p}", "release the clips on the {p}"),
            ),
            Step(
                "replace air filter",
                "air_filter",
                ("swap in the new {p}", "take out the old {p} and drop in the new one", "replace the {p}"),
            ),
        ),
    ),
    "change_spark_plugs": Task(
        "change the spark plugs",
        (
            Step(
                "remove ignition coils",
                "spark_plugs",
                (
                    "pull the coils off the {p}",
                    "unplug and remove the coils above the {p}",
                    "take the coils off to reach the {p}",
                ),
            ),
            Step(
                "replace spark plugs",
                "spark_plugs",
                (
                    "unscrew the old {p} and thread in new ones",
                    "replace the {p} one by one",
                    "torque the new {p} to spec",
                ),
            ),
        ),
    ),
    "add_coolant": Task(
        "top up the coolant",
        (
            Step(
                "open coolant reservoir",
                "coolant_reservoir",
                ("carefully open the {p} when the engine is cold", "take the cap off the {p}", "open the {p}"),
            ),
            Step(
                "add coolant",
                "coolant_reservoir",
                ("fill the {p} up to the max line", "pour coolant into the {p}", "top up the {p}"),
            ),
        ),
    ),
    "check_brake_fluid": Task(
        "check the brake fluid",
        (
            Step(
                "check brake fluid level",
                "brake_fluid_reservoir",
                (
                    "check the level in the {p}",
                    "look at the {p}, it should be between min and max",
                    "the {p} level looks fine",
                ),
            ),
            Step(
                "top up brake fluid",
                "brake_fluid_reservoir",
                ("top up the {p} if it is low", "add a little fluid to the {p}", "open the {p} and fill to max"),
            ),
        ),
    ),
}
