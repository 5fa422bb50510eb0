"""Video, subtitle, config and workspace I/O: exact timestamps, clear errors, atomic records."""

from __future__ import annotations

import json

import numpy as np
import pytest

from grounding.narration import Narration, find_subtitles, read_narrations
from howto3d.config import Config, from_dict, load_config, to_toml
from howto3d.workspace import Workspace
from recon.io import InputError, atomic_dir
from recon.sampling import FramesConfig
from recon.sampling import main as sample_frames
from recon.video import probe, read_frames, sample_indices


def test_probe_gives_exact_pts_including_variable_frame_rate(make_video, tmp_path):
    path = tmp_path / "v.mp4"
    make_video(path, n=20, fps=10, vfr=True)
    info = probe(path)
    expected = np.cumsum([0] + [100 + (37 if i % 3 == 0 else 0) for i in range(19)]) / 1000
    np.testing.assert_allclose(info.times, expected, atol=1e-6)
    decoded = [(i, t) for i, t, _ in read_frames(path)]
    np.testing.assert_allclose([t for _, t in decoded], expected, atol=1e-6)


def test_sampled_frames_are_the_frames_at_their_timestamps(make_video, tmp_path):
    path = tmp_path / "v.mp4"
    make_video(path, n=30)
    idx = sample_indices(30, 7, "uniform")
    assert list(idx) == [0, 5, 10, 14, 19, 24, 29]
    for i, t, rgb in read_frames(path, idx):
        assert abs(t - i / 10) < 1e-6
        assert abs(int(rgb[:16, :16].mean()) - i * 8) <= 3  # the frame's own content, not a neighbour's
    r = sample_indices(30, 7, "random", seed=3)
    assert len(set(r)) == 7 and list(r) == sorted(r) and list(r) == list(sample_indices(30, 7, "random", seed=3))
    assert list(sample_indices(5, 80)) == [0, 1, 2, 3, 4]


def test_frames_stage_writes_images_and_timestamps(make_video, tmp_path):
    path = tmp_path / "clip.mp4"
    make_video(path, n=30)
    meta = sample_frames(FramesConfig(num_frames=4, sampling="uniform"), path, tmp_path / "frames")
    assert [f["time"] for f in meta["frames"]] == [0.0, 1.0, 1.9, 2.9]
    assert all((tmp_path / "frames" / "images" / f["name"]).is_file() for f in meta["frames"])
    assert json.loads((tmp_path / "frames" / "frames.json").read_text())["width"] == 96


@pytest.mark.parametrize("content", [b"", b"\x00\x01garbage" * 100])
def test_bad_video_gives_one_clear_error_naming_the_file(make_video, tmp_path, content):
    path = tmp_path / "broken.mp4"
    path.write_bytes(content)
    with pytest.raises(InputError, match="broken.mp4"):
        probe(path)


SRT = """1
00:00:01,000 --> 00:00:02,500
<i>Pull out</i> the dipstick

2
00:00:00,200 --> 00:00:00,900
Hi everyone

3
00:00:03,000 --> 00:00:04,000

"""
VTT = """WEBVTT

00:00:01.250 --> 00:00:02.500
<v Bob>Pull out the dipstick

00:00:03.000 --> 00:00:04.000
wipe it clean
"""


def test_subtitle_readers_agree(make_video, tmp_path):
    (tmp_path / "a.srt").write_text(SRT)
    (tmp_path / "a.vtt").write_text(VTT)
    (tmp_path / "a.json").write_text(json.dumps([{"start": 3, "end": 4.0, "text": " wipe  it clean "}]))
    srt_n = read_narrations(tmp_path / "a.srt")
    assert srt_n == [Narration("Hi everyone", 0.2, 0.9), Narration("Pull out the dipstick", 1.0, 2.5)]
    vtt_n = read_narrations(tmp_path / "a.vtt")
    assert vtt_n[0] == Narration("Pull out the dipstick", 1.25, 2.5)
    assert read_narrations(tmp_path / "a.json") == [Narration("wipe it clean", 3.0, 4.0)]
    assert find_subtitles(tmp_path / "a.mp4") == tmp_path / "a.srt"


@pytest.mark.parametrize(
    "name,content", [("x.json", "{not json"), ("x.json", '[{"start": 1}]'), ("x.vtt", "no header"), ("x.txt", "hello")]
)
def test_bad_subtitles_name_the_file(make_video, tmp_path, name, content):
    (tmp_path / name).write_text(content)
    with pytest.raises(InputError, match=name):
        read_narrations(tmp_path / name)


