"""Captions as downloaders save them: YouTube automatic captions, Whisper JSON, json3, sidecar names, bad files."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grounding.narration import Narration, cut_lines, find_subtitles, load_narrations, read_narrations, subtitle_files
from recon.io import InputError

DATA = Path(__file__).parents[1] / "data" / "captions"

# The fixture's spoken words (see tests/data/captions/youtube_auto.en.vtt): YouTube cuts display lines by
# width, the speaker pauses after "channel", "civic" and "handle" ([Music] plays before "pull").
AUTO_LINES = [
    ("hey guys welcome back to the channel", 0.48, 3.0),
    ("today we're going to check the oil on this civic", 3.6, 6.6),
    ("first pop the hood and find the yellow dipstick handle", 7.5, 11.35),
    ("pull the dipstick out and wipe it clean with a rag", 14.2, 17.8),
]


def test_youtube_rolling_captions_read_as_lines_of_narration_each_word_once():
    got = read_narrations(DATA / "youtube_auto.en.vtt")
    assert [(n.text, n.start, n.end) for n in got] == AUTO_LINES
    words = [w for n in got for w in n.words]
    assert len(words) == sum(len(t.split()) for t, _, _ in AUTO_LINES) == 38  # no repeats, no "[Music]"
    assert [w for w, _ in got[0].words] == got[0].text.split()
    assert got[0].words[:3] == (("hey", 0.48), ("guys", 0.72), ("welcome", 0.96))
    assert got[1].words[0] == ("today", 3.6) and got[3].words[-1] == ("rag", 16.8)
    times = [t for _, t in words]
    assert times == sorted(times)
    assert all(a.end <= b.start for a, b in zip(got, got[1:], strict=False))  # non-overlapping


def test_youtube_json3_gives_the_same_word_stream():
    got = read_narrations(DATA / "youtube_auto.en.json3")
    assert [(n.text, n.start, n.end) for n in got[:2]] == AUTO_LINES[:2]
    assert got[2].text == "pull the dipstick out" and got[2].words[2] == ("dipstick", 14.65)


def test_whisper_json_segments_with_word_times():
    got = read_narrations(DATA / "whisper.json")
    assert [(n.text, n.start, n.end) for n in got] == [
        ("Hey guys, welcome back.", 0.0, 2.48),
        ("Today we're checking the oil.", 3.6, 6.1),
        ("Pull the dipstick out and wipe it clean.", 14.2, 17.4),
    ]
    assert got[2].words[:3] == (("Pull", 14.2), ("the", 14.48), ("dipstick", 14.62))


def test_whisper_without_words_and_plain_json_list(tmp_path):
    (tmp_path / "w.json").write_text(
        json.dumps(
            {
                "segments": [
                    {"start": 5.0, "end": 7.5, "text": " Check the coolant level."},
                    {"start": 1.0, "end": 2.0, "text": "  ", "words": [{"word": " um"}]},
                ]
            }
        )
    )
    assert read_narrations(tmp_path / "w.json") == [Narration("Check the coolant level.", 5.0, 7.5)]
    (tmp_path / "l.json").write_text(json.dumps([{"start": 3, "end": 4, "text": "wipe it clean"}]))
    assert read_narrations(tmp_path / "l.json") == [Narration("wipe it clean", 3.0, 4.0)]


def test_automatic_captions_converted_to_srt_are_unrolled(tmp_path):
    """``yt-dlp --convert-subs srt`` drops the word times but keeps the rolling lines."""
    cues = [
        ("hey guys welcome back to the", 0.48, 1.99),
        ("hey guys welcome back to the", 1.99, 2.0),
        ("hey guys welcome back to the\nchannel today we're going to check", 2.0, 4.69),
        ("channel today we're going to check", 4.69, 4.7),
        ("channel today we're going to check\nthe oil on this civic", 4.7, 7.49),
    ]

    def stamp(t: float) -> str:
        return f"00:00:{int(t):02d},{round(t % 1 * 1000):03d}"

    (tmp_path / "a.en.srt").write_text(
        "\n".join(f"{i + 1}\n{stamp(s)} --> {stamp(e)}\n{text}\n" for i, (text, s, e) in enumerate(cues))
    )
    assert [(n.text, n.start) for n in read_narrations(tmp_path / "a.en.srt")] == [
        ("hey guys welcome back to the", 0.48),
        ("channel today we're going to check", 2.0),
        ("the oil on this civic", 4.7),
    ]


def test_plain_vtt_with_markup_is_not_taken_for_automatic_captions(tmp_path):
    (tmp_path / "a.vtt").write_text(
        "WEBVTT\n\n00:00:01.000 --> 00:00:03.000\n<c.yellow>open the hood</c> &amp; look"
        "\n\n00:00:02.000 --> 00:00:04.000\nopen the hood\n"
    )
    assert [(n.text, n.start) for n in read_narrations(tmp_path / "a.vtt")] == [
        ("open the hood & look", 1.0),
        ("open the hood", 2.0),
    ]


def test_cut_lines_at_pauses_sentence_ends_and_length():
    words = [("a", 0.0, 0.3), ("b", 0.3, 0.6), ("c.", 0.6, 0.9), ("d", 1.0, 1.2), ("e", 3.0, 3.4)]
    assert [n.text for n in cut_lines(words)] == ["a b c.", "d", "e"]
    steady = [(f"w{i}", i * 0.5, i * 0.5 + 0.4) for i in range(40)]  # 20 s without a pause
    lines = cut_lines(steady, max_seconds=8.0)
    assert all(n.end - n.start <= 8.0 for n in lines) and sum(len(n.words) for n in lines) == 40
    assert min(len(n.words) for n in lines) >= 8  # halved where no gap stands out, not cut into single words


def test_find_subtitles_as_downloaders_name_them_english_first(tmp_path):
    video = tmp_path / "scene_00_v00.mp4"
    video.write_bytes(b"")
    for name in [
        "scene_00_v00.de.vtt",
        "scene_00_v00.info.json",
        "scene_00_v00.live_chat.json",
        "scene_00_v00_b.srt",
        "other.en.vtt",
    ]:
        (tmp_path / name).write_text("x")
    assert find_subtitles(video) == tmp_path / "scene_00_v00.de.vtt"  # the only one
    assert [(s.path.name, s.language) for s in subtitle_files(video)] == [("scene_00_v00.de.vtt", "de")]
    (tmp_path / "scene_00_v00.srt").write_text("x")
    assert find_subtitles(video) == tmp_path / "scene_00_v00.srt"
    (tmp_path / "scene_00_v00.en-US.srt").write_text("x")
    assert find_subtitles(video) == tmp_path / "scene_00_v00.en-US.srt"
    (tmp_path / "scene_00_v00.en.vtt").write_text("x")
    (tmp_path / "scene_00_v00.en.json").write_text("x")
    assert [(s.path.name, s.language) for s in subtitle_files(video)] == [
        ("scene_00_v00.en.vtt", "en"),
        ("scene_00_v00.en.json", "en"),
        ("scene_00_v00.en-US.srt", "en-US"),
        ("scene_00_v00.srt", None),
        ("scene_00_v00.de.vtt", "de"),
    ]
    assert find_subtitles(tmp_path / "nothing.mp4") is None


BAD = {
    "latin1.srt": "1\n00:00:01,000 --> 00:00:02,000\nvérifier l'huile du moteur\n".encode("latin-1"),
    "nan.json": b'{"segments": [{"start": NaN, "end": 2.0, "text": "check the oil"}]}',
    "inf.json": b'[{"start": 1.0, "end": Infinity, "text": "check the oil"}]',
    "types.json": b'{"segments": [{"start": "1.0", "end": 2.0, "text": "check the oil"}]}',
    "reversed.srt": b"1\n00:00:05,000 --> 00:00:02,000\ncheck the oil\n",
    "reversed.vtt": b"WEBVTT\n\n00:00:05.000 --> 00:00:02.000\ncheck the oil\n",
    "garbage.vtt": bytes(range(256)) * 4,
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_subtitles_raise_one_clear_error_and_the_lenient_loader_warns_once(tmp_path, caplog, name):
    path = tmp_path / name
    path.write_bytes(BAD[name])
    with pytest.raises(InputError, match=name.replace(".", r"\.")):
        read_narrations(path)
    with caplog.at_level(logging.WARNING):
        assert load_narrations(path, "s/v") == [] and load_narrations(path, "s/v") == []
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and name in warnings[0].getMessage()


def test_a_bad_subtitle_file_does_not_stop_the_other_videos(tmp_path):
    """The one per-video reader of train/steps/view (``howto3d.scenes.narrations``) goes on without the bad
    file's narration."""
    from howto3d import scenes
    from howto3d.workspace import Workspace

    ws = Workspace.init(tmp_path / "ws")
    videos = ws.scene_dir("s") / "videos"
    videos.mkdir(parents=True)
    for v in ("a", "b"):
        (videos / f"{v}.mp4").write_bytes(b"")
    (videos / "a.en.srt").write_bytes(BAD["latin1.srt"])
    (videos / "b.en.vtt").write_bytes((DATA / "youtube_auto.en.vtt").read_bytes())
    narrations = scenes.narrations(ws, "s")
    assert narrations["a"] == [] and [n.text for n in narrations["b"]] == [t for t, _, _ in AUTO_LINES]


