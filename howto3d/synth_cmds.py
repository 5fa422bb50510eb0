"""Synthetic worlds rendered straight into a workspace (``howto3d synth``, the demo, tests and benchmarks)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from howto3d.workspace import Workspace
from recon.io import InputError, ProgressFn
from synth import generate_world, world_config


def make_synthetic_workspace(
    out: Path,
    *,
    scenes: int | None = None,
    videos: int | None = None,
    seconds: float | None = None,
    seed: int = 0,
    fps: float | None = None,
    progress: ProgressFn | None = None,
    preset: str = "default",
    settings: Sequence[str] = (),
) -> Workspace:
    """Render a synthetic world straight into a new workspace (videos, subtitles, ground truth).

    ``preset``: ``default``, ``long`` or ``degraded`` (see ``synth.WorldConfig``); None keeps the preset's value;
    ``settings``: any other ``WorldConfig`` field as ``KEY=VALUE`` (``cuts=2``, ``caption_vtt_share=0.5``).
    """
    try:
        cfg = world_config(preset, settings, scenes=scenes, videos=videos, seconds=seconds, seed=seed, fps=fps)
    except ValueError as e:
        raise InputError(f"howto3d synth: {e}") from None
    ws = Workspace.init(out)
    generate_world(ws.root, cfg, progress=progress)
    return ws
