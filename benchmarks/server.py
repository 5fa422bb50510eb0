"""``howto3d serve`` throughput: /query latency and requests/s with concurrent clients, /localize s per photo.

    python benchmarks/server.py [WS] [--scene S] [--clients 8] [--requests 800] [--quick] [--baseline SRC]

Starts the real server (``howto3d serve``, its own process) on a trained workspace, then measures side by side:
a cold ``howto3d query`` process (what a client would pay without the server), ``/query`` with unique texts
(every request runs BERT; concurrent ones are batched) and with repeated texts (the LRU cache), and
``/localize`` on 640x360 frames of the workspace's videos that SfM never sampled. ``--baseline SRC`` also
serves the workspace from another source tree (e.g. ``git archive <rev> | tar -x -C SRC``) and measures every
row on both servers back to back, so a before/after pair sees the same machine load (the clients run on the
same cores: the server's CPU time per request is the number that travels between machines).
"""

from __future__ import annotations

import argparse
import io
import os
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
from recon.sampling import load as load_frames  # noqa: E402
from recon.video import read_frames  # noqa: E402

PARTS = ["dipstick", "battery", "air filter", "coolant reservoir", "brake fluid", "spark plugs", "oil filler cap"]
VERBS = ["where is the", "show me the", "find the", "how do I reach the", "point at the"]


def _texts(n: int, tag: str) -> list[str]:
    """``n`` distinct queries; another ``tag`` gives other texts (none answered from the cache)."""
    return [f"{VERBS[i % len(VERBS)]} {PARTS[(i // len(VERBS)) % len(PARTS)]} ({tag} {i})" for i in range(n)]


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process ``pid`` has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load(url: str, scene: str, texts: list[str], clients: int, server: int) -> tuple[np.ndarray, float, float]:
    """Per-request latencies (s), requests/s and the server's CPU ms per request, of ``texts`` sent by
    ``clients`` concurrent keep-alive clients (CPU time per request stays comparable on a busy machine)."""
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

    t0, cpu0 = time.perf_counter(), _cpu_s(server)
    with ThreadPoolExecutor(clients) as pool:
        lat = np.concatenate([np.array(x) for x in pool.map(client, chunks)])
    return lat, len(texts) / (time.perf_counter() - t0), 1000 * (_cpu_s(server) - cpu0) / len(texts)


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


def _blank_jpeg() -> bytes:
    """A featureless photo: localization answers it at once (not localized) once the worker is ready."""
    buf = io.BytesIO()
    Image.new("RGB", (64, 36), (128, 128, 128)).save(buf, format="JPEG")
    return buf.getvalue()


