"""`howto3d run` skips finished work the same way in every stage: a second run does nothing, and a changed
subtitle file redoes exactly what depends on narration (grounding, temporal) and nothing of the geometry."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from howto3d.workspace import Workspace

GEOMETRY = ("frames", "reconstruct", "align")


def _records(ws: Workspace) -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text())["items"] for p in sorted((ws.root / "state").glob("*.json"))}


@pytest.mark.slow
def test_run_twice_does_nothing_and_a_subtitle_edit_redoes_only_what_reads_it(trained_ws, tmp_path, cli):
    ws0, scene, _ = trained_ws
    ws = Workspace(shutil.copytree(ws0.root, tmp_path / "ws"))
    ws.remember("frames", "num_frames", 30)  # what the fixture reconstructed with (`--frames 30` saves it too)

    before = _records(ws)
    first = cli("run", str(ws.root))
    assert first.returncode == 0, first.stderr
    after_first = _records(ws)
    assert after_first["reconstruct"] == before["reconstruct"]  # the fixture's reconstructions are current
    assert {"frames", "reconstruct", "align", "train", "actionness"} <= set(after_first)

    t = time.perf_counter()
    second = cli("run", str(ws.root))
    seconds = time.perf_counter() - t
    assert second.returncode == 0, second.stderr
    assert _records(ws) == after_first  # nothing ran, so nothing was recorded again
    print(f"second `howto3d run`: {seconds:.1f} s")

    video = next(v for v in ws.videos(scene) if v.subtitles is not None)
    with open(video.subtitles, "a", encoding="utf-8") as f:
        f.write("\n\n99\n00:00:14,000 --> 00:00:15,500\nand that is the whole job done\n")
    third = cli("run", str(ws.root))
    assert third.returncode == 0, third.stderr
    after_third = _records(ws)
    for stage in GEOMETRY:
        assert after_third[stage] == after_first[stage], f"{stage} was redone for a subtitle change"
    redone = {stage for stage, items in after_third.items() if items != after_first.get(stage)}
    assert "train" in redone and "actionness" in redone
    assert redone & {"steps", "discover"}, redone
