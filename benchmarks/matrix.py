"""The settings matrix: the whole product at its DEFAULT settings across what users' footage varies,
run before every change to a default.

Each cell renders (or reuses) a small synthetic world with ``howto3d synth``, copies its videos, subtitles, task
file and ground truth into a fresh ``howto3d init`` workspace, runs ``howto3d run`` with nothing overridden but the
frame count, and then every command that reads a workspace, each as its own subprocess of the real ``howto3d``
console script (so a traceback is seen exactly as a user sees it), with a timeout::

    python benchmarks/matrix.py                 # the all-pairs design below (12 cells; hours on 2 cores)
    python benchmarks/matrix.py --quick         # one tiny cell: 20 s, 30 frames, default preset, seed 0
    python benchmarks/matrix.py --full          # the full factorial of the chosen levels (72 cells by default)
    python benchmarks/matrix.py --lengths 20,45 --frames 80 --presets default --seeds 0,1 [--full]
        [--out DIR] [--json results.json] [--timeout 900] [--run-timeout 10800] [--fps 5] [--size 480 270]
    python benchmarks/matrix.py --report results.json   # print the tables of a finished run again

Axes and levels (defaults): clip length 20 / 45 / 90 / 150 s (``synth --seconds``); frames per video 30 / 80 / 150
(``run --frames N``; 80 is the product default and is then not passed at all); preset default / degraded / long
(``synth --preset``, always ``--scenes 1 --videos 2``); seeds 0 / 1. Rendering is kept cheap and equal for every
preset: ``--set fps=5 --set width=480 --set height=270`` (what ``long`` already uses); ``degraded`` keeps its blur,
distortion, exposure jumps, hands, cut, noise and compression, with ``motion_blur`` halved to 0.25 so that the
shutter stays open as long as at its own 10 fps (blur per unit of camera speed unchanged). ``long`` and
``degraded`` narrate with ``talk = "dense"`` (a line every 3–4 s, most naming no part), ``default`` sparsely;
``long``'s 36–54 s hovers leave one or two parts in a 20–45 s cell. At 5 fps a 20-s clip has 100 frames, so the
150-frame level samples every frame there: what a user asking for more frames than a short clip has gets.

Designs. ``--full``: every combination of the chosen levels. Default: an all-pairs (strength-2 covering) design:
every pair of levels of any two axes is in at least one cell. Built as the product of the two axes with the most
levels, the third axis at level (i + j) mod n3 and the fourth at (i + j) mod n4 (i, j: level indices of the first
two), then any pair still missing (other level choices) gets a cell chosen greedily. With the default levels this
is 12 cells — the fewest possible, since length × frames alone has 12 pairs — and every cell is a different world:

    length  frames  preset    seed        length  frames  preset    seed
    20      30      default   0           90      30      long      0
    20      80      degraded  1           90      80      default   1
    20      150     long      0           90      150     degraded  0
    45      30      degraded  1           150     30      default   1
    45      80      long      0           150     80      degraded  0
    45      150     default   1           150     150     long      1

``--quick``: the single cell 20 s / 30 frames / default / seed 0 (a CI-like smoke run: 8 min on 2 cores shared
with other jobs at load ~8 — rendering 65 s, ``run`` 160 s, the other 20 commands 200 s; 45 s / 80 frames took 16
min: rendering 140 s, ``run`` 315 s).
Worlds are cached under ``OUT/worlds/<preset>_<length>s_seed<seed>`` (same seed, same world; a cell that differs
only in frame count reuses the rendering), cells are under ``OUT/cells/`` with each command's stdout/stderr in
``logs/``; without ``--out`` everything is in a temporary folder that is removed at the end.

Commands per cell, in this order (the scene and video names are the synthetic world's): ``run``, ``check`` (when
``howto3d check --help`` succeeds, else n/a), ``cameras --json``, ``transfer --json`` (parts of the source video
clicked where the ground truth projects them, lens distortion included, in 4 spread registered frames), ``query
--json``, ``overlay --video``, ``overlay --image`` (an unsampled frame of the second video saved as PNG),
``export --format glb --query``, ``actionness``, ``steps`` (first video), ``discover``, ``groundedness``,
``localize`` (the same photo), ``view --screenshot`` (headless, no display needed), ``serve`` (a free 127.0.0.1
port, one request per route: ``/health``, ``/scenes``, ``/``, a static file, ``/query``, ``/localize``,
``/overlay``, ``/scene/S/export.glb``; then SIGINT, as Ctrl-C), ``eval-grounding --json``, ``eval-transfer
--json``, ``eval-steps --json``, ``check`` again (``check-end``: the commands that write left the workspace
consistent), and last ``scale`` (two parts' true distance: it moves the shared frame to metres, which by design
makes the grounding model stale until the next ``run``, so nothing that reads the frame runs after it).

A cell PASSES when all of these hold (the table has one column each):

- tb:   no ``Traceback`` in any command's stdout or stderr (synth and init included);
- rc:   every command exits 0 (``check`` n/a does not count) and writes the file it was asked for; ``serve``
        answered every route with 200; a failure is listed under the table with its rc and its error line
        ("clean" = one ``error:`` line and no traceback);
- dup:  no (video, time) twice in ``cameras --json``;
- gt:   one Sim(3) fit of ALL the scene's cameras (``cameras --json``) to the ground truth
        (``howto3d.evaluation.fit_to_world``; the world is in metres): every video aligned and its median
        camera-centre error <= 2 cm;
- own:  each video's own Sim(3) fit: median camera-centre error <= 1 cm.

Also printed (not pass/fail): registered / sampled frames, segments per video (and true shots: cuts + 1), keypoint
transfer and photo localization error after the global fit, grounding PCK@30cm (``eval-grounding``), wall seconds
of the cell, of ``run`` and of its stages (``state/*.json``: the seconds each item recorded, summed per stage).
The last line is "N of M cells pass". The exit code is 0 whatever the cells do (it is a measurement); 2 on misuse.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from types import SimpleNamespace

sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

LENGTHS = (20.0, 45.0, 90.0, 150.0)
FRAMES = (30, 80, 150)
PRESETS = ("default", "degraded", "long")
SEEDS = (0, 1)
QUICK = (20.0, 30, "default", 0)

QUERY = "where is the dipstick"
GT_ALL_M = 0.02
"""Median camera-centre error per video after one Sim(3) of all the scene's cameras to the truth."""
GT_OWN_M = 0.01
"""Median camera-centre error of each video after its own Sim(3) to the truth."""

