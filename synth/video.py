"""H.264 mp4 writing with exact, regular timestamps (frame i at i / fps)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


class VideoWriter:
    """Context manager writing RGB frames to an mp4 (yuv420p, CRF quality)."""

    def __init__(self, path: Path, width: int, height: int, fps: float, crf: int = 18) -> None:
        self.rate = Fraction(fps).limit_denominator(1001)
        self.container = av.open(str(path), mode="w")
        # threads=1 keeps x264 output bit-exact across machines and leaves the CPU to the renderer.
        self.stream = self.container.add_stream(
            "libx264", rate=self.rate, options={"crf": str(crf), "preset": "fast", "threads": "1"}
        )
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
        self.stream.codec_context.time_base = 1 / self.rate
        self.index = 0

    def write(self, rgb: np.ndarray) -> None:
        """Append one frame; its pts is its index in units of 1 / fps."""
        frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts, frame.time_base = self.index, 1 / self.rate
        self.container.mux(self.stream.encode(frame))
        self.index += 1

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.container.mux(self.stream.encode(None))
        self.container.close()
