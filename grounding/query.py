"""``howto3d query``: text → softmax over a scene's voxels → heatmap and the best voxel's centre ([001] §5.5.2).

Everything here runs in NumPy (``grounding.model_numpy``): a cold query never imports torch."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal, NotRequired, TypedDict

import numpy as np

from grounding import model_numpy
from grounding.config import GroundingConfig
from grounding.index import LineIndex, normalize
from grounding.voxels import VoxelSpace
from recon.io import InputError, atomic_write_bytes, read_json

if TYPE_CHECKING:
    from grounding.moments import Moment

TOP = 5
PRIOR_FLOOR = 0.1
"""Fraction of a uniform share added to the narration prior before dividing by it, so a voxel no line points
at is not boosted without bound."""


class Peak(TypedDict):
    """A voxel of an answer's ``top`` or ``peaks``: its centre and the heatmap mass around it."""

    center: list[float]
    score: float


class Line(TypedDict):
    """A training segment behind a row of the index: what was said, in which video, when."""

    video: str
    start: float
    end: float
    text: str


class Evidence(TypedDict):
    """A narration line that voted for an answer (``evidence``); the line's fields are absent when the model's
    ``pairs.json`` is missing."""

    video: NotRequired[str]
    start: NotRequired[float]
    end: NotRequired[float]
    text: NotRequired[str]
    share: float
    similarity: float
    supports: float


class Answer(TypedDict):
    """One query's answer: the ``query --json`` contract (docs/grounding-usage.md)."""

    scene: str
    text: str
    point: list[float]
    score: float
    top: list[Peak]
    peaks: list[Peak]
    uncertain: bool
    voxel_size: list[float]
    voxel: int
    """The answer's index among the kept voxels."""
    evidence: NotRequired[list[Evidence]]
    """With an index: the lines that voted most."""
    moments: NotRequired[list[Moment]]
    """With ``--moments``: the video clips that show the point."""


