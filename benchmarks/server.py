"""``howto3d serve`` throughput: /query latency and requests/s with concurrent clients, /localize s per photo.

    python benchmarks/server.py WS [--scene S] [--clients 8] [--requests 800] [--quick]

Starts the real server (``howto3d serve``, its own process) on a trained workspace, then measures side by side:
a cold ``howto3d query`` process (what a client would pay without the server), ``/query`` with unique texts
(every request runs BERT; concurrent ones are batched) and with repeated texts (the LRU cache), and
``/localize`` on 640x360 frames of the workspace's videos that SfM never sampled.
"""

from __future__ import annotations

import argparse
import io
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Run as a script, this folder comes first on sys.path and its grounding.py would shadow the package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import httpx  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from howto3d.workspace import Workspace  # noqa: E402
from recon.frames import load as load_frames  # noqa: E402
from recon.video import read_frames  # noqa: E402

PARTS = ["dipstick", "battery", "air filter", "coolant reservoir", "brake fluid", "spark plugs", "oil filler cap"]
VERBS = ["where is the", "show me the", "find the", "how do I reach the", "point at the"]


def _texts(n: int) -> list[str]:
    """``n`` distinct queries (so none is answered from the cache)."""
    return [f"{VERBS[i % len(VERBS)]} {PARTS[(i // len(VERBS)) % len(PARTS)]} ({i})" for i in range(n)]


def _load(url: str, scene: str, texts: list[str], clients: int) -> tuple[np.ndarray, float]:
    """Per-request latencies (s) and requests/s of ``texts`` sent by ``clients`` concurrent keep-alive clients."""
    chunks = [texts[i::clients] for i in range(clients)]

    def client(chunk: list[str]) -> list[float]:
        out = []
        with httpx.Client(base_url=url, timeout=60) as c:
            for t in chunk:
                t0 = time.perf_counter()
                r = c.post("/query", json={"scene": scene, "text": t})
                r.raise_for_status()
                out.append(time.perf_counter() - t0)
        return out

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        lat = np.concatenate([np.array(x) for x in pool.map(client, chunks)])
    return lat, len(texts) / (time.perf_counter() - t0)


def _photos(ws: Workspace, scene: str, n: int) -> list[bytes]:
    """JPEGs of frames the reconstruction never sampled, spread over the scene's videos."""
    out = []
    videos = [v for v in ws.videos(scene) if (ws.frames_dir(scene, v.name) / "frames.json").exists()]
    for k in range(n):
        v = videos[k % len(videos)]
        sampled = {f["index"] for f in load_frames(ws.frames_dir(scene, v.name))["frames"]}
        free = [i for i in range(5, max(sampled)) if i not in sampled]
        index = free[(k * 7919) % len(free)]
        buf = io.BytesIO()
        Image.fromarray(next(iter(read_frames(v.path, [index])))[2]).save(buf, format="JPEG", quality=92)
        out.append(buf.getvalue())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("ws", type=Path)
    parser.add_argument("--scene")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=800)
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="200 requests, 3 photos")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.photos = 200, 3
    ws = Workspace.open(args.ws)
    scene = args.scene or ws.scenes()[0]
    exe = Path(sys.executable).with_name("howto3d")

    t0 = time.perf_counter()
    subprocess.run([str(exe), "query", str(ws.root), "--scene", scene, "where is the dipstick", "--json"],
                   check=True, capture_output=True)
    cold = time.perf_counter() - t0

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([str(exe), "serve", str(ws.root), "--port", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        t0 = time.perf_counter()
        while True:
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if server.poll() is not None or time.perf_counter() - t0 > 600:
                raise SystemExit("the server did not start")
            time.sleep(0.1)
        startup = time.perf_counter() - t0
        _load(url, scene, _texts(32)[::-1], args.clients)  # warm-up (other texts than the measured ones)
        single, _ = _load(url, scene, _texts(args.requests)[:50], 1)
        unique, unique_rps = _load(url, scene, _texts(args.requests), args.clients)
        repeated, repeated_rps = _load(url, scene, _texts(10) * (args.requests // 10), args.clients)

        photos = _photos(ws, scene, args.photos)
        with httpx.Client(base_url=url, timeout=300) as c:
            c.post("/localize", data={"scene": scene}, files={"image": ("warm.jpg", photos[0], "image/jpeg")})
            secs, ok = [], 0
            for k, p in enumerate(photos):
                t0 = time.perf_counter()
                r = c.post("/localize", data={"scene": scene}, files={"image": (f"{k}.jpg", p, "image/jpeg")})
                secs.append(time.perf_counter() - t0)
                ok += r.json()["images"][0]["status"] == "localized"
    finally:
        server.terminate()
        server.wait(timeout=30)

    ms = lambda a, q: 1000 * float(np.percentile(a, q))  # noqa: E731
    print(f"\nhowto3d serve on {ws.root} (scene {scene}), server ready {startup:.1f} s after start\n")
    print("| measurement                                   | p50 ms | p95 ms | requests/s |")
    print("|-----------------------------------------------|--------|--------|------------|")
    print(f"| cold `howto3d query` process (1 query)         | {cold * 1000:6.0f} |        |            |")
    print(f"| /query, 1 client, unique texts                | {ms(single, 50):6.1f} | {ms(single, 95):6.1f} | "
          f"{1 / np.mean(single):10.0f} |")
    print(f"| /query, {args.clients} clients, unique texts ({len(unique)})      | {ms(unique, 50):6.1f} | "
          f"{ms(unique, 95):6.1f} | {unique_rps:10.0f} |")
    print(f"| /query, {args.clients} clients, 10 repeated texts ({len(repeated)}) | {ms(repeated, 50):6.1f} | "
          f"{ms(repeated, 95):6.1f} | {repeated_rps:10.0f} |")
    print(f"\n/localize, 640x360 JPEG: {np.mean(secs):.2f} s per photo (median {np.median(secs):.2f}, "
          f"{len(secs)} photos, {ok} localized)")


if __name__ == "__main__":
    main()
