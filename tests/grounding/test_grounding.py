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
from grounding import index as gindex
from grounding import model_transformers as gmodel
from grounding import query as gquery
from grounding import train as gtrain
from grounding import voxels
from grounding.config import PACKAGED_ENCODER, GroundingConfig
from grounding.narration import Narration, read_narrations
from grounding.pairs import make_pairs, segments
from recon.io import InputError
from recon.scene import RegisteredFrame, SharedScene
from synth.queries import PARAPHRASE_QUERIES


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
    return {
        "scenes": scenes,
        "narrations": narrations,
        "gts": gts,
        "queries": geval.queries_for(filmed),
        "paraphrases": geval.queries_for(filmed, PARAPHRASE_QUERIES),
        "gt_points": {s: g["parts"] for s, g in gts.items()},
        "chance": {s: sc.points for s, sc in scenes.items()},
    }


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    """A random 2-layer BERT folder with the packaged BERT's (real) vocabulary."""
    folder = tmp_path_factory.mktemp("tiny_bert")
    tokenizer = AutoTokenizer.from_pretrained(gmodel.encoder_path(PACKAGED_ENCODER))
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
    )
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_conf(tiny_bert) -> GroundingConfig:
    """The tiny BERT fine-tuned end to end with a head (the classifier path; the index is built either way)."""
    return GroundingConfig(
        encoder=str(tiny_bert),
        freeze_embeddings=False,
        lr_encoder=1e-3,
        patience=8,
        method="ensemble",
        trainable_layers=-1,
    )


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
    lines = [
        Narration("ok", 0.0, 0.5),
        Narration("open the hood", 0.7, 2.0),
        Narration(" ".join(f"w{i}" for i in range(12)), 3.0, 15.0),
    ]
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
    model, tokenizer, _, index = gtrain.fit(replace(tiny_conf, epochs=2), spaces, pairs)
    gmodel.save(
        model, tokenizer, tmp_path, {"scenes": sorted(pairs), "num_voxels": [500, 500], "max_tokens": 64}, index
    )
    loaded, loaded_tok, _, loaded_index = gmodel.load(tmp_path)
    assert loaded_index.keys() == index.keys() and all(torch.equal(index[k], loaded_index[k]) for k in index)
    texts = ["remove the dipstick", "loosen the clamp on the negative battery cable"]
    with torch.inference_mode():
        a = model.logits(model.embed(**gmodel.tokenize(tokenizer, texts, 64)), 1)
        b = loaded.logits(loaded.embed(**gmodel.tokenize(loaded_tok, texts, 64)), 1)
    assert (a - b).abs().max() <= 1e-5  # the loaded model runs on the transformers-free inference encoder
    assert torch.equal(
        gmodel.tokenize(loaded_tok, texts, 64)["input_ids"], gmodel.tokenize(tokenizer, texts, 64)["input_ids"]
    )


def test_same_seed_same_pairs_and_scores(tmp_path, data, trained, tiny_conf):
    folder, _ = trained["center"]
    again = tmp_path / "again"
    gtrain.main(tiny_conf, data["scenes"], data["narrations"], again)
    for scene in data["scenes"]:
        assert (folder / "scenes" / scene / "pairs.json").read_text() == (
            again / "scenes" / scene / "pairs.json"
        ).read_text()
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
    assert r["peaks"][0]["center"] == r["point"] and isinstance(r["uncertain"], bool) and 0 < r["score"] <= 1
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
def test_packaged_bert_grounds_paraphrase_queries(tmp_path, data):
    """The default (packaged sentence encoder, index + head): questions and descriptions worded unlike any
    narration land on their part (bounds: PCK_BOUNDS, well above chance)."""
    summary = gtrain.main(GroundingConfig(), data["scenes"], data["narrations"], tmp_path)
    grounder = gquery.load(tmp_path)
    report = geval.evaluate(grounder, data["paraphrases"], data["gt_points"], data["chance"])
    print(
        f"packaged BERT: PCK@10cm {report['pck_fine']} PCK@30cm {report['pck_at']} chance {report['chance_at']}, "
        f"{summary['seconds']}"
    )
    assert report["pck_at"] >= PCK_BOUNDS["oracle_30"] and report["pck_fine"] >= PCK_BOUNDS["oracle_10"]
    assert report["pck_at"] >= 3 * report["chance_at"]
    held = geval.evaluate(grounder, data["queries"], data["gt_points"], data["chance"])
    assert held["pck_at"] >= 0.7 and held["pck_at"] >= 2 * held["chance_at"]


