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
        # Same frames → same bytes: one x264 thread (lookahead included) and no macroblock-tree rate control, whose
        # float arithmetic depends on the thread's FPU state that Open3D's ray caster changes (with mbtree on,
        # re-encoding the same rendered frames in one process gave different videos); one thread also leaves the
        # CPU to the renderer.
        self.stream = self.container.add_stream(
            "libx264",
            rate=self.rate,
            options={
                "crf": str(crf),
                "preset": "fast",
                "threads": "1",
                "x264-params": "threads=1:lookahead-threads=1:sliced-threads=0:mbtree=0",
            },
        )
        self.stream.codec_context.thread_count, self.stream.codec_context.thread_type = 1, "NONE"
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
        self.stream.codec_context.time_base = 1 / self.rate
        self.index = 0

    def write(self, rgb: np.ndarray) -> None:
        """Append one frame; its pts is its index in units of 1 / fps."""
        frame = av.VideoFrame.from_ndarray(_yuv420p(rgb), format="yuv420p")
        frame.pts, frame.time_base = self.index, 1 / self.rate
        self.container.mux(self.stream.encode(frame))
        self.index += 1

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.container.mux(self.stream.encode(None))
        self.container.close()


_TO_YUV = np.array(
    [[0.256788, 0.504129, 0.097906], [-0.148223, -0.290993, 0.439216], [0.439216, -0.367788, -0.071427]],
    dtype=np.float32,
)


def _yuv420p(rgb: np.ndarray) -> np.ndarray:
    """BT.601 limited-range planar YUV 4:2:0, as decoders assume for untagged H.264, computed in numpy.

    Doing it here rather than in swscale keeps every encode of the same frames bit-exact.
    """
    h, w = rgb.shape[:2]
    yuv = rgb.astype(np.float32) @ _TO_YUV.T + np.array([16, 128, 128], dtype=np.float32)
    y = yuv[..., 0]
    uv = yuv[..., 1:].reshape(h // 2, 2, w // 2, 2, 2).mean(axis=(1, 3))
    planes = [y.ravel(), uv[..., 0].ravel(), uv[..., 1].ravel()]
    return np.clip(np.concatenate(planes) + 0.5, 0, 255).astype(np.uint8).reshape(h * 3 // 2, w)
