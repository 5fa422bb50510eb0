"""``howto3d train``: voxel spaces + training pairs per scene, then one shared text encoder fine-tuned end to end.

Output folder (written atomically, replacing a previous model only once everything succeeded)::

    OUT/summary.json                pairs per scene, skipped counts and why, held-out accuracy, timings
    OUT/scenes/<scene>/voxels.json  the scene's voxel space (box, voxel size, kept cells = classes)
    OUT/scenes/<scene>/pairs.json   training pairs: text, time window, video, 3D point, voxel
    OUT/model/                      safetensors weights, grounding.json, encoder config and tokenizer files
"""

from __future__ import annotations

import copy
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from grounding import index as gindex
from grounding import model_transformers as gmodel
from grounding import voxels
from grounding.config import GroundingConfig
from grounding.narration import Narration
from grounding.pairs import Pair, make_pairs
from recon.config import choices
from recon.io import InputError, ProgressFn, atomic_dir, atomic_write_json, read_json
from recon.scene import SharedScene

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

log = logging.getLogger(__name__)

METHODS = choices(GroundingConfig, "method")
TARGETS = choices(GroundingConfig, "targets")


def training_set(
    conf: GroundingConfig,
    scenes: dict[str, SharedScene],
    narrations: dict[str, dict[str, list[Narration]]],
    line_weights: dict[str, dict[str, list[float]]] | None = None,
) -> tuple[dict[str, voxels.VoxelSpace], dict[str, list[Pair]], dict[str, Counter]]:
    """Per scene: pairs (with voxel labels) and its voxel space; scenes without pairs are left out.

    ``line_weights[scene][video]`` optionally weighs each narration line (see :func:`make_pairs`).
    """
    spaces, pairs, skipped = {}, {}, {}
    for name in sorted(scenes):
        scene_pairs, skipped[name] = make_pairs(
            conf, scenes[name], narrations.get(name, {}), conf.supervision, (line_weights or {}).get(name)
        )
        if not scene_pairs:
            log.warning(
                "scene %s: no training pairs (%s); it gets no grounding head",
                name,
                ", ".join(f"{n} {why}" for why, n in skipped[name].items()) or "no narrations",
            )
            continue
        points = np.array([p.point for p in scene_pairs])
        seen = np.vstack([points] + [np.array(p.anchors) for p in scene_pairs if p.anchors])
        space = voxels.build(scenes[name].points, seen, conf.divisions, conf.num_voxels, conf.box_percentile)
        for p, k in zip(scene_pairs, space.assign(points), strict=True):
            p.voxel = int(k)
        spaces[name], pairs[name] = space, scene_pairs
    return spaces, pairs, skipped


def pair_targets(conf: GroundingConfig, space: voxels.VoxelSpace, pairs: list[Pair]) -> torch.Tensor:
    """(N, N_V) target distribution of each pair: its window's frames ('window') or its one voxel ('point'),
    smoothed over neighbouring voxels by ``label_sigma``."""
    if conf.targets not in TARGETS:
        raise InputError(f"grounding.targets = {conf.targets!r}: use one of {', '.join(TARGETS)} in howto3d.toml")
    smooth = gmodel.soft_targets(space.centers, space.size, conf.label_sigma)
    lists = [space.assign(np.array(p.anchors)) if conf.targets == "window" and p.anchors else [p.voxel] for p in pairs]
    return gindex.targets(lists, smooth)


def _embed(
    model: gmodel.GroundingModel, tokenizer, conf: GroundingConfig, texts: list[str], batch: int = 64
) -> torch.Tensor:
    with torch.inference_mode():
        return torch.cat(
            [
                model.embed(**gmodel.tokenize(tokenizer, texts[b : b + batch], conf.max_tokens))
                for b in range(0, len(texts), batch)
            ]
        )


def _loss(model: gmodel.GroundingModel, feats: torch.Tensor, rows: list[Row]) -> tuple[torch.Tensor, int]:
    """Pair-weighted soft cross-entropy (sum over rows, each scored by its scene's head) and exact hits."""
    loss, hits = feats.new_zeros(()), 0
    scene_ids = torch.tensor([r.scene for r in rows])
    for s in scene_ids.unique().tolist():
        idx = (scene_ids == s).nonzero().squeeze(1)
        target = torch.stack([rows[i].target for i in idx.tolist()])
        weight = torch.tensor([rows[i].weight for i in idx.tolist()])
        logp = F.log_softmax(model.logits(feats[idx], s), dim=1)
        loss = loss - (weight * (target * logp).sum(1)).sum()
        hits += int((logp.argmax(1) == target.argmax(1)).sum())
    return loss, hits


@dataclass
class Row:
    """One training row: scene head, text, target distribution and weight."""

    scene: int
    text: str
    target: torch.Tensor
    weight: float


