"""Synthetic narrated how-to videos of car engine bays, with separate ground truth.

The pipeline only ever sees the mp4 + srt files; ``ground_truth.json`` is for
evaluation. See ``synth.generate`` for the output tree and ``synth.render`` /
``synth.world`` for the coordinate conventions.
"""

from synth.generate import WorldConfig, generate_world, load_ground_truth, make_scene, make_variant, scene_names
from synth.render import render_frame
from synth.tasks import TASKS
from synth.world import PARTS

__all__ = [
    "PARTS",
    "TASKS",
    "WorldConfig",
    "generate_world",
    "load_ground_truth",
    "make_scene",
    "make_variant",
    "render_frame",
    "scene_names",
]
