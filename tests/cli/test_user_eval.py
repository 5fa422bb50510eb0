"""Measuring on your own videos: the synthetic world's landmarks and parts, written as a user would give them
(clicked keypoints per video, part positions, queries), score as the ground-truth evaluation does."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pycolmap
import pytest

from howto3d import evaluation, grounding_cmds, scenes
from howto3d.workspace import Workspace
from recon.align import Alignment
from recon.io import InputError
from synth.queries import PARAPHRASE_QUERIES


def _clicked(shared, gt: dict) -> dict[str, dict]:
    """Every landmark "clicked" in every video that sees it, the way the ground-truth path clicks them."""
    out = {}
    for v in shared.videos:
        kps = [
            {"name": lm["name"], "observations": obs}
            for lm in gt["landmarks"]
            if (obs := evaluation.clicks(gt, v, np.array(lm["position"]), shared.frames_of(v)))
        ]
        out[v] = {"keypoints": kps}
    return out


def _same_pck(user: dict, truth: dict) -> None:
    """The truth compares each transferred triangulation with the true point; the user's protocol compares two
    triangulations of the same point (both videos' click noise, ~2 mm here), so they agree within a few pairs."""
    for t in evaluation.THRESHOLDS_CM:
        assert abs(user["pck"][f"{t}"] - truth["pck_graph"][f"{t}cm"]) <= 0.1, (t, user["pck"], truth["pck_graph"])


@pytest.fixture(scope="module")
def scene_gt(pipeline_ws):
    ws, scene = pipeline_ws
    shared = scenes.shared_scene(ws, scene)
    return ws, scene, shared, evaluation.load_gt(ws.ground_truth_path(scene))


def test_user_clicks_give_the_ground_truth_transfer_pck(scene_gt, tmp_path, cli):
    ws, scene, shared, gt = scene_gt
    clicked = _clicked(shared, gt)
    metres = evaluation.fit_to_world(shared.frames, gt).scale  # as if the user had run `howto3d scale`
    user = evaluation.eval_user_transfer(shared, clicked, metres_per_unit=metres)
    truth = evaluation.eval_transfer(shared, gt, ws.align_dir(scene))
    print(
        f"user PCK {user['pck']} ({user['pairs']} pairs), ground truth graph PCK {truth['pck_graph']}, "
        f"reprojection {user['pixels']}"
    )
    assert user["units"] == "metres" and user["pairs"] >= 30
    assert not [s for s in user["skipped"] if "video" in s]  # every click has a registered camera
    _same_pck(user, truth)
    assert user["pixels"]["pck"]["10"] > 0.9

    # A 4-cm error in one video's alignment: both protocols see it in the pairs with that video.
    bad = Workspace(shutil.copytree(ws.root, tmp_path / "bad"))
    alignment = Alignment.load(bad.align_dir(scene))
    shift = pycolmap.Sim3d(1.0, pycolmap.Rotation3d(), np.array([0.04 / metres, 0, 0]))
    alignment.shared_from_segment[shared.videos[0]] = {
        k: shift * s for k, s in alignment.shared_from_segment[shared.videos[0]].items()
    }
    alignment.save(bad.align_dir(scene))
    moved = scenes.shared_scene(bad, scene)
    user_bad = evaluation.eval_user_transfer(moved, clicked, metres_per_unit=metres)
    truth_bad = evaluation.eval_transfer(moved, gt, bad.align_dir(scene))
    print(f"one video 4 cm off: user PCK {user_bad['pck']}, ground truth graph PCK {truth_bad['pck_graph']}")
    assert user_bad["pck"]["2"] < 0.8 and user_bad["pck"]["8"] > 0.9
    _same_pck(user_bad, truth_bad)

    folder = tmp_path / "clicks"
    folder.mkdir()
    for v, data in clicked.items():
        (folder / f"{v}.json").write_text(json.dumps(data))
    r = cli("eval-transfer", str(ws.root), "--scene", scene, "--annotations", str(folder), "--json")
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["units"] == scenes.frame_state(ws, scene)["units"] == "model"  # unscaled: said so
    assert report["pairs"] == user["pairs"] and report["keypoints"].keys() == user["keypoints"].keys()

    (folder / "not_a_video.json").write_text(json.dumps({"keypoints": []}))
    r = cli("eval-transfer", str(ws.root), "--scene", scene, "--annotations", str(folder))
    assert r.returncode == 2 and "not_a_video.json" in r.stderr and "<video>.json" in r.stderr


def test_user_parts_and_queries_give_the_ground_truth_grounding_pck(trained_ws, tmp_path):
    ws, scene, _ = trained_ws
    truth = grounding_cmds.eval_grounding(ws)
    shared = scenes.shared_scene(ws, scene)
    world_from_shared = evaluation.world_from_shared(ws, scene, shared)
    gt = evaluation.load_gt(ws.ground_truth_path(scene))
    filmed = sorted({row["part"] for row in truth["queries"]})
    # Part positions as a user would give them: points in the shared frame (here: the truth mapped into it).
    parts = {p: (world_from_shared.inverse() * np.array(gt["parts"][p], float)[None])[0].tolist() for p in filmed}
    (tmp_path / "parts.json").write_text(json.dumps({"parts": parts}))
    (tmp_path / "queries.json").write_text(json.dumps({p: list(PARAPHRASE_QUERIES[p]) for p in filmed}))
    user = grounding_cmds.eval_user_grounding(
        ws, scene, tmp_path / "parts.json", tmp_path / "queries.json", metres_per_unit=world_from_shared.scale
    )
    assert user["units"] == "metres"
    for key in ("pck_at", "pck_fine", "chance_at", "chance_fine", "median_error_m"):
        assert user[key] == pytest.approx(truth[key], abs=2e-3), key

    unscaled = grounding_cmds.eval_user_grounding(ws, scene, tmp_path / "parts.json", tmp_path / "queries.json")
    assert unscaled["units"] == "model" and unscaled["distance_unit"] == "scene_size"

    (tmp_path / "bad.json").write_text(json.dumps({"parts": {"dipstick": [1, 2]}}))
    with pytest.raises(InputError, match="bad.json: part 'dipstick'"):
        grounding_cmds.eval_user_grounding(ws, scene, tmp_path / "bad.json", tmp_path / "queries.json")


def test_annotations_must_name_an_aligned_video(tmp_path):
    (tmp_path / "video_09.json").write_text(json.dumps({"keypoints": []}))
    with pytest.raises(InputError, match="video_09.json: video 'video_09' is not aligned"):
        evaluation.read_annotations([tmp_path], ["video_00"])
    (tmp_path / "video_09.json").write_text(json.dumps({"video": "video_00", "keypoints": []}))
    assert evaluation.read_annotations([tmp_path], ["video_00"]) == {"video_00": {"video": "video_00", "keypoints": []}}
    with pytest.raises(InputError, match="no such annotation file"):
        evaluation.read_annotations([tmp_path / "missing"], ["video_00"])
