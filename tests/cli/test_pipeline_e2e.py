"""The whole pipeline on real reconstructions: train → query → eval → demo pictures."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from howto3d import evaluation, grounding_cmds, scenes, viewer_cmds

pytestmark = pytest.mark.slow


def test_train_query_and_pictures_on_the_real_pipeline(trained_ws, tmp_path):
    ws, scene, summary = trained_ws
    assert summary["scenes"][scene]["pairs"] >= 10
    gt = evaluation.load_gt(ws.ground_truth_path(scene))
    filmed = sorted({s["part"] for v in gt["videos"].values() for s in v["steps"]})
    (result,) = grounding_cmds.query(ws, scene, [f"where is the {filmed[0].replace('_', ' ')}"], tmp_path / "h.ply")
    assert len(result["point"]) == 3 and result["top"] and (tmp_path / "h.ply").is_file()
    report = grounding_cmds.eval_grounding(ws, tmp_path / "pck.png")
    assert report["pck_at"] > report["chance_at"], report  # trained on ~20 narrations per video, still above chance
    shared = scenes.shared_scene(ws, scene)
    pictures = viewer_cmds.demo_outputs(
        ws, scene, f"where is the {filmed[0].replace('_', ' ')}", tmp_path, gt_part=filmed[0], video=shared.videos[0]
    )
    img = np.asarray(Image.open(pictures["screenshot"]).convert("RGB"))
    assert img.std() > 10 and len(np.unique(img.reshape(-1, 3), axis=0)) > 50
    assert pictures["overlay"].stat().st_size > 10_000 and pictures["timeline"].is_file()
