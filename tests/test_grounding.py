"""Grounding stage on a small synthetic world seen through ``oracle_scene`` (exact geometry, no SfM).

A tiny random BERT stands in for the encoder in the fast tests; the packaged BERT runs in the slow ones.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer, BertConfig, BertModel

from grounding import evaluate as geval
from grounding import model as gmodel
from grounding import query as gquery
from grounding import train as gtrain
from grounding import voxels
from grounding.config import PACKAGED_ENCODER, GroundingConfig
from grounding.narration import Narration, read_narrations
from grounding.pairs import make_pairs, segments
from recon.io import InputError
from recon.scene import RegisteredFrame, SharedScene


@pytest.fixture(scope="session")
def world(tmp_path_factory) -> Path:
    from synth import WorldConfig, generate_world

    root = tmp_path_factory.mktemp("gworld")
    generate_world(root, WorldConfig(scenes=2, videos=8, seconds=30.0, seed=0, width=64, height=36))
    return root


@pytest.fixture(scope="session")
def data(world):
    """Oracle scenes, narrations, ground truth and the evaluation inputs of the world."""
    from synth.oracle import oracle_scene

    scenes, narrations, gts = {}, {}, {}
    for d in sorted((world / "scenes").iterdir()):
        s = oracle_scene(d, pixel_step=2)
        scenes[s.scene] = s
        narrations[s.scene] = {p.stem: read_narrations(p) for p in sorted((d / "videos").glob("*.srt"))}
        gts[s.scene] = json.loads((d / "ground_truth.json").read_text())
    filmed = {s: sorted({st["part"] for v in g["videos"].values() for st in v["steps"]}) for s, g in gts.items()}
    return {"scenes": scenes, "narrations": narrations, "gts": gts,
            "queries": geval.queries_for(filmed), "gt_points": {s: g["parts"] for s, g in gts.items()},
            "chance": {s: sc.points for s, sc in scenes.items()}}


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A random 2-layer BERT folder with the packaged BERT's (real) vocabulary."""
    folder = tmp_path_factory.mktemp("tiny_bert")
    tokenizer = AutoTokenizer.from_pretrained(gmodel.encoder_path(PACKAGED_ENCODER))
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64)
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_conf(tiny_bert) -> GroundingConfig:
    return GroundingConfig(encoder=str(tiny_bert), freeze_embeddings=False, lr_encoder=1e-3, patience=8)


@pytest.fixture(scope="session")
def trained(tmp_path_factory, data, tiny_conf) -> dict[str, tuple[Path, dict]]:
    """The tiny model trained with each supervision mode."""
    out = {}
    for mode in ("center", "gaze"):
        folder = tmp_path_factory.mktemp(f"grounding_{mode}")
        summary = gtrain.main(replace(tiny_conf, supervision=mode), data["scenes"], data["narrations"], folder)
        out[mode] = (folder, summary)
    return out


def test_packaged_tokenizer_gives_real_ids(tmp_path):
    tokenizer = AutoTokenizer.from_pretrained(gmodel.encoder_path(PACKAGED_ENCODER))
    ids = tokenizer("pull the dipstick out and wipe it")["input_ids"]
    assert tokenizer.unk_token_id not in ids
    assert len(set(ids)) >= 7


def test_segments_merge_short_and_split_long():
    lines = [Narration("ok", 0.0, 0.5), Narration("open the hood", 0.7, 2.0),
             Narration(" ".join(f"w{i}" for i in range(12)), 3.0, 15.0)]
    out = segments(lines, max_seconds=6.0, min_seconds=1.0)
    assert out[0] == Narration("ok open the hood", 0.0, 2.0)
    assert [s.text.split() for s in out[1:]] == [[f"w{i}" for i in range(6)], [f"w{i}" for i in range(6, 12)]]
    assert out[1].start == 3.0 and out[2].end == 15.0


def _step_errors(data, mode: str) -> np.ndarray:
    errors = []
    for name, scene in data["scenes"].items():
        pairs, _ = make_pairs(GroundingConfig(), scene, data["narrations"][name], mode)
        for p in pairs:
            video = data["gts"][name]["videos"][p.video]
            step = [n for n in video["narrations"] if n["kind"] == "step" and abs(n["start"] - p.start) < 1e-3]
            if step:
                errors.append(np.linalg.norm(np.array(p.point) - video["parts"][step[0]["part"]]))
    return np.array(errors)


@pytest.mark.parametrize("mode", ["center", "gaze"])
def test_pairs_of_dwell_segments_lie_near_the_part(data, mode):
    errors = _step_errors(data, mode)
    assert len(errors) >= 40
    assert np.median(errors) < 0.08
    assert np.mean(errors < 0.15) > 0.7


def test_frame_without_points_near_centre_is_skipped(data):
    name, scene = next(iter(data["scenes"].items()))
    frames = []
    for i, f in enumerate(scene.frames):
        if i % 2 == 0:  # observations only in the top-left corner: nothing near the centre
            keep = (f.xy[:, 0] < 10) & (f.xy[:, 1] < 6)
            f = RegisteredFrame(f.video, f.name, f.time, f.camera, f.cam_from_world, f.xy[keep], f.point_index[keep])
        frames.append(f)
    damaged = SharedScene(scene.scene, scene.videos, scene.points, scene.colors, scene.point_video, frames)
    pairs, skipped = make_pairs(GroundingConfig(), damaged, data["narrations"][name], "center")
    full, _ = make_pairs(GroundingConfig(), scene, data["narrations"][name], "center")
    assert skipped["frames without 3D points near the centre"] >= len(scene.frames) // 4
    assert 0.5 * len(full) <= len(pairs) <= len(full)


