"""The inference encoders give the same token ids and embeddings as ``transformers``' BERT, and queries (NumPy, no
torch) give the same answers as the torch model they were trained as.

Checked on a tiny random BERT (random weights catch a wrong mapping that a trained model might hide) and on the
packaged MiniLM, for batches that need padding and truncation: the plain-torch encoder (``grounding.bert_torch``) and
the NumPy one (``grounding.bert_numpy``) against ``transformers.BertModel``, and ``grounding.query`` (NumPy encoder,
heads, line-index vote, prior) against the same computation in torch.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file
from transformers import AutoTokenizer, BertConfig, BertModel

from grounding import bert_numpy, model_numpy
from grounding import bert_torch as light
from grounding import model_transformers as gmodel
from grounding import query as gquery
from grounding.config import PACKAGED_ENCODER
from grounding.index import LineIndex
from grounding.voxels import VoxelSpace
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
    config = BertConfig(
        vocab_size=30522,
        hidden_size=48,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=96,
        max_position_embeddings=128,
        layer_norm_eps=1e-7,
    )
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
    # The NumPy encoder (what queries run): same ids, same hidden states of the real tokens, same embeddings.
    ids, mask = tokenizer.encode(TEXTS, max_tokens)
    assert np.array_equal(ids, ref_enc["input_ids"].numpy()) and np.array_equal(mask, ref_enc["attention_mask"])
    shape = bert_numpy.BertShape.from_json(folder / "config.json")
    bert = bert_numpy.NumpyBert(shape, load_file(folder / "model.safetensors"))
    hidden, rows = bert.hidden(ids, mask)
    assert np.array_equal(rows, np.flatnonzero(mask))
    assert np.abs(hidden - ref_hidden.numpy().reshape(-1, hidden.shape[1])[rows]).max() <= 1e-5
    assert np.abs(bert.embed(ids, mask) - ref_emb.numpy()).max() <= 1e-5
    assert np.abs(bert.embed(*tokenizer.encode(TEXTS[2:3], max_tokens)) - ref_emb.numpy()[2:3]).max() <= 1e-5


def test_numpy_gelu_is_the_exact_erf_gelu():
    """No tanh approximation: within float32 rounding of x·Φ(x) (libm's erf in float64), as close as torch's."""
    x = np.concatenate([np.linspace(-12, 12, 200_001), [0.0, -0.0, 1e-30, -1e-30, 5.9999, 6.0001, 40.0, -40.0]])
    x = x.astype(np.float32)
    exact = np.array([v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x.astype(np.float64)])
    ours = x.copy()
    bert_numpy.gelu_(ours, np.empty_like(x), np.empty_like(x), np.empty(x.shape, np.int32))
    theirs = torch.nn.functional.gelu(torch.from_numpy(x)).numpy()
    # errors in float32 steps of max(|GELU|, 1) (the absolute precision that matters as the next layer's input)
    step = np.spacing(np.maximum(np.abs(exact), 1).astype(np.float32))
    err, torch_err = np.abs(ours - exact) / step, np.abs(theirs - exact) / step
    assert err.max() <= 1.5 and err.max() <= torch_err.max() and err.mean() <= torch_err.mean()  # 1.42 / 8.9 seen
    assert ours.dtype == np.float32 and np.all(ours[x >= 6] == x[x >= 6]) and np.all(ours[x <= -6] <= 0)


def _torch_scores(folder: Path, scene: int, texts: list[str], method: str, grounder: gquery.Grounder) -> np.ndarray:
    """The voxel probabilities as the torch code computed them before queries moved to NumPy (the reference)."""
    model, tokenizer, _, index = gmodel.load(folder)
    emb, targets, weights = (index[f"scene{scene}.{k}"] for k in ("embeddings", "targets", "weights"))
    with torch.inference_mode():
        feats = model.embed(**gmodel.tokenize(tokenizer, texts, grounder.max_tokens))
        probs = torch.softmax(model.logits(feats, scene), dim=1)
        top, idx = (torch.nn.functional.normalize(feats, dim=-1) @ emb.T).topk(min(grounder.k, len(emb)), dim=1)
        a = torch.softmax(top / grounder.temperature, dim=1) * weights[idx].pow(grounder.weight_power).clamp(min=1e-12)
        votes = torch.einsum("qk,qkv->qv", a / a.sum(1, keepdim=True), targets[idx])
        probs = {"classifier": probs, "index": votes}.get(
            method, (1 - grounder.ensemble_weight) * probs + grounder.ensemble_weight * votes
        )
        w = weights.clamp(min=1e-6)
        probs = probs / ((w @ targets) / w.sum() + gquery.PRIOR_FLOOR / targets.shape[1]) ** grounder.prior_power
        return (probs / probs.sum(1, keepdim=True)).double().numpy()


def _assert_same_answers(grounder: gquery.Grounder, folder: Path, scene: str, texts: list[str]) -> None:
    head = grounder.scenes.index(scene)
    near = gquery.neighbourhood(grounder.spaces[scene], grounder.score_radius)
    for method in ("index", "classifier", "ensemble"):
        ours = grounder.scores(scene, texts, method=method)
        ref = _torch_scores(folder, head, texts, method, grounder)
        assert np.abs(ours - ref).max() <= 1e-5 and np.array_equal(ours.argmax(1), ref.argmax(1)), method
        for text, p, q in zip(texts, ours, ref, strict=True):
            a, b = (
                gquery.answer(
                    scene, text, x, grounder.spaces[scene], near, grounder.peak_separation, grounder.uncertain_ratio
                )
                for x in (p, q)
            )
            # the same JSON, up to the last rounded digit of a score
            same = [a[k] == b[k] for k in ("point", "uncertain", "voxel_size")] + [
                x["center"] == y["center"] and abs(x["score"] - y["score"]) <= 2e-6
                for k in ("top", "peaks")
                for x, y in zip(a[k], b[k], strict=True)
            ]
            assert json.dumps(a) == json.dumps(b) or all(same), (a, b)


def test_numpy_queries_match_the_torch_model(tmp_path, tiny):
    """A tiny random model with heads and a line index: every method's probabilities and answers as in torch."""
    rng = np.random.default_rng(3)
    torch.manual_seed(3)
    tokenizer = AutoTokenizer.from_pretrained(tiny, local_files_only=True)
    num_voxels = [60, 40]
    model = gmodel.GroundingModel(BertModel.from_pretrained(tiny, add_pooling_layer=False), num_voxels).eval()
    lines = [f"{verb} the {part}" for verb in ("remove", "check", "loosen", "find") for part in TEXTS[:4]]
    with torch.inference_mode():
        feats = torch.nn.functional.normalize(model.embed(**gmodel.tokenize(tokenizer, lines, 16)), dim=-1)
    index = {}
    for s, n in enumerate(num_voxels):
        targets = rng.dirichlet(np.full(n, 0.3), len(lines)).astype(np.float32)
        index |= LineIndex(feats.numpy().copy(), targets, rng.uniform(0.1, 1.0, len(lines))).tensors(f"scene{s}")
    meta = {
        "scenes": ["a", "b"],
        "num_voxels": num_voxels,
        "max_tokens": 16,
        "method": "index",
        "config": {"prior_power": 0.5, "index_k": 3},
    }
    gmodel.save(model, tokenizer, tmp_path, meta, index)
    loaded, tok, meta, arrays = model_numpy.load(tmp_path)
    spaces = {
        s: VoxelSpace(
            origin=np.zeros(3),
            size=np.array([0.1, 0.2, 0.15]),
            divisions=10,
            cells=np.sort(rng.choice(1000, n, replace=False)),
        )
        for s, n in zip("ab", num_voxels, strict=True)
    }
    grounder = gquery.Grounder(tmp_path, loaded, tok, meta, spaces, arrays)
    assert grounder.k == 3 and grounder.prior_power == 0.5
    queries = [t for t in TEXTS if t.strip()] + lines[:3] + ["where do I check the oil level"]
    # the server's choice: the same model with BERT on torch's kernels
    on_torch = gquery.Grounder(tmp_path, model_numpy.load(tmp_path, encoder="torch")[0], tok, meta, spaces, arrays)
    for scene in ("a", "b"):
        _assert_same_answers(grounder, tmp_path, scene, queries)
        _assert_same_answers(on_torch, tmp_path, scene, queries)


@pytest.mark.slow
def test_numpy_queries_match_the_torch_model_on_the_packaged_minilm(trained_ws):
    """The default model (packaged MiniLM + line index) of the shared trained workspace, as a user queries it."""
    ws, scene, _ = trained_ws
    grounder = gquery.load(ws.grounding_dir)
    texts = [
        "where is the dipstick",
        "Where do I check the OIL level?",
        "battery terminals",
        "the coolant cap",
        "pull the dipstick out, wipe it clean, push it back in and read the level between the two marks " * 5,
    ]
    _assert_same_answers(grounder, ws.grounding_dir / "model", scene, texts)


def test_trained_model_loads_on_the_light_encoder(tmp_path, tiny):
    """A GroundingModel saved from transformers' BERT reloads without it (torch) and without torch (NumPy, what
    queries load): same logits / features, and the NumPy load imports neither."""
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
    # What a query loads: the same folder without torch (NumPy), same features.
    loaded_np, np_tok, _, _ = model_numpy.load(tmp_path)
    with torch.inference_mode():
        ref = model.embed(**gmodel.tokenize(tokenizer, TEXTS, 16)).numpy()
    assert np.abs(loaded_np.embed(*np_tok.encode(TEXTS, 16)) - ref).max() <= 1e-5
    code = (
        "import sys; from pathlib import Path; from grounding import model_numpy, query, evaluate; "
        f"m, t, _, _ = model_numpy.load(Path({str(tmp_path)!r})); "
        "m.embed(*t.encode(['where is the dipstick'], 16)); "
        "heavy = {'torch', 'transformers', 'sklearn', 'scipy', 'matplotlib', 'open3d', 'pycolmap'}; "
        "print(sorted(heavy & set(sys.modules)))"
    )
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