console = Console()
if not console.is_terminal:  # a log file or a pipe: wide enough for the tables instead of rich's 80 columns
    console = Console(width=250)


@dataclass(frozen=True, order=True)
class Cell:
    length: float
    frames: int
    preset: str
    seed: int

    @property
    def world_key(self) -> str:
        return f"{self.preset}_{self.length:g}s_seed{self.seed}"

    @property
    def name(self) -> str:
        return f"{self.preset}_{self.length:g}s_{self.frames}f_seed{self.seed}"


# ---- designs -----------------------------------------------------------------------------------------------------


def _pairs(cell: tuple, axes: range) -> set[tuple]:
    return {(a, cell[a], b, cell[b]) for a, b in itertools.combinations(axes, 2)}


def covering_design(levels: list[list]) -> list[tuple]:
    """A strength-2 covering design over ``levels`` (one list per axis): every pair of levels of two axes in some
    cell. Product of the two largest axes, the others at (i + j) mod n, then greedy cells for any missing pair."""
    k = len(levels)
    order = sorted(range(k), key=lambda a: -len(levels[a]))  # stable: ties keep the axes' order
    a1, a2, rest = order[0], order[1] if k > 1 else None, order[2:]
    cells = []
    for i in range(len(levels[a1])):
        for j in range(len(levels[a2]) if a2 is not None else 1):
            idx = [0] * k
            idx[a1] = i
            if a2 is not None:
                idx[a2] = j
            for a in rest:
                idx[a] = (i + j) % len(levels[a])
            cells.append(tuple(levels[a][idx[a]] for a in range(k)))
    cells = list(dict.fromkeys(cells))
    need = set().union(*(_pairs(c, range(k)) for c in itertools.product(*levels)))
    missing = need - set().union(*(_pairs(c, range(k)) for c in cells))
    while missing:
        best = max(itertools.product(*levels), key=lambda c: len(_pairs(c, range(k)) & missing))
        cells.append(best)
        missing -= _pairs(best, range(k))
    return cells


def design(args: argparse.Namespace) -> tuple[str, list[Cell]]:
    if args.quick:
        return "quick (one tiny cell)", [Cell(*QUICK)]
    levels = [args.lengths, args.frames, args.presets, args.seeds]
    if args.full:
        cells = list(itertools.product(*levels))
        name = f"full factorial ({' × '.join(str(len(v)) for v in levels)} = {len(cells)} cells)"
    else:
        cells = covering_design(levels)
        name = (
            f"all-pairs covering design ({len(cells)} cell{'s' * (len(cells) != 1)}; full factorial would be "
            f"{int(np.prod([len(v) for v in levels]))})"
        )
    # shortest clips first (early feedback), cells of one world together (its rendering is reused)
    return name, sorted((Cell(*c) for c in cells), key=lambda c: (c.length, c.preset, c.seed, c.frames))


# ---- running commands --------------------------------------------------------------------------------------------


@dataclass
class Cmd:
    name: str
    argv: list[str]
    rc: int | None = None
    seconds: float = 0.0
    traceback: bool = False
    timed_out: bool = False
    error: str = ""
    """The command's error line (``error: ...``), else its last stderr line, when it failed."""
    clean: bool = True
    """Failed with one ``error:`` line and no traceback (or did not fail)."""
    note: str = ""
    """What the benchmark itself found wrong (a missing output file, a route that failed)."""
    tail: list[str] = field(default_factory=list)
    """The last lines of stderr (else stdout) of a failed command (``check``: its problems)."""
    na: bool = False

    @property
    def ok(self) -> bool:
        return self.na or (self.rc == 0 and not self.traceback and not self.note)


def howto3d_exe() -> list[str]:
    exe = Path(sys.executable).with_name("howto3d")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "howto3d"]


