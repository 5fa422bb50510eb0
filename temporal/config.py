"""Settings of the temporal stage on the workspace's videos (sections ``[clip_features]`` and ``[temporal]`` of
``howto3d.toml``).

Plain dataclasses with no third-party imports: reading a workspace's configuration (every CLI command does)
must not pay for torch, pycolmap or scikit-learn, which the stage modules that use these settings import.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class FeatureConfig:
    """Which per-second features, and how they are computed."""

    kinds: list[str] = field(default_factory=lambda: ["bovw", "color", "motion", "gaze"])
    """Feature groups concatenated per clip, from bovw, color, motion, gaze. All four: the only combination
    whose actionness beats chance and whose fused steps beat uniform on both benchmark worlds."""
    samples_per_second: int = 2
    """Frames decoded per one-second clip; the clip's feature is their mean."""
    max_side: int = 320
    """Frames are downscaled to this longest side before SIFT and colour statistics."""
    sift_features: int = 300
    """SIFT features per frame for the bag of words."""
    words: int = 64
    """Visual words (k-means centres over the scene's RootSIFT descriptors)."""
    gaze_divisions: int = 4
    """Cells per axis of the gaze grid over the scene's robust box (divisions³ cells)."""
    gaze_sigma: float = 0.35
    """Width of the image-centre weighting of the gaze, as a fraction of the half image diagonal."""
    max_points: int = 20000
    """Scene points used for the gaze (a seeded subsample)."""
    seed: int = 0
    """Seed of the codebook and the point subsample."""


@dataclass
class StepsConfig:
    """Step localization and actionness on the workspace's videos."""

    grounded_weight: float = 0.75
    """Weight of the 3D-grounded scores against the learned ones in the fused scores (0 = learned only;
    0.75 measured best of 0.5/0.75 on two synthetic worlds, benchmarks/temporal_workspace.py)."""
    actionness_weight: float = 0.0
    """Weight of actionness mixed into every step's score (spec A5); 0 by default: on a world where the
    unsupervised actionness is below chance it cost recall, on another it gained as much."""
    actionness_prior: float = 0.5
    """Weight of the intro/outro prior (``middle_clips``) mixed into the saved actionness: the order model is
    informative but uneven on short videos (AP 0.64–0.85 over four reconstructions of one world). 0.5: mean AP
    over ten synthetic scenes 0.74 → 0.79, against 0.69 for the chance+trim baseline (README)."""
    position_weight: float = 0.3
    """Weight of a position prior mixed into the step scores: step k of K is expected near (k + ½)/K of the
    video (the uniform baseline as a soft score), so the DP has a default where the evidence is flat, e.g. between
    steps on one part. 0.3 raised mean grounded recall 0.38 → 0.52 on four synthetic scenes (A1 clips)."""
    use_constraints: bool = True
    """Keep each step inside the narration window that talks about it (training and localization)."""
    constraint_penalty: float = 1e4
    """Cost, in standard deviations of the step scores, of placing a step outside its narration window when
    localizing (1e4: hard constraint; small: a soft prior that strong visual or 3D evidence can overrule)."""
    constraint_pad: float = 2.0
    """Seconds a step may start before / end after the subtitle cue that talks about it."""
    constraint_until_next: bool = True
    """A step's window runs from its cue until the cue of the next narrated step (+ ``constraint_pad``), the last
    step's for as long as the others hold: people name a step as they begin it and work on until the next one.
    On seven synthetic worlds (default/degraded/long, 20–90 s, 30/80 frames, seeds 0–3) fused frame F1 0.29 →
    0.45 and step recall 0.48 → 0.55, against uniform's 0.34 / 0.41 (docs/guide.md)."""
    background: float = 0.5
    """Cost of a background clip in the segment DP, in standard deviations of the fused scores."""
    background_actionness: float = 0.0
    """How much the clip's actionness (standardised) raises its background cost: talk-only stretches (intro,
    outro, chatter between steps) become cheap background, clips where hands work expensive. 0: 0.5 and 1.0
    changed no timeline's recall and frame F1 by more than 0.01 on five synthetic worlds (docs/guide.md)."""
    epochs: int = 30
    """Step model: epochs of alternating DP assignment / gradient step."""
    pretrain_epochs: int = 10
    """Step model: epochs on random feasible assignments first."""
    order_epochs: int = 15
    """Actionness (order verification): training epochs."""
    seed: int = 0
    """Seed of the step and actionness models."""
