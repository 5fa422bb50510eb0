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
from PIL import Image

from synth import PARTS, TASKS, WorldConfig, generate_world, load_ground_truth, make_scene, make_variant, render_frame
from synth.narration import SYNONYMS


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


@pytest.mark.slow
def test_pycolmap_registers_frames(small_world, tmp_path: Path) -> None:
    """A real SfM run on 40 uniformly sampled frames registers ≥ 90% and matches GT centres."""
    scene_dir, gt = _gt(small_world)
    video = gt["videos"]["video_00"]
    frames = _frames(scene_dir / video["file"])
    picks = np.linspace(0, len(frames) - 1, 40).round().astype(int)
    images = tmp_path / "images"
    images.mkdir()
    for i in picks:
        Image.fromarray(frames[i].to_ndarray(format="rgb24")).save(images / f"{i:05d}.png")
    db = tmp_path / "database.db"
    reader = pycolmap.ImageReaderOptions()
    reader.camera_model = "SIMPLE_RADIAL"
    extraction = pycolmap.FeatureExtractionOptions()
    extraction.sift.max_num_features = 2048
    pycolmap.extract_features(db, images, camera_mode=pycolmap.CameraMode.SINGLE, reader_options=reader,
                              extraction_options=extraction, device=pycolmap.Device.cpu)  # fmt: skip
    pycolmap.match_exhaustive(db, device=pycolmap.Device.cpu)
    models = pycolmap.incremental_mapping(db, images, tmp_path / "sparse")
    rec = max(models.values(), key=lambda r: r.num_reg_images())
    assert rec.num_reg_images() >= 0.9 * len(picks)
    est, ref = [], []
    for image in rec.images.values():
        pose = video["frames"][int(image.name.split(".")[0])]["cam_from_world"]
        est.append(image.projection_center())
        ref.append(-pose[:, :3].T @ pose[:, 3])
    sim = pycolmap.estimate_sim3d(np.array(est), np.array(ref))
    errors = np.linalg.norm(np.array([sim * e for e in est]) - np.array(ref), axis=1)
    assert errors.mean() < 0.01 * gt["extent"]
