"""Inference-only BERT text encoder in plain torch, loading Hugging Face BERT folders without ``transformers``.

Why: importing ``transformers`` costs about 1.7 s, most of a cold ``howto3d query``; the forward pass a query
needs is embeddings + N post-LayerNorm encoder layers, which ``torch.nn.TransformerEncoderLayer`` computes
exactly (and, in inference, with torch's fused fast path). Training keeps ``transformers`` (``grounding.model``).
The weights keep their Hugging Face names on disk: the layers map them on load, so the same
``model.safetensors`` (the packaged MiniLM, or a trained GroundingModel's ``encoder.``-prefixed state dict)
loads in both. Tokenization uses the ``tokenizers`` library on the folder's ``tokenizer.json`` with the
settings the ``transformers`` tokenizer applies (truncation to ``max_tokens``, padding to the batch's longest).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from tokenizers import Tokenizer as _HFTokenizer
from torch import nn

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


@dataclass(frozen=True)
class BertShape:
    """The fields of a BERT ``config.json`` the forward pass needs."""

    hidden_size: int
    """Width of every token's hidden state (384 for MiniLM-L6)."""
    num_hidden_layers: int
    """Number of encoder layers."""
    num_attention_heads: int
    """Attention heads per layer (``hidden_size`` must be a multiple)."""
    intermediate_size: int
    """Width of each layer's feed-forward block."""
    vocab_size: int
    """Rows of the word-embedding table."""
    max_position_embeddings: int
    """Longest token sequence the position table covers."""
    type_vocab_size: int
    """Rows of the token-type table (only type 0 is used: one sentence per text)."""
    layer_norm_eps: float
    """Epsilon of every LayerNorm."""

    @classmethod
    def from_json(cls, path: Path) -> BertShape:
        """Read a BERT ``config.json``; a model this forward pass would compute differently is refused."""
        conf = json.loads(Path(path).read_text(encoding="utf-8"))
        act = conf.get("hidden_act", "gelu")
        pos = conf.get("position_embedding_type", "absolute")
        if act != "gelu" or pos != "absolute" or conf.get("is_decoder", False):
            raise InputError(f"{path}: unsupported BERT variant (hidden_act={act!r}, position_embedding_type="
                             f"{pos!r}); use a BERT encoder with GELU and absolute positions")
        return cls(hidden_size=int(conf["hidden_size"]), num_hidden_layers=int(conf["num_hidden_layers"]),
                   num_attention_heads=int(conf["num_attention_heads"]),
                   intermediate_size=int(conf["intermediate_size"]), vocab_size=int(conf["vocab_size"]),
                   max_position_embeddings=int(conf["max_position_embeddings"]),
                   type_vocab_size=int(conf.get("type_vocab_size", 2)),
                   layer_norm_eps=float(conf.get("layer_norm_eps", 1e-12)))


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
        x = self.word_embeddings(input_ids) + self.position_embeddings.weight[:t] \
            + self.token_type_embeddings.weight[0]
        return self.LayerNorm(x)


class BertEncoder(nn.Module):
    """BERT's encoder for inference: same outputs as ``transformers.BertModel`` (no pooler) on real tokens."""

    def __init__(self, shape: BertShape):
        super().__init__()
        self.config = shape
        self.embeddings = Embeddings(shape)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(shape.hidden_size, shape.num_attention_heads, shape.intermediate_size,
                                       dropout=0.0, activation="gelu", layer_norm_eps=shape.layer_norm_eps,
                                       batch_first=True, norm_first=False)
            for _ in range(shape.num_hidden_layers))
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
        index, _, rest = key[len(head):].partition(".")
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


class Tokenizer:
    """A BERT folder's ``tokenizer.json`` with the ``transformers`` call's behaviour (ids, truncation, padding)."""

    def __init__(self, folder: Path):
        folder = Path(folder)
        conf_path = folder / "tokenizer_config.json"
        conf = json.loads(conf_path.read_text(encoding="utf-8")) if conf_path.is_file() else {}
        pad = conf.get("pad_token") or "[PAD]"
        pad = pad["content"] if isinstance(pad, dict) else str(pad)
        try:
            self._tok = _HFTokenizer.from_file(str(folder / "tokenizer.json"))
        except Exception as e:  # noqa: BLE001 - ``tokenizers`` raises a bare Exception for a missing/bad file
            raise InputError(f"{folder / 'tokenizer.json'}: missing or damaged tokenizer ({e}); use a BERT folder "
                             "saved with its tokenizer.json (`howto3d train` writes one)") from None
        pad_id = self._tok.token_to_id(pad)
        if pad_id is None:
            raise InputError(f"{folder / 'tokenizer.json'}: padding token {pad!r} not in the vocabulary; "
                             "save the tokenizer again with `howto3d train`")
        self._tok.enable_padding(direction=conf.get("padding_side", "right"), pad_id=pad_id,
                                 pad_type_id=int(conf.get("pad_token_type_id", 0)), pad_token=pad)
        self._side = conf.get("truncation_side", "right")
        self._max_tokens = -1
        self._lock = threading.Lock()  # truncation is a setting of the shared Rust tokenizer

    def __call__(self, texts: list[str], max_tokens: int) -> dict[str, torch.Tensor]:
        """``input_ids`` and ``attention_mask`` (B, T): [CLS] … [SEP], truncated to ``max_tokens``, padded."""
        with self._lock:
            if max_tokens != self._max_tokens:
                self._tok.enable_truncation(max_tokens, direction=self._side)
                self._max_tokens = max_tokens
            encs = self._tok.encode_batch(list(texts))
        ids = torch.from_numpy(np.array([e.ids for e in encs], dtype=np.int64).reshape(len(encs), -1))
        mask = torch.from_numpy(np.array([e.attention_mask for e in encs], dtype=np.int64).reshape(ids.shape))
        return {"input_ids": ids, "attention_mask": mask}


def load_pretrained(folder: Path) -> tuple[BertEncoder, Tokenizer]:
    """A pre-trained BERT folder (``config.json``, ``model.safetensors``, ``tokenizer.json``) for inference."""
    folder = Path(folder)
    current = folder / "config.json"
    try:
        encoder = BertEncoder(BertShape.from_json(current))
        current = folder / "model.safetensors"
        state = load_file(str(current))
        prefix = "bert." if any(k.startswith("bert.") for k in state) else ""
        state = {k[len(prefix):]: v for k, v in state.items()
                 if k.startswith(prefix) and not k[len(prefix):].startswith("pooler.")}
        encoder.load_state_dict(state, strict=True)
        current = folder / "tokenizer_config.json"
        tokenizer = Tokenizer(folder)
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as e:
        raise InputError(f"{current}: missing or damaged BERT file ({type(e).__name__}); name a complete BERT "
                         "folder (config.json, model.safetensors, tokenizer.json)") from None
    return encoder, tokenizer


@torch.inference_mode()
def embed(encoder: BertEncoder, tokenizer: Tokenizer, texts: list[str], max_tokens: int,
          batch_size: int = 64) -> torch.Tensor:
    """(len(texts), H) mean-pooled sentence embeddings (padding excluded), ``batch_size`` texts per pass."""
    out = []
    for b in range(0, len(texts), batch_size):
        enc = tokenizer(texts[b:b + batch_size], max_tokens)
        hidden = encoder(**enc).last_hidden_state
        mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        out.append((hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0))
    return torch.cat(out) if out else torch.zeros((0, encoder.config.hidden_size))
