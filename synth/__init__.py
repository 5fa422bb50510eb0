"""Synthetic narrated how-to videos of car engine bays, with separate ground truth.

The pipeline only ever sees the mp4 + subtitle files (SRT, YouTube auto-caption ``.en.vtt`` or Whisper
JSON); ``ground_truth.json`` is for evaluation. Presets: ``WorldConfig.long()`` (real-length downloads with
long hovers, swings, jump cuts, inserts, hands, dense talk) and ``WorldConfig.degraded()`` (blur, distortion,
exposure jumps, hands, jump cuts, dense talk); ``synth.footage`` holds the edit and the camera's flaws. See
``synth.generate`` for the output tree and ``synth.render`` / ``synth.world`` for the coordinate conventions.
"""

from synth.generate import (
    PRESETS,
    WorldConfig,
    generate_world,
    load_ground_truth,
    make_scene,
    make_variant,
    scene_names,
    world_config,
)
from synth.maintenance import TASKS
from synth.render import render_frame
from synth.world import PARTS

__all__ = [
    "PARTS",
    "PRESETS",
    "TASKS",
    "WorldConfig",
    "generate_world",
    "load_ground_truth",
    "make_scene",
    "make_variant",
    "render_frame",
    "scene_names",
    "world_config",
]