class Grounder:
    """A trained grounding model and its scenes' voxel spaces, ready for queries."""

    def __init__(
        self,
        folder: Path,
        model: model_numpy.GroundingModel,
        tokenizer,
        meta: dict,
        spaces: dict[str, VoxelSpace],
        index: dict[str, np.ndarray],
    ):
        self.folder = folder
        self.model = model
        self.tokenizer = tokenizer
        self.max_tokens = int(meta["max_tokens"])
        self.scenes = list(meta["scenes"])
        self.frames: dict[str, dict] = meta.get("frames", {})
        """Per scene, the shared frame the model was trained in (as given to training)."""
        self.spaces = spaces
        conf = meta.get("config", {})
        defaults = GroundingConfig()
        if not index:  # `train` redoes a model without one (grounding.train.load_summary)
            raise InputError(
                f"{folder}: the grounding model has no line index (trained by an earlier release); "
                "run `howto3d train` again"
            )
        self.method = meta.get("method", "classifier")
        self.index = {s: LineIndex.from_tensors(index, f"scene{i}") for i, s in enumerate(self.scenes)}
        self.k = int(conf.get("index_k", defaults.index_k))
        self.temperature = float(conf.get("index_temperature", defaults.index_temperature))
        self.weight_power = float(conf.get("index_weight_power", defaults.index_weight_power))
        self.ensemble_weight = float(conf.get("ensemble_weight", defaults.ensemble_weight))
        self.prior_power = float(conf.get("prior_power", defaults.prior_power))
        self.score_radius = float(conf.get("score_radius", defaults.score_radius))
        self.peak_separation = float(conf.get("peak_separation", defaults.peak_separation))
        self.uncertain_ratio = float(conf.get("uncertain_ratio", defaults.uncertain_ratio))
        self._near: dict[str, np.ndarray] = {}  # per scene: fixed while loaded, ~half a one-text query's time
        self._prior: dict[tuple[str, float], np.ndarray] = {}  # per scene and prior_power: the prior's divisor
        self._meta_lines: dict[str, list[Line]] = {}  # per scene: the segments behind the index rows (evidence)

    def _head(self, scene: str) -> int:
        if scene not in self.spaces:
            raise InputError(
                f"{self.folder}: no grounding model for scene {scene!r} (trained scenes: "
                f"{', '.join(self.scenes)}); add its videos and rerun `howto3d train`"
            )
        return self.scenes.index(scene)

    def scores(self, scene: str, texts: list[str], batch_size: int = 64, method: str | None = None) -> np.ndarray:
        """(len(texts), N_V) voxel probabilities from the model's method (or ``method``)."""
        return self._scores(scene, texts, batch_size, method)[0]

    def _scores(
        self, scene: str, texts: list[str], batch_size: int = 64, method: str | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`scores` and the texts' unit sentence embeddings (what picks the index's voters)."""
        head = self._head(scene)
        method = method or self.method
        for t in texts:
            if not t.strip():
                raise InputError("empty query: give the text to ground, e.g. 'pull out the dipstick'")
        out, units = [], []
        for b in range(0, len(texts), batch_size):
            feats = self.model.embed(*self.tokenizer.encode(texts[b : b + batch_size], self.max_tokens))
            units.append(normalize(feats))
            if method == "index":
                probs = self.index[scene].votes(units[-1], self.k, self.temperature, self.weight_power)
            else:
                probs = model_numpy.softmax(self.model.logits(feats, head))
                if method != "classifier":
                    votes = self.index[scene].votes(units[-1], self.k, self.temperature, self.weight_power)
                    probs = (1 - self.ensemble_weight) * probs + self.ensemble_weight * votes
            if self.prior_power > 0:
                probs = probs / self._prior_divisor(scene)
                probs = probs / probs.sum(1, keepdims=True)
            out.append(probs.astype(np.float64))
        if not out:
            return np.zeros((0, len(self.spaces[scene].cells))), np.zeros((0, 0), np.float32)
        return np.concatenate(out), np.concatenate(units)

    def _prior_divisor(self, scene: str) -> np.ndarray:
        key = (scene, self.prior_power)
        if key not in self._prior:
            self._prior[key] = (
                self.index[scene].prior() + np.float32(PRIOR_FLOOR / len(self.spaces[scene].cells))
            ) ** np.float32(self.prior_power)
        return self._prior[key]

    def query(self, scene: str, texts: list[str], method: str | None = None) -> list[Answer]:
        """The CLI contract: per text the answer point, its calibrated score, the top voxels and the peaks, and
        (with an index) the narration lines that voted most."""
        probs, units = self._scores(scene, texts, method=method)
        space = self.spaces[scene]
        near = self._near.get(scene)
        if near is None:
            near = self._near[scene] = neighbourhood(space, self.score_radius)
        out = [
            answer(scene, text, p, space, near, self.peak_separation, self.uncertain_ratio)
            for text, p in zip(texts, probs, strict=True)
        ]
        if scene in self.index and (method or self.method) != "classifier":
            index = self.index[scene]
            idx, sims, shares = index.voters(units, self.k, self.temperature, self.weight_power)
            lines = self._lines(scene)
            for a, i, sim, share in zip(out, idx, sims, shares, strict=True):
                a["evidence"] = evidence(lines, index.targets[i] @ near[a["voxel"]], i, sim, share)
        return out

    def _lines(self, scene: str) -> list[Line]:
        """The scene's training segments (video, time, text), in the index's order."""
        if scene not in self._meta_lines:
            path = self.folder / "scenes" / scene / "pairs.json"
            pairs = read_json(path) if path.is_file() else []
            self._meta_lines[scene] = [
                Line(video=p["video"], start=p["start"], end=p["end"], text=p["text"]) for p in pairs
            ]
        return self._meta_lines[scene]

    def heatmap(self, scene: str, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Centres (N_V, 3) and scores (N_V,) of every kept voxel, and the voxel size (3,)."""
        probs = self.scores(scene, [text])[0]
        return self.spaces[scene].centers, probs, self.spaces[scene].size


def neighbourhood(space: VoxelSpace, radius: float) -> np.ndarray:
    """(N_V, N_V) 1 where two kept voxels' centres are within ``radius`` mean voxel sizes, else 0."""
    c = space.centers
    return (np.linalg.norm(c[:, None] - c[None], axis=2) <= radius * float(np.mean(space.size))).astype(float)


def answer(
    scene: str,
    text: str,
    probs: np.ndarray,
    space: VoxelSpace,
    near: np.ndarray,
    peak_separation: float,
    uncertain_ratio: float,
) -> Answer:
    """One query's answer: the voxel with most mass around it, that mass as ``score``, and separate peaks.

    ``score`` is the heatmap's probability that the part lies within the ``near`` radius of ``point``
    (a user can read it as a confidence); ``peaks`` are greedy local-mass maxima at least ``peak_separation``
    voxel sizes apart, and ``uncertain`` says a second place holds ``uncertain_ratio`` of the first's mass;
    ``voxel`` is the answer's index among the kept voxels (what :func:`evidence` checks the voters against).
    """
    centers = space.centers
    unit = float(np.mean(space.size))
    mass = near @ probs
    # Rank by the mass around a voxel, the voxel itself counted twice: of two voxels whose balls hold the same
    # spike, the spike's own voxel wins instead of a neighbour whose ball holds a little more background.
    order = np.argsort(-(mass + probs), kind="stable")
    peaks: list[int] = []
    ranked = centers[order]
    free = np.ones(len(order), bool)  # in rank order: not within peak_separation of a peak taken already
    while len(peaks) < TOP and free.any():
        k = int(order[np.argmax(free)])
        peaks.append(k)
        free &= np.linalg.norm(ranked - centers[k], axis=1) > peak_separation * unit
    best = peaks[0]
    uncertain = len(peaks) > 1 and mass[peaks[1]] >= uncertain_ratio * mass[best]

    def pt(k: int) -> list[float]:
        return [round(float(x), 6) for x in centers[k]]

    return {
        "scene": scene,
        "text": text,
        "point": pt(best),
        "score": round(float(mass[best]), 6),
        "top": [Peak(center=pt(k), score=round(float(mass[k]), 6)) for k in order[:TOP]],
        "peaks": [Peak(center=pt(k), score=round(float(mass[k]), 6)) for k in peaks[:3]],
        "uncertain": bool(uncertain),
        "voxel_size": [round(float(x), 6) for x in space.size],
        "voxel": best,
    }


