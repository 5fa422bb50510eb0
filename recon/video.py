"""Video reading with PyAV: exact per-frame timestamps (PTS) and uniform or random frame sampling.

Timestamps come from the container's presentation times, not from ``index / fps``, so frames of
variable-frame-rate videos (phone recordings, YouTube re-encodes) still line up with their subtitles.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import av
import numpy as np

from recon.io import InputError

SamplingMode = Literal["uniform", "random"]


@dataclass(frozen=True)
class VideoInfo:
    """What the pipeline needs to know about a video before decoding it."""

    path: Path
    width: int
    height: int
    fps: float
    times: np.ndarray
    """Presentation time of every frame in seconds, sorted, starting at the first frame."""

    @property
    def num_frames(self) -> int:
        return len(self.times)

    @property
    def duration(self) -> float:
        return float(self.times[-1] + 1.0 / self.fps) if len(self.times) else 0.0


def _open(path: Path) -> av.container.InputContainer:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: video file not found; check the path")
    if path.stat().st_size == 0:
        raise InputError(f"{path}: the file is empty; re-download or re-export the video")
    try:
        container = av.open(str(path))
    except av.error.FFmpegError as e:
        raise InputError(f"{path}: not a readable video ({e.strerror or e}); re-encode it as mp4 (H.264)") from None
    if not container.streams.video:
        container.close()
        raise InputError(f"{path}: contains no video stream; give a video file, not audio or subtitles")
    return container


def probe(path: Path) -> VideoInfo:
    """Read every frame's presentation timestamp by demuxing (no decoding)."""
    path = Path(path)
    with _open(path) as container:
        stream = container.streams.video[0]
        try:
            pts = [p.pts for p in container.demux(stream) if p.pts is not None and p.size > 0]
        except av.error.FFmpegError as e:
            raise InputError(f"{path}: the video is corrupt ({e.strerror or e}); re-download or re-encode it") from None
        if not pts:
            raise InputError(f"{path}: the video has no frames; re-download or re-encode it")
        base = stream.time_base
        start = stream.start_time if stream.start_time is not None else min(pts)
        times = np.sort(np.array([float((p - start) * base) for p in pts]))
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else (len(times) - 1) / max(times[-1], 1e-9)
        return VideoInfo(path, stream.codec_context.width, stream.codec_context.height, fps, times)


def sample_indices(num_frames: int, n: int, mode: SamplingMode = "uniform", seed: int = 0) -> np.ndarray:
    """Indices of ``n`` frames (all of them when ``n >= num_frames``), sorted.

    ``uniform`` spreads them evenly in index (= time for constant-rate video); ``random`` draws them
    without replacement, as the source does, reproducibly from ``seed``.
    """
    if n >= num_frames:
        return np.arange(num_frames)
    if mode == "uniform":
        return np.unique(np.round(np.linspace(0, num_frames - 1, n)).astype(int))
    if mode == "random":
        return np.sort(np.random.default_rng(seed).choice(num_frames, size=n, replace=False))
    raise ValueError(f"unknown sampling mode {mode!r}; use 'uniform' or 'random'")


def read_frames(path: Path, indices: np.ndarray | None = None) -> Iterator[tuple[int, float, np.ndarray]]:
    """Decode frames in presentation order and yield ``(index, time, rgb[H, W, 3] uint8)``.

    ``indices`` selects frames by presentation index (see :func:`probe`); ``None`` yields all frames.
    """
    path = Path(path)
    wanted = None if indices is None else set(int(i) for i in indices)
    with _open(path) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        base = stream.time_base
        start = stream.start_time
        index = 0
        try:
            for frame in container.decode(stream):
                if start is None:
                    start = frame.pts
                if wanted is None or index in wanted:
                    yield index, float((frame.pts - start) * base), frame.to_ndarray(format="rgb24")
                    if wanted is not None:
                        wanted.discard(index)
                        if not wanted:
                            return
                index += 1
        except av.error.FFmpegError as e:
            raise InputError(f"{path}: decoding failed at frame {index} ({e.strerror or e}); "
                             "re-download or re-encode the video") from None