def _kill_group(proc: subprocess.Popen) -> None:
    """End the process we started and its children (its own session, so its group id is its pid)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def run_cmd(name: str, args: list[str], logs: Path, timeout: float, expect: Path | None = None) -> Cmd:
    """One ``howto3d`` command as a subprocess; stdout/stderr kept in ``logs/<name>.out|.err``."""
    cmd = Cmd(name, [*howto3d_exe(), *map(str, args)])
    logs.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    with open(logs / f"{name}.out", "w") as out, open(logs / f"{name}.err", "w") as err:
        proc = subprocess.Popen(cmd.argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            cmd.rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(proc)
            proc.wait()
            cmd.rc, cmd.timed_out = -9, True
    cmd.seconds = round(time.perf_counter() - t, 1)
    _judge(cmd, (logs / f"{name}.out").read_text(errors="replace"), (logs / f"{name}.err").read_text(errors="replace"))
    if cmd.timed_out:
        cmd.error = f"timed out after {timeout:g} s"
    if cmd.rc == 0 and expect is not None and not (expect.exists() and (expect.is_dir() or expect.stat().st_size)):
        cmd.note = f"exit 0 but wrote no {expect.name}"
    return cmd


def _judge(cmd: Cmd, stdout: str, stderr: str) -> None:
    cmd.traceback = "Traceback" in stdout or "Traceback" in stderr
    if cmd.rc != 0:
        lines = [ln.strip() for ln in stderr.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("error:")]
        cmd.error = (errors or lines or ["(no output)"])[-1][:300]
        cmd.clean = bool(errors) and not cmd.traceback
        cmd.tail = (lines or [ln.strip() for ln in stdout.splitlines() if ln.strip()])[-12:]


# ---- worlds and workspaces ---------------------------------------------------------------------------------------


def synth_settings(preset: str, fps: float, size: tuple[int, int]) -> list[str]:
    out = [f"fps={fps:g}", f"width={size[0]}", f"height={size[1]}"]
    if preset == "degraded":  # its motion_blur (0.5) is a fraction of the frame interval at its own 10 fps
        out.append(f"motion_blur={0.5 * fps / 10:g}")
    return out


def world(root: Path, cell: Cell, args: argparse.Namespace) -> tuple[Path, Cmd | None]:
    """The cell's rendered world (a ``howto3d synth`` workspace), rendered once per preset/length/seed."""
    path = root / "worlds" / cell.world_key
    spec = [
        "--preset",
        cell.preset,
        "--scenes",
        "1",
        "--videos",
        "2",
        "--seconds",
        f"{cell.length:g}",
        "--seed",
        str(cell.seed),
    ]
    for s in synth_settings(cell.preset, args.fps, tuple(args.size)):
        spec += ["--set", s]
    marker = path / ".matrix-world.json"
    if marker.exists() and json.loads(marker.read_text()) == spec:
        return path, None
    shutil.rmtree(path, ignore_errors=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    cmd = run_cmd("synth", ["synth", path, *spec], root / "worlds" / "logs" / cell.world_key, args.run_timeout)
    if cmd.ok:
        marker.write_text(json.dumps(spec))
    return path, cmd


def read_json_file(path: Path) -> object | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def stage_seconds(ws: Path) -> dict[str, float]:
    """Seconds recorded per stage by ``run`` (``state/<stage>.json``: each item's ``seconds``, summed)."""
    out = {}
    for f in sorted((ws / "state").glob("*.json")):
        data = read_json_file(f)
        items = data.get("items", {}) if isinstance(data, dict) else {}
        secs = [
            v["seconds"] for v in items.values() if isinstance(v, dict) and isinstance(v.get("seconds"), int | float)
        ]
        if secs:
            out[f.stem] = round(float(sum(secs)), 1)
    return out


# ---- ground truth ------------------------------------------------------------------------------------------------


def centre(P) -> np.ndarray:
    P = np.asarray(P, float)
    return -P[:, :3].T @ P[:, 3]


def camera_checks(cams: dict, gt: dict) -> dict:
    """Duplicates, registered frames, segments and camera-centre errors (global and per-video Sim(3) fits)."""
    from howto3d.evaluation import fit_to_world
    from recon.io import InputError

    frames = [
        SimpleNamespace(
            video=f["video"], time=float(f["time"]), center=centre(f["cam_from_world"]), segment=f.get("segment", 0)
        )
        for f in cams.get("frames", [])
    ]
    keys = Counter((f.video, round(f.time, 6)) for f in frames)
    out: dict = {
        "duplicates": sum(n - 1 for n in keys.values() if n > 1),
        "registered": {v: sum(1 for k in keys if k[0] == v) for v in gt["videos"]},
        "segments": {v: len({f.segment for f in frames if f.video == v}) for v in gt["videos"]},
        "shots": {v: len(t.get("cuts", [])) + 1 for v, t in gt["videos"].items()},
        "median_all_m": {},
        "median_own_m": {},
        "problems": [],
    }
    truth = {
        v: {round(f["time"], 3): f["cam_from_world"] for f in t["frames"] if f["cam_from_world"] is not None}
        for v, t in gt["videos"].items()
    }
    try:
        world_from_shared = fit_to_world(frames, gt)
    except InputError as e:
        out["problems"].append(f"global fit: {e}")
        return out
    out["world_from_shared"] = world_from_shared
    for v in gt["videos"]:
        mine = [f for f in frames if f.video == v and round(f.time, 3) in truth[v]]
        if not mine:
            out["problems"].append(f"{v}: no camera in the shared frame")
            continue
        err = np.linalg.norm(
            world_from_shared * np.array([f.center for f in mine])
            - np.array([centre(truth[v][round(f.time, 3)]) for f in mine]),
            axis=1,
        )
        out["median_all_m"][v] = float(np.median(err))
        try:
            own = fit_to_world(mine, gt)
        except InputError as e:
            out["problems"].append(f"{v}: own fit: {e}")
            continue
        err = np.linalg.norm(
            own * np.array([f.center for f in mine]) - np.array([centre(truth[v][round(f.time, 3)]) for f in mine]),
            axis=1,
        )
        out["median_own_m"][v] = float(np.median(err))
    return out


def project(gt_video: dict, frame: dict, X: np.ndarray) -> tuple[float, float] | None:
    """Pixel of world point ``X`` in a ground-truth frame (SIMPLE_RADIAL with the video's k1), None if unseen."""
    from synth.render import project as synth_project

    P = np.asarray(frame["cam_from_world"], float)
    if (P[:, :3] @ X + P[:, 3])[2] <= 0.05:
        return None
    k1 = float(gt_video["camera"]["params"][3]) if "camera" in gt_video else 0.0
    u, v = synth_project(np.asarray(frame["K"], float), k1, P, X[None])[0]
    return (float(u), float(v)) if 0 <= u < gt_video["width"] and 0 <= v < gt_video["height"] else None


def keypoints(gt: dict, video: str, times: list[float], n_parts: int = 4, n_clicks: int = 4) -> dict:
    """Transfer input: up to ``n_parts`` parts of ``video`` clicked where the truth projects them, in ``n_clicks``
    well-spread frames among ``times`` (registered frames)."""
    truth = gt["videos"][video]
    by_time = {round(f["time"], 3): f for f in truth["frames"] if f["cam_from_world"] is not None}
    kps = []
    for part, X in truth["parts"].items():
        seen = []
        for t in sorted(times):
            f = by_time.get(round(t, 3))
            xy = project(truth, f, np.asarray(X, float)) if f else None
            if xy is not None:
                seen.append({"time": t, "xy": list(xy)})
        if len(seen) >= 2:
            pick = np.unique(np.linspace(0, len(seen) - 1, n_clicks).round().astype(int))
            kps.append({"name": part, "observations": [seen[i] for i in pick]})
        if len(kps) == n_parts:
            break
    return {"keypoints": kps}


def photo(ws: Path, scene: str, video: str, gt: dict, out: Path) -> dict | None:
    """An unsampled bay frame of ``video`` near its middle, saved as PNG: a user's new photo of the scene."""
    from PIL import Image

    from recon.video import read_frames

    sampled = {
        f.get("index")
        for f in (read_json_file(ws / "scenes" / scene / "frames" / video / "frames.json") or {}).get("frames", [])
    }
    frames = [f for f in gt["videos"][video]["frames"] if f["cam_from_world"] is not None and f["index"] not in sampled]
    if not frames:
        return None
    mid = len(gt["videos"][video]["frames"]) / 2
    pick = min(frames, key=lambda f: abs(f["index"] - mid))
    path = next(p for p in (ws / "scenes" / scene / "videos").glob(f"{video}.*") if p.suffix in (".mp4", ".mov"))
    for _, _, rgb in read_frames(path, [pick["index"]]):
        Image.fromarray(rgb).save(out)
        return pick
    return None


# ---- serve ---------------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(
    url: str, data: bytes | None = None, headers: dict | None = None, timeout: float = 300
) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def multipart(fields: dict[str, str], name: str, filename: str, data: bytes, ctype: str) -> tuple[bytes, dict]:
    b = uuid.uuid4().hex
    parts = [f'--{b}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()]
    parts.append(
        f'--{b}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        f"Content-Type: {ctype}\r\n\r\n".encode()
        + data
        + b"\r\n"
    )
    return b"".join(parts) + f"--{b}--\r\n".encode(), {"Content-Type": f"multipart/form-data; boundary={b}"}


def serve(ws: Path, scene: str, image: Path | None, logs: Path, timeout: float) -> tuple[Cmd, dict[str, int | str]]:
    """``howto3d serve`` on a free loopback port, one request per route, then SIGINT (as Ctrl-C)."""
    port = free_port()
    cmd = Cmd("serve", [*howto3d_exe(), "serve", str(ws), "--port", str(port), "--host", "127.0.0.1"])
    base, routes = f"http://127.0.0.1:{port}", {}
    logs.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    with open(logs / "serve.out", "w") as out, open(logs / "serve.err", "w") as err:
        proc = subprocess.Popen(cmd.argv, stdout=out, stderr=err, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if proc.poll() is not None:
                    routes["start"] = f"exited {proc.returncode} before answering"
                    break
                if time.monotonic() > deadline:
                    routes["start"] = f"no answer on /health within {timeout:g} s"
                    break
                try:
                    if http(base + "/health", timeout=5)[0] == 200:
                        break
                except OSError:
                    pass
                time.sleep(0.5)
            if "start" not in routes:
                routes.update(_requests(base, scene, image, timeout))
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    _kill_group(proc)
                    proc.wait()
                    routes["stop"] = "did not stop within 60 s of SIGINT"
    cmd.rc = proc.returncode
    cmd.seconds = round(time.perf_counter() - t, 1)
    _judge(cmd, (logs / "serve.out").read_text(errors="replace"), (logs / "serve.err").read_text(errors="replace"))
    bad = {k: v for k, v in routes.items() if v != 200}
    if bad:
        cmd.note = "; ".join(f"{k}: {v}" for k, v in bad.items())
    return cmd, routes


def _requests(base: str, scene: str, image: Path | None, timeout: float) -> dict[str, int | str]:
    routes: dict[str, int | str] = {}

    def check(name: str, status: int, ok: bool, body: bytes) -> None:
        routes[name] = status if status != 200 or ok else f"200 but {body[:80]!r}"

    s, _, body = http(base + "/health", timeout=timeout)
    check("GET /health", s, b'"ok"' in body, body)
    s, _, body = http(base + "/scenes", timeout=timeout)
    check("GET /scenes", s, scene.encode() in body, body)
    s, _, body = http(base + "/", timeout=timeout)
    check("GET /", s, b"<html" in body.lower(), body)
    s, _, body = http(base + "/static/vendor/three/three.module.js", timeout=timeout)
    check("GET /static", s, len(body) > 1000, body)
    s, _, body = http(
        base + "/query",
        json.dumps({"scene": scene, "text": QUERY}).encode(),
        {"Content-Type": "application/json"},
        timeout=timeout,
    )
    check("POST /query", s, b'"point"' in body, body)
    if image is not None:
        data = image.read_bytes()
        s, _, body = http(
            base + "/localize", *multipart({"scene": scene}, "image", image.name, data, "image/png"), timeout=timeout
        )
        check("POST /localize", s, b'"localized"' in body, body)
        s, h, body = http(
            base + "/overlay",
            *multipart({"scene": scene, "text": QUERY}, "image", image.name, data, "image/png"),
            timeout=timeout,
        )
        check("POST /overlay", s, body[:4] == b"\x89PNG", body)
    s, _, body = http(base + f"/scene/{scene}/export.glb", timeout=timeout)
    check("GET /scene/S/export.glb", s, body[:4] == b"glTF", body)
    return routes


# ---- one cell ------------------------------------------------------------------------------------------------------


@dataclass
class Result:
    cell: Cell
    seconds: float = 0.0
    commands: list[Cmd] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)
    numbers: dict = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    checks: dict[str, bool | None] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(v is not False for v in self.checks.values())

    def cmd(self, name: str) -> Cmd | None:
        return next((c for c in self.commands if c.name == name), None)


def run_cell(
    root: Path, index: int, cell: Cell, args: argparse.Namespace, has_check: bool, default_frames: int | None
) -> Result:
    res = Result(cell)
    t0 = time.perf_counter()
    say = lambda c: console.print(  # noqa: E731
        f"    {c.name:<16} rc {'n/a' if c.na else c.rc!s:>4}  {c.seconds:7.1f} s"
        + ("  TRACEBACK" if c.traceback else "")
        + (f"  {c.error}" if c.rc not in (0, None) else "")
        + (f"  [{c.note}]" if c.note else ""),
        markup=False,
        highlight=False,
    )

    def do(name: str, *cmd_args, expect: Path | None = None, timeout: float | None = None) -> Cmd:
        c = run_cmd(name, list(cmd_args), logs, timeout or args.timeout, expect)
        res.commands.append(c)
        say(c)
        return c

    path, synth_cmd = world(root, cell, args)
    cell_dir = root / "cells" / f"{index:02d}_{cell.name}"
    shutil.rmtree(cell_dir, ignore_errors=True)
    logs, outs, ws = cell_dir / "logs", cell_dir / "out", cell_dir / "ws"
    outs.mkdir(parents=True)
    if synth_cmd is not None:
        res.commands.append(synth_cmd)
        say(synth_cmd)
    else:
        console.print(f"    synth            reused {path}", markup=False, highlight=False)
    if synth_cmd is not None and not synth_cmd.ok:
        res.problems.append(f"synth failed: {synth_cmd.error}")
        return _finish(res, t0)
    do("init", "init", ws)
    shutil.copytree(path / "scenes", ws / "scenes", dirs_exist_ok=True)
    scene = sorted(p.name for p in (ws / "scenes").iterdir())[0]
    gt = json.loads((ws / "scenes" / scene / "ground_truth.json").read_text())
    videos = sorted(gt["videos"])

    frames_flag = [] if cell.frames == default_frames else ["--frames", str(cell.frames)]
    run = do("run", "run", ws, *frames_flag, timeout=args.run_timeout)
    res.numbers["run_s"] = run.seconds
    res.stages = stage_seconds(ws)
    if has_check:
        do("check", "check", ws)
    else:
        res.commands.append(Cmd("check", [], na=True))

    cams_cmd = do("cameras", "cameras", ws, "--scene", scene, "--json")
    cams = read_json_file(logs / "cameras.out") if cams_cmd.rc == 0 else None
    cc = camera_checks(cams, gt) if isinstance(cams, dict) else None
    if cc is None:
        res.problems.append("no cameras --json output: nothing to check against the truth")
    else:
        res.problems += cc["problems"]
        sampled = {
            v: len((read_json_file(ws / "scenes" / scene / "frames" / v / "frames.json") or {}).get("frames", []))
            for v in videos
        }
        res.numbers.update(
            duplicates=cc["duplicates"],
            registered=cc["registered"],
            sampled=sampled,
            segments=cc["segments"],
            shots=cc["shots"],
            median_all_cm={v: round(e * 100, 3) for v, e in cc["median_all_m"].items()},
            median_own_cm={v: round(e * 100, 3) for v, e in cc["median_own_m"].items()},
        )
    registered_times = (
        {v: [float(f["time"]) for f in cams["frames"] if f["video"] == v] for v in videos}
        if isinstance(cams, dict)
        else {v: [] for v in videos}
    )
    wfs = cc.get("world_from_shared") if cc else None

    source = max(videos, key=lambda v: len(registered_times[v]))
    kp = keypoints(gt, source, registered_times[source])
    kp_file = outs / "keypoints.json"
    kp_file.write_text(json.dumps(kp, indent=1))
    tr = do("transfer", "transfer", ws, "--scene", scene, "--source", source, "--keypoints", kp_file, "--json")
    out = read_json_file(logs / "transfer.out") if tr.rc == 0 else None
    if isinstance(out, dict) and wfs is not None:
        parts = gt["videos"][source]["parts"]
        errs = [
            float(np.linalg.norm(wfs * np.asarray(k["point"], float)[None] - np.asarray(parts[k["name"]])))
            for k in out.get("keypoints", [])
            if k.get("name") in parts
        ]
        res.numbers["transfer_cm"] = round(float(np.median(errs)) * 100, 2) if errs else None
        res.numbers["transfer_skipped"] = len(out.get("skipped", []))

    do("query", "query", ws, "--scene", scene, QUERY, "--json")
    do(
        "overlay-video",
        "overlay",
        ws,
        "--scene",
        scene,
        "--video",
        videos[0],
        "--query",
        QUERY,
        "--out",
        outs / "overlay.mp4",
        expect=outs / "overlay.mp4",
    )
    photo_video = videos[-1]
    picked = photo(ws, scene, photo_video, gt, outs / "photo.png")
    image = outs / "photo.png" if picked is not None else None
    if image is None:
        res.problems.append(f"{photo_video}: no unsampled bay frame to use as a photo")
    else:
        do(
            "overlay-image",
            "overlay",
            ws,
            "--scene",
            scene,
            "--image",
            image,
            "--query",
            QUERY,
            "--out",
            outs / "overlay_photo.png",
            expect=outs / "overlay_photo.png",
        )
    do(
        "export",
        "export",
        ws,
        "--scene",
        scene,
        "--format",
        "glb",
        "--query",
        QUERY,
        "--out",
        outs / "scene.glb",
        expect=outs / "scene.glb",
    )
    do("actionness", "actionness", ws, "--scene", scene, "--json")
    do("steps", "steps", ws, "--scene", scene, "--video", videos[0], "--json")
    do("discover", "discover", ws, "--scene", scene, "--json")
    do("groundedness", "groundedness", ws, "--scene", scene, "--json")
    if image is not None:
        loc = do("localize", "localize", ws, "--scene", scene, image, "--json")
        out = read_json_file(logs / "localize.out") if loc.rc == 0 else None
        if isinstance(out, dict) and out.get("images"):
            r = out["images"][0]
            res.numbers["photo"] = r.get("status")
            if r.get("cam_from_world") is not None and wfs is not None:
                res.numbers["localize_cm"] = round(
                    float(np.linalg.norm(wfs * centre(r["cam_from_world"])[None] - centre(picked["cam_from_world"])))
                    * 100,
                    2,
                )
    do(
        "view",
        "view",
        ws,
        "--scene",
        scene,
        "--query",
        QUERY,
        "--screenshot",
        outs / "view.png",
        expect=outs / "view.png",
    )
    sv, routes = serve(ws, scene, image, logs, args.timeout)
    res.commands.append(sv)
    res.numbers["routes"] = routes
    say(sv)

    eg = do("eval-grounding", "eval-grounding", ws, "--json")
    out = read_json_file(logs / "eval-grounding.out") if eg.rc == 0 else None
    if isinstance(out, dict):
        res.numbers["pck30"] = out.get("pck_at")
        res.numbers["pck30_chance"] = out.get("chance_at")
    et = do("eval-transfer", "eval-transfer", ws, "--scene", scene, "--json")
    out = read_json_file(logs / "eval-transfer.out") if et.rc == 0 else None
    if isinstance(out, dict):
        res.numbers["eval_transfer_pck2cm"] = out.get("transfer", {}).get("pck_shared", {}).get("2cm")
    do("eval-steps", "eval-steps", ws, "--json")
    if has_check:  # after every command that writes (actionness, steps, discover, groundedness), before scale
        do("check-end", "check", ws)
    else:
        res.commands.append(Cmd("check-end", [], na=True))

    names = [k["name"] for k in kp["keypoints"]]
    if len(names) >= 2:
        parts = gt["videos"][source]["parts"]
        metres = float(np.linalg.norm(np.asarray(parts[names[0]]) - np.asarray(parts[names[1]])))
        do(
            "scale",
            "scale",
            ws,
            "--scene",
            scene,
            "--source",
            source,
            "--keypoints",
            kp_file,
            "--distance",
            names[0],
            names[1],
            f"{metres:.6f}",
            "--json",
        )
    else:
        res.problems.append(f"{source}: fewer than 2 parts seen in 2 registered frames: transfer/scale untested")
    return _finish(res, t0, cc)


def _finish(res: Result, t0: float, cc: dict | None = None) -> Result:
    res.seconds = round(time.perf_counter() - t0, 1)
    cmds = [c for c in res.commands if not c.na]
    res.checks["tb"] = not any(c.traceback for c in cmds)
    res.checks["rc"] = all(c.ok for c in cmds)
    if cc is None:
        res.checks.update(dup=False, gt=False, own=False)
        return res
    videos = list(cc["registered"])
    res.checks["dup"] = cc["duplicates"] == 0
    res.checks["gt"] = len(cc["median_all_m"]) == len(videos) and all(
        e <= GT_ALL_M for e in cc["median_all_m"].values()
    )
    res.checks["own"] = len(cc["median_own_m"]) == len(videos) and all(
        e <= GT_OWN_M for e in cc["median_own_m"].values()
    )
    return res


# ---- report ----------------------------------------------------------------------------------------------------------


def mark(v: bool | None) -> str:
    return "n/a" if v is None else ("[green]ok[/]" if v else "[red]FAIL[/]")


def table(results: list[Result], title: str) -> Table:
    t = Table(title=title)
    for col in (
        "#",
        "len s",
        "frames",
        "preset",
        "seed",
        "wall s",
        "run s",
        "tb",
        "rc",
        "dup",
        "gt",
        "own",
        "reg/sampled",
        "segs (shots)",
        "gt med cm (worst video)",
        "own med cm (worst)",
        "xfer cm",
        "loc cm",
        "PCK@30",
        "pass",
    ):
        t.add_column(col, justify="right")
    for i, r in enumerate(results):
        n, c = r.numbers, r.cell
        reg = n.get("registered", {})
        samp = n.get("sampled", {})
        segs = n.get("segments", {})
        shots = n.get("shots", {})
        ok_cmds = sum(x.ok for x in r.commands if not x.na)
        all_cmds = sum(not x.na for x in r.commands)
        worst = lambda d: f"{max(d.values()):.2f}" if d else "-"  # noqa: E731
        t.add_row(
            str(i),
            f"{c.length:g}",
            str(c.frames),
            c.preset,
            str(c.seed),
            f"{r.seconds:.0f}",
            f"{n.get('run_s', 0):.0f}",
            mark(r.checks.get("tb")),
            f"{mark(r.checks.get('rc'))} {ok_cmds}/{all_cmds}",
            mark(r.checks.get("dup")),
            mark(r.checks.get("gt")),
            mark(r.checks.get("own")),
            f"{sum(reg.values())}/{sum(samp.values())}" if samp else "-",
            " ".join(f"{segs[v]}({shots.get(v, '?')})" for v in segs) or "-",
            worst(n.get("median_all_cm", {})),
            worst(n.get("median_own_cm", {})),
            _fmt(n.get("transfer_cm")),
            _fmt(n.get("localize_cm")),
            _fmt(n.get("pck30")),
            "[green]PASS[/]" if r.passed else "[red]FAIL[/]",
        )
    return t


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.2f}" if isinstance(x, float) else str(x)