@pytest.mark.slow
def test_default_model_on_the_real_pipeline_beats_chance(trained_ws):
    """Real pycolmap geometry, the default model trained once by the session fixture: paraphrase PCK vs chance."""
    from howto3d import grounding_cmds

    ws, _, _ = trained_ws
    report = grounding_cmds.eval_grounding(ws, queries="paraphrase")
    print(f"pipeline world: PCK@10cm {report['pck_fine']} PCK@30cm {report['pck_at']} chance {report['chance_at']}")
    assert report["pck_at"] >= PCK_BOUNDS["pipeline_30"] and report["pck_at"] >= 2 * report["chance_at"]


# --- the line index, calibrated answers, paraphrase queries ---------------------------------------------------

PCK_BOUNDS = {"oracle_30": 0.72, "oracle_10": 0.5, "pipeline_30": 0.6}
"""Lower bounds for the slow tests, with margin below what the default measured (see the README table; this
test world: 0.745 at 30 cm with the pair-weight⁴ default, better on 6 pooled worlds but one draw lower here)."""


def test_index_returns_each_lines_own_voxel_for_its_own_text(trained):
    folder, _ = trained["center"]
    grounder = gquery.load(folder)
    grounder.k, grounder.prior_power = 1, 0.0
    for scene in grounder.scenes:
        pairs = json.loads((folder / "scenes" / scene / "pairs.json").read_text())
        texts = [p["text"] for p in pairs]
        unique = [i for i, t in enumerate(texts) if texts.count(t) == 1]
        assert len(unique) >= 20
        probs = grounder.scores(scene, [texts[i] for i in unique], method="index")
        own = grounder.index[scene].targets[unique]
        assert np.array_equal(probs.argmax(1), own.argmax(1))
        space = grounder.spaces[scene]
        near = np.linalg.norm(space.centers[probs.argmax(1)] - [pairs[i]["point"] for i in unique], axis=1)
        assert np.median(near) <= 2 * np.linalg.norm(space.size)


def test_answers_list_the_lines_that_voted_with_video_and_time(trained, data):
    """Asked with a narration line's own words, the answer shows that line first (its video, time and text, the
    largest share, similarity 1), pointing at the answer; every listed line is a real line of the scene."""
    folder, _ = trained["center"]
    grounder = gquery.load(folder)
    scene = grounder.scenes[0]
    pairs = json.loads((folder / "scenes" / scene / "pairs.json").read_text())
    texts = [p["text"] for p in pairs]
    unique = [i for i, t in enumerate(texts) if texts.count(t) == 1][:10]
    lines = {(n.text, n.start) for video in data["narrations"][scene].values() for n in video}
    for i, result in zip(unique, grounder.query(scene, [texts[i] for i in unique]), strict=True):
        first = result["evidence"][0]
        assert (first["video"], first["start"], first["end"], first["text"]) == (
            pairs[i]["video"],
            pairs[i]["start"],
            pairs[i]["end"],
            pairs[i]["text"],
        )
        assert first["similarity"] > 0.99 and first["share"] == max(e["share"] for e in result["evidence"])
        assert 0 <= first["supports"] <= 1
        assert len(result["evidence"]) == min(grounder.k, gquery.EVIDENCE)
        assert all(
            any(e["text"].startswith(t) or t.startswith(e["text"]) for t, _ in lines) for e in result["evidence"]
        )


def test_top_moment_shows_the_part_while_the_camera_dwells_on_it(data):
    """For every filmed part (its true 3D position, with the lines that name it as the voters a query would bring),
    the best clip is a stretch of a video that dwells on that part (ground truth), and the marked pixel is where
    the part projects in that frame. Without voters, the best clip still shows the part near the image centre."""
    from grounding.moments import moments

    inside, total = 0, 0
    for name, scene in data["scenes"].items():
        gt = data["gts"][name]
        for part, X in gt["parts"].items():
            dwelt = {
                v: [(d["start"], d["end"]) for d in g["dwells"] if d["part"] == part] for v, g in gt["videos"].items()
            }
            if not any(dwelt.values()):
                continue
            voters = [
                {"video": v, "start": n["start"], "end": n["end"], "similarity": 1.0}
                for v, g in gt["videos"].items()
                for n in g["narrations"]
                if n.get("part") == part
            ]
            plain = moments(scene, np.asarray(X), data["narrations"][name])[0]
            frame = next(f for f in scene.frames_of(plain["video"]) if abs(f.time - plain["time"]) < 1e-6)
            w, h = frame.camera.width, frame.camera.height
            assert np.linalg.norm(np.array(plain["xy"]) - [w / 2, h / 2]) < 0.3 * np.hypot(w, h)
            found = moments(scene, np.asarray(X), data["narrations"][name], voters)
            assert 1 <= len(found) <= 5 and all(m["start"] <= m["time"] <= m["end"] for m in found)
            assert found == sorted(found, key=lambda m: -m["score"])
            best = found[0]
            frame = next(f for f in scene.frames_of(best["video"]) if abs(f.time - best["time"]) < 1e-6)
            xy, _ = frame.project(np.asarray(X, float)[None])
            assert np.linalg.norm(xy[0] - best["xy"]) < 0.01  # rounded to 0.01 px
            total += 1
            inside += any(a - 1.0 <= best["time"] <= b + 1.0 for a, b in dwelt[best["video"]])
    assert total >= 10
    assert inside / total >= 0.8, (inside, total)  # 17 of 18 seen


