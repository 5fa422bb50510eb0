"""Never silently stale: every answer comes from a model made in the scene's current shared frame.

The frame fingerprint changes when the frame moves and only then; a grounding model trained before a move is
refused with one line (exit 1) by every command that answers in 3D, and `run` makes it current again.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pycolmap
import pytest

from howto3d import scenes
from howto3d.workspace import Workspace
from recon.align import Alignment
from recon.io import InputError

REFUSAL = "changed since `train`; run `howto3d train` (or `howto3d run`)"


def _moved(alignment: Alignment, move: pycolmap.Sim3d) -> Alignment:
    """The same alignment in a frame moved by ``move`` (as a re-alignment or re-anchoring would)."""
    alignment.shared_from_segment = {
        v: {k: move * s for k, s in segs.items()} for v, segs in alignment.shared_from_segment.items()
    }
    return alignment


def _aligned(segs: dict[str, dict[int, pycolmap.Sim3d]]) -> Alignment:
    """An alignment onto reference ``a`` of the given segments, nothing left unaligned."""
    return Alignment(reference="a", shared_from_segment=segs, unaligned={}, unaligned_segments={})


def _save(ws: Workspace, scene: str, alignment: Alignment, units: str | None = None) -> None:
    alignment.save(ws.align_dir(scene))
    if units is not None:  # the frame record `scale` writes (only its units matter here)
        path = ws.align_dir(scene) / "transforms.json"
        data = json.loads(path.read_text())
        data["frame"] = {**data.get("frame", {}), "units": units}
        path.write_text(json.dumps(data))


def test_frame_fingerprint_changes_when_the_frame_moves_and_only_then(tmp_path):
    ws = Workspace.init(tmp_path / "ws")
    rot = pycolmap.Rotation3d(np.array([0.1, 0.2, 0.3, 0.9]) / np.linalg.norm([0.1, 0.2, 0.3, 0.9]))
    segs = {
        "a": {0: pycolmap.Sim3d()},
        "b": {
            0: pycolmap.Sim3d(1.7, rot, np.array([0.3, -2.0, 5.0])),
            1: pycolmap.Sim3d(0.4, rot.inverse(), np.zeros(3)),
        },
    }
    _save(ws, "s", _aligned(segs))
    first = scenes.frame_state(ws, "s")
    assert set(first["segments"]) == {"a#0", "b#0", "b#1"}

    _save(ws, "s", Alignment.load(ws.align_dir("s")))  # read and written again: the same frame
    assert scenes.frame_state(ws, "s") == first
    assert scenes.frame_moved(first, first) is None

    segs["c"] = {0: pycolmap.Sim3d(2.0, rot, np.ones(3))}  # a video added: the others stay where they were
    _save(ws, "s", _aligned(segs))
    added = scenes.frame_state(ws, "s")
    assert added["fingerprint"] != first["fingerprint"] and scenes.frame_moved(first, added) is None

    _save(ws, "s", _moved(_aligned(segs), pycolmap.Sim3d(1.0, pycolmap.Rotation3d(), [0, 0, 1e-3])))
    moved = scenes.frame_state(ws, "s")
    assert moved["fingerprint"] != added["fingerprint"]
    assert "3 of 3 aligned segments moved" in scenes.frame_moved(first, moved)

    _save(ws, "s", _aligned(segs), units="metres")  # `scale` with factor 1 still changes the units
    assert "units" in scenes.frame_moved(added, scenes.frame_state(ws, "s"))
    with pytest.raises(scenes.StaleFrameError, match="the shared frame of scene s changed since `steps`"):
        scenes.check_frame(ws, "s", added, made_by="steps")


@pytest.fixture
def stale_ws(trained_ws, tmp_path) -> tuple[Workspace, str]:
    """A copy of the trained workspace whose shared frame then moved (a new alignment, the model not retrained)."""
    ws0, scene, _ = trained_ws
    ws = Workspace(shutil.copytree(ws0.root, tmp_path / "ws"))
    move = pycolmap.Sim3d(1.3, pycolmap.Rotation3d(np.array([0.0, 0.0, np.sin(0.2), np.cos(0.2)])), [0.5, 0, 0])
    _save(ws, scene, _moved(Alignment.load(ws.align_dir(scene)), move))
    return ws, scene


def test_a_model_from_the_old_frame_is_refused_in_one_line(stale_ws, cli, tmp_path):
    ws, scene = stale_ws
    for args in (
        ("query", str(ws.root), "--scene", scene, "where is the dipstick"),
        ("export", str(ws.root), "--scene", scene, "--query", "dipstick", "--out", str(tmp_path / "a.glb")),
    ):
        r = cli(*args)
        assert r.returncode == 1, (args, r.stderr)
        assert f"the shared frame of scene {scene} {REFUSAL}" in r.stderr
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert not (tmp_path / "a.glb").exists()
    r = cli("export", str(ws.root), "--scene", scene, "--out", str(tmp_path / "b.glb"))  # geometry only: current
    assert r.returncode == 0, r.stderr


def test_a_model_without_a_recorded_frame_is_refused_with_the_command_to_rerun(trained_ws, tmp_path, cli):
    ws0, scene, _ = trained_ws
    ws = Workspace(shutil.copytree(ws0.root, tmp_path / "ws"))
    meta_path = ws.grounding_dir / "model" / "grounding.json"
    meta = json.loads(meta_path.read_text())
    assert meta["frames"][scene] == scenes.frame_state(ws, scene)
    del meta["frames"]  # as an earlier release wrote it
    meta_path.write_text(json.dumps(meta))
    r = cli("query", str(ws.root), "--scene", scene, "where is the dipstick", "--json")
    assert r.returncode == 1, r.stderr
    assert (
        f"scene {scene}: the output of `howto3d train` does not record its shared frame (made by an earlier "
        f"release); run `howto3d train {ws.root} --force`" in " ".join(r.stderr.split())
    )
    assert len(r.stderr.strip().splitlines()) <= 2 and "Traceback" not in r.stderr  # one line (rich may wrap it)


def test_an_alignment_without_segments_is_refused_with_the_command_to_rerun(tmp_path):
    ws = Workspace.init(tmp_path / "ws")
    path = ws.align_dir("s") / "transforms.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"reference": "a", "shared_from_video": {}}))  # as an earlier release wrote it
    with pytest.raises(InputError, match=r"written by an earlier release .*; run `howto3d align .* --scene s`"):
        scenes.frame_state(ws, "s")
    with pytest.raises(InputError, match=r"written by an earlier release .*; run `howto3d align`"):
        Alignment.load(ws.align_dir("s"))


@pytest.mark.slow
def test_run_makes_a_stale_workspace_current_again(stale_ws, cli):
    ws, scene = stale_ws
    ws.remember("frames", "num_frames", 30)  # what the fixture reconstructed with
    r = cli("run", str(ws.root))
    assert r.returncode == 0, r.stderr
    current = scenes.frame_state(ws, scene)
    r = cli("query", str(ws.root), "--scene", scene, "where is the dipstick", "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["scene"] == scene
    meta = json.loads((ws.grounding_dir / "model" / "grounding.json").read_text())
    assert meta["frames"][scene] == current
    features = json.loads((ws.temporal_dir(scene) / "features.json").read_text())
    assert features["frame"] == current  # the clip features' gaze was recomputed in the new frame too
    for timeline in (ws.temporal_dir(scene) / "steps").glob("*.json"):
        assert json.loads(timeline.read_text())["frame"] == current
