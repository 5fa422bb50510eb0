"""`howto3d check`: every promise one stage makes the next is verified where it is kept, and each broken one is
one line naming the file and the command that fixes it (exit 1); a sound workspace is one "ok" line (exit 0).

The planted violations are made in copies of the session's reconstructed, aligned and trained workspace, which is
never modified."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from howto3d import check
from howto3d.workspace import Workspace


def _lines(result) -> list[str]:
    return result.stderr.strip().splitlines()


@pytest.fixture
def ws(trained_ws, tmp_path) -> tuple[Workspace, str]:
    """A private copy of the trained workspace to break."""
    ws0, scene, _ = trained_ws
    return Workspace(shutil.copytree(ws0.root, tmp_path / "ws")), scene


def _single_segment_video(ws: Workspace, scene: str) -> str:
    """An aligned video whose SfM kept one model (segment 0 only), not the reference."""
    from recon.align import Alignment
    from recon.reconstruct import Model

    alignment = Alignment.load(ws.align_dir(scene))
    return next(
        v
        for v, segs in sorted(alignment.shared_from_segment.items())
        if v != alignment.reference and list(segs) == [0] and list(Model(ws.sfm_dir(scene, v)).segments()) == [0]
    )


def _edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))  # NaN stays NaN (as Python's json writes it)


# ---- no workspace, no pipeline: fast --------------------------------------------------------------------
def test_bad_input_is_one_line(cli, tmp_path):
    r = cli("check", str(tmp_path / "nowhere"))
    assert r.returncode == 2 and _lines(r) == [
        f"error: {tmp_path / 'nowhere'}: not a howto3d workspace; create it with `howto3d init {tmp_path / 'nowhere'}`"
    ], r.stderr
    Workspace.init(tmp_path / "ws")
    (tmp_path / "ws" / "scenes" / "civic" / "videos").mkdir(parents=True)
    r = cli("check", str(tmp_path / "ws"), "--scene", "nope")
    assert r.returncode == 2 and len(_lines(r)) == 1 and "unknown scene 'nope'; scenes: civic" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr


def test_a_record_says_which_input_changed(tmp_path):
    ws = Workspace.init(tmp_path / "ws")
    (tmp_path / "subs.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nhello\n")
    inputs = {"features": "f1", "subtitles": tmp_path / "subs.srt", "tasks": None}
    assert ws.step("actionness", "s", inputs, {"epochs": 3}).changes() is None  # never made: nothing to say
    ws.step("actionness", "s", inputs, {"epochs": 3}).put("done")
    assert ws.step("actionness", "s", inputs, {"epochs": 3}).changes() is None  # current
    (tmp_path / "subs.srt").write_text("1\n00:00:00,000 --> 00:00:01,000\nhello again\n")
    assert ws.step("actionness", "s", inputs, {"epochs": 3}).changes() == ["subtitles"]
    assert ws.step("actionness", "s", {**inputs, "features": "f2"}, {"epochs": 4}).changes() == [
        "features",
        "subtitles",
        "settings",
    ]
    assert ws.step("actionness", "s", {"features": "f1"}, {"epochs": 3}).changes() == ["subtitles", "tasks"]
    ws.record("actionness").put("s", "old", "done")  # recorded by an earlier release: no per-input fingerprints
    assert ws.step("actionness", "s", inputs, {"epochs": 3}).changes() == ["its inputs or settings"]


# ---- the real workspace ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_a_sound_workspace_checks_ok(ws, cli):
    w, scene = ws
    r = cli("check", str(w.root))
    videos = w.videos(scene)
    frames = sum(len(json.loads((w.frames_dir(scene, v.name) / "frames.json").read_text())["frames"]) for v in videos)
    assert r.returncode == 0, r.stderr
    assert _lines(r)[-1].startswith(f"ok: 1 scene(s), {len(videos)} video(s), {frames} sampled frames, "), r.stderr
    r = cli("check", str(w.root), "--scene", scene, "--json")
    assert r.returncode == 0 and json.loads(r.stdout) == {"ok": True, "problems": []}, r.stderr
    assert check.check(w) == []


@pytest.mark.slow
@pytest.mark.parametrize("broken", ["name", "time", "order", "nan"])
def test_frames_json_names_unique_times_finite_and_increasing(ws, cli, broken):
    w, scene = ws
    video = w.videos(scene)[1].name
    path = w.frames_dir(scene, video) / "frames.json"
    frames = json.loads(path.read_text())["frames"]
    (a, ta), (b, tb) = [(f["name"], f["time"]) for f in frames[4:6]]

    def plant(data: dict) -> None:
        f = data["frames"]
        if broken == "name":
            f[5]["name"] = a
        elif broken == "time":
            f[5]["time"] = ta
        elif broken == "order":
            f[4]["time"], f[5]["time"] = tb, ta
        else:
            f[5]["time"] = math.nan

    _edit_json(path, plant)
    what = {
        "name": f"1 frame name(s) listed more than once ({a})",
        "time": f"times not strictly increasing at 1 frame(s), first {b} at {ta:g} s after {a} at {ta:g} s",
        "order": f"times not strictly increasing at 1 frame(s), first {b} at {ta:g} s after {a} at {tb:g} s",
        "nan": f"1 frame(s) without a finite time ({b})",
    }[broken]
    r = cli("check", str(w.root))
    assert r.returncode == 1, r.stderr
    assert f"{path}: {what}; run `howto3d reconstruct {w.root} --scene {scene} --force`" in _lines(r), r.stderr
    r = cli("check", str(w.root), "--json")
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert (
        out["ok"] is False
        and {
            "scene": scene,
            "path": str(path),
            "message": what,
            "fix": f"howto3d reconstruct {w.root} --scene {scene} --force",
        }
        in out["problems"]
    )


@pytest.mark.slow
def test_two_segments_registering_one_frame(ws, cli):
    from recon.reconstruct import Model

    w, scene = ws
    video = _single_segment_video(w, scene)
    model = Model(w.sfm_dir(scene, video))
    rec = model.load(0)
    names = sorted(rec.images[i].name for i in rec.reg_image_ids())
    copy = w.sfm_dir(scene, video) / "segments" / "1"
    copy.mkdir(parents=True)
    rec.write_binary(str(copy))  # the largest model again, as a second segment: the same frames
    r = cli("check", str(w.root))
    assert r.returncode == 1, r.stderr
    assert (
        f"{copy}: segment 1 registers {len(names)} frame(s) that segment 0 registers too ({', '.join(names[:3])} "
        f"and {len(names) - 3} more); a frame belongs to one segment; run `howto3d reconstruct {w.root} "
        f"--scene {scene} --force`" in _lines(r)
    ), r.stderr


@pytest.mark.slow
def test_a_registered_frame_missing_from_frames_json(ws, cli):
    from recon.reconstruct import Model

    w, scene = ws
    video = _single_segment_video(w, scene)
    path = w.frames_dir(scene, video) / "frames.json"
    rec = Model(w.sfm_dir(scene, video)).load(0)
    name = sorted(rec.images[i].name for i in rec.reg_image_ids())[0]
    _edit_json(path, lambda d: d.update(frames=[f for f in d["frames"] if f["name"] != name]))
    r = cli("check", str(w.root))
    assert r.returncode == 1, r.stderr
    assert (
        f"{w.sfm_dir(scene, video) / 'model'}: segment 0 registers 1 frame(s) that frames.json does not list "
        f"({name}); run `howto3d reconstruct {w.root} --scene {scene} --force`" in _lines(r)
    ), r.stderr


@pytest.mark.slow
def test_a_transform_with_nan(ws, cli):
    w, scene = ws
    video = _single_segment_video(w, scene)
    path = w.align_dir(scene) / "transforms.json"
    scale = json.loads(path.read_text())["shared_from_segment"][video]["0"]["scale"]
    _edit_json(path, lambda d: d["shared_from_segment"][video]["0"]["translation"].__setitem__(1, math.nan))
    r = cli("check", str(w.root))
    assert r.returncode == 1, r.stderr
    assert (
        f"{path}: the transform of {video} is not a finite similarity with a positive scale (scale {scale:g}); "
        f"run `howto3d align {w.root} --scene {scene} --force`" in _lines(r)
    ), r.stderr
    assert "RuntimeWarning" not in r.stderr  # a broken frame is not digested as if it were one


@pytest.mark.slow
def test_an_aligned_video_without_its_model(ws, cli):
    w, scene = ws
    video = _single_segment_video(w, scene)
    shutil.rmtree(w.sfm_dir(scene, video) / "model")
    r = cli("check", str(w.root))
    assert r.returncode == 1, r.stderr
    assert (
        f"{w.sfm_dir(scene, video) / 'model'}: missing, yet transforms.json aligns {video} from it; run "
        f"`howto3d align {w.root} --scene {scene} --force`" in _lines(r)
    ), r.stderr
    assert (
        f"{w.align_dir(scene) / 'transforms.json'}: the alignment is out of date: {video} changed since it was "
        f"made; run `howto3d align {w.root} --scene {scene}`" in _lines(r)
    ), r.stderr


@pytest.mark.slow
def test_a_subtitle_edited_after_training(ws, cli):
    w, scene = ws
    video = next(v for v in w.videos(scene) if v.subtitles is not None)
    with open(video.subtitles, "a", encoding="utf-8") as f:
        f.write("\n\n99\n00:00:14,000 --> 00:00:15,500\nand that is the whole job done\n")
    r = cli("check", str(w.root), "--scene", scene)
    assert r.returncode == 1, r.stderr
    assert _lines(r) == [
        f"{w.grounding_dir / 'model'}: the grounding model is out of date: subtitles/{scene}/"
        f"{video.name} changed since it was trained; run `howto3d train {w.root}`"
    ], r.stderr


@pytest.mark.slow
def test_a_shared_frame_moved_after_training(ws, cli):
    w, scene = ws
    video = _single_segment_video(w, scene)
    path = w.align_dir(scene) / "transforms.json"
    segments = sum(len(s) for s in json.loads(path.read_text())["shared_from_segment"].values())
    _edit_json(
        path,
        lambda d: d["shared_from_segment"][video]["0"]["translation"].__setitem__(
            0, d["shared_from_segment"][video]["0"]["translation"][0] + 0.5
        ),
    )
    r = cli("check", str(w.root))
    assert r.returncode == 1, r.stderr
    # said once: the transforms.json the model was trained from changed too, but that is the same news
    assert _lines(r) == [
        f"{w.grounding_dir / 'model' / 'grounding.json'}: trained in an earlier shared frame of scene "
        f"{scene} (1 of {segments} aligned segments moved ({video}#0)); run "
        f"`howto3d train {w.root}`"
    ], r.stderr


@pytest.mark.slow
def test_run_ends_with_check(ws, cli):
    """`run` makes the temporal records too and checks them; a problem it cannot fix is exit 1; a later subtitle
    edit makes training and actionness stale, each said once."""
    w, scene = ws
    w.remember("frames", "num_frames", 30)  # what the fixture reconstructed with
    for key, value in (("epochs", 4), ("pretrain_epochs", 2), ("order_epochs", 3)):  # small: about records
        w.remember("temporal", key, value)
    r = cli("run", str(w.root))
    assert r.returncode == 0, r.stderr
    assert _lines(r)[-1].startswith("ok: 1 scene(s)"), r.stderr[-2000:]
    assert {"features", "actionness", "steps"} <= {p.stem for p in (w.root / "state").glob("*.json")}

    path = w.frames_dir(scene, w.videos(scene)[0].name) / "frames.json"
    good = path.read_text()
    _edit_json(path, lambda d: d["frames"][3].update(name=d["frames"][2]["name"]))
    r = cli("run", str(w.root))  # everything is current: skipped, then checked
    assert r.returncode == 1 and any("frame name(s) listed more than once" in x for x in _lines(r)), r.stderr[-2000:]
    path.write_text(good)

    video = next(v for v in w.videos(scene) if v.subtitles is not None)
    with open(video.subtitles, "a", encoding="utf-8") as f:
        f.write("\n\n99\n00:00:14,000 --> 00:00:15,500\nand that is the whole job done\n")
    r = cli("check", str(w.root))
    assert r.returncode == 1, r.stderr
    assert _lines(r) == [  # the step timelines read the actionness: redone with it, not said again
        f"{w.temporal_dir(scene) / 'actionness'}: the actionness is out of date: subtitles/{scene}/{video.name} "
        f"changed since it was made; run `howto3d run {w.root}`",
        f"{w.grounding_dir / 'model'}: the grounding model is out of date: subtitles/{scene}/{video.name} changed "
        f"since it was trained; run `howto3d train {w.root}`",
    ], r.stderr
