"""Synthetic-world throughput: seconds per frame for rendering vs H.264 encoding.

    python benchmarks/render.py [--quick] [--frames N] [--width W] [--height H]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from synth import WorldConfig, make_scene, make_variant
from synth.camera import BAY_CENTER, look_at
from synth.render import Renderer
from synth.video import VideoWriter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=360)
    parser.add_argument("--quick", action="store_true", help="10 frames")
    args = parser.parse_args()
    if args.quick:
        args.frames = 10
    cfg = WorldConfig(seed=0, width=args.width, height=args.height)

    t0 = time.perf_counter()
    scene = make_scene(cfg, 0)
    renderer = Renderer(scene, make_variant(cfg, 0, 0))
    setup = time.perf_counter() - t0

    f = 0.85 * args.width
    K = np.array([[f, 0, args.width / 2], [0, f, args.height / 2], [0, 0, 1]])
    angles = np.linspace(-0.5, 0.5, args.frames)
    eyes = BAY_CENTER + np.stack([0.9 * np.sin(angles), -0.9 * np.cos(angles), np.full_like(angles, 0.8)], axis=1)
    t0 = time.perf_counter()
    frames = [renderer.render(K, look_at(eye, BAY_CENTER), args.width, args.height) for eye in eyes]
    render = (time.perf_counter() - t0) / args.frames

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        with VideoWriter(Path(tmp) / "bench.mp4", args.width, args.height, cfg.fps) as writer:
            for frame in frames:
                writer.write(frame)
        encode = (time.perf_counter() - t0) / args.frames

    rows = [
        ("scene setup (s, once)", setup),
        ("render (s/frame)", render),
        ("encode (s/frame)", encode),
        ("total (s/frame)", render + encode),
        ("throughput (frames/s)", 1.0 / (render + encode)),
    ]
    print(f"{args.width}x{args.height}, {args.frames} frames")
    for name, value in rows:
        print(f"  {name:<24}{value:9.3f}")


if __name__ == "__main__":
    main()
