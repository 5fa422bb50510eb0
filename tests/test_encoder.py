"""The transformers-free inference encoder gives the same token ids and embeddings as ``transformers``' BERT.

Checked on a tiny random BERT (random weights catch a wrong mapping that a trained model might hide) and on the
packaged MiniLM, for batches that need padding and truncation.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel

from grounding import encoder as light
from grounding import model as gmodel
from grounding.config import PACKAGED_ENCODER
from recon.io import InputError

TEXTS = [
    "Where do I check the OIL level?",
    "oil",
    "pull the dipstick out, wipe it clean, push it back in and read the level between the two marks " * 5,
    "Ünïcode café naïve — 中文 façade",
    "see [SEP] here, then [MASK]",
    "",
]


@pytest.fixture(scope="module")
def packaged() -> Path:
    return gmodel.encoder_path(PACKAGED_ENCODER)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, packaged) -> Path:
    """A random 3-layer BERT folder (HF layout) with the packaged BERT's real vocabulary."""
    folder = tmp_path_factory.mktemp("tiny_bert_enc")
    torch.manual_seed(1)
    config = BertConfig(vocab_size=30522, hidden_size=48, num_hidden_layers=3, num_attention_heads=4,
                        intermediate_size=96, max_position_embeddings=128, layer_norm_eps=1e-7)
    model = BertModel(config, add_pooling_layer=True)  # a pooler in the file must be ignored
    with torch.no_grad():  # LayerNorms away from their (1, 0) init, so a swapped norm shows
        for name, p in model.named_parameters():
            if "LayerNorm" in name:
                p.add_(0.3 * torch.randn_like(p))
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(packaged).save_pretrained(folder)
    return folder


def _hf_embed(folder: Path, texts: list[str], max_tokens: int) -> tuple[dict, torch.Tensor, torch.Tensor]:
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    bert = BertModel.from_pretrained(folder, local_files_only=True, add_pooling_layer=False).eval()
    enc = tok(texts, padding=True, truncation=True, max_length=max_tokens, return_tensors="pt")
    with torch.inference_mode():
        hidden = bert(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    return enc, hidden, (hidden * mask).sum(1) / mask.sum(1)


@pytest.mark.parametrize("which", ["tiny", "packaged"])
@pytest.mark.parametrize("max_tokens", [64, 9])
def test_same_ids_and_embeddings_as_transformers(request, which, max_tokens):
    folder = request.getfixturevalue(which)
    ref_enc, ref_hidden, ref_emb = _hf_embed(folder, TEXTS, max_tokens)
    encoder, tokenizer = light.load_pretrained(folder)
    enc = tokenizer(TEXTS, max_tokens)
    assert torch.equal(enc["input_ids"], ref_enc["input_ids"])
    assert torch.equal(enc["attention_mask"], ref_enc["attention_mask"])
    lengths = enc["attention_mask"].sum(1)
    assert lengths.max() == max_tokens and lengths.min() < max_tokens  # truncated and padded
    with torch.inference_mode():
        hidden = encoder(**enc).last_hidden_state
    real = enc["attention_mask"].bool()
    assert (hidden[real] - ref_hidden[real]).abs().max() <= 1e-5
    emb = light.embed(encoder, tokenizer, TEXTS, max_tokens, batch_size=4)  # other padding per batch
    assert (emb - ref_emb).abs().max() <= 1e-5
    assert ref_emb.std() > 0.05  # embeddings that differ between texts, not a degenerate constant


def test_trained_model_loads_on_the_light_encoder(tmp_path, tiny):
    """A GroundingModel saved from transformers' BERT reloads without it: same logits, no transformers import."""
    tokenizer = AutoTokenizer.from_pretrained(tiny, local_files_only=True)
    torch.manual_seed(2)
    model = gmodel.GroundingModel(BertModel.from_pretrained(tiny, add_pooling_layer=False), [7, 5]).eval()
    gmodel.save(model, tokenizer, tmp_path, {"scenes": ["a", "b"], "num_voxels": [7, 5], "max_tokens": 16})
    loaded, loaded_tok, meta, _ = gmodel.load(tmp_path)
    assert isinstance(loaded.encoder, light.BertEncoder) and meta["max_tokens"] == 16
    with torch.inference_mode():
        for head in (0, 1):
            a = model.logits(model.embed(**gmodel.tokenize(tokenizer, TEXTS, 16)), head)
            b = loaded.logits(loaded.embed(**gmodel.tokenize(loaded_tok, TEXTS, 16)), head)
            assert (a - b).abs().max() <= 1e-5
    code = ("import sys; from pathlib import Path; from grounding import model, query, evaluate; "
            f"m, t, _, _ = model.load(Path({str(tmp_path)!r})); "
            "m.embed(**model.tokenize(t, ['where is the dipstick'], 16)); "
            "heavy = {'transformers', 'sklearn', 'scipy', 'matplotlib', 'open3d', 'pycolmap'}; "
            "print(sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_bad_folders_are_one_line_input_errors(tmp_path, tiny):
    with pytest.raises(InputError, match="config.json"):
        light.load_pretrained(tmp_path)
    conf = json.loads((tiny / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**conf, "hidden_act": "relu"}))
    with pytest.raises(InputError, match="unsupported BERT variant"):
        light.load_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(conf))
    (tmp_path / "model.safetensors").write_bytes((tiny / "model.safetensors").read_bytes()[:1000])
    with pytest.raises(InputError, match="model.safetensors"):
        light.load_pretrained(tmp_path)
    (tmp_path / "model.safetensors").write_bytes((tiny / "model.safetensors").read_bytes())
    (tmp_path / "tokenizer.json").write_text("{not json")
    with pytest.raises(InputError, match="tokenizer.json"):
        light.load_pretrained(tmp_path)