def test_paraphrase_queries_never_repeat_narration_phrasing():
    from synth.queries import PARAPHRASE_QUERIES, narration_lines, narration_overlap
    from synth.world import PARTS

    assert set(PARAPHRASE_QUERIES) == set(PARTS)
    assert all(len(set(q)) >= 10 for q in PARAPHRASE_QUERIES.values())
    assert len(narration_lines()) > 1000
    assert narration_overlap() == []
    # The check itself bites: a narration line, and a query sharing one 4-word phrase with the narration.
    assert narration_overlap(
        {"dipstick": ("Now pull out the dipstick!", "so where can I grab the dipstick and go")}
    ) == ["Now pull out the dipstick!", "so where can I grab the dipstick and go"]


def _grid_space(n: int = 10) -> voxels.VoxelSpace:
    return voxels.VoxelSpace(np.zeros(3), np.full(3, 0.1), n, np.arange(n**3))


def test_score_is_the_mass_near_the_answer_and_far_peaks_are_uncertain():
    space = _grid_space()
    centers = space.centers
    near = gquery.neighbourhood(space, 1.5)
    a, b = space.assign([[0.15, 0.15, 0.15]])[0], space.assign([[0.85, 0.85, 0.85]])[0]
    around_a = np.linalg.norm(centers - centers[a], axis=1) <= 0.1 + 1e-9  # a and its 6 face neighbours
    one = np.full(len(centers), 0.2 / (len(centers) - around_a.sum()))
    one[around_a] = 0.8 / around_a.sum()
    r = gquery.answer("s", "t", one, space, near, peak_separation=4.0, uncertain_ratio=0.5)
    assert np.allclose(r["point"], centers[a]) and not r["uncertain"]
    assert r["score"] == pytest.approx(one[near[a] > 0].sum(), abs=1e-6) and 0.8 < r["score"] < 0.85
    two = np.full(len(centers), 1e-4)
    two[a], two[b] = 0.5, 0.45
    two /= two.sum()
    r = gquery.answer("s", "t", two, space, near, peak_separation=4.0, uncertain_ratio=0.5)
    assert r["uncertain"] and np.allclose(r["point"], centers[a])
    assert np.allclose(r["peaks"][1]["center"], centers[b]) and r["peaks"][1]["score"] < r["score"]
    # The same two peaks side by side are one place: not uncertain, and the score holds both.
    c = space.assign([[0.25, 0.15, 0.15]])[0]
    close = np.full(len(centers), 1e-4)
    close[a], close[c] = 0.5, 0.45
    close /= close.sum()
    r = gquery.answer("s", "t", close, space, near, peak_separation=4.0, uncertain_ratio=0.5)
    assert not r["uncertain"] and r["score"] > 0.9


def test_untrained_or_worse_model_never_replaces_the_trained_one(tmp_path, data, trained, tiny_conf):
    import shutil

    folder = tmp_path / "grounding"
    shutil.copytree(trained["center"][0], folder)
    before = (folder / "model" / gmodel.WEIGHTS).read_bytes()
    with pytest.raises(InputError, match="epochs = 0 would save an untrained model.*previous model is kept"):
        gtrain.main(replace(tiny_conf, epochs=0), data["scenes"], data["narrations"], folder)
    with pytest.raises(InputError, match="did not improve on the untrained model"):
        gtrain.main(
            replace(tiny_conf, epochs=1, lr_head=0.0, lr_encoder=0.0), data["scenes"], data["narrations"], folder
        )
    assert (folder / "model" / gmodel.WEIGHTS).read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left behind