def _small_workspace() -> Workspace:
    """The small trained workspace of ``benchmarks/query.py`` (one builder for both benchmarks)."""
    import importlib.util
    import tempfile

    spec = importlib.util.spec_from_file_location("bench_query", Path(__file__).with_name("query.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.small_workspace(Path(tempfile.mkdtemp(prefix="bench_server_")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "ws", type=Path, nargs="?", help="a trained workspace (default: the small one that benchmarks/query.py builds)"
    )
    parser.add_argument("--scene")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=800)
    parser.add_argument("--photos", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="200 requests, 3 photos")
    parser.add_argument("--no-localize", action="store_true", help="measure /query only")
    parser.add_argument("--baseline", type=Path, help="another source tree to serve and measure beside this one")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.photos = 200, 3
    ws = Workspace.open(args.ws) if args.ws else _small_workspace()
    scene = args.scene or ws.scenes()[0]
    trees = {"this tree": Path(__file__).resolve().parents[1]}
    if args.baseline:
        trees = {"baseline": args.baseline.resolve(), **trees}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    envs = {name: {**env, "PYTHONPATH": str(tree)} for name, tree in trees.items()}
    cli = [sys.executable, "-P", "-c", "import sys; from howto3d.cli import main; sys.argv[0] = 'howto3d'; main()"]

    cold = {}
    for name in trees:
        t0 = time.perf_counter()
        subprocess.run(
            [*cli, "query", str(ws.root), "--scene", scene, "where is the dipstick", "--json"],
            check=True,
            capture_output=True,
            env=envs[name],
        )
        cold[name] = time.perf_counter() - t0

    servers, urls = {}, {}
    try:
        for name in trees:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            urls[name] = f"http://127.0.0.1:{port}"
            servers[name] = subprocess.Popen(
                [*cli, "serve", str(ws.root), "--port", str(port)],
                env=envs[name],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        t0 = time.perf_counter()
        for name, url in urls.items():
            while True:
                try:
                    if httpx.get(url + "/health", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if servers[name].poll() is not None or time.perf_counter() - t0 > 600:
                    raise SystemExit(f"the server ({name}) did not start")
                time.sleep(0.1)
        startup = time.perf_counter() - t0
        photos = [] if args.no_localize else _photos(ws, scene, args.photos)
        for url in urls.values():
            with httpx.Client(base_url=url, timeout=300) as c:
                # The server loads every scene's localization index in its worker process at start-up; one
                # /localize waits for that, so the query numbers below are not measured beside it.
                warm = photos[0] if photos else _blank_jpeg()
                c.post("/localize", data={"scene": scene}, files={"image": ("warm.jpg", warm, "image/jpeg")})
        loads = [
            ("1 client, unique texts", _texts(50, "single"), 1),
            (f"{args.clients} clients, unique texts ({args.requests})", _texts(args.requests, "unique"), args.clients),
            (
                f"{args.clients} clients, 10 repeated texts ({args.requests // 10 * 10})",
                _texts(10, "repeated") * (args.requests // 10),
                args.clients,
            ),
        ]
        rows: list[tuple[str, str, np.ndarray, float, float, float]] = []
        for name, url in urls.items():  # other texts than the measured ones
            _load(url, scene, _texts(32, "warm-up"), args.clients, servers[name].pid)
        for label, texts, clients in loads:
            for name, url in urls.items():  # back to back: both servers see the same load
                lat, rps, cpu = _load(url, scene, texts, clients, servers[name].pid)
                rows.append((label, name, lat, rps, cpu, os.getloadavg()[0]))

        secs, ok = [], 0
        with httpx.Client(base_url=urls["this tree"], timeout=300) as c:
            for k, p in enumerate(photos):
                t0 = time.perf_counter()
                r = c.post("/localize", data={"scene": scene}, files={"image": (f"{k}.jpg", p, "image/jpeg")})
                secs.append(time.perf_counter() - t0)
                ok += r.json()["images"][0]["status"] == "localized"
    finally:
        for server in servers.values():
            server.terminate()
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()

    ms = lambda a, q: 1000 * float(np.percentile(a, q))  # noqa: E731
    print(
        f"\nhowto3d serve on {ws.root} (scene {scene}), {os.cpu_count()} CPUs, servers ready {startup:.1f} s "
        "after start\n"
    )
    print(
        "| measurement                                   | server    | p50 ms | p95 ms | requests/s | "
        "server CPU ms/req | load |"
    )
    print(
        "|-----------------------------------------------|-----------|--------|--------|------------|"
        "-------------------|------|"
    )
    for name in trees:
        print(
            f"| cold `howto3d query` process (1 query)         | {name:<9} | {cold[name] * 1000:6.0f} |        |"
            "            |                   |      |"
        )
    for label, name, lat, rps, cpu, load in rows:
        print(
            f"| /query, {label:<37} | {name:<9} | {ms(lat, 50):6.1f} | {ms(lat, 95):6.1f} | {rps:10.0f} | "
            f"{cpu:17.1f} | {load:4.1f} |"
        )
    if secs:
        print(
            f"\n/localize, 640x360 JPEG: {np.mean(secs):.2f} s per photo (median {np.median(secs):.2f}, "
            f"{len(secs)} photos, {ok} localized)"
        )


if __name__ == "__main__":
    main()
