"""Video reading with PyAV: exact per-frame timestamps (PTS) and uniform or random frame sampling.

Timestamps come from the container's presentation times, not from ``index / fps``, so frames of
variable-frame-rate videos (phone recordings, YouTube re-encodes) still line up with their subtitles.
Frames come out as the video is *displayed*: phone videos store sensor-oriented pixels plus a display
matrix (rotation metadata), which is applied here, so every later stage and every pixel coordinate a user
sees refers to the upright picture.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
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
    rotation: int = 0
    """Counter-clockwise rotation (0, 90, 180, 270) applied to the stored pixels to display them upright;
    ``width``/``height`` are the displayed size, i.e. already swapped for 90/270."""

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


def _quarter_turns(frame: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns that display ``frame`` upright (its display matrix, rounded to 90°)."""
    return round((frame.rotation or 0) / 90) % 4


def _first_turns(packet: av.Packet[av.VideoStream]) -> int | None:
    """Quarter turns of the first frame this packet completes; ``None`` while the decoder needs more (or the
    packet is damaged: the frame decoder will say so if it matters)."""
    try:
        for frame in packet.decode():
            return _quarter_turns(frame)
    except av.error.FFmpegError:
        pass
    return None


def upright(frame: av.VideoFrame) -> np.ndarray:
    """RGB pixels of a decoded frame as displayed (display-matrix rotation applied; flips are not)."""
    rgb = frame.to_ndarray(format="rgb24")
    k = _quarter_turns(frame)
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


def _seconds(pts: int | None, start: int | None, base: Fraction | None, path: Path) -> float:
    """Seconds from ``start`` to ``pts`` in ``base`` units; a timestamp a frame lacks is a broken video."""
    if pts is None or start is None or base is None:
        raise InputError(f"{path}: a frame has no timestamp; re-encode the video")
    return float((pts - start) * base)


def probe(path: Path) -> VideoInfo:
    """Read every frame's presentation timestamp by demuxing; only the first frame is decoded (for its rotation)."""
    path = Path(path)
    with _open(path) as container:
        stream = container.streams.video[0]
        turns = None
        try:
            pts = []
            for p in container.demux(stream):
                if p.pts is not None and p.size > 0:
                    pts.append(p.pts)
                if turns is None and p.size > 0:  # decode until the first frame to learn the display rotation
                    turns = _first_turns(p)
        except av.error.FFmpegError as e:
            raise InputError(f"{path}: the video is corrupt ({e.strerror or e}); re-download or re-encode it") from None
        if not pts:
            raise InputError(f"{path}: the video has no frames; re-download or re-encode it")
        base = stream.time_base
        start = stream.start_time if stream.start_time is not None else min(pts)
        times = np.sort(np.array([_seconds(p, start, base, path) for p in pts]))
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else (len(times) - 1) / max(times[-1], 1e-9)
        w, h = stream.codec_context.width, stream.codec_context.height
        turns = turns or 0
        if turns % 2:
            w, h = h, w
        return VideoInfo(path, w, h, fps, times, rotation=90 * turns)


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


def read_frames(path: Path, indices: Iterable[int] | None = None) -> Iterator[tuple[int, float, np.ndarray]]:
    """Decode frames in presentation order and yield ``(index, time, rgb[H, W, 3] uint8)``, upright.

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
                    yield index, _seconds(frame.pts, start, base, path), upright(frame)
                    if wanted is not None:
                        wanted.discard(index)
                        if not wanted:
                            return
                index += 1
        except av.error.FFmpegError as e:
            raise InputError(
                f"{path}: decoding failed at frame {index} ({e.strerror or e}); re-download or re-encode the video"
            ) from None