def test_voxel_space_is_robust_and_keeps_training_cells(data):
    scene = next(iter(data["scenes"].values()))
    points = np.vstack([scene.points, [[100.0, 100.0, 100.0]]])  # one stray SfM point far away
    train = scene.points[:: len(scene.points) // 50][:50]
    space = voxels.build(points, train, divisions=20, num_voxels=500, percentile=1.0)
    assert len(space.cells) == 500
    assert np.all(space.size < 0.2)
    assert np.all(np.isin(space.cell_of(train), space.cells))
    inside = np.all((train >= space.origin) & (train <= space.origin + 20 * space.size), axis=1)
    assert inside.mean() > 0.9
    assert np.all(np.abs(space.centers[space.assign(train[inside])] - train[inside]) <= space.size / 2 + 1e-9)


@pytest.mark.parametrize("mode", ["center", "gaze"])
def test_tiny_model_beats_chance(data, trained, mode):
    folder, summary = trained[mode]
    assert all(s["pairs"] >= 40 for s in summary["scenes"].values())
    report = geval.evaluate(gquery.load(folder), data["queries"], data["gt_points"], data["chance"])
    print(f"{mode}: PCK@30cm {report['pck_at']} chance {report['chance_at']}")
    assert report["pck_at"] >= 2 * report["chance_at"]
    assert report["pck"] == sorted(report["pck"])


def test_save_load_round_trip(tmp_path, data, tiny_conf):
    spaces, pairs, _ = gtrain.training_set(tiny_conf, data["scenes"], data["narrations"])
    model, tokenizer, _ = gtrain.fit(replace(tiny_conf, epochs=2), spaces, pairs)
    gmodel.save(model, tokenizer, tmp_path, {"scenes": sorted(pairs), "num_voxels": [500, 500], "max_tokens": 64})
    loaded, loaded_tok, _ = gmodel.load(tmp_path)
    texts = ["remove the dipstick", "loosen the clamp on the negative battery cable"]
    with torch.inference_mode():
        a = model.logits(model.embed(**gmodel.tokenize(tokenizer, texts, 64)), 1)
        b = loaded.logits(loaded.embed(**gmodel.tokenize(loaded_tok, texts, 64)), 1)
    assert torch.equal(a, b)
    assert loaded_tok.unk_token_id not in loaded_tok("dipstick battery")["input_ids"]


def test_same_seed_same_pairs_and_scores(tmp_path, data, trained, tiny_conf):
    folder, _ = trained["center"]
    again = tmp_path / "again"
    gtrain.main(tiny_conf, data["scenes"], data["narrations"], again)
    for scene in data["scenes"]:
        assert (folder / "scenes" / scene / "pairs.json").read_text() == \
            (again / "scenes" / scene / "pairs.json").read_text()
    texts = [q[2] for q in data["queries"][:8]]
    scene = data["queries"][0][0]
    assert np.array_equal(gquery.load(folder).scores(scene, texts), gquery.load(again).scores(scene, texts))


def test_query_contract_and_errors(tmp_path, trained):
    folder, _ = trained["center"]
    grounder = gquery.load(folder)
    scene = grounder.scenes[0]
    [r] = grounder.query(scene, ["x " * 5000])
    assert r["scene"] == scene and len(r["point"]) == 3 and len(r["top"]) == 5
    assert r["top"][0]["center"] == r["point"] and r["score"] == r["top"][0]["score"]
    with pytest.raises(InputError, match="empty query"):
        grounder.query(scene, ["  "])
    with pytest.raises(InputError, match="no grounding model for scene 'nope'"):
        grounder.query("nope", ["remove the dipstick"])
    with pytest.raises(InputError, match="howto3d train"):
        gquery.load(tmp_path / "untrained")
    centers, scores, size = grounder.heatmap(scene, "remove the dipstick")
    assert centers.shape == (len(scores), 3) and abs(scores.sum() - 1) < 1e-6 and size.shape == (3,)
    gquery.write_heatmap_ply(tmp_path / "h.ply", centers, scores)
    import open3d as o3d

    cloud = o3d.io.read_point_cloud(str(tmp_path / "h.ply"))
    assert np.allclose(np.asarray(cloud.points), centers, atol=1e-5)
    queries = tmp_path / "q.txt"
    queries.write_text("remove the dipstick\n\nlift the filter out of the housing\n")
    assert gquery.read_queries(queries) == ["remove the dipstick", "lift the filter out of the housing"]


def test_plot_pck(tmp_path, data, trained):
    report = geval.evaluate(gquery.load(trained["center"][0]), data["queries"], data["gt_points"], data["chance"])
    geval.plot_pck(report, tmp_path / "pck.png")
    assert (tmp_path / "pck.png").stat().st_size > 10_000
    assert set(report["parts"]) == {q[1] for q in data["queries"]}


@pytest.mark.slow
def test_packaged_bert_grounds_heldout_instructions(tmp_path, data):
    """The default (packaged BERT, centre supervision): PCK@30cm ≥ 0.7 and ≥ 2× chance on reworded queries."""
    summary = gtrain.main(GroundingConfig(), data["scenes"], data["narrations"], tmp_path)
    grounder = gquery.load(tmp_path)
    report = geval.evaluate(grounder, data["queries"], data["gt_points"], data["chance"])
    print(f"packaged BERT: PCK@30cm {report['pck_at']} chance {report['chance_at']}, {summary['seconds']}")
    assert report["pck_at"] >= 0.7
    assert report["pck_at"] >= 2 * report["chance_at"]


def test_workspace_query_before_train_is_an_input_error(tmp_path):
    from howto3d import grounding_cmds
    from howto3d.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws")
    with pytest.raises(InputError, match="run `howto3d train` first"):
        grounding_cmds.query(ws, "civic", ["remove the dipstick"])
