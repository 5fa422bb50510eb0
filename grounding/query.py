"""``howto3d query``: text → softmax over a scene's voxels → heatmap and the best voxel's centre (source §5.5.2)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from grounding import model as gmodel
from grounding.voxels import VoxelSpace
from recon.io import InputError, atomic_write_bytes, read_json

TOP = 5


class Grounder:
    """A trained grounding model and its scenes' voxel spaces, ready for queries."""

    def __init__(self, folder: Path, model: gmodel.GroundingModel, tokenizer, meta: dict,
                 spaces: dict[str, VoxelSpace]):
        self.folder = folder
        self.model = model
        self.tokenizer = tokenizer
        self.max_tokens = int(meta["max_tokens"])
        self.scenes = list(meta["scenes"])
        self.spaces = spaces

    def _head(self, scene: str) -> int:
        if scene not in self.spaces:
            raise InputError(f"{self.folder}: no grounding model for scene {scene!r} (trained scenes: "
                             f"{', '.join(self.scenes)}); add its videos and rerun `howto3d train`")
        return self.scenes.index(scene)

    def scores(self, scene: str, texts: list[str], batch_size: int = 64) -> np.ndarray:
        """(len(texts), N_V) voxel probabilities."""
        head = self._head(scene)
        for t in texts:
            if not t.strip():
                raise InputError("empty query: give the text to ground, e.g. 'pull out the dipstick'")
        out = []
        with torch.inference_mode():
            for b in range(0, len(texts), batch_size):
                enc = gmodel.tokenize(self.tokenizer, texts[b:b + batch_size], self.max_tokens)
                logits = self.model.logits(self.model.embed(**enc), head)
                out.append(torch.softmax(logits, dim=1).numpy().astype(np.float64))
        return np.concatenate(out) if out else np.zeros((0, len(self.spaces[scene].cells)))

    def query(self, scene: str, texts: list[str]) -> list[dict]:
        """The CLI contract: per text the best voxel's centre, its score and the top voxels."""
        space = self.spaces.get(scene)
        probs = self.scores(scene, texts)
        centers = space.centers
        results = []
        for text, p in zip(texts, probs, strict=True):
            top = np.argsort(-p, kind="stable")[:TOP]
            results.append({
                "scene": scene, "text": text,
                "point": [round(float(x), 6) for x in centers[top[0]]],
                "score": round(float(p[top[0]]), 6),
                "top": [{"center": [round(float(x), 6) for x in centers[k]], "score": round(float(p[k]), 6)}
                        for k in top],
                "voxel_size": [round(float(x), 6) for x in space.size],
            })
        return results

    def heatmap(self, scene: str, text: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Centres (N_V, 3) and scores (N_V,) of every kept voxel, and the voxel size (3,)."""
        probs = self.scores(scene, [text])[0]
        return self.spaces[scene].centers, probs, self.spaces[scene].size


def load(out_dir: Path) -> Grounder:
    """Load a model written by :func:`grounding.train.main`, with a clear error when there is none."""
    out_dir = Path(out_dir)
    folder = out_dir / "model"
    if not (folder / gmodel.WEIGHTS).is_file() or not (folder / gmodel.META).is_file():
        raise InputError(f"{out_dir}: no trained grounding model there; run `howto3d train` first")
    model, tokenizer, meta = gmodel.load(folder)
    spaces = {s: VoxelSpace.from_json(read_json(out_dir / "scenes" / s / "voxels.json")) for s in meta["scenes"]}
    return Grounder(out_dir, model, tokenizer, meta, spaces)


def write_heatmap_ply(path: Path, centers: np.ndarray, scores: np.ndarray) -> None:
    """Voxel centres coloured by score (viridis, normalised to the peak), as an ASCII PLY point cloud."""
    from matplotlib import colormaps

    scores = np.asarray(scores, float)
    rgb = (colormaps["viridis"](scores / max(float(scores.max()), 1e-12))[:, :3] * 255).round().astype(int)
    lines = ["ply", "format ascii 1.0", f"element vertex {len(centers)}",
             "property float x", "property float y", "property float z",
             "property uchar red", "property uchar green", "property uchar blue", "property float score",
             "end_header"]
    lines += [f"{x:.6f} {y:.6f} {z:.6f} {r} {g} {b} {s:.6g}"
              for (x, y, z), (r, g, b), s in zip(np.asarray(centers, float), rgb, scores, strict=True)]
    atomic_write_bytes(Path(path), ("\n".join(lines) + "\n").encode())


def read_queries(path: Path) -> list[str]:
    """Batch queries from a text file, one per line (blank lines ignored)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(f"{path}: query file not found") from None
    except UnicodeDecodeError:
        raise InputError(f"{path}: not UTF-8 text; save the queries as UTF-8, one per line") from None
    texts = [t.strip() for t in lines if t.strip()]
    if not texts:
        raise InputError(f"{path}: no queries in the file; write one query per line")
    return texts

