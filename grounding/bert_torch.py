"""Inference-only BERT text encoder in plain torch, loading Hugging Face BERT folders without ``transformers``.

Queries run the NumPy encoder (``grounding.bert_numpy``, no torch at all); this one serves torch code that embeds
without training (``grounding.model_transformers.load``) and is the torch reference the NumPy encoder is tested against.
Why not ``transformers``: importing it costs about 1.7 s; the forward pass is embeddings + N post-LayerNorm
encoder layers, which ``torch.nn.TransformerEncoderLayer`` computes exactly (and, in inference, with torch's
fused fast path). Training keeps ``transformers`` (``grounding.model_transformers``).
The weights keep their Hugging Face names on disk: the layers map them on load, so the same
``model.safetensors`` (the packaged MiniLM, or a trained GroundingModel's ``encoder.``-prefixed state dict)
loads in both. Tokenization: :class:`grounding.bert_numpy.Tokenizer` (the ``transformers`` tokenizer's settings).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from grounding import bert_numpy
from grounding.bert_numpy import BertShape
from recon.io import InputError

# Hugging Face BERT layer parameter → (TransformerEncoderLayer parameter, q/k/v part or None).
_LAYER_KEYS = {
    "attention.self.query.weight": ("self_attn.in_proj_weight", 0),
    "attention.self.key.weight": ("self_attn.in_proj_weight", 1),
    "attention.self.value.weight": ("self_attn.in_proj_weight", 2),
    "attention.self.query.bias": ("self_attn.in_proj_bias", 0),
    "attention.self.key.bias": ("self_attn.in_proj_bias", 1),
    "attention.self.value.bias": ("self_attn.in_proj_bias", 2),
    "attention.output.dense.weight": ("self_attn.out_proj.weight", None),
    "attention.output.dense.bias": ("self_attn.out_proj.bias", None),
    "attention.output.LayerNorm.weight": ("norm1.weight", None),
    "attention.output.LayerNorm.bias": ("norm1.bias", None),
    "intermediate.dense.weight": ("linear1.weight", None),
    "intermediate.dense.bias": ("linear1.bias", None),
    "output.dense.weight": ("linear2.weight", None),
    "output.dense.bias": ("linear2.bias", None),
    "output.LayerNorm.weight": ("norm2.weight", None),
    "output.LayerNorm.bias": ("norm2.bias", None),
}


class EncoderOutput(NamedTuple):
    last_hidden_state: torch.Tensor
    """(B, T, H) per-token features; rows of padding tokens are not meaningful (pool with the mask)."""


class Embeddings(nn.Module):
    """Word + position + token-type (0) embeddings, then LayerNorm (the Hugging Face names, so keys match)."""

    def __init__(self, shape: BertShape):
        super().__init__()

        # The weights always come from a file: ``_weight=empty`` skips a random init (~0.1 s of a cold query).
        def table(rows: int) -> nn.Embedding:
            return nn.Embedding(rows, shape.hidden_size, _weight=torch.empty(rows, shape.hidden_size))

        self.word_embeddings = table(shape.vocab_size)
        self.position_embeddings = table(shape.max_position_embeddings)
        self.token_type_embeddings = table(shape.type_vocab_size)
        self.LayerNorm = nn.LayerNorm(shape.hidden_size, eps=shape.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        t = input_ids.shape[1]
        x = self.word_embeddings(input_ids) + self.position_embeddings.weight[:t] + self.token_type_embeddings.weight[0]
        return self.LayerNorm(x)


class BertEncoder(nn.Module):
    """BERT's encoder for inference: same outputs as ``transformers.BertModel`` (no pooler) on real tokens."""

    def __init__(self, shape: BertShape):
        super().__init__()
        self.config = shape
        self.embeddings = Embeddings(shape)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                shape.hidden_size,
                shape.num_attention_heads,
                shape.intermediate_size,
                dropout=0.0,
                activation="gelu",
                layer_norm_eps=shape.layer_norm_eps,
                batch_first=True,
                norm_first=False,
            )
            for _ in range(shape.num_hidden_layers)
        )
        self.register_load_state_dict_pre_hook(_from_hf_names)
        self.eval()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> EncoderOutput:
        x = self.embeddings(input_ids)
        pad = attention_mask == 0
        # Without padding no mask is needed, and the fused fast path skips the masking work.
        mask = pad if bool(pad.any()) else None
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=mask)
        return EncoderOutput(x)