def command_table(results: list[Result]) -> Table:
    names = list(dict.fromkeys(c.name for r in results for c in r.commands))
    t = Table(title="commands per cell (#): seconds; rc when not 0, TB = traceback, ! = output or route missing")
    t.add_column("#", justify="right")
    for n in names:
        t.add_column(n, justify="right", min_width=len(n))
    for i, r in enumerate(results):
        row = []
        for n in names:
            c = r.cmd(n)
            if c is None:
                row.append("-")
            elif c.na:
                row.append("n/a")
            else:
                s = f"{c.seconds:.0f}"
                if c.rc != 0:
                    s = f"[red]rc {c.rc}[/] {s}"
                if c.traceback:
                    s = f"[red]TB[/] {s}"
                if c.note:
                    s = f"[red]![/] {s}"
                row.append(s)
        t.add_row(str(i), *row)
    return t


def from_json(d: dict) -> Result:
    names = {f.name for f in fields(Cmd)}
    return Result(
        Cell(**d["cell"]),
        d["seconds"],
        [Cmd(**{k: v for k, v in c.items() if k in names}) for c in d["commands"]],
        d["stages"],
        d["numbers"],
        d["problems"],
        d["checks"],
    )


def to_json(r: Result) -> dict:
    return {
        "cell": asdict(r.cell),
        "passed": r.passed,
        "checks": r.checks,
        "seconds": r.seconds,
        "stages": r.stages,
        "numbers": r.numbers,
        "problems": r.problems,
        "commands": [asdict(c) | {"ok": c.ok} for c in r.commands],
    }