def fit(
    conf: GroundingConfig,
    spaces: dict[str, voxels.VoxelSpace],
    pairs: dict[str, list[Pair]],
    progress: ProgressFn | None = None,
) -> tuple[gmodel.GroundingModel, PreTrainedTokenizerBase, dict, dict[str, torch.Tensor]]:
    """Train the heads (and the top ``trainable_layers`` of the encoder) and build the line index.

    Seeded and deterministic. With ``heldout_fraction`` > 0 the best held-out epoch is kept (early stopping),
    otherwise ``epochs`` epochs on all pairs. Raises when the classifier would be untrained or no better than
    untrained, so a previous model is never replaced by a useless one.
    """
    if conf.method not in METHODS:
        raise InputError(f"grounding.method = {conf.method!r}: use one of {', '.join(METHODS)} in howto3d.toml")
    torch.manual_seed(conf.seed)
    names = sorted(pairs)
    encoder, tokenizer = gmodel.load_encoder(conf.encoder)
    model = gmodel.GroundingModel(encoder, [len(spaces[n].cells) for n in names])
    gmodel.set_trainable_layers(model, conf.trainable_layers, conf.freeze_embeddings)
    targets = {n: pair_targets(conf, spaces[n], pairs[n]) for n in names}
    rows = [Row(i, p.text, targets[n][j], p.weight) for i, n in enumerate(names) for j, p in enumerate(pairs[n])]
    stats: dict = {
        "train_pairs": len(rows),
        "heldout_pairs": 0,
        "best_epoch": 0,
        "heldout_accuracy": None,
        "heldout_loss": None,
        "history": [],
    }
    if conf.epochs < 1:
        raise InputError(
            f"epochs = {conf.epochs} would save an untrained model: nothing was written (the previous "
            "model is kept); train with --epochs 1 or more"
        )
    if conf.method != "index":
        stats = _train_heads(conf, model, tokenizer, rows, progress)
    model.eval()
    feats = gindex.normalize(_embed(model, tokenizer, conf, [r.text for r in rows]))
    index, offset = {}, 0
    for i, n in enumerate(names):
        k = len(pairs[n])
        weights = torch.tensor([p.weight for p in pairs[n]], dtype=torch.float32)
        index.update(
            gindex.LineIndex(feats[offset : offset + k].clone().numpy(), targets[n].numpy(), weights.numpy()).tensors(
                f"scene{i}"
            )
        )
        offset += k
    return model, tokenizer, stats, index


def _train_heads(
    conf: GroundingConfig, model: gmodel.GroundingModel, tokenizer, rows: list[Row], progress: ProgressFn | None
) -> dict:
    order = np.random.default_rng(conf.seed).permutation(len(rows))
    n_held = int(round(conf.heldout_fraction * len(rows))) if len(rows) >= 10 else 0
    held = [rows[i] for i in order[:n_held]]
    train = [rows[i] for i in order[n_held:]]
    frozen = conf.trainable_layers == 0
    # A frozen encoder gives the same features every epoch: embed once, then only the heads run.
    cache = (
        {r.text: f for r, f in zip(rows, _embed(model, tokenizer, conf, [r.text for r in rows]), strict=True)}
        if frozen
        else None
    )

    def features(batch: list[Row]) -> torch.Tensor:
        if cache is not None:
            return torch.stack([cache[r.text] for r in batch])
        return model.embed(**gmodel.tokenize(tokenizer, [r.text for r in batch], conf.max_tokens))

    def evaluate(data: list[Row]) -> tuple[float, int]:
        model.eval()
        total, hits, weight = 0.0, 0, 0.0
        with torch.inference_mode():
            for b in range(0, len(data), 64):
                loss, h = _loss(model, features(data[b : b + 64]), data[b : b + 64])
                total, hits = total + float(loss), hits + h
                weight += sum(r.weight for r in data[b : b + 64])
        return total / max(weight, 1e-9), hits

    check = held or train
    untrained = evaluate(check)[0]
    optim = torch.optim.AdamW(
        [
            {"params": [p for p in model.encoder.parameters() if p.requires_grad], "lr": conf.lr_encoder},
            {"params": model.heads.parameters(), "lr": conf.lr_head},
        ],
        weight_decay=conf.weight_decay,
    )
    gen = torch.Generator().manual_seed(conf.seed)
    best: tuple[float, int, dict[str, Any] | None] = (untrained, 0, copy.deepcopy(model.state_dict()))
    history = []
    desc = "training grounding model"
    for epoch in range(conf.epochs):
        t = time.perf_counter()
        model.train()
        perm = torch.randperm(len(train), generator=gen).tolist()
        train_loss = 0.0
        for b in range(0, len(train), conf.batch_size):
            batch = [train[i] for i in perm[b : b + conf.batch_size]]
            loss, _ = _loss(model, features(batch), batch)
            optim.zero_grad()
            (loss / max(sum(r.weight for r in batch), 1e-9)).backward()
            optim.step()
            train_loss += float(loss.detach())
        seconds = time.perf_counter() - t
        held_loss, hits = evaluate(held) if held else (train_loss / max(sum(r.weight for r in train), 1e-9), 0)
        history.append(
            {
                "epoch": epoch + 1,
                "train_loss": round(train_loss / max(len(train), 1), 4),
                "heldout_loss": round(held_loss, 4) if held else None,
                "heldout_accuracy": round(hits / len(held), 4) if held else None,
                "seconds": round(seconds, 3),
            }
        )
        log.debug("epoch %d: %s", epoch + 1, history[-1])
        if progress:
            progress(desc, epoch + 1, conf.epochs)
        if not held:
            best = (held_loss, epoch + 1, None)
        elif held_loss < best[0]:
            best = (held_loss, epoch + 1, copy.deepcopy(model.state_dict()))
        elif epoch + 1 - best[1] >= conf.patience:
            log.info("early stop after epoch %d (best held-out loss at epoch %d)", epoch + 1, best[1])
            if progress:
                progress(desc, conf.epochs, conf.epochs)
            break
    if held and best[2] is not None:
        model.load_state_dict(best[2])
    final = evaluate(check)[0]
    if best[1] == 0 or not final < untrained:
        raise InputError(
            f"training did not improve on the untrained model ({'held-out' if held else 'training'} "
            f"loss {final:.4f} vs {untrained:.4f} before training); nothing was written (the previous "
            "model is kept); check the pairs in the summary or train with more --epochs"
        )
    best_row = history[best[1] - 1]
    return {
        "train_pairs": len(train),
        "heldout_pairs": len(held),
        "best_epoch": best[1],
        "heldout_accuracy": best_row["heldout_accuracy"],
        "heldout_loss": best_row["heldout_loss"],
        "untrained_loss": round(untrained, 4),
        "final_loss": round(final, 4),
        "seconds_per_epoch": round(float(np.mean([h["seconds"] for h in history])), 3),
        "history": history,
    }


