"""Per-video reconstruction and cross-video alignment on real pycolmap runs over synthetic videos."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from howto3d import evaluation, recon_cmds, scenes
from howto3d.workspace import Workspace
from recon.io import read_json
from recon.scene import load_shared_scene

pytestmark = pytest.mark.slow


def test_every_video_registers_and_matches_ground_truth(pipeline_ws):
    ws, scene = pipeline_ws
    gt = evaluation.load_gt(ws.ground_truth_path(scene))
    extent = float(np.linalg.norm(np.ptp(np.array(list(gt["parts"].values())), axis=0)))
    for video in sorted(gt["videos"]):
        report = read_json(ws.sfm_dir(scene, video) / "report.json")
        assert report["registered"] >= 0.9 * report["frames_sampled"], video
        # each video on its own: centres within 1% of the scene's size after a Sim(3) fit, rotations < 1°
        alone = load_shared_scene(
            scene,
            {video: ws.sfm_dir(scene, video)},
            {video: ws.frames_dir(scene, video)},
            {video: evaluation.pycolmap.Sim3d()},
        )
        err = evaluation.camera_errors(alone, gt)[video]
        assert err["centre_max_m"] < 0.01 * extent, (video, err)
        assert err["rotation_max_deg"] < 1.0, (video, err)


def test_all_videos_share_one_frame_and_the_intruder_stays_out(pipeline_ws):
    ws, scene = pipeline_ws
    transforms = read_json(ws.align_dir(scene) / "transforms.json")
    assert sorted(transforms["shared_from_video"]) == [f"video_{i:02d}" for i in range(4)]
    assert "intruder" in transforms["unaligned"]
    graph = read_json(ws.align_dir(scene) / "graph.json")
    assert not any(e["accepted"] and "intruder" in (e["a"], e["b"]) for e in graph["edges"])
    shared = scenes.shared_scene(ws, scene)
    gt = evaluation.load_gt(ws.ground_truth_path(scene))
    for video, err in evaluation.camera_errors(shared, gt).items():
        # metres, after one Sim(3) fit of all cameras: every camera of every video within 2 cm, < 1°
        assert err["centre_max_m"] < 0.02 and err["rotation_max_deg"] < 1.0, (video, err)


def test_keypoint_transfer_pck(pipeline_ws):
    ws, scene = pipeline_ws
    shared = scenes.shared_scene(ws, scene)
    report = evaluation.eval_transfer(shared, evaluation.load_gt(ws.ground_truth_path(scene)), ws.align_dir(scene))
    assert report["keypoints"] >= 12
    assert report["pck_shared"]["5cm"] >= 0.9, report
    assert report["pck_graph"]["5cm"] >= 0.9, report


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "howto3d", *args], capture_output=True, text=True, timeout=300)


def test_cameras_and_transfer_follow_the_cli_contract(pipeline_ws, tmp_path):
    ws, scene = pipeline_ws
    out = _cli("cameras", str(ws.root), "--scene", scene, "--json")
    assert out.returncode == 0, out.stderr
    cams = json.loads(out.stdout)
    assert cams["scene"] == scene and len(cams["frames"]) >= 4 * 27
    f = cams["frames"][0]
    assert np.array(f["cam_from_world"]).shape == (3, 4) and np.array(f["K"]).shape == (3, 3)
    assert {"video", "time", "width", "height"} <= set(f)
    # click a landmark in two frames of video_00 (its true projection), transfer it to the others
    gt = evaluation.load_gt(ws.ground_truth_path(scene))
    shared = scenes.shared_scene(ws, scene)
    lm = gt["landmarks"][0]
    obs = evaluation.clicks(gt, "video_00", np.array(lm["position"]), shared.frames_of("video_00"))
    kp = tmp_path / "kp.json"
    kp.write_text(json.dumps({"keypoints": [{"name": lm["name"], "observations": obs}]}))
    out = _cli("transfer", str(ws.root), "--scene", scene, "--source", "video_00", "--keypoints", str(kp), "--json")
    assert out.returncode == 0, out.stderr
    (res,) = json.loads(out.stdout)["keypoints"]
    assert res["name"] == lm["name"] and len(res["point"]) == 3
    assert res["projections"] and {p["video"] for p in res["projections"]} <= {"video_01", "video_02", "video_03"}
    # each projection lands within a few pixels of the landmark's true projection in that frame
    world_from_shared = evaluation.fit_to_world(shared.frames, gt)
    assert np.linalg.norm(world_from_shared * np.array([res["point"]]) - lm["position"]) < 0.05
    for p in res["projections"][:20]:
        true = evaluation.clicks(
            gt,
            p["video"],
            np.array(lm["position"]),
            [f for f in shared.frames_of(p["video"]) if f.time == p["time"]] * 2,
        )
        if true:
            assert np.linalg.norm(np.array(p["xy"]) - true[0]["xy"]) < 12


def test_bad_videos_fail_alone_and_reruns_skip_finished_work(pipeline_ws, make_video, tmp_path):
    ws0, scene = pipeline_ws
    ws = Workspace(shutil.copytree(ws0.root, tmp_path / "ws"))  # video_03 is rebuilt: not in the shared fixture
    videos = ws.scene_dir(scene) / "videos"
    (videos / "empty.mp4").write_bytes(b"")
    (videos / "corrupt.mp4").write_bytes(os.urandom(4096))
    make_video(videos / "flat.mp4", n=40, flat=True)
    models = {
        v: (ws.sfm_dir(scene, v) / "model" / "images.bin").stat().st_mtime_ns
        for v in ("video_00", "video_01", "video_02", "video_03")
    }
    # simulate a run killed while reconstructing video_03: no model, no record, a leftover temp folder
    shutil.rmtree(ws.sfm_dir(scene, "video_03"))
    (ws.sfm_dir(scene, "video_03").parent / ".video_03.abc.tmp").mkdir()
    record = ws.record("reconstruct")
    record.drop(f"{scene}/video_03")
    summary = {r["key"].split("/")[1]: r for r in recon_cmds.reconstruct(Workspace.open(ws.root), scene, frames=30)}
    for bad in ("empty", "corrupt", "flat"):
        assert summary[bad]["status"] == "failed" and f"{bad}.mp4" in summary[bad]["error"], summary[bad]
    assert summary["video_03"]["status"] == "done" and not summary["video_03"].get("skipped")
    for v in ("video_00", "video_01", "video_02"):
        assert summary[v].get("skipped"), v
        assert (ws.sfm_dir(scene, v) / "model" / "images.bin").stat().st_mtime_ns == models[v]
    again = recon_cmds.reconstruct(Workspace.open(ws.root), scene, frames=30)
    assert all(r.get("skipped") for r in again)
