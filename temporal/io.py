"""Saving and loading the temporal models: safetensors weights + a JSON description, written atomically.

One helper for every model of the stage (step model, order verifier, discriminator, key-step discovery), so
each format is a weights file and a JSON file with a ``kind``, and a half-written or foreign folder is one
clear error rather than a torch traceback. No pickle.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load, save

from recon.io import InputError, atomic_write_bytes, atomic_write_json, read_json

WEIGHTS = "model.safetensors"
META = "config.json"


def save_model(
    folder: Path,
    kind: str,
    tensors: dict[str, torch.Tensor],
    meta: dict[str, Any],
    *,
    weights: str = WEIGHTS,
    meta_name: str = META,
) -> None:
    """``folder/weights`` (tensors) + ``folder/meta_name`` (``{"kind": kind, **meta}``), each written atomically;
    the JSON is written last, so a folder whose JSON exists has its weights."""
    folder = Path(folder)
    atomic_write_bytes(folder / weights, save({k: v.detach().contiguous() for k, v in tensors.items()}))
    atomic_write_json(folder / meta_name, {"kind": kind, **meta})


def load_model(
    folder: Path,
    kind: str,
    fix: str,
    *,
    weights: str = WEIGHTS,
    meta_name: str = META,
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Weights and description of a model saved by :func:`save_model` as ``kind``; ``fix`` says how to make one
    (the end of the error message when the folder holds no such model)."""
    folder = Path(folder)
    meta_path = folder / meta_name
    if not meta_path.is_file() or not (folder / weights).is_file():
        raise InputError(f"{folder}: no {kind.replace('_', ' ')} model here ({meta_name} or {weights} missing); {fix}")
    meta = read_json(meta_path)
    if meta.get("kind", kind) != kind:
        raise InputError(f"{meta_path}: a {meta.get('kind')} model, not a {kind.replace('_', ' ')} one; {fix}")
    try:
        tensors = load((folder / weights).read_bytes())
    except SafetensorError as e:
        raise InputError(f"{folder / weights}: unreadable weights ({e}); {fix}") from None
    return tensors, meta