def main(
    conf: GroundingConfig,
    scenes: dict[str, SharedScene],
    narrations: dict[str, dict[str, list[Narration]]],
    out_dir: Path,
    progress: ProgressFn | None = None,
    line_weights: dict[str, dict[str, list[float]]] | None = None,
    frames: dict[str, dict] | None = None,
) -> dict:
    """Build pairs and voxel spaces, train the shared model, write everything under ``out_dir``; a summary.

    ``frames``: per scene, the caller's record of the shared frame the scenes are in, stored with the model and
    the voxels so that later readers can tell when the frame has moved since (opaque data here).
    """
    t0 = time.perf_counter()
    spaces, pairs, skipped = training_set(conf, scenes, narrations, line_weights)
    if not pairs:
        raise InputError(
            f"no training pairs in any scene ({', '.join(sorted(scenes)) or 'no scenes'}): "
            "add subtitles next to the videos and reconstruct them first"
        )
    t_pairs = time.perf_counter() - t0
    model, tokenizer, stats, index = fit(conf, spaces, pairs, progress)
    names = sorted(pairs)
    summary = {
        "scenes": {
            n: {
                "pairs": len(pairs.get(n, [])),
                "voxels": len(spaces[n].cells) if n in spaces else 0,
                "skipped": dict(skipped[n]),
                **({"frame": frames[n]} if frames and n in frames else {}),
            }
            for n in sorted(scenes)
        },
        "supervision": conf.supervision,
        "method": conf.method,
        "encoder": conf.encoder,
        **{k: v for k, v in stats.items() if k != "history"},
        "seconds": {"pairs": round(t_pairs, 2), "total": round(time.perf_counter() - t0, 2)},
    }
    with atomic_dir(out_dir) as tmp:
        for n in names:
            atomic_write_json(tmp / "scenes" / n / "voxels.json", spaces[n].to_json())
            atomic_write_json(tmp / "scenes" / n / "pairs.json", [p.to_json() for p in pairs[n]])
        gmodel.save(
            model,
            tokenizer,
            tmp / "model",
            {
                "scenes": names,
                "num_voxels": [len(spaces[n].cells) for n in names],
                "max_tokens": conf.max_tokens,
                "pooling": "mean",
                "method": conf.method,
                "config": asdict(conf),
                "frames": {n: frames[n] for n in names if frames and n in frames},
            },
            index,
        )
        atomic_write_json(tmp / "history.json", stats["history"])
        summary["seconds"]["total"] = round(time.perf_counter() - t0, 2)
        atomic_write_json(tmp / "summary.json", summary)
    log.info(
        "grounding model trained on %d pairs of %d scenes in %.0f s",
        stats["train_pairs"],
        len(names),
        summary["seconds"]["total"],
    )
    return summary


def load_summary(out_dir: Path) -> dict:
    """The summary :func:`main` wrote with its model (an input error when either is missing)."""
    out_dir = Path(out_dir)
    if not all(
        p.is_file()
        for p in (out_dir / "summary.json", out_dir / "model" / gmodel.WEIGHTS, out_dir / "model" / gmodel.INDEX)
    ):  # no index: an earlier release's model
        raise InputError(f"{out_dir}: no trained grounding model there; run `howto3d train` first")
    return read_json(out_dir / "summary.json")
