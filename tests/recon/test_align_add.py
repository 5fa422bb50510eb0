"""A shared frame that stays put: adding or removing videos moves nothing already aligned, only the new video's
pairs are matched, the frame is upright, and it is re-anchored only when its reference goes or the user asks.

Uses the session's ``pipeline_ws`` (4 videos + an intruder, reconstructed and aligned), copied: no new SfM.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pycolmap
import pytest

from howto3d import grounding_cmds, recon_cmds, scenes
from howto3d.evaluation import camera_errors, fit_to_world
from howto3d.workspace import Workspace
from recon.align import Alignment
from recon.io import read_json
from recon.sim3 import sim3_to_json


def _copy(pipeline_ws: tuple[Workspace, str], tmp_path: Path) -> tuple[Workspace, str]:
    ws, scene = pipeline_ws
    shutil.copytree(ws.root, tmp_path / "ws", ignore=shutil.ignore_patterns("lock"))
    return Workspace.open(tmp_path / "ws"), scene


def _hide(ws: Workspace, scene: str, videos: list[str], where: Path) -> None:
    """Take videos out of the scene (their SfM stays: putting a file back re-adds it without new SfM)."""
    where.mkdir(exist_ok=True)
    for v in videos:
        (ws.root / "scenes" / scene / "videos" / f"{v}.mp4").rename(where / f"{v}.mp4")


def _cameras(ws: Workspace, scene: str) -> dict[tuple[str, str], np.ndarray]:
    return {(f.video, f.name): f.cam_from_world for f in scenes.shared_scene(ws, scene).frames}


def _size(cams: dict) -> float:
    centres = np.array([-P[:, :3].T @ P[:, 3] for P in cams.values()])
    return float(np.median(np.linalg.norm(centres - np.median(centres, axis=0), axis=1)))


def _world_from_shared(ws: Workspace, scene: str) -> pycolmap.Sim3d:
    return fit_to_world(scenes.shared_scene(ws, scene).frames, read_json(ws.ground_truth_path(scene)))


def _tilt_deg(ws: Workspace, scene: str) -> float:
    """Angle between the shared frame's z and the synthetic world's up (z)."""
    z = _world_from_shared(ws, scene).rotation.matrix() @ [0, 0, 1.0]
    return float(np.degrees(np.arccos(np.clip(z[2], -1, 1))))


def test_the_shared_frame_is_upright_and_recorded(pipeline_ws):
    ws, scene = pipeline_ws
    alignment = Alignment.load(ws.align_dir(scene))
    frame = alignment.frame
    assert frame["reference"] == alignment.reference and frame["units"] == "model" and frame["metric_scale"] is None
    assert frame["up"]["method"] in ("cameras", "plane") and "created" not in frame  # no clock: same run, same file
    assert alignment.graph["frame"]["status"] == "created"
    assert _tilt_deg(ws, scene) < 3.0


def test_rescaled_scales_about_the_origin_and_accumulates():
    s = pycolmap.Sim3d(
        0.7,
        pycolmap.Rotation3d(np.array([0.1, 0.2, 0.3, 0.9]) / np.linalg.norm([0.1, 0.2, 0.3, 0.9])),
        np.array([1.0, -2.0, 0.5]),
    )
    frame = {"reference": "v0", "frame_from_reference": sim3_to_json(s), "metric_scale": None, "units": "model"}
    a = Alignment(
        reference="v0",
        shared_from_segment={"v0": {0: s}, "v1": {0: s * s, 2: s.inverse()}},
        unaligned={},
        unaligned_segments={},
        frame=frame,
    )
    x = np.random.default_rng(0).normal(size=(5, 3))
    b = a.rescaled(2.0, "metres")
    for v, segs in a.shared_from_segment.items():
        for k, t in segs.items():
            assert np.allclose(b.shared_from_segment[v][k] * x, 2.0 * (t * x))  # same origin and axes, twice as big
    assert b.frame["units"] == "metres" and b.frame["metric_scale"] == 2.0 and b.frame["reference"] == "v0"
    c = b.rescaled(1.5, "metres")
    assert c.frame["metric_scale"] == pytest.approx(3.0)
    assert c.frame["frame_from_reference"]["scale"] == pytest.approx(0.7 * 3.0)
    assert a.frame["units"] == "model"  # the original is untouched


@pytest.mark.slow
def test_adding_a_video_moves_nothing_and_matches_only_its_pairs(pipeline_ws, tmp_path):
    ws, scene = _copy(pipeline_ws, tmp_path)
    before = Alignment.load(ws.align_dir(scene))
    added = sorted(set(before.shared_from_video) - {before.reference})[-1]
    gt = read_json(ws.ground_truth_path(scene))
    scratch_error = camera_errors(scenes.shared_scene(ws, scene), gt)[added]["centre_mean_m"]
    gt_size = _size(
        {
            k: np.array(f["cam_from_world"])
            for v in gt["videos"].values()
            for k, f in enumerate(v["frames"])
            if f["cam_from_world"] is not None
        }
    )
    _hide(ws, scene, [added], tmp_path / "out")

    # "three videos" (plus the intruder): dropping one matches nothing and moves nothing
    three = recon_cmds.align(ws, scene)[scene]
    assert three["anchoring"]["status"] == "kept" and three["pairs"]["matched"] == 0
    assert all(e["reused"] for e in three["edges"]) and added not in three["aligned"]
    old = _cameras(ws, scene)
    size = _size(old)
    grounding_cmds.train(ws, epochs=1)
    record = read_json(ws.root / "state" / "train.json")["items"]["grounding"]

    # add the 4th back (its reconstruction is reused: same file), align: only its pairs are matched
    (tmp_path / "out" / f"{added}.mp4").rename(ws.root / "scenes" / scene / "videos" / f"{added}.mp4")
    four = recon_cmds.align(ws, scene)[scene]
    assert four["reference"] == before.reference and four["frame"] == before.frame
    assert four["anchoring"]["status"] == "kept" and added in four["aligned"]
    graph = read_json(ws.align_dir(scene) / "graph.json")
    matched = [e for e in graph["edges"] if not e["reused"]]
    assert matched and all(added in (e["a"], e["b"]) for e in matched)
    assert all(added not in (e["a"], e["b"]) for e in graph["edges"] if e["reused"])
    assert graph["pairs"]["matched"] == len(matched) == len(four["aligned"]) + len(four["unaligned"]) - 1
    new = _cameras(ws, scene)
    moved = max(np.abs(new[k] - P).max() for k, P in old.items())
    assert moved < 1e-6 * size
    # the added video is as accurate as in a from-scratch alignment of all of them (the fixture's)
    error = camera_errors(scenes.shared_scene(ws, scene), gt)[added]["centre_mean_m"]
    assert error < max(1.5 * scratch_error, 0.002 * gt_size), (error, scratch_error)

    # the grounding model is retrained for the new video, and only then
    grounding_cmds.train(ws, epochs=1)
    assert read_json(ws.root / "state" / "train.json")["items"]["grounding"]["fingerprint"] != record["fingerprint"]
    again = recon_cmds.align(ws, scene, force=True)[scene]  # nothing changed: nothing matched, nothing moves
    assert again["pairs"]["matched"] == 0 and again["frame"] == before.frame
    after = _cameras(ws, scene)
    assert after.keys() == new.keys()
    assert all(np.array_equal(after[k], P) for k, P in new.items())
    unchanged = json.dumps(read_json(ws.root / "state" / "train.json")["items"]["grounding"]["fingerprint"])
    grounding_cmds.train(ws, epochs=1)
    assert json.dumps(read_json(ws.root / "state" / "train.json")["items"]["grounding"]["fingerprint"]) == unchanged


@pytest.mark.slow
def test_removing_the_reference_reanchors_with_a_warning_and_reanchor_only_when_asked(pipeline_ws, tmp_path, caplog):
    ws, scene = _copy(pipeline_ws, tmp_path)
    before = Alignment.load(ws.align_dir(scene))
    metric = _world_from_shared(ws, scene).scale  # as `howto3d scale` would measure it
    before.rescaled(metric, "metres").save(ws.align_dir(scene))
    assert _world_from_shared(ws, scene).scale == pytest.approx(1.0, rel=1e-6)
    others = sorted(set(before.shared_from_video) - {before.reference})
    _hide(ws, scene, [before.reference, "intruder", *others[2:]], tmp_path / "out")  # two videos left: one pair

    with caplog.at_level(logging.WARNING):
        r = recon_cmds.align(ws, scene)[scene]
    assert r["anchoring"]["status"] == "reanchored" and before.reference in r["anchoring"]["why"]
    assert any("re-anchoring" in m and before.reference in m for m in caplog.messages)
    assert r["reference"] in others[:2] and r["pairs"] == {"matched": 1, "reused": 0, "all": 1}
    assert r["frame"]["units"] == "metres"  # carried over through the two videos aligned in both frames
    assert _world_from_shared(ws, scene).scale == pytest.approx(1.0, rel=0.02)
    assert _tilt_deg(ws, scene) < 5.0
    cams = _cameras(ws, scene)

    kept = recon_cmds.align(ws, scene, force=True)[scene]  # asked to realign, not to re-anchor: nothing moves
    assert kept["anchoring"]["status"] == "kept" and kept["frame"] == r["frame"] and kept["pairs"]["matched"] == 0
    after = _cameras(ws, scene)
    assert all(np.array_equal(after[k], P) for k, P in cams.items())

    again = recon_cmds.align(ws, scene, reanchor=True)[scene]
    assert again["anchoring"] == {"status": "reanchored", "why": "asked for (--reanchor)"}
    assert again["pairs"]["matched"] == 1 and again["frame"]["units"] == "metres"
    assert _world_from_shared(ws, scene).scale == pytest.approx(1.0, rel=0.02)