# ---- main ----------------------------------------------------------------------------------------------------------


def _levels(kind, text: str, allowed=None) -> list:
    try:
        values = [kind(x.strip()) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give comma-separated {kind.__name__} values") from None
    if not values or len(set(values)) != len(values):
        raise argparse.ArgumentTypeError(f"{text!r}: give one or more distinct values")
    if allowed and set(values) - set(allowed):
        raise argparse.ArgumentTypeError(f"{text!r}: use {', '.join(allowed)}")
    return values


def positive(kind):
    def parse(text: str) -> list:
        values = _levels(kind, text)
        if min(values) < (1 if kind is int else 1.0):
            raise argparse.ArgumentTypeError(f"{text!r}: values must be >= 1")
        return values

    return parse


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="one tiny cell: 20 s, 30 frames, default preset, seed 0")
    ap.add_argument("--full", action="store_true", help="the full factorial of the chosen levels")
    ap.add_argument("--lengths", type=positive(float), default=list(LENGTHS), help="clip lengths in s (20,45,90,150)")
    ap.add_argument("--frames", type=positive(int), default=list(FRAMES), help="frames per video (30,80,150)")
    ap.add_argument(
        "--presets",
        type=lambda s: _levels(str, s, PRESETS),
        default=list(PRESETS),
        help="synth presets (default,degraded,long)",
    )
    ap.add_argument("--seeds", type=lambda s: _levels(int, s), default=list(SEEDS), help="world seeds (0,1)")
    ap.add_argument("--out", type=Path, help="keep worlds (cached: reused by later runs) and cell workspaces here")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--report", type=Path, metavar="JSON", help="only print the tables of a finished run's --json")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per command (default 900)")
    ap.add_argument("--run-timeout", type=float, default=10800.0, help="seconds for synth and run (default 3 h)")
    ap.add_argument("--fps", type=float, default=5.0, help="rendered frame rate (default 5)")
    ap.add_argument(
        "--size", type=int, nargs=2, default=(480, 270), metavar=("W", "H"), help="rendered size (default 480 270)"
    )
    args = ap.parse_args()
    if args.quick and args.full:
        ap.error("--quick and --full exclude each other")
    if args.size[0] % 2 or args.size[1] % 2 or min(args.size) < 16:
        ap.error("--size: even width and height of at least 16")
    if args.fps <= 0 or args.timeout <= 0 or args.run_timeout <= 0:
        ap.error("--fps, --timeout and --run-timeout must be positive")

    if args.report:
        try:
            saved = json.loads(args.report.read_text())
            results = [from_json(r) for r in saved["results"]]
        except (OSError, ValueError, KeyError, TypeError) as e:
            ap.error(f"--report {args.report}: not a results file of this benchmark ({e})")
        report(results, saved["design"], len(saved["cells"]))
        return 0
    title, cells = design(args)
    has_check = subprocess.run([*howto3d_exe(), "check", "--help"], capture_output=True).returncode == 0
    console.print(
        f"[bold]settings matrix[/]: {title}; `howto3d check`: {'available' if has_check else 'not in this build (n/a)'}"
    )
    for i, c in enumerate(cells):
        console.print(f"  cell {i:2d}: {c.length:g} s, {c.frames} frames, {c.preset}, seed {c.seed}", highlight=False)

    tmp = None if args.out else tempfile.TemporaryDirectory(prefix="howto3d-matrix-")
    root = args.out or Path(tmp.name)
    root.mkdir(parents=True, exist_ok=True)
    results: list[Result] = []
    default_frames = default_num_frames()
    try:
        for i, cell in enumerate(cells):
            t0 = time.perf_counter()
            console.print(
                f"[bold][{i + 1}/{len(cells)}][/] {cell.length:g} s, {cell.frames} frames, {cell.preset}, "
                f"seed {cell.seed}",
                highlight=False,
            )
            try:
                results.append(run_cell(root, i, cell, args, has_check, default_frames))
            except Exception as e:  # the benchmark's own bug: report it, the other cells go on
                console.print_exception()
                results.append(_finish(Result(cell, problems=[f"benchmark error: {type(e).__name__}: {e}"]), t0))
            r = results[-1]
            console.print(
                f"    → {'PASS' if r.passed else 'FAIL'} in {r.seconds:.0f} s"
                + "".join(f"; {k} {mark(v)}" for k, v in r.checks.items()),
                highlight=False,
            )
            if args.json:
                _write_json(args.json, title, cells, results)
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]: reporting the cells that finished")
    finally:
        if tmp is not None:
            tmp.cleanup()

    if args.json:
        _write_json(args.json, title, cells, results)
    report(results, title, len(cells))
    return 0


