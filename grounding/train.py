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
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from grounding import model as gmodel
from grounding import voxels
from grounding.config import GroundingConfig
from grounding.narration import Narration
from grounding.pairs import Pair, make_pairs
from recon.io import InputError, atomic_dir, atomic_write_json
from recon.scene import SharedScene

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]


def training_set(conf: GroundingConfig, scenes: dict[str, SharedScene],
                 narrations: dict[str, dict[str, list[Narration]]]
                 ) -> tuple[dict[str, voxels.VoxelSpace], dict[str, list[Pair]], dict[str, Counter]]:
    """Per scene: pairs (with voxel labels) and its voxel space; scenes without pairs are left out."""
    spaces, pairs, skipped = {}, {}, {}
    for name in sorted(scenes):
        scene_pairs, skipped[name] = make_pairs(conf, scenes[name], narrations.get(name, {}), conf.supervision)
        if not scene_pairs:
            log.warning("scene %s: no training pairs (%s); it gets no grounding head", name,
                        ", ".join(f"{n} {why}" for why, n in skipped[name].items()) or "no narrations")
            continue
        points = np.array([p.point for p in scene_pairs])
        space = voxels.build(scenes[name].points, points, conf.divisions, conf.num_voxels, conf.box_percentile)
        for p, k in zip(scene_pairs, space.assign(points), strict=True):
            p.voxel = int(k)
        spaces[name], pairs[name] = space, scene_pairs
    return spaces, pairs, skipped


def _batch_loss(model: gmodel.GroundingModel, tokenizer, conf: GroundingConfig, rows: list[tuple[int, str, int]],
                targets: list[torch.Tensor]) -> tuple[torch.Tensor, int]:
    """Soft cross-entropy summed over rows (each row scored by its scene's head), and the number of exact hits."""
    enc = gmodel.tokenize(tokenizer, [r[1] for r in rows], conf.max_tokens)
    feats = model.embed(**enc)
    scene_ids = torch.tensor([r[0] for r in rows])
    labels = torch.tensor([r[2] for r in rows])
    loss, hits = feats.new_zeros(()), 0
    for s in scene_ids.unique().tolist():
        idx = (scene_ids == s).nonzero().squeeze(1)
        logp = F.log_softmax(model.logits(feats[idx], s), dim=1)
        loss = loss - (targets[s][labels[idx]] * logp).sum()
        hits += int((logp.argmax(1) == labels[idx]).sum())
    return loss, hits


