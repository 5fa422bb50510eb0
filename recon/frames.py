"""Frame sampling: a video → N image files + their exact timestamps (the input of SfM).

Output folder layout::

    out_dir/images/<video>_<index:06d>.jpg
    out_dir/frames.json   {"video", "width", "height", "fps", "num_frames", "duration",
                           "frames": [{"name", "index", "time"}]}
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from PIL import Image

from recon.io import atomic_dir, atomic_write_json, read_json
from recon.video import probe, read_frames, sample_indices


@dataclass
class FramesConfig:
    """How frames are sampled from each video."""

    num_frames: int = 80
    """Frames sampled per video (the source samples a fixed number; 80 suits 30–120 s videos)."""
    sampling: Literal["uniform", "random"] = "uniform"
    """'uniform' spreads frames evenly in time; 'random' draws them at random (seeded) as in the source."""
    max_side: int = 1024
    """Frames larger than this (longest side, pixels) are downscaled: SIFT gains little above it."""
    jpeg_quality: int = 95
    """JPEG quality of the stored frames."""
    seed: int = 0
    """Seed of random sampling."""


def main(conf: FramesConfig, video: Path, out_dir: Path) -> dict:
    """Sample ``conf.num_frames`` frames of ``video`` into ``out_dir`` (written atomically); return frames.json."""
    info = probe(video)
    indices = sample_indices(info.num_frames, conf.num_frames, conf.sampling, conf.seed)
    scale = min(1.0, conf.max_side / max(info.width, info.height))
    frames = []
    with atomic_dir(out_dir) as tmp:
        (tmp / "images").mkdir()
        for index, time, rgb in read_frames(video, indices):
            image = Image.fromarray(rgb)
            if scale < 1.0:
                image = image.resize((round(info.width * scale), round(info.height * scale)), Image.LANCZOS)
            name = f"{Path(video).stem}_{index:06d}.jpg"
            image.save(tmp / "images" / name, quality=conf.jpeg_quality)
            frames.append({"name": name, "index": index, "time": round(time, 6)})
        meta = {
            "video": Path(video).name,
            "width": round(info.width * scale),
            "height": round(info.height * scale),
            "fps": info.fps,
            "num_frames": info.num_frames,
            "duration": info.duration,
            "config": asdict(conf),
            "frames": frames,
        }
        atomic_write_json(tmp / "frames.json", meta)
    return meta


def load(frames_dir: Path) -> dict:
    """Read a frames folder's ``frames.json``."""
    return read_json(Path(frames_dir) / "frames.json")
