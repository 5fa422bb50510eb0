"""BERT sentence embeddings in NumPy: the query path's encoder, without torch.

Why: ``import torch`` was ~75 % of a cold ``howto3d query`` (1.4 of 1.9 s) although a query is a forward pass of a
6-layer encoder over a dozen tokens. This module computes the same pass as ``transformers.BertModel`` (and the
plain-torch ``grounding.bert_torch``) with NumPy's BLAS, on weights read by ``safetensors.numpy`` under their Hugging
Face names, tokenized by ``tokenizers`` from the folder's ``tokenizer.json``. Linear layers run on the batch's real
tokens only (no padding rows); only attention sees the padded grid, with padding keys masked out. Training keeps
torch and ``transformers`` (``grounding.model_transformers``).
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer as _HFTokenizer

from recon.io import InputError

_ERF_STEP = 1.0 / 4096
_ERF_STEPS = 6 * 4096
"""erf is tabulated on [0, 6] (erf(6) = 1 - 2e-17: 1 in float32) every ``_ERF_STEP``."""
_erf = np.array([math.erf(i * _ERF_STEP) for i in range(_ERF_STEPS + 2)])
_ERF_VALUE, _ERF_SLOPE = _erf[:-1].astype(np.float32), np.diff(_erf).astype(np.float32)
del _erf


def gelu_(x: np.ndarray, a: np.ndarray, b: np.ndarray, i: np.ndarray) -> None:
    """BERT's exact GELU in place, x ← x · Φ(x) = x / 2 · (1 + erf(x / √2)), for float32 ``x``; ``a``, ``b``
    (float32) and ``i`` (int32) are scratch arrays of its shape.

    erf is linearly interpolated between exact values (``math.erf``, libm) 1/4096 apart: the interpolation error
    is at most step² / 8 · max|erf''| = 7.2e-9, below the float32 rounding of ``1 + erf`` (6e-8), so this is the
    erf GELU to float32 precision (closer to it than torch's, tests/grounding/test_bert.py), not the tanh approximation.
    ``scipy.special.erf`` would add ~0.2 s of imports to every cold query. No temporaries: fresh arrays of this
    size cost page faults that took longer than the arithmetic.
    """
    np.multiply(x, np.float32(math.sqrt(0.5) / _ERF_STEP), out=a)
    np.abs(a, out=a)
    np.minimum(a, np.float32(_ERF_STEPS), out=a)
    np.copyto(i, a, casting="unsafe")  # truncation = floor for a >= 0
    np.copyto(b, i)
    a -= b  # the fraction of a step
    np.take(_ERF_SLOPE, i, out=b, mode="clip")
    a *= b
    np.take(_ERF_VALUE, i, out=b, mode="clip")
    a += b
    np.copysign(a, x, out=a)
    a += np.float32(1.0)
    a *= np.float32(0.5)
    x *= a


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
            raise InputError(
                f"{path}: unsupported BERT variant (hidden_act={act!r}, position_embedding_type="
                f"{pos!r}); use a BERT encoder with GELU and absolute positions"
            )
        return cls(
            hidden_size=int(conf["hidden_size"]),
            num_hidden_layers=int(conf["num_hidden_layers"]),
            num_attention_heads=int(conf["num_attention_heads"]),
            intermediate_size=int(conf["intermediate_size"]),
            vocab_size=int(conf["vocab_size"]),
            max_position_embeddings=int(conf["max_position_embeddings"]),
            type_vocab_size=int(conf.get("type_vocab_size", 2)),
            layer_norm_eps=float(conf.get("layer_norm_eps", 1e-12)),
        )


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
            raise InputError(
                f"{folder / 'tokenizer.json'}: missing or damaged tokenizer ({e}); use a BERT folder "
                "saved with its tokenizer.json (`howto3d train` writes one)"
            ) from None
        pad_id = self._tok.token_to_id(pad)
        if pad_id is None:
            raise InputError(
                f"{folder / 'tokenizer.json'}: padding token {pad!r} not in the vocabulary; "
                "save the tokenizer again with `howto3d train`"
            )
        self._pad_id = pad_id
        self._pad_left = conf.get("padding_side", "right") == "left"
        self._tok.no_padding()
        self._side = conf.get("truncation_side", "right")
        self._max_tokens = -1
        self._lock = threading.Lock()  # truncation is a setting of the shared Rust tokenizer

    def encode(self, texts: list[str], max_tokens: int) -> tuple[np.ndarray, np.ndarray]:
        """``input_ids`` and ``attention_mask`` (B, T) int64: [CLS] … [SEP], truncated to ``max_tokens``,
        padded to the batch's longest text on the tokenizer's padding side.

        Texts are encoded one by one and padded here: ``encode_batch`` hands a few short texts to a Rust thread
        pool, whose hand-offs cost 10 ms per batch instead of 0.4 in a server beside busy cores."""
        with self._lock:
            if max_tokens != self._max_tokens:
                self._tok.enable_truncation(max_tokens, direction=self._side)
                self._max_tokens = max_tokens
            seqs = [self._tok.encode(t).ids for t in texts]
        t = max((len(x) for x in seqs), default=0)
        ids = np.full((len(seqs), t), self._pad_id, np.int64)
        mask = np.zeros((len(seqs), t), np.int64)
        for row, x in enumerate(seqs):
            cols = slice(t - len(x), t) if self._pad_left else slice(0, len(x))
            ids[row, cols] = x
            mask[row, cols] = 1
        return ids, mask


def _layer_norm_(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> None:
    """LayerNorm over the last axis, in place."""
    x -= x.mean(-1, keepdims=True)
    var = np.einsum("ij,ij->i", x, x)[:, None]
    var /= np.float32(x.shape[-1])
    var += np.float32(eps)
    np.sqrt(var, out=var)
    x /= var
    x *= weight
    x += bias


@dataclass
class _Layer:
    qkv_w: np.ndarray  # (3H, H): query, key, value stacked, so one matmul projects all three
    qkv_b: np.ndarray
    out_w: np.ndarray
    out_b: np.ndarray
    norm1: tuple[np.ndarray, np.ndarray]
    ff1_w: np.ndarray
    ff1_b: np.ndarray
    ff2_w: np.ndarray
    ff2_b: np.ndarray
    norm2: tuple[np.ndarray, np.ndarray]


class NumpyBert:
    """BERT's encoder (no pooler) + mean pooling, inference only, float32."""

    def __init__(self, shape: BertShape, weights: dict[str, np.ndarray], prefix: str = ""):
        """``weights`` under Hugging Face names after ``prefix`` (``embeddings.…``, ``encoder.layer.N.…``); a
        missing one is a ``KeyError``."""

        def w(name: str) -> np.ndarray:
            return np.ascontiguousarray(weights[prefix + name], dtype=np.float32)

        self.shape = shape
        self.word = w("embeddings.word_embeddings.weight")
        self.position = w("embeddings.position_embeddings.weight")
        self.type0 = w("embeddings.token_type_embeddings.weight")[0]
        self.norm = (w("embeddings.LayerNorm.weight"), w("embeddings.LayerNorm.bias"))
        self.layers = []
        for i in range(shape.num_hidden_layers):
            p = f"encoder.layer.{i}."
            self.layers.append(
                _Layer(
                    qkv_w=np.concatenate([w(p + f"attention.self.{n}.weight") for n in ("query", "key", "value")]),
                    qkv_b=np.concatenate([w(p + f"attention.self.{n}.bias") for n in ("query", "key", "value")]),
                    out_w=w(p + "attention.output.dense.weight"),
                    out_b=w(p + "attention.output.dense.bias"),
                    norm1=(w(p + "attention.output.LayerNorm.weight"), w(p + "attention.output.LayerNorm.bias")),
                    ff1_w=w(p + "intermediate.dense.weight"),
                    ff1_b=w(p + "intermediate.dense.bias"),
                    ff2_w=w(p + "output.dense.weight"),
                    ff2_b=w(p + "output.dense.bias"),
                    norm2=(w(p + "output.LayerNorm.weight"), w(p + "output.LayerNorm.bias")),
                )
            )

    def hidden(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Last hidden states of the real tokens only, (N, H) in row-major order of the (B, T) grid, and their
        flat positions in that grid. Every layer writes into the same few buffers (allocated once per call)."""
        b, t = input_ids.shape
        h, heads, eps = self.shape.hidden_size, self.shape.num_attention_heads, self.shape.layer_norm_eps
        d = h // heads
        rows = np.flatnonzero(attention_mask.reshape(-1))
        n = len(rows)
        x = self.word[input_ids.reshape(-1)[rows]]
        x += self.position[rows % t]
        x += self.type0
        _layer_norm_(x, *self.norm, eps)
        # Padding keys get the most negative float32 added to their scores: weight exactly 0 after the softmax.
        key_bias = np.where(attention_mask[:, None, None, :] > 0, 0.0, np.finfo(np.float32).min).astype(np.float32)
        scale = np.float32(1.0 / math.sqrt(d))
        grid = np.zeros((b * t, 3 * h), np.float32)  # q, k, v of every grid position (padding rows stay 0)
        proj, y = np.empty((n, 3 * h), np.float32), np.empty((n, h), np.float32)
        ff, fa, fb = (np.empty((n, self.shape.intermediate_size), np.float32) for _ in range(3))
        fi = np.empty(ff.shape, np.int32)
        for layer in self.layers:
            np.matmul(x, layer.qkv_w.T, out=proj)
            proj += layer.qkv_b
            grid[rows] = proj
            q, k, v = grid.reshape(b, t, 3, heads, d).transpose(2, 0, 3, 1, 4)  # each (B, heads, T, d)
            scores = (q * scale) @ k.transpose(0, 1, 3, 2)
            scores += key_bias
            scores -= scores.max(-1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(-1, keepdims=True)
            ctx = (scores @ v).transpose(0, 2, 1, 3).reshape(b * t, h)[rows]
            np.matmul(ctx, layer.out_w.T, out=y)
            y += layer.out_b
            x += y
            _layer_norm_(x, *layer.norm1, eps)
            np.matmul(x, layer.ff1_w.T, out=ff)
            ff += layer.ff1_b
            gelu_(ff, fa, fb, fi)
            np.matmul(ff, layer.ff2_w.T, out=y)
            y += layer.ff2_b
            x += y
            _layer_norm_(x, *layer.norm2, eps)
        return x, rows

    def embed(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """(B, H) mean of each text's real tokens' last hidden states (what ``GroundingModel.embed`` computes)."""
        x, rows = self.hidden(input_ids, attention_mask)
        pool = np.zeros((input_ids.shape[0], len(rows)), np.float32)
        pool[rows // input_ids.shape[1], np.arange(len(rows))] = 1.0
        return (pool @ x) / np.maximum(pool.sum(1, keepdims=True), 1.0)
