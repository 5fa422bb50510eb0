"""Actionness of a scene's own videos: order verification trained on all of them (no labels), oriented by the
narration and the intro/outro prior, saved per video.

Owns ``<folder>/model/`` (the order verifier) and ``<folder>/<video>.json``
(``{"video", "clip_seconds", "times", "actionness"}``); nothing else reads or writes them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from recon.io import InputError, ProgressFn, atomic_dir, atomic_write_json, read_json

from .features import CLIP_SECONDS
from .order import OrderConfig, OrderVerifier, min_clips, train_order_verification
from .video_steps import StepsConfig, action_cue, orientation, with_prior

log = logging.getLogger(__name__)

Line = tuple[str, float, float]


@dataclass
class Actionness:
    """The stage's result: per-clip actionness of every long enough video and the model that gave it."""

    videos: dict[str, np.ndarray]
    """``a[T]`` per video (higher = more action), with the intro/outro prior mixed in."""
    model: OrderVerifier | None = None
    """The oriented order verifier (``None`` when no video was long enough)."""
    conf: OrderConfig = field(default_factory=OrderConfig)
    skipped: dict[str, str] = field(default_factory=dict)
    """Videos left out and why."""

    def save(self, folder: Path) -> None:
        if self.model is not None:
            with atomic_dir(folder / "model") as tmp:
                self.model.save(tmp, self.conf)
        for v, a in self.videos.items():
            atomic_write_json(
                folder / f"{v}.json",
                {
                    "video": v,
                    "clip_seconds": CLIP_SECONDS,
                    "times": ((np.arange(len(a)) + 0.5) * CLIP_SECONDS).tolist(),
                    "actionness": a.tolist(),
                },
            )

    @staticmethod
    def load(folder: Path, videos: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """Saved actionness per video: ``videos`` (each must be there) or every saved one."""
        if videos is None:
            videos = sorted(p.stem for p in folder.glob("*.json"))
        out = {}
        for v in videos:
            data = read_json(folder / f"{v}.json")
            if "actionness" not in data:
                raise InputError(f"{folder / f'{v}.json'}: no 'actionness' list; delete it to recompute")
            out[v] = np.array(data["actionness"], float)
        return out


def ensemble(
    videos: list[np.ndarray], conf: OrderConfig, members: int, progress: ProgressFn | None = None
) -> OrderVerifier:
    """Order verification trained ``members`` times (seeds ``conf.seed + k``), sign-aligned and averaged.

    On a few short videos one training run can learn noise (AP 0.68, under the chance+trim baseline, where other
    seeds gave up to 0.92): which clips carry order is learned, which sign means action is not, so each member's
    score, scaled to unit spread, takes the sign that agrees with the others before they are averaged.
    """
    models = [
        train_order_verification(videos, replace(conf, seed=conf.seed + k), progress if k == 0 else None)
        for k in range(members)
    ]
    X = np.concatenate(videos)
    scores = [m.actionness(X) for m in models]
    z = [(s - s.mean()) / (s.std() + 1e-12) for s in scores]
    signs = np.ones(members)
    for _ in range(3):  # agree with the (signed) mean of all members, a few rounds
        mean = sum(sg * zk for sg, zk in zip(signs, z, strict=True))
        signs = np.array([1.0 if float(zk @ mean) >= 0 else -1.0 for zk in z])
    return OrderVerifier.averaged(models, [sg / (s.std() + 1e-12) for sg, s in zip(signs, scores, strict=True)])


def main(
    conf: StepsConfig,
    features: Mapping[str, np.ndarray],
    lines: Mapping[str, Sequence[Line]],
    progress: ProgressFn | None = None,
    name: str = "",
) -> Actionness:
    """Train order verification (an ensemble, :func:`ensemble`) on every video at least ``min_clips`` long and
    score them.

    ``lines`` (narration per video, may be empty) only orient the score: which end of the order model's output
    is action is voted by the narrated clips and the intro/outro prior together (``video_steps.orientation``).
    """
    oconf = OrderConfig(epochs=conf.order_epochs, seed=conf.seed)
    shortest = min_clips(oconf)
    names = sorted(v for v in features if len(features[v]) >= shortest)
    skipped = {
        v: f"{len(features[v])} s is shorter than the {shortest} s order verification needs"
        for v in sorted(set(features) - set(names))
    }
    for v, why in skipped.items():
        log.warning("%s/%s: actionness skipped: %s", name, v, why)
    if not names:
        return Actionness({}, None, oconf, skipped)
    model = ensemble([features[v] for v in names], oconf, conf.order_models, progress)
    sign = orientation(
        [model.actionness(features[v]) for v in names], [action_cue(lines.get(v, []), len(features[v])) for v in names]
    )
    if sign < 0:
        log.info(
            "%s: actionness oriented by the narration and the intro/outro prior (the order model's score is flipped)",
            name,
        )
        model.flip_actionness()
    # rounded as saved, so a result read back is the very array computed (and fingerprints the same downstream)
    videos = {
        v: np.round(np.asarray(with_prior(model.actionness(features[v]), conf.actionness_prior), float), 6)
        for v in names
    }
    return Actionness(videos, model, oconf, skipped)
