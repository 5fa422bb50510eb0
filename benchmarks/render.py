"""Synthetic-world throughput: seconds per frame for rendering (clean vs degraded) and H.264 encoding.

    python benchmarks/render.py [--quick] [--frames N] [--width W] [--height H] [--long]

Clean and degraded frames are rendered side by side over the same camera sweep (degraded = SIMPLE_RADIAL
distortion, an exposure gain, motion blur from the true per-pixel motion, hands, sensor noise). Both wall
and CPU seconds are printed: on a shared machine CPU seconds are the comparable number. ``--long`` also
times ``generate_world`` for one video of the ``WorldConfig.long()`` preset (150 s at 5 fps, 480×270).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from synth import WorldConfig, generate_world, make_scene, make_variant
from synth.camera import BAY_CENTER, look_at
from synth.footage import Hands, add_noise, motion_blur
from synth.render import Renderer, project
from synth.video_writer import VideoWriter


class Clock:
    """Wall and CPU seconds of a block."""

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--quick", action="store_true", help="10 frames")
    parser.add_argument("--long", action="store_true", help="also time one video of WorldConfig.long()")
    args = parser.parse_args()
    if args.quick:
        args.frames = 10
    cfg = WorldConfig(seed=0, width=args.width, height=args.height)
    w, h, n = args.width, args.height, args.frames

    with Clock() as setup:
        scene = make_scene(cfg, 0)
        renderer = Renderer(scene, make_variant(cfg, 0, 0))
    f = 0.85 * w
    K = np.array([[f, 0, w / 2], [0, f, h / 2], [0, 0, 1]])

    def pose(angle: float) -> np.ndarray:
        eye = BAY_CENTER + np.array([0.9 * np.sin(angle), -0.9 * np.cos(angle), 0.8])
        return look_at(eye, BAY_CENTER)

    angles = np.linspace(-0.5, 0.5, n)
    with Clock() as clean:
        frames = [renderer.render(K, pose(a), w, h) for a in angles]

    rng = np.random.default_rng(0)
    hands = Hands.sample(rng)
    part = scene.parts["dipstick"]
    step = 0.5 * (angles[1] - angles[0]) if n > 1 else 0.01  # shutter open for half the frame interval
    with Clock() as degraded:
        for i, a in enumerate(angles):
            image, points = renderer.render(K, pose(a), w, h, k1=-0.08, exposure=1.3, points=True)
            image, _ = motion_blur(image, points, K, -0.08, pose(a - step / 2), pose(a + step / 2))
            px = project(K, -0.08, pose(a), part[None])[0]
            image, _ = hands.draw(image, i / 10, px, 0.3 * h)
            add_noise(rng, image, 2.0)

    with tempfile.TemporaryDirectory() as tmp:
        with Clock() as encode, VideoWriter(Path(tmp) / "bench.mp4", w, h, cfg.fps) as writer:
            for frame in frames:
                writer.write(frame)
        rows = [
            ("scene setup (s, once)", setup.wall, setup.cpu),
            ("render clean (s/frame)", clean.wall / n, clean.cpu / n),
            ("render degraded (s/frame)", degraded.wall / n, degraded.cpu / n),
            ("degraded / clean", degraded.wall / clean.wall, degraded.cpu / clean.cpu),
            ("encode (s/frame)", encode.wall / n, encode.cpu / n),
            ("clean + encode (frames/s)", n / (clean.wall + encode.wall), n / (clean.cpu + encode.cpu)),
        ]
        if args.long:
            long_cfg = WorldConfig.long(videos=1)
            with Clock() as whole:
                generate_world(Path(tmp) / "long", long_cfg)
            frames_long = round(long_cfg.seconds * long_cfg.fps)
            rows += [
                (f"long video ({frames_long} frames, s)", whole.wall, whole.cpu),
                ("long video (s/frame)", whole.wall / frames_long, whole.cpu / frames_long),
            ]
    print(f"{w}x{h}, {n} frames")
    print(f"  {'':<34}{'wall':>9}{'cpu':>9}")
    for name, wall, cpu in rows:
        print(f"  {name:<34}{wall:9.3f}{cpu:9.3f}")


if __name__ == "__main__":
    main()