def fit(conf: GroundingConfig, spaces: dict[str, voxels.VoxelSpace], pairs: dict[str, list[Pair]],
        progress: Progress | None = None) -> tuple[gmodel.GroundingModel, object, dict]:
    """Fine-tune the encoder and train the heads with early stopping on held-out pairs (seeded, deterministic)."""
    torch.manual_seed(conf.seed)
    names = sorted(pairs)
    encoder, tokenizer = gmodel.load_encoder(conf.encoder)
    model = gmodel.GroundingModel(encoder, [len(spaces[n].cells) for n in names])
    model.encoder.embeddings.word_embeddings.weight.requires_grad_(not conf.freeze_embeddings)
    targets = [gmodel.soft_targets(spaces[n].centers, spaces[n].size, conf.label_sigma) for n in names]
    rows = [(i, p.text, p.voxel) for i, n in enumerate(names) for p in pairs[n]]
    order = np.random.default_rng(conf.seed).permutation(len(rows))
    n_held = int(round(conf.heldout_fraction * len(rows))) if len(rows) >= 10 else 0
    held = [rows[i] for i in order[:n_held]]
    train = [rows[i] for i in order[n_held:]]
    optim = torch.optim.AdamW([
        {"params": [p for p in model.encoder.parameters() if p.requires_grad], "lr": conf.lr_encoder},
        {"params": model.heads.parameters(), "lr": conf.lr_head},
    ], weight_decay=conf.weight_decay)
    gen = torch.Generator().manual_seed(conf.seed)
    best = (float("inf"), 0, copy.deepcopy(model.state_dict()))
    history = []
    desc = "training grounding model"
    for epoch in range(conf.epochs):
        t = time.perf_counter()
        model.train()
        perm = torch.randperm(len(train), generator=gen).tolist()
        train_loss = 0.0
        for b in range(0, len(train), conf.batch_size):
            batch = [train[i] for i in perm[b:b + conf.batch_size]]
            loss, _ = _batch_loss(model, tokenizer, conf, batch, targets)
            optim.zero_grad()
            (loss / len(batch)).backward()
            optim.step()
            train_loss += float(loss.detach())
        model.eval()
        held_loss, hits = 0.0, 0
        with torch.inference_mode():
            for b in range(0, len(held), 64):
                loss, h = _batch_loss(model, tokenizer, conf, held[b:b + 64], targets)
                held_loss, hits = held_loss + float(loss), hits + h
        held_loss = held_loss / len(held) if held else train_loss / max(len(train), 1)
        history.append({"epoch": epoch + 1, "train_loss": round(train_loss / max(len(train), 1), 4),
                        "heldout_loss": round(held_loss, 4),
                        "heldout_accuracy": round(hits / len(held), 4) if held else None,
                        "seconds": round(time.perf_counter() - t, 2)})
        log.debug("epoch %d: %s", epoch + 1, history[-1])
        if progress:
            progress(desc, epoch + 1, conf.epochs)
        if held_loss < best[0]:
            best = (held_loss, epoch + 1, copy.deepcopy(model.state_dict()))
        elif epoch + 1 - best[1] >= conf.patience:
            log.info("early stop after epoch %d (best held-out loss at epoch %d)", epoch + 1, best[1])
            if progress:
                progress(desc, conf.epochs, conf.epochs)
            break
    model.load_state_dict(best[2])
    model.eval()
    best_row = history[best[1] - 1] if best[1] else {}
    stats = {"train_pairs": len(train), "heldout_pairs": len(held), "best_epoch": best[1],
             "heldout_accuracy": best_row.get("heldout_accuracy"), "heldout_loss": best_row.get("heldout_loss"),
             "history": history}
    return model, tokenizer, stats


def main(conf: GroundingConfig, scenes: dict[str, SharedScene], narrations: dict[str, dict[str, list[Narration]]],
         out_dir: Path, progress: Progress | None = None) -> dict:
    """Build pairs and voxel spaces, train the shared model, write everything under ``out_dir``; a summary."""
    t0 = time.perf_counter()
    spaces, pairs, skipped = training_set(conf, scenes, narrations)
    if not pairs:
        raise InputError(f"no training pairs in any scene ({', '.join(sorted(scenes)) or 'no scenes'}): "
                         "add subtitles next to the videos and reconstruct them first")
    t_pairs = time.perf_counter() - t0
    model, tokenizer, stats = fit(conf, spaces, pairs, progress)
    names = sorted(pairs)
    summary = {
        "scenes": {n: {"pairs": len(pairs.get(n, [])), "voxels": len(spaces[n].cells) if n in spaces else 0,
                       "skipped": dict(skipped[n])} for n in sorted(scenes)},
        "supervision": conf.supervision,
        "encoder": conf.encoder,
        **{k: v for k, v in stats.items() if k != "history"},
        "seconds": {"pairs": round(t_pairs, 2), "total": round(time.perf_counter() - t0, 2)},
    }
    with atomic_dir(out_dir) as tmp:
        for n in names:
            atomic_write_json(tmp / "scenes" / n / "voxels.json", spaces[n].to_json())
            atomic_write_json(tmp / "scenes" / n / "pairs.json", [p.to_json() for p in pairs[n]])
        gmodel.save(model, tokenizer, tmp / "model", {
            "scenes": names, "num_voxels": [len(spaces[n].cells) for n in names],
            "max_tokens": conf.max_tokens, "pooling": "mean", "config": asdict(conf)})
        atomic_write_json(tmp / "history.json", stats["history"])
        summary["seconds"]["total"] = round(time.perf_counter() - t0, 2)
        atomic_write_json(tmp / "summary.json", summary)
    log.info("grounding model trained on %d pairs of %d scenes in %.0f s", stats["train_pairs"], len(names),
             summary["seconds"]["total"])
    return summary