@pytest.mark.parametrize("damage", ["truncate_weights", "truncate_meta", "truncate_index"])
def test_damaged_model_is_one_clear_line(tmp_path, trained, damage):
    import shutil

    folder = tmp_path / "grounding"
    shutil.copytree(trained["center"][0], folder)
    name = {"truncate_weights": gmodel.WEIGHTS, "truncate_meta": gmodel.META, "truncate_index": gmodel.INDEX}[damage]
    path = folder / "model" / name
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 3])
    with pytest.raises(InputError, match=f"{name}: damaged or incomplete grounding model.*run `howto3d train` again"):
        gquery.load(folder)


def test_a_model_without_a_line_index_is_refused_and_retrained(tmp_path, trained):
    """An earlier release saved no line index: a query says to train again, and `train` then does (its step's
    output no longer loads), instead of answering with the classifier alone."""
    import shutil

    folder = tmp_path / "grounding"
    shutil.copytree(trained["center"][0], folder)
    (folder / "model" / gmodel.INDEX).unlink()
    with pytest.raises(InputError, match="no line index .*; run `howto3d train` again"):
        gquery.load(folder)
    with pytest.raises(InputError, match="no trained grounding model there"):
        gtrain.load_summary(folder)


def test_binary_batch_file_is_one_clear_line(tmp_path):
    for name, raw in {"bin.txt": bytes(range(256)), "nul.txt": b"where is\x00 the dipstick\n"}.items():
        (tmp_path / name).write_bytes(raw)
        with pytest.raises(InputError, match=f"{name}: not a UTF-8 text file"):
            gquery.read_queries(tmp_path / name)


def test_workspace_query_before_train_is_an_input_error(tmp_path):
    from howto3d import grounding_cmds
    from howto3d.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws")
    with pytest.raises(InputError, match="run `howto3d train` first"):
        grounding_cmds.query(ws, "civic", ["remove the dipstick"])


def test_weight_power_lets_a_close_up_line_outvote_an_overview_line():
    """The query's words match an overview line best (weight 0.3, pointing at voxel 0) and a close-up line a little
    less (weight 1, voxel 1): the plain weight keeps the overview's answer, a power of 4 the close-up's."""
    q = torch.nn.functional.normalize(torch.tensor([[1.0, 0.0, 0.0]]), dim=1)
    lines = torch.nn.functional.normalize(torch.tensor([[0.9, 0.436, 0.0], [0.8, 0.0, 0.6]]), dim=1)
    index = gindex.LineIndex(lines, torch.eye(2), torch.tensor([0.3, 1.0]))
    assert index.votes(q, k=2, temperature=0.05, weight_power=1.0).argmax(1).item() == 0
    assert index.votes(q, k=2, temperature=0.05, weight_power=4.0).argmax(1).item() == 1
    # Weights of 0 everywhere still give a distribution (the similarity alone decides).
    flat = gindex.LineIndex(lines, torch.eye(2), torch.zeros(2)).votes(q, 2, 0.05, 4.0)
    assert np.isfinite(flat).all() and flat.argmax(1).item() == 0


def test_window_shift_takes_the_frames_before_a_late_line(data):
    """Lines still spoken after the camera has left their part (ground truth: the line ends > 1 s after the part's
    dwell) point closer to the part when the window is moved earlier; every pair uses exactly the frames of its
    shifted window."""
    closer, total = 0, 0
    for name, scene in data["scenes"].items():
        conf0 = GroundingConfig(window_shift_seconds=0.0, window_pad_seconds=0.0, seen_weighting=False)
        by_shift = {
            s: make_pairs(replace(conf0, window_shift_seconds=s), scene, data["narrations"][name], "center")[0]
            for s in (0.0, 1.5)
        }
        for shift, pairs in by_shift.items():
            for p in pairs[:10]:
                times = [f.time for f in scene.frames_of(p.video)]
                assert p.frames == sum(p.start - shift <= t <= p.end - shift for t in times)
        for p0 in by_shift[0.0]:
            video = data["gts"][name]["videos"][p0.video]
            line = [n for n in video["narrations"] if n["kind"] == "step" and abs(n["start"] - p0.start) < 1e-3]
            dwell = [d for d in video["dwells"] if line and d["part"] == line[0]["part"]]
            p1 = [p for p in by_shift[1.5] if p.video == p0.video and p.start == p0.start]
            if not dwell or not p1 or line[0]["end"] < dwell[0]["end"] + 1.0:
                continue
            part = np.array(video["parts"][line[0]["part"]])
            total += 1
            closer += np.linalg.norm(np.array(p1[0].point) - part) < np.linalg.norm(np.array(p0.point) - part)
    assert total >= 8
    assert closer / total >= 0.7