def _outcome(path: Path) -> None:
    try:
        out = read_narrations(path)
    except InputError as e:
        assert str(path) in str(e)
        return
    assert isinstance(out, list) and all(isinstance(n, Narration) for n in out)
    assert all(n.start <= n.end for n in out)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.binary(max_size=400),
    suffix=st.sampled_from([".srt", ".vtt", ".json", ".json3"]),
    header=st.sampled_from([b"", b"WEBVTT\n\n", b"1\n00:00:01,000 --> 00:00:02,000\n", b'{"segments": ']),
)
def test_fuzz_random_bytes_give_narrations_or_input_error(tmp_path, data, suffix, header):
    path = tmp_path / f"f{suffix}"
    path.write_bytes(header + data)
    _outcome(path)


_json = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
    lambda kids: (
        st.lists(kids, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "segments",
                    "events",
                    "segs",
                    "utf8",
                    "tOffsetMs",
                    "tStartMs",
                    "dDurationMs",
                    "start",
                    "end",
                    "text",
                    "words",
                    "word",
                ]
            ),
            kids,
            max_size=5,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=_json)
def test_fuzz_random_json_gives_narrations_or_input_error(tmp_path, doc):
    path = tmp_path / "f.json"
    path.write_text(json.dumps(doc))
    _outcome(path)