EVIDENCE = 5
"""Narration lines listed per answer."""


def evidence(
    lines: list[Line], at_answer: np.ndarray, idx: np.ndarray, sims: np.ndarray, shares: np.ndarray
) -> list[Evidence]:
    """The voters with the largest vote shares: what was said, where and when, how similar to the question, and
    how much of the line's own target lies at the answer (``supports``: 1 = it points right there)."""
    order = np.argsort(-shares, kind="stable")[:EVIDENCE]
    out: list[Evidence] = []
    for j in order:
        share, sim, supports = (
            round(float(shares[j]), 4),
            round(float(sims[j]), 4),
            round(float(min(at_answer[j], 1.0)), 4),
        )
        if int(idx[j]) < len(lines):
            out.append({**lines[int(idx[j])], "share": share, "similarity": sim, "supports": supports})
        else:
            out.append(Evidence(share=share, similarity=sim, supports=supports))
    return out


def load(out_dir: Path, encoder: Literal["numpy", "torch"] = "numpy") -> Grounder:
    """Load a model written by :func:`grounding.train.main`, with a clear error when there is none (``encoder``:
    see :func:`grounding.model_numpy.load`)."""
    out_dir = Path(out_dir)
    folder = out_dir / "model"
    if not (folder / model_numpy.WEIGHTS).is_file() or not (folder / model_numpy.META).is_file():
        raise InputError(f"{out_dir}: no trained grounding model there; run `howto3d train` first")
    model, tokenizer, meta, index = model_numpy.load(folder, encoder)
    spaces = {s: VoxelSpace.from_json(read_json(out_dir / "scenes" / s / "voxels.json")) for s in meta["scenes"]}
    return Grounder(out_dir, model, tokenizer, meta, spaces, index)


def trained_frames(out_dir: Path) -> dict[str, dict] | None:
    """Per scene, the shared frame the model in ``out_dir`` was trained in (:attr:`Grounder.frames`), read from its
    JSON alone (no weights, no BERT: a freshness check); ``None`` when there is no model."""
    meta = Path(out_dir) / "model" / model_numpy.META
    return read_json(meta).get("frames", {}) if meta.is_file() else None


def write_heatmap_ply(path: Path, centers: np.ndarray, scores: np.ndarray) -> None:
    """Voxel centres coloured by score (viridis, normalised to the peak), as an ASCII PLY point cloud."""
    from matplotlib import colormaps

    scores = np.asarray(scores, float)
    rgb = (colormaps["viridis"](scores / max(float(scores.max()), 1e-12))[:, :3] * 255).round().astype(int)
    lines = [
        "ply",
        "format ascii 1.0",
        f"element vertex {len(centers)}",
        "property float x",
        "property float y",
        "property float z",
        "property uchar red",
        "property uchar green",
        "property uchar blue",
        "property float score",
        "end_header",
    ]
    lines += [
        f"{x:.6f} {y:.6f} {z:.6f} {r} {g} {b} {s:.6g}"
        for (x, y, z), (r, g, b), s in zip(np.asarray(centers, float), rgb, scores, strict=True)
    ]
    atomic_write_bytes(Path(path), ("\n".join(lines) + "\n").encode())


def read_queries(path: Path) -> list[str]:
    """Batch queries from a text file, one per line (blank lines ignored)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (FileNotFoundError, IsADirectoryError):
        raise InputError(f"{path}: query file not found") from None
    except UnicodeDecodeError:
        text = "\0"
    if "\0" in text:
        raise InputError(f"{path}: not a UTF-8 text file; save the queries as UTF-8 text, one per line") from None
    lines = text.splitlines()
    texts = [t.strip() for t in lines if t.strip()]
    if not texts:
        raise InputError(f"{path}: no queries in the file; write one query per line")
    return texts
