"""Settings of the temporal stage on the workspace's videos (sections ``[clip_features]``, ``[temporal]``,
``[discover]`` and ``[groundedness]`` of ``howto3d.toml``).

Plain dataclasses with no third-party imports: reading a workspace's configuration (every CLI command does)
must not pay for torch, pycolmap or scikit-learn, which the stage modules that use these settings import.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class FeatureConfig:
    """Which per-second features, and how they are computed."""

    kinds: list[str] = field(
        default_factory=lambda: ["bovw", "color", "motion", "gaze"],
        metadata={"choices": ("bovw", "color", "motion", "gaze")},
    )
    """Feature groups concatenated per clip, from bovw, color, motion, gaze. All four: the only combination
    whose actionness beats chance and whose fused steps beat uniform on both benchmark worlds."""
    samples_per_second: int = field(default=2, metadata={"range": (1, None)})
    """Frames decoded per one-second clip; the clip's feature is their mean."""
    max_side: int = field(default=320, metadata={"range": (1, None)})
    """Frames are downscaled to this longest side before SIFT and colour statistics."""
    sift_features: int = field(default=300, metadata={"range": (1, None)})
    """SIFT features per frame for the bag of words."""
    words: int = field(default=64, metadata={"range": (1, None)})
    """Visual words (k-means centres over the scene's RootSIFT descriptors)."""
    gaze_divisions: int = field(default=4, metadata={"range": (1, None)})
    """Cells per axis of the gaze grid over the scene's robust box (divisions³ cells)."""
    gaze_sigma: float = 0.35
    """Width of the image-centre weighting of the gaze, as a fraction of the half image diagonal."""
    max_points: int = field(default=20000, metadata={"range": (1, None)})
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
    actionness_prior: float = field(default=0.5, metadata={"range": (0, 1)})
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
    task_by_looks: bool = True
    """A video whose narration names no task of the task file (and has no ``videos`` entry) gets the task whose
    steps' grounded places its cameras look at most, if more than at the average step's: presenters of dense,
    chatty narration often never say the job (docs/temporal.md)."""
    background: float = 0.5
    """Cost of a background clip in the segment DP, in standard deviations of the fused scores."""
    background_actionness: float = 0.0
    """How much the clip's actionness (standardised) raises its background cost: talk-only stretches (intro,
    outro, chatter between steps) become cheap background, clips where hands work expensive. 0: 0.5 and 1.0
    changed no timeline's recall and frame F1 by more than 0.01 on five synthetic worlds (docs/guide.md)."""
    epochs: int = field(default=30, metadata={"range": (1, None)})
    """Step model: epochs of alternating DP assignment / gradient step."""
    pretrain_epochs: int = 10
    """Step model: epochs on random feasible assignments first."""
    order_epochs: int = field(default=15, metadata={"range": (1, None)})
    """Actionness (order verification): training epochs."""
    order_models: int = field(default=5, metadata={"range": (1, None)})
    """Actionness: order verifiers trained (seeds ``seed``, ``seed + 1``...), sign-aligned and averaged. One
    can learn noise on a few short videos; 5 raised the mean AP over 11 synthetic scenes 0.89 → 0.91, the worst
    0.70 → 0.76, and left 2 scenes under the chance+trim baseline instead of 4 (CHANGELOG), for 5× a training that
    takes well under a second per minute of video."""
    seed: int = 0
    """Seed of the step and actionness models."""


@dataclass
class ProcedureConfig:
    """Key-step discovery (004); defaults are the paper's CrossTask settings."""

    k: int = field(default=7, metadata={"range": (1, None)})
    """Key steps selected per task (the paper reports k = 7, 10, 12, 15)."""
    multi_task: bool = False
    """One model for all tasks with the task-classification head (else one model per task, no head)."""
    states: int | None = field(default=None, metadata={"range": (1, None)})
    """Latent states M; None = the paper's 30 single-task / 50 multi-task."""
    lam: float | None = None
    """Weight λ of the task-classification loss; None = the paper's 0 single-task / 0.5 multi-task."""
    epochs: int | None = field(default=None, metadata={"range": (1, None)})
    """Alternations of subset selection and one pass of network training; None = the paper's CrossTask
    5 single-task / 2 multi-task."""
    background: str = field(default="none", metadata={"choices": ("none", "states")})
    """``none``: every clip gets a key step (the paper); ``states``: clips nearest to an unselected state are
    background."""
    hidden: int = field(default=64, metadata={"range": (1, None)})
    """Channels of the 1D FCN."""
    lr: float = 1e-3
    """RMSprop learning rate (paper)."""
    weight_decay: float = 1e-4
    """RMSprop weight decay (paper)."""
    seed: int = 0
    """Seeds k-means, network initialisation and video order."""

    def resolved(self) -> ProcedureConfig:
        """The config with the paper's setting-dependent defaults filled in."""
        mt = self.multi_task
        return ProcedureConfig(
            **{
                **asdict(self),
                "states": self.states or (50 if mt else 30),
                "lam": self.lam if self.lam is not None else (0.5 if mt else 0.0),
                "epochs": self.epochs or (2 if mt else 5),
            }
        )


@dataclass
class GroundednessConfig:
    """The clip–caption model behind narration groundedness (003)."""

    window_seconds: float = 5.0
    """Fixed window (s) of clips around a line's midpoint (003 controls for clip length with 5-s segments)."""
    dim: int = field(default=64, metadata={"range": (1, None)})
    """Joint embedding size."""
    margin: float = 0.1
    """Hinge margin δ (003)."""
    negatives: int = field(default=8, metadata={"range": (1, None)})
    """Negatives per positive pair and direction, half from the same video, half from the others."""
    epochs: int = field(default=60, metadata={"range": (1, None)})
    """Passes over the training lines of a fold."""
    lr: float = 1e-3
    """Adam learning rate (003)."""
    folds: int = field(default=4, metadata={"range": (1, None)})
    """Videos are split into this many folds; a video's lines are scored by the model trained on the others
    (one video alone is scored in-sample)."""
    against: str = field(default="same_time", metadata={"choices": ("same_time", "own_video")})
    """Which windows a line's own window is ranked against for its groundedness: ``same_time`` (the other
    videos' windows within half a window of the same relative time) or ``own_video`` (003's segment-level AUC:
    its video's other windows). Measured on 5 synthetic scenes, seeds 0 and 1 (benchmarks/groundedness.py): step
    vs other lines AUC 0.60 pooled with ``same_time``, 0.36 with ``own_video`` (intros, placed by *when* they are
    said, scored highest); the shuffled control gets 0.55, so this is a weak signal (README). On worlds with 40 %
    ungrounded lines (``extra_talk = 1``): 0.58 vs 0.46 ``own_video`` and 0.53 shuffled."""
    method: str = field(default="model", metadata={"choices": ("model", "neighbours")})
    """``model``: the clip–caption model above; ``neighbours``: no training, a line's text is matched to the
    ``neighbours`` lines of the scene's *other* videos with the most similar text and its window is compared with
    theirs (a line is grounded when lines worded like it are said while the other videos show what its video
    shows; filler said at random times has no consistent view)."""
    neighbours: int = field(default=5, metadata={"range": (1, None)})
    """``neighbours``: lines of the other videos whose windows, weighted by text similarity, give a line's view."""
    shuffle: bool = False
    """Control: pair every line with a random window of its video (``model``: for training; ``neighbours``:
    the other videos' lines) (its AUC should be ~0.5)."""
    seed: int = 0
    """Seeds folds, negatives and initialisation."""
