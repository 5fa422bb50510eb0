"""Synthetic world: determinism, GT consistency, decodable media, and SfM-friendliness."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import av
import numpy as np
import pycolmap
import pytest
import srt

from synth import PARTS, TASKS, WorldConfig, generate_world, load_ground_truth, make_scene, make_variant, render_frame
from synth.talk import SYNONYMS


def _frames(path: Path) -> list[av.VideoFrame]:
    with av.open(str(path)) as container:
        return list(container.decode(video=0))


def _gt(small_world) -> tuple[Path, dict]:
    _, dirs = small_world
    return dirs[0], load_ground_truth(dirs[0] / "ground_truth.json")


def test_tree_and_api(small_world) -> None:
    scene_dir, gt = _gt(small_world)
    assert scene_dir.parent.name == "scenes"
    assert (scene_dir / "world.ply").stat().st_size > 0
    assert set(gt["parts"]) == set(PARTS) and set(gt["tasks"]) == set(TASKS)
    assert len(gt["landmarks"]) >= 6
    for video in gt["videos"].values():
        assert (scene_dir / video["file"]).exists() and (scene_dir / video["subtitles"]).exists()
        offsets = [np.linalg.norm(video["parts"][p] - gt["parts"][p]) for p in PARTS]
        assert max(offsets) < 0.06


def test_deterministic(small_world, tmp_path: Path) -> None:
    cfg, dirs = small_world
    short = dataclasses.replace(cfg, videos=1, seconds=3.0)
    a, b = generate_world(tmp_path / "a", short)[0], generate_world(tmp_path / "b", short)[0]
    assert (a / "ground_truth.json").read_bytes() == (b / "ground_truth.json").read_bytes()
    assert (a / "videos/video_00.srt").read_bytes() == (b / "videos/video_00.srt").read_bytes()
    fa, fb = _frames(a / "videos/video_00.mp4"), _frames(b / "videos/video_00.mp4")
    assert all(np.array_equal(x.to_ndarray(), y.to_ndarray()) for x, y in zip(fa, fb, strict=True))
    # A shorter world of the same seed has the same scene layout as the fixture world.
    assert (a / "world.ply").read_bytes() == (dirs[0] / "world.ply").read_bytes()


def test_dwells_center_the_part(small_world) -> None:
    _, gt = _gt(small_world)
    for video in gt["videos"].values():
        assert video["dwells"] and video["steps"]
        fps, width, height = video["fps"], video["width"], video["height"]
        for dwell in video["dwells"]:
            part = video["parts"][dwell["part"]]
            for frame in video["frames"][int(np.ceil(dwell["start"] * fps)) : int(dwell["end"] * fps) + 1]:
                cam = frame["cam_from_world"] @ np.append(part, 1.0)
                assert 0.25 < cam[2] < 0.8  # in front, at dwell distance
                u, v = (frame["K"] @ cam)[:2] / cam[2]
                assert abs(u - width / 2) < 0.15 * width and abs(v - height / 2) < 0.15 * width


def test_video_frames_and_timestamps(small_world) -> None:
    cfg, _ = small_world
    scene_dir, gt = _gt(small_world)
    for video in gt["videos"].values():
        frames = _frames(scene_dir / video["file"])
        assert len(frames) == len(video["frames"]) == round(cfg.seconds * cfg.fps)
        for i, (frame, meta) in enumerate(zip(frames, video["frames"], strict=True)):
            assert frame.time == pytest.approx(i / cfg.fps, abs=1e-6) and meta["time"] == pytest.approx(i / cfg.fps)
        assert frames[0].to_ndarray(format="rgb24").shape == (cfg.height, cfg.width, 3)


def test_rendered_frame_matches_video(small_world) -> None:
    cfg, _ = small_world
    scene_dir, gt = _gt(small_world)
    meta = gt["videos"]["video_00"]["frames"][30]
    variant = make_variant(cfg, 0, 0)
    image = render_frame(make_scene(cfg, 0), meta["K"], meta["cam_from_world"], cfg.width, cfg.height, variant)
    decoded = _frames(scene_dir / "videos/video_00.mp4")[30].to_ndarray(format="rgb24")
    assert np.abs(image.astype(float) - decoded).mean() < 6.0  # only H.264 loss
    assert image.std() > 30  # textured, not flat


def test_subtitles(small_world) -> None:
    scene_dir, gt = _gt(small_world)
    for video in gt["videos"].values():
        subs = list(srt.parse((scene_dir / video["subtitles"]).read_text()))
        assert subs and all(s.content.strip() for s in subs)
        starts = [s.start.total_seconds() for s in subs]
        assert starts == sorted(starts) and subs[-1].end.total_seconds() <= len(video["frames"]) / video["fps"]
        for dwell in video["dwells"]:
            near = [s.content for s in subs if dwell["start"] - 1 <= s.start.total_seconds() <= dwell["end"]]
            assert any(syn in text for text in near for syn in SYNONYMS[dwell["part"]])


def test_textures_never_reused() -> None:
    scene = make_scene(WorldConfig(seed=3), 0)
    crops = [(o.texture.source, o.texture.crop) for o in scene.objects]
    digests = {hashlib.sha1(o.texture.levels[0].tobytes()).hexdigest() for o in scene.objects}
    assert len(set(crops)) == len(crops) == len(digests)


# --- Real-length, edited and degraded footage (WorldConfig knobs; issues #12 and #13) ---

EDITED_WORLD = WorldConfig.long(
    videos=1,
    seconds=30.0,
    fps=4.0,
    width=320,
    height=180,
    dwell_seconds=8.0,
    cuts=1,
    inserts=1,
    hands=True,
    caption_vtt_share=1.0,
    motion_blur=0.5,
    distortion_k1=-0.1,
    exposure_jumps=6.0,
    noise=2.0,
    seed=1,
)


@pytest.fixture(scope="module")
def edited_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, list[np.ndarray]]:
    """One 30-s video with every knob on: (scene dir, its video's ground truth, decoded RGB frames)."""
    (scene_dir,) = generate_world(tmp_path_factory.mktemp("edited"), EDITED_WORLD)
    video = load_ground_truth(scene_dir / "ground_truth.json")["videos"]["video_00"]
    return scene_dir, video, [f.to_ndarray(format="rgb24") for f in _frames(scene_dir / video["file"])]


def _centre(pose: np.ndarray) -> np.ndarray:
    return -pose[:, :3].T @ pose[:, 3]


def _gray(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb.astype(np.float32).mean(axis=2) / 255.0)


def _sift_matches(a: np.ndarray, b: np.ndarray) -> int:
    """Mutual nearest-neighbour SIFT matches passing the 0.8 ratio test between two frames."""
    sift = pycolmap.Sift(device=pycolmap.Device.cpu)
    (_, da), (_, db) = sift.extract(_gray(a)), sift.extract(_gray(b))
    if len(da) < 2 or len(db) < 2:
        return 0
    da, db = da / np.linalg.norm(da, axis=1, keepdims=True), db / np.linalg.norm(db, axis=1, keepdims=True)
    dist = np.sqrt(np.maximum(2 - 2 * da @ db.T, 0))
    ab, ba = dist.argmin(1), dist.argmin(0)
    best2 = np.sort(dist, axis=1)[:, :2]
    ok = (ba[ab] == np.arange(len(da))) & (best2[:, 0] < 0.8 * best2[:, 1])
    return int(ok.sum())


def test_edited_world_ground_truth(edited_world) -> None:
    scene_dir, video, frames = edited_world
    n = round(EDITED_WORLD.seconds * EDITED_WORLD.fps)
    assert len(frames) == len(video["frames"]) == n and video["subtitle_format"] == "youtube_vtt"
    assert (
        not (scene_dir / "videos/video_00.srt").exists() and (scene_dir / video["subtitles"]).name == "video_00.en.vtt"
    )
    assert video["camera"]["model"] == "SIMPLE_RADIAL" and video["camera"]["params"][3] == pytest.approx(-0.1)
    (insert,) = video["inserts"]
    kinds = [f["kind"] for f in video["frames"]]
    assert kinds == ["insert" if insert["first_frame"] <= i <= insert["last_frame"] else "bay" for i in range(n)]
    for f in video["frames"]:
        assert (f["cam_from_world"] is None) == (f["kind"] == "insert") and f["k1"] == pytest.approx(-0.1)
    # Shots change exactly at the cut and at both ends of the insert.
    (cut,) = video["cuts"]
    shots = [f["shot"] for f in video["frames"]]
    changes = {i for i in range(1, n) if shots[i] != shots[i - 1]}
    assert changes == {cut["frame"], insert["first_frame"], insert["last_frame"] + 1}
    # Every dwell piece holds on-screen bay frames, the part in front of the camera and inside the image.
    assert video["dwells"]
    for dwell in video["dwells"]:
        inside = [f for f in video["frames"] if dwell["start"] - 1e-6 <= f["time"] <= dwell["end"] + 1e-6]
        assert inside and all(f["kind"] == "bay" for f in inside)
        for f in inside:
            cam = f["cam_from_world"] @ np.append(video["parts"][dwell["part"]], 1.0)
            u, v = (f["K"] @ cam)[:2] / cam[2]
            assert cam[2] > 0.2 and 0 <= u < video["width"] and 0 <= v < video["height"]
    # Hands only over dwells; exposure really jumps.
    cover = np.array([f.get("hand_cover", 0.0) for f in video["frames"]])
    in_dwell = np.array([any(d["start"] <= f["time"] <= d["end"] for d in video["dwells"]) for f in video["frames"]])
    assert cover[in_dwell].max() > 0.02 and not cover[~in_dwell].any()
    exposure = np.array([f["exposure"] for f in video["frames"]])
    assert exposure.max() / exposure.min() > 1.25


def test_cut_is_a_discontinuity(edited_world) -> None:
    _, video, frames = edited_world
    (cut,) = video["cuts"]
    i = cut["frame"]
    poses = {f["index"]: f["cam_from_world"] for f in video["frames"] if f["cam_from_world"] is not None}
    steps = [np.linalg.norm(_centre(poses[k]) - _centre(poses[k - 1])) for k in poses if k - 1 in poses and k != i]
    jump = np.linalg.norm(_centre(poses[i]) - _centre(poses[i - 1]))
    assert jump > 0.05 and jump > 4 * np.median(steps)
    diffs = [np.abs(frames[k].astype(float) - frames[k - 1]).mean() for k in poses if k - 1 in poses and k != i]
    assert np.abs(frames[i].astype(float) - frames[i - 1]).mean() > 2 * np.median(diffs)


def test_insert_shares_no_texture_with_the_bay(edited_world) -> None:
    from synth.footage import INSERT_SOURCES
    from synth.textures import PHOTO_SOURCES

    _, video, frames = edited_world
    (insert,) = video["inserts"]
    assert insert["source"] == INSERT_SOURCES[insert["kind"]] and insert["source"] not in PHOTO_SOURCES
    shot = frames[(insert["first_frame"] + insert["last_frame"]) // 2]
    bay = [i for i, f in enumerate(video["frames"]) if f["kind"] == "bay"]
    neighbours = _sift_matches(frames[bay[10]], frames[bay[11]])
    across = max(_sift_matches(shot, frames[i]) for i in bay[:: max(1, len(bay) // 8)])
    assert neighbours > 40 and across < 0.1 * neighbours


def _vtt_cues(text: str) -> list[tuple[float, float, list[str]]]:
    def secs(ts: str) -> float:
        h, m, s = ts.split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)

    header, *blocks = text.split("\n\n")
    assert header == "WEBVTT\nKind: captions\nLanguage: en"
    cues = []
    for block in filter(None, blocks):
        timing, *lines = block.rstrip("\n").split("\n")
        start, arrow, end, *settings = timing.split(" ")
        assert arrow == "-->" and settings == ["align:start", "position:0%"] and len(lines) == 2
        cues.append((secs(start), secs(end), lines))
    return cues


def test_youtube_auto_captions(edited_world) -> None:
    import re

    from synth.captions import asr_token

    scene_dir, video, _ = edited_world
    cues = _vtt_cues((scene_dir / video["subtitles"]).read_text())
    main, transitions = cues[0::2], cues[1::2]
    assert len(main) == len(transitions) > 3
    words, previous, main_end = [], " ", -1.0
    for (start, end, (above, typed)), (t0, t1, (shown, blank)) in zip(main, transitions, strict=True):
        # The roll-up: the previous line on top (blank after a pause), the new line typed word by word.
        if above == previous:
            assert start == pytest.approx(main_end + 0.01, abs=1e-6) or not words
        else:
            assert above == " " and start - main_end > 1.0
        stamps = [start] + [
            float(h) * 3600 + float(m) * 60 + float(s)
            for h, m, s in re.findall(r"<(\d\d):(\d\d):(\d\d\.\d\d\d)>", typed)
        ]
        assert all(a < b for a, b in zip(stamps, stamps[1:], strict=False)) and stamps[-1] < end
        line = re.sub(r"<[^>]+>", "", typed)
        assert line == line.lower() and not re.search(r"[^\w' ]", line) and len(line.split()) == len(stamps)
        assert t0 == pytest.approx(end) and t1 - t0 == pytest.approx(0.01, abs=1e-6) and shown == line
        assert blank == " "
        words += line.split()
        previous, main_end = line, end
    assert [s for s, *_ in main] == sorted(s for s, *_ in main)
    spoken = [asr_token(w) for n in video["narrations"] for w in n["text"].split()]
    assert words == [w for w in spoken if w]
    assert [w["word"] for w in video["words"]] == [w for n in video["narrations"] for w in n["text"].split()]


def test_whisper_json() -> None:
    import json

    from synth.captions import to_whisper_json
    from synth.talk import Narration

    lines = [
        Narration(0.5, 2.0, "hey guys, welcome back", None, "filler"),
        Narration(3.0, 5.5, "pull out the dipstick", "dipstick", "step"),
    ]
    out = json.loads(to_whisper_json(lines))
    assert out["language"] == "en" and [s["text"].strip() for s in out["segments"]] == [n.text for n in lines]
    for seg, n in zip(out["segments"], lines, strict=True):
        assert (seg["start"], seg["end"]) == (n.start, n.end)
        assert [w["word"].strip() for w in seg["words"]] == n.text.split()
        times = [(w["start"], w["end"]) for w in seg["words"]]
        assert times[0][0] == n.start and times[-1][1] == pytest.approx(n.end)
        following = times[1:] + [(n.end, n.end)]
        assert all(a[1] <= b[0] + 1e-9 and a[0] < a[1] for a, b in zip(times, following, strict=True))


def test_edited_world_is_deterministic(edited_world, tmp_path: Path) -> None:
    scene_dir, _, frames = edited_world
    (again,) = generate_world(tmp_path, EDITED_WORLD)
    for name in ("ground_truth.json", "videos/video_00.en.vtt"):
        assert (again / name).read_bytes() == (scene_dir / name).read_bytes()
    decoded = [f.to_ndarray(format="rgb24") for f in _frames(again / "videos/video_00.mp4")]
    assert all(np.array_equal(a, b) for a, b in zip(decoded, frames, strict=True))


@pytest.fixture(scope="module")
def bay_renderer():
    from synth.render import Renderer

    cfg = WorldConfig(seed=0)
    return Renderer(make_scene(cfg, 0), make_variant(cfg, 0, 0))


def test_motion_blur_grows_with_speed(bay_renderer) -> None:
    from synth.camera import BAY_CENTER, look_at
    from synth.footage import motion_blur

    w, h = 320, 180
    K = np.array([[260.0, 0, w / 2], [0, 260.0, h / 2], [0, 0, 1]])
    eye = BAY_CENTER + np.array([0.0, -0.6, 0.6])
    pose = look_at(eye, BAY_CENTER)
    image, points = bay_renderer.render(K, pose, w, h, points=True)

    def sharpness(img: np.ndarray) -> float:
        g = _gray(img)
        return float(np.abs(np.diff(g, axis=1)).mean() + np.abs(np.diff(g, axis=0)).mean())

    lengths, sharp = [], [sharpness(image)]
    for speed in (0.02, 0.1, 0.3):  # metres the camera moves sideways while the shutter is open
        shift = np.array([speed / 2, 0.0, 0.0])
        blurred, px = motion_blur(
            image, points, K, 0.0, look_at(eye - shift, BAY_CENTER - shift), look_at(eye + shift, BAY_CENTER + shift)
        )
        lengths.append(px)
        sharp.append(sharpness(blurred))
    assert lengths[0] < lengths[1] < lengths[2] and lengths[2] > 5 * lengths[0]
    assert sharp[0] > sharp[1] > sharp[2] > sharp[3] and sharp[3] < 0.8 * sharp[0]


def test_distortion_is_rendered_and_in_the_model(bay_renderer) -> None:
    from synth.camera import BAY_CENTER, look_at
    from synth.render import project

    w, h, k1 = 320, 180, -0.15
    K = np.array([[200.0, 0, w / 2], [0, 200.0, h / 2], [0, 0, 1]])
    pose = look_at(BAY_CENTER + np.array([0.1, -0.9, 0.7]), BAY_CENTER)
    pinhole, distorted = bay_renderer.render(K, pose, w, h), bay_renderer.render(K, pose, w, h, k1=k1)
    # A straight 3D edge across the view (the bay's front edge) projects to a curve under the lens model.
    edge = np.linspace([0.0, 0.0, 0.0], [1.4, 0.0, 0.0], 15)

    def bend(uv: np.ndarray) -> float:
        uv = uv[(uv[:, 0] >= 0) & (uv[:, 0] < w)]
        return float(np.abs(np.polyval(np.polyfit(uv[:, 0], uv[:, 1], 1), uv[:, 0]) - uv[:, 1]).max())

    assert bend(project(K, k1, pose, edge)) > 2.0 and bend(project(K, 0.0, pose, edge)) < 1e-6
    # The distorted image is the pinhole image seen through exactly that model.
    grid = np.stack(np.meshgrid(np.arange(10, w - 10, 7) + 0.5, np.arange(10, h - 10, 7) + 0.5), -1).reshape(-1, 2)
    rays = np.c_[(grid - K[:2, 2]) / K[0, 0], np.ones(len(grid))]
    from synth.render import undistort_radius

    r = np.hypot(rays[:, 0], rays[:, 1])
    rays[:, :2] *= (undistort_radius(r, k1) / r)[:, None]
    src = rays[:, :2] * K[0, 0] + K[:2, 2]
    ok = (src >= 0).all(1) & (src[:, 0] < w) & (src[:, 1] < h)
    at = lambda img, p: img[p[:, 1].astype(int), p[:, 0].astype(int)].astype(float)  # noqa: E731
    through_model = np.abs(at(distorted, grid[ok]) - at(pinhole, src[ok])).mean()
    ignoring_model = np.abs(at(distorted, grid[ok]) - at(pinhole, grid[ok])).mean()
    assert through_model < 8 and ignoring_model > 2 * through_model


def test_long_preset_paces_like_real_footage() -> None:
    cfg = WorldConfig.long()
    assert (cfg.seconds, cfg.fps, cfg.width, cfg.height, cfg.cuts, cfg.inserts) == (150.0, 5.0, 480, 270, 1, 1)
    assert cfg.dwell_seconds == 45.0 and cfg.talk == "dense"
    degraded = WorldConfig.degraded()
    assert degraded.videos == 5 and degraded.motion_blur > 0 and degraded.distortion_k1 < 0 and degraded.hands
    assert degraded.talk == "dense" and WorldConfig().talk == "sparse"
    assert WorldConfig.long(videos=3).videos == 3
    with pytest.raises(ValueError, match="caption"):
        generate_world(Path("/nonexistent"), WorldConfig(caption_vtt_share=0.8, caption_whisper_share=0.5))
    for bad in (WorldConfig(talk="loud"), WorldConfig.long(extra_talk=1.0)):
        with pytest.raises(ValueError, match="talk"):
            bad.check()


def test_extra_talk_sets_the_ungrounded_share() -> None:
    """``extra_talk`` adds ungrounded lines that take time from step talk (instead of being squeezed out), and its
    mentions name parts the camera does not show while they are said."""
    from synth.camera import Visit
    from synth.talk import narrate

    steps = [(t, s) for t in ("check_oil", "add_coolant") for s in TASKS[t].steps]
    by_part: dict[str, list] = {}
    for step in steps:
        by_part.setdefault(step[1].part, []).append(step)
    bounds = np.linspace(2.0, 28.0, len(by_part) + 1)
    visits = [
        Visit(p, ss, float(a), float(b)) for (p, ss), a, b in zip(by_part.items(), bounds[:-1], bounds[1:], strict=True)
    ]
    shown = {v.part: (v.start, v.end) for v in visits}
    visible = lambda a, b: {p for p, (s, e) in shown.items() if s < b and a < e}  # noqa: E731

    def share(extra: float) -> float:
        kinds = []
        for seed in range(12):
            lines = narrate(np.random.default_rng(seed), visits, "focus", ["check_oil"], 30.0, extra, visible)
            plain = {n.text: n for n in narrate(np.random.default_rng(seed), visits, "focus", ["check_oil"], 30.0)}
            assert all(0 <= n.start < n.end <= 30.0 for n in lines)
            assert all(a.end <= b.start for a, b in zip(lines, lines[1:], strict=False))  # one speaker
            for n in lines:
                if n.kind == "step":  # the same step talk, only cut around the extra lines, never moved
                    assert plain[n.text].start <= n.start < n.end <= plain[n.text].end, (n, plain[n.text])
                if n.kind == "mention" and extra > 0:
                    assert n.part not in visible(n.start, n.end), n
            kinds += [n.kind for n in lines]
        return 1 - kinds.count("step") / len(kinds)

    base, some, more = share(0.0), share(1.0), share(2.0)
    assert base < 0.3 and base + 0.15 < some < more - 0.05, (base, some, more)  # measured 0.18, 0.45, 0.55


# --- Dense talk and minute-long hovers ---

SPARSE_SMALL_WORLD = {  # the small world's narration before dense talk existed: sparse talk must not change
    "video_00": [
        "what's up guys, quick video today",
        "then pull out the dipstick",
        "clean off the dip stick",
        "alright, reinsert the dip stick all the way",
    ],
    "video_01": [
        "in this video we change the spark plugs and check the brake fluid on my focus",
        "the next thing is to take the coils off to reach the sparkplugs",
        "replace the spark plugs one by one",
    ],
}


def _names_a_part(text: str) -> bool:
    import re

    words = " " + " ".join(re.findall(r"[a-z0-9']+", text.lower())) + " "
    return any(f" {syn} " in words for syns in SYNONYMS.values() for syn in syns)


def test_sparse_talk_is_unchanged(small_world) -> None:
    """The default world says exactly what it said before ``talk`` existed; the new GT fields describe it."""
    _, gt = _gt(small_world)
    assert {v: [n["text"] for n in video["narrations"]] for v, video in gt["videos"].items()} == SPARSE_SMALL_WORLD
    for video in gt["videos"].values():
        for n in video["narrations"]:
            assert n["refers"] == ("name" if n["part"] else None) and n["talk"] in ("intro", "step", "filler")
            if n["kind"] == "step":
                assert video["dwells"][n["dwell"]]["part"] == n["part"]


@pytest.fixture(scope="module")
def dense_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The ``long`` preset (2 × 150 s, dense talk, 36–54-s hovers) at a thumbnail size: (scene dir, ground truth)."""
    (scene_dir,) = generate_world(tmp_path_factory.mktemp("dense"), WorldConfig.long(width=64, height=36, fps=1.0))
    return scene_dir, load_ground_truth(scene_dir / "ground_truth.json")


def test_dense_talk_in_ground_truth(dense_world) -> None:
    """A line every 3–4 s, most naming no part, off-screen mentions never outnumbering the on-screen namings;
    every line's part, reference and dwell are right in the GT."""
    scene_dir, gt = dense_world
    named, total, talks = 0, 0, set()
    for video in gt["videos"].values():
        lines, dwells = video["narrations"], video["dwells"]
        seconds = len(video["frames"]) / video["fps"]
        assert 3.0 <= seconds / len(lines) <= 4.2
        if video["subtitle_format"] == "srt":
            assert [s.content for s in srt.parse((scene_dir / video["subtitles"]).read_text())] == [
                n["text"] for n in lines
            ]
        named += sum(n["refers"] == "name" for n in lines)
        total += len(lines)
        assert sum(n["talk"] == "mention" for n in lines) <= max(
            1, sum(n["refers"] == "name" and n["kind"] == "step" for n in lines)
        )
        talks |= {n["talk"] for n in lines}
        visit = np.cumsum([i == 0 or d["part"] != dwells[i - 1]["part"] for i, d in enumerate(dwells)])  # per piece
        per_visit = [0] * (visit[-1] + 1)
        for n in lines:
            assert n["refers"] in (None, "name", "pronoun") and (n["part"] is None) == (n["refers"] is None)
            assert n["refers"] == "name" or not _names_a_part(n["text"]), n
            d = dwells[n["dwell"]] if n["dwell"] is not None else None
            if n["kind"] == "step":  # the part of its dwell, named or pointed at, said around that dwell
                assert d["part"] == n["part"] and d["start"] - 3.0 < n["end"] and n["start"] < d["end"] + 2.0, n
                per_visit[visit[n["dwell"]]] += n["refers"] == "name"
            if n["refers"] == "pronoun":  # "this one right here" while the part is on screen
                assert d["start"] < n["end"] and n["start"] < d["end"] and n["talk"] == "pronoun", n
            if n["kind"] == "filler" and d is not None:  # said while that dwell is on screen
                assert d["start"] <= (n["start"] + n["end"]) / 2 <= d["end"], n
        assert max(per_visit) <= 2
    assert 0.05 <= named / total <= 0.28, named / total
    assert {"intro", "step", "pronoun", "chatter", "aside", "mention", "outro"} <= talks


def _dense_visits(seconds: float, n: int) -> list:
    """``n`` back-to-back visits (1.5-s swings) filling a video, tasks' steps in order."""
    from synth.camera import _visits

    visits = _visits(["check_oil", "replace_battery", "replace_air_filter", "add_coolant"])[:n]
    bounds = np.linspace(3.0, seconds - 1.0, n + 1)
    for v, a, b in zip(visits, bounds[:-1], bounds[1:], strict=True):
        v.start, v.end = float(a + 1.5), float(b)
    return visits


def test_dense_talk_names_each_visit_about_once_with_jittered_timing() -> None:
    """Over many seeds: ~20 % of visits unnamed, none named more than twice, naming lines that start before the
    camera arrives or end after it leaves, a varied vocabulary, and the same seed saying the same."""
    from synth.talk import narrate

    visits = _dense_visits(150.0, 3)
    counts, early, late, texts, rates = [], 0, 0, set(), []
    for seed in range(40):
        lines = narrate(np.random.default_rng(seed), visits, "golf", ["check_oil"], 150.0, talk="dense")
        assert lines == narrate(np.random.default_rng(seed), visits, "golf", ["check_oil"], 150.0, talk="dense")
        assert all(0 <= n.start < n.end <= 150.0 for n in lines)
        assert all(a.end <= b.start for a, b in zip(lines, lines[1:], strict=False))  # one speaker
        rates.append(150.0 / len(lines))
        texts |= {n.text for n in lines}
        for k, v in enumerate(visits):
            naming = [n for n in lines if n.kind == "step" and n.refers == "name" and n.dwell == k]
            assert all(n.part == v.part for n in naming)
            counts.append(len(naming))
            early += any(n.start < v.start for n in naming)
            late += any(n.end > v.end for n in naming)
    named = sum(c > 0 for c in counts)
    assert max(counts) <= 2 and 0.1 <= 1 - named / len(counts) <= 0.3, counts
    assert 0.2 <= early / named <= 0.55 and late >= 0.05 * named, (early, late, named)
    assert 3.0 <= np.mean(rates) <= 4.0 and len(texts) > 1000
    other = narrate(np.random.default_rng(99), visits, "golf", ["check_oil"], 150.0, talk="dense")
    assert [n.text for n in other] != [n.text for n in lines]


def test_minute_long_hover_orbits_the_part_in_view(bay_renderer) -> None:
    """A 60-s dwell: the camera orbits tens of degrees round the part (centre moving tens of cm), wobbling by
    hand, and the part's GT centre projects inside every frame of the dwell."""
    from synth.camera import _spherical, plan_path
    from synth.render import project

    cfg = WorldConfig(seed=0)
    variant = make_variant(cfg, 0, 0)
    parts = {p: x + variant.offset(p) for p, x in make_scene(cfg, 0).parts.items()}
    w, h, fps = 320, 180, 5.0
    K = np.array([[250.0, 0, w / 2], [0, 250.0, h / 2], [0, 0, 1]])
    path = plan_path(
        np.random.default_rng(3),
        bay_renderer,
        parts,
        ["check_brake_fluid"],
        K,
        72.0,
        fps,
        (w, h),
        dwell=60.0,
        swing=1.5,
    )
    (visit,) = path.visits
    assert visit.end - visit.start >= 60.0
    goal = parts[visit.part]
    inside = (path.times >= visit.start) & (path.times <= visit.end)
    poses = path.poses[inside]
    uv = np.array([project(K, 0.0, pose, goal[None])[0] for pose in poses])
    depth = np.array([pose[2, :3] @ goal + pose[2, 3] for pose in poses])
    assert (depth > 0.25).all() and (uv >= 0).all() and (uv[:, 0] < w).all() and (uv[:, 1] < h).all()
    assert np.abs(uv - [w / 2, h / 2]).max() < 0.2 * w  # pointed at the part, give or take the wobble
    centres = np.array([_centre(pose) for pose in poses])
    assert np.linalg.norm(centres[:, None] - centres[None], axis=2).max() > 0.15
    az, _, dist = np.array([_spherical(c - goal) for c in centres]).T
    assert np.ptp(az) > 25.0  # an orbit, not a drift
    assert dist.min() > 0.3 and dist.max() < 0.8 and np.ptp(dist) > 0.01  # at hovering distance, by hand