def _from_hf_names(module: nn.Module, state: dict, prefix: str, *_) -> None:
    """Rewrite a Hugging Face BERT state dict (under ``prefix``) in place to this module's names."""
    state.pop(f"{prefix}embeddings.position_ids", None)  # a buffer of 0..T-1 some checkpoints persist
    head = f"{prefix}encoder.layer."
    parts: dict[str, list] = {}
    for key in [k for k in state if k.startswith(head)]:
        index, _, rest = key[len(head) :].partition(".")
        if rest not in _LAYER_KEYS:
            continue  # left in place: a strict load names it as unexpected
        name, part = _LAYER_KEYS[rest]
        target = f"{prefix}layers.{index}.{name}"
        value = state.pop(key)
        if part is None:
            state[target] = value
        else:
            parts.setdefault(target, [None, None, None])[part] = value
    for target, qkv in parts.items():
        if any(v is None for v in qkv):
            raise KeyError(f"{target}: query, key or value missing")
        state[target] = torch.cat(qkv)


class TorchEmbedder:
    """:meth:`grounding.bert_numpy.NumpyBert.embed` on torch's kernels, for a long-lived process (the server).

    There the 1.4-s torch import is paid once, and torch runs a batch of queries 1.3-1.8x faster than NumPy
    (fused attention and GELU); a cold ``howto3d query`` keeps the NumPy encoder, which imports no torch."""

    def __init__(self, shape: BertShape, weights: Mapping[str, np.ndarray], prefix: str = "encoder."):
        with torch.device("meta"):  # no allocation, no random init: every parameter is assigned from ``weights``
            self.bert = BertEncoder(shape)
        self.bert.load_state_dict(
            {k[len(prefix) :]: torch.tensor(v) for k, v in weights.items() if k.startswith(prefix)},
            strict=True,
            assign=True,
        )
        self.bert.eval()

    @torch.inference_mode()
    def embed(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """(B, H) mean-pooled sentence embeddings of a tokenized batch (padding excluded)."""
        mask = torch.from_numpy(attention_mask)
        hidden = self.bert(input_ids=torch.from_numpy(input_ids), attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(hidden.dtype)
        return ((hidden * m).sum(1) / m.sum(1).clamp(min=1.0)).numpy()


class Tokenizer(bert_numpy.Tokenizer):
    """:class:`grounding.bert_numpy.Tokenizer` returning torch tensors (what the torch models take)."""

    def __call__(self, texts: list[str], max_tokens: int) -> dict[str, torch.Tensor]:
        """``input_ids`` and ``attention_mask`` (B, T): [CLS] … [SEP], truncated to ``max_tokens``, padded."""
        ids, mask = self.encode(texts, max_tokens)
        return {"input_ids": torch.from_numpy(ids), "attention_mask": torch.from_numpy(mask)}


def load_pretrained(folder: Path) -> tuple[BertEncoder, Tokenizer]:
    """A pre-trained BERT folder (``config.json``, ``model.safetensors``, ``tokenizer.json``) for inference."""
    folder = Path(folder)
    current = folder / "config.json"
    try:
        encoder = BertEncoder(BertShape.from_json(current))
        current = folder / "model.safetensors"
        state = load_file(str(current))
        prefix = "bert." if any(k.startswith("bert.") for k in state) else ""
        state = {
            k[len(prefix) :]: v
            for k, v in state.items()
            if k.startswith(prefix) and not k[len(prefix) :].startswith("pooler.")
        }
        encoder.load_state_dict(state, strict=True)
        current = folder / "tokenizer_config.json"
        tokenizer = Tokenizer(folder)
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as e:
        raise InputError(
            f"{current}: missing or damaged BERT file ({type(e).__name__}); name a complete BERT "
            "folder (config.json, model.safetensors, tokenizer.json)"
        ) from None
    return encoder, tokenizer


@torch.inference_mode()
def embed(
    encoder: BertEncoder, tokenizer: Tokenizer, texts: list[str], max_tokens: int, batch_size: int = 64
) -> torch.Tensor:
    """(len(texts), H) mean-pooled sentence embeddings (padding excluded), ``batch_size`` texts per pass."""
    out = []
    for b in range(0, len(texts), batch_size):
        enc = tokenizer(texts[b : b + batch_size], max_tokens)
        hidden = encoder(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        out.append((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0))
    return torch.cat(out) if out else torch.zeros((0, encoder.config.hidden_size))