def test_config_round_trips_and_rejects_unknown_keys(make_video, tmp_path):
    text = to_toml(Config())
    assert "# Frames sampled per video" in text
    import tomllib

    assert from_dict(tomllib.loads(text), tmp_path) == Config()
    (tmp_path / "c.toml").write_text("[frames]\nnum_frames = 12\n")
    assert load_config(tmp_path / "c.toml").frames.num_frames == 12
    for bad, match in [
        ("[frames]\nnum_frame = 1\n", "unknown key frames.num_frame"),
        ("[frames]\nnum_frames = 'a'\n", "must be int"),
        ("[frames]\nsampling = 'every'\n", "not one of"),
        ("[nope]\n", "unknown section"),
        ("[frames\n", "invalid TOML"),
    ]:
        (tmp_path / "c.toml").write_text(bad)
        with pytest.raises(InputError, match=match):
            load_config(tmp_path / "c.toml")


def test_init_writes_every_setting_of_every_section_with_its_doc(tmp_path):
    import dataclasses

    from howto3d.config import field_docs

    text = (Workspace.init(tmp_path / "ws").root / "howto3d.toml").read_text()
    lines = text.splitlines()
    for section in dataclasses.fields(Config):
        assert f"[{section.name}]" in lines, section.name
        value = getattr(Config(), section.name)
        docs = field_docs(type(value))
        for f in dataclasses.fields(value):
            line = f"# {f.name} = (unset)" if getattr(value, f.name) is None else f"{f.name} = "
            i = next(i for i, s in enumerate(lines) if s.startswith(line))
            assert docs[f.name] and lines[i - 1].startswith("# "), (section.name, f.name)  # its doc right above
    assert {"[discover]", "[groundedness]", "[guide]"} <= set(lines)


@pytest.mark.parametrize(
    "toml, match",
    [
        ("[grounding]\nmethod = 'nearest'\n", r"grounding.method = 'nearest' is not one of \['classifier', 'index'"),
        ("[clip_features]\nkinds = ['bovw', 'depth']\n", "clip_features.kinds .* is not a non-empty list of"),
        ("[clip_features]\nkinds = []\n", "clip_features.kinds = \\[\\] is not a non-empty list of"),
        ("[discover]\nbackground = 'all'\n", "discover.background = 'all' is not one of"),
        ("[guide]\nfusion = 'sum'\n", "guide.fusion = 'sum' is not one of"),
        ("[discover]\nstates = 0\n", "discover.states = 0 is out of range; use a value at least 1"),
        ("[discover]\nstates = 'many'\n", "discover.states must be int"),
        ("[frames]\nseed = -1\n", "frames.seed = -1 is out of range"),
    ],
)
def test_each_field_carries_its_own_rules(tmp_path, toml, match):
    (tmp_path / "c.toml").write_text(toml)
    with pytest.raises(InputError, match=match):
        load_config(tmp_path / "c.toml")


def test_an_unset_optional_setting_can_be_set(tmp_path):
    (tmp_path / "c.toml").write_text("[discover]\nstates = 40\nepochs = 3\nlam = 0.5\n")
    conf = load_config(tmp_path / "c.toml").discover
    assert (conf.states, conf.epochs, conf.lam, conf.background) == (40, 3, 0.5, "states")


def test_one_progress_callback_type():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    sources = [
        p for d in ("recon", "grounding", "temporal", "viewer", "howto3d", "synth") for p in (root / d).rglob("*.py")
    ]
    assert [p.name for p in sources if "Callable[[str, int, int], None]" in p.read_text()] == ["io.py"]


def test_workspace_add_copies_and_never_touches_originals(make_video, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    make_video(src / "clip.mp4", n=5)
    (src / "clip.srt").write_text(SRT)
    before = (src / "clip.mp4").read_bytes()
    ws = Workspace.init(tmp_path / "ws")
    added = ws.add_videos("civic", [src / "clip.mp4"])
    assert [v.name for v in added] == ["clip"] and added[0].subtitles.name == "clip.srt"
    assert ws.add_videos("civic", [src / "clip.mp4"]) == []  # idempotent
    assert (src / "clip.mp4").read_bytes() == before and ws.scenes() == ["civic"]
    with pytest.raises(InputError, match="unknown scene 'golf'"):
        ws.require_scene("golf")
    with pytest.raises(InputError, match="not a howto3d workspace"):
        Workspace.open(tmp_path / "nowhere")


def test_atomic_dir_keeps_old_content_on_failure(make_video, tmp_path):
    final = tmp_path / "model"
    with atomic_dir(final) as tmp:
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:
        (tmp / "a").write_text("half")
        raise RuntimeError("killed")
    assert (final / "a").read_text() == "1"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_stage_record_resumes(make_video, tmp_path):
    ws = Workspace.init(tmp_path / "ws")
    rec = ws.record("reconstruct")
    rec.put("s/v", "fp1", "done", seconds=1.0)
    again = ws.record("reconstruct")
    assert again.get("s/v", "fp1")["status"] == "done"
    assert again.get("s/v", "fp2") is None