def report(results: list[Result], title: str, planned: int) -> None:
    console.print(table(results, f"settings matrix — {title}"))
    console.print(command_table(results))
    for r in results:
        if r.stages:
            console.print(
                f"{r.cell.name}: run stages (s, summed over items): "
                + ", ".join(f"{k} {v:g}" for k, v in r.stages.items()),
                highlight=False,
            )
        for c in r.commands:
            if not c.ok:
                how = "TRACEBACK" if c.traceback else ("clean" if c.clean else "not one line")
                console.print(
                    f"[red]{r.cell.name}: {c.name}[/] rc {c.rc} ({how}): {c.error}"
                    + (f" [{c.note}]" if c.note else ""),
                    highlight=False,
                    markup=False,
                )
                if c.name.startswith("check"):
                    for line in c.tail:
                        console.print(f"      {line}", highlight=False, markup=False)
        for p in r.problems:
            console.print(f"[yellow]{r.cell.name}[/]: {p}", highlight=False)
    console.print(
        f"[bold]{sum(r.passed for r in results)} of {len(results)} cells pass[/]"
        + (f" ({planned - len(results)} not run)" if len(results) < planned else "")
    )


def default_num_frames() -> int | None:
    """``[frames] num_frames`` of a fresh ``howto3d init`` workspace (the product default the cells leave as is)."""
    with tempfile.TemporaryDirectory() as d:
        rc = subprocess.run([*howto3d_exe(), "init", str(Path(d) / "ws")], capture_output=True).returncode
        if rc != 0:
            return None
        with open(Path(d) / "ws" / "howto3d.toml", "rb") as f:
            return tomllib.load(f).get("frames", {}).get("num_frames")


def _write_json(path: Path, title: str, cells: list[Cell], results: list[Result]) -> None:
    path.write_text(
        json.dumps(
            {
                "design": title,
                "cells": [asdict(c) for c in cells],
                "passed": sum(r.passed for r in results),
                "total": len(cells),
                "results": [to_json(r) for r in results],
            },
            indent=1,
            default=str,
        )
    )


if __name__ == "__main__":
    sys.exit(main())
