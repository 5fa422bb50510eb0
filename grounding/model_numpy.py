"""A trained grounding model loaded for queries without torch: the NumPy encoder and the per-scene heads.

Reads the folder ``grounding.model_transformers.save`` writes (``model.safetensors`` under the training model's names,
``grounding.json``, ``index.safetensors``, the encoder's ``config.json`` and tokenizer files) with
``safetensors.numpy``: no pickle, no torch, no ``transformers``. A cold ``howto3d query`` pays NumPy instead of
torch (tests/cli/test_startup.py checks the imports, benchmarks/query.py the time).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load_file
from threadpoolctl import ThreadpoolController

from grounding.bert_numpy import BertShape, NumpyBert, Tokenizer
from recon.io import InputError

if TYPE_CHECKING:
    from grounding.bert_torch import TorchEmbedder

WEIGHTS = "model.safetensors"
META = "grounding.json"
INDEX = "index.safetensors"


def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    e = np.exp(x - x.max(axis, keepdims=True))
    return e / e.sum(axis, keepdims=True)


_BLAS = ThreadpoolController()


class GroundingModel:
    """Mean-pooled BERT features → per-scene voxel logits (inference of ``model_transformers.GroundingModel``)."""

    def __init__(
        self, encoder: NumpyBert | TorchEmbedder, heads: list[tuple[np.ndarray, np.ndarray]], threads: int = 1
    ):
        self.encoder = encoder
        self.heads = heads
        self.threads = threads
        """BLAS threads of the forward pass. 1: a query's matrices are small (tens of tokens), and a second
        OpenBLAS thread spinning for a busy core made passes 2.5-7x slower on the shared 2-core machine (the
        server answers HTTP on the other core)."""

    def embed(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        with _BLAS.limit(limits=self.threads, user_api="blas"):
            return self.encoder.embed(input_ids, attention_mask)

    def logits(self, features: np.ndarray, scene: int) -> np.ndarray:
        weight, bias = self.heads[scene]
        return features @ weight.T + bias


def load(
    folder: Path, encoder: Literal["numpy", "torch"] = "numpy"
) -> tuple[GroundingModel, Tokenizer, dict, dict[str, np.ndarray]]:
    """The model, its tokenizer, ``grounding.json`` and the line index's arrays; a damaged file is an
    :class:`InputError` naming it. ``encoder="torch"`` runs BERT on torch's kernels (a long-lived process that
    answers many queries; the same embeddings to float32 rounding)."""
    folder = Path(folder)
    current = folder / META
    try:
        meta = json.loads(current.read_text(encoding="utf-8"))
        current = folder / "config.json"
        shape = BertShape.from_json(current)
        current = folder / WEIGHTS
        weights = load_file(str(current))
        heads = [
            (np.asarray(weights[f"heads.{i}.weight"], np.float32), np.asarray(weights[f"heads.{i}.bias"], np.float32))
            for i in range(len(meta["num_voxels"]))
        ]
        bert: NumpyBert | TorchEmbedder
        if encoder == "torch":
            from grounding.bert_torch import TorchEmbedder

            bert = TorchEmbedder(shape, weights, prefix="encoder.")
        else:
            bert = NumpyBert(shape, weights, prefix="encoder.")
        model = GroundingModel(bert, heads)
        current = folder / INDEX
        index = load_file(str(current)) if current.is_file() else {}
        current = folder / "tokenizer.json"
        tokenizer = Tokenizer(folder)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as e:
        raise InputError(
            f"{current}: damaged or incomplete grounding model ({type(e).__name__}); run `howto3d train` again"
        ) from None
    return model, tokenizer, meta, index
