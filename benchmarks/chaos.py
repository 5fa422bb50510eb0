"""Chaos: ``kill -9`` anywhere in ``howto3d run``, and a plain rerun resumes to the same result.

    python benchmarks/chaos.py [--kills 20] [--extra 3] [--seed 0] [--out DIR] [--json results.json] [--keep]
        [--seconds 12] [--videos 2] [--frames 16] [--threads -1] [--add-mb 768]
    python benchmarks/chaos.py --quick     # 4 kills of `run`, 1 of each other writer (~15 min on 2 cores)

Builds one small synthetic workspace (``howto3d synth``: 2 scenes × 2 videos × 12 s, 640×360 at 5 fps; the second
scene's ``tasks.json`` is removed so that ``run`` discovers its key steps; ``frames.num_frames`` = 16 saved in its
``howto3d.toml``; every other setting is the product default, so ``run`` runs exactly as a user's does, only
smaller: ~1.5 min on 2 cores). One uninterrupted ``howto3d run`` of a copy is the reference, a second one the
control (what an uninterrupted run reproduces: the files that differ between the two are the non-deterministic
ones). Then ``--kills`` times: copy the un-run workspace, start ``howto3d run`` in its own session (process group)
and ``SIGKILL`` the whole group at a chosen moment, then

1. ``howto3d check WS``: must print ``ok`` or problem lines (exit 0 or 1; recorded as "pass" / "redo: FIXES");
   a traceback or any other exit code FAILS;
2. ``howto3d run WS`` again, uninterrupted: must exit 0 (it ends with the same check, so every problem step 1 named
   is one a rerun fixes);
3. compare with the reference: ``howto3d cameras WS --scene S --json`` of each scene (max abs difference of every
   camera matrix, intrinsics and distortion parameter; and camera centres in mm, after a Sim(3) of the trial's
   shared frame onto the reference's and the reference's onto the ground truth in metres), the grounding model
   (``grounding/model/*.safetensors``, bytes), the step timelines (``scenes/*/temporal/steps/*.json``), the stage
   records (``state/*.json`` without times), and every other file by content; a file the trial has that the
   reference has not is a LEFTOVER (``.*.tmp``, ``.*.old``, a half-written file), one it lacks is MISSING.

A kill FAILS when check or the rerun fails, anything is left over or missing, or a file that the control run
reproduced byte for byte (or a camera that it reproduced to 1e-9) differs after the kill and rerun.

Kill moments are stratified by stage: kill ``i`` targets stage ``i mod 8`` of frames, SfM, align, train, features,
actionness, steps, discover, at a uniform moment within that stage's items as the reference run timed them
(item ``k`` = from ``when - seconds`` to ``when`` of its record in ``state/<stage>.json``). The clock of item ``k``
starts in the trial when item ``k - 1`` is recorded (the records are polled every 20 ms), so a slow earlier stage
does not move the kill out of the target stage. ``run``'s log is printed only as items finish (progress bars and
tables are drawn at a stage's end when the output is not a terminal), so the stage a kill actually landed in is
read from what the killed run left: the first item of the reference's order without a ``done`` record (with the
temporary folders it left: ``startup`` when there is none yet), ``check`` when every item was recorded; the last
line the run printed is kept in the JSON.

``--extra N`` (default 3) kills of each of three other writers, on copies of the finished reference: ``align
--reanchor`` (killed at a uniform moment of its uninterrupted duration, rerun, compared with an uninterrupted
re-anchoring, itself run twice to see what it reproduces: every file, JSON numbers to a relative 1e-9, and the
cameras), ``scale`` (a known length between two parts clicked where the truth puts them; rerun, compared with an
uninterrupted ``scale`` the same way: a rerun after a kill that came once the frame was saved scales it by
1 ± 1e-16); both then run ``howto3d run``, which must exit 0; and ``add`` of a large video (a real video padded
to ``--add-mb`` MiB with an MP4 ``free`` box) killed once its temporary copy holds a uniform 5-95 % of the bytes:
the scene must not list the video, ``check`` and ``run`` must pass without touching it (and remove the temporary
copy), and adding it again must give a byte-equal file.

Prints one markdown table per kind and a summary line; exit 1 when any kill fails (2 on misuse). Work happens under
``--out`` (default: a temporary folder, removed at the end unless ``--keep``); a failed trial's folder is kept.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import random
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).parent.resolve()]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

STAGES = ("frames", "SfM", "align", "train", "features", "actionness", "steps", "discover")
RECORD_STAGE = {"reconstruct": "SfM"}
"""Stage names as printed, by their record (``state/<record>.json``)."""
LEFTOVER = re.compile(r"(^\..*\.(tmp|old)$)|\.partial$|\.tmp$|-journal$|-wal$")
CAMERA_TOL = 1e-9
DOWNSTREAM_OF_SFM = re.compile(r"^(scenes/[^/]+/(sfm|align|temporal)/|grounding/|state/(?!frames\.json$))")
"""What SfM's result flows into: compared by value (cameras in mm, query points, step boundaries), not byte for
byte, when the control run shows that SfM does not reproduce itself."""
NOISE_FACTOR = 5.0
"""Where SfM does not reproduce itself: a resumed run's camera centres may differ from the reference's by at most
this many times the control run's difference."""
QUERY = "where is the dipstick"


def howto3d() -> list[str]:
    exe = Path(sys.executable).with_name("howto3d")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "howto3d"]


def say(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---- running commands ------------------------------------------------------------------------------------------------

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "160", "NO_COLOR": "1"}


class Proc:
    """A howto3d command in its own session (process group), its merged output read line by line with times."""

    def __init__(self, args: list[str], log: Path):
        self.argv = [*howto3d(), *map(str, args)]
        self.log = log
        self.lines: list[tuple[float, str]] = []
        self.wall0 = time.time()
        self.t0 = time.perf_counter()
        self.p = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=ENV, start_new_session=True
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        with open(self.log, "w") as f:
            for raw in self.p.stdout:
                line = raw.decode("utf-8", "replace").rstrip()
                t = time.perf_counter() - self.t0
                self.lines.append((t, line))
                f.write(f"{t:8.2f} {line}\n")

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def kill(self) -> float:
        """SIGKILL the whole process group; wait until every process of it is gone. Returns the kill time."""
        t = self.elapsed()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.p.pid, signal.SIGKILL)
        self.p.wait()
        deadline = time.time() + 30
        while time.time() < deadline:  # orphaned workers are reaped by init; wait until none is left
            try:
                os.killpg(self.p.pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        self.reader.join(5)
        return t

    def wait(self, timeout: float) -> int:
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            rc = 124
        self.reader.join(5)
        return rc

    @property
    def output(self) -> str:
        return "\n".join(line for _, line in self.lines)

    def last_line(self) -> str:
        for _, line in reversed(self.lines):
            if line.strip() and not re.match(r"^[IWEF]\d{8} ", line):
                return line.strip()[:120]
        return ""


def run(args: list, log: Path, timeout: float = 1800) -> tuple[int, str, float]:
    """Run a command to its end: (exit code, output, seconds)."""
    p = Proc(args, log)
    rc = p.wait(timeout)
    return rc, p.output, p.elapsed()


def traceback_in(text: str) -> bool:
    return "Traceback (most recent call last)" in text


# ---- the workspace -------------------------------------------------------------------------------------------------


def build_template(out: Path, args: argparse.Namespace) -> tuple[Path, str]:
    """The un-run workspace every trial copies (its rendering cached under OUT/template), and a key of the world
    and the settings given."""
    from howto3d.workspace import Workspace

    template = out / "template"
    marker = template / ".chaos-ready"
    world = f"{args.seconds}/{args.videos}/{args.world_seed}"
    if not (marker.is_file() and marker.read_text() == world):
        shutil.rmtree(template, ignore_errors=True)
        say(f"rendering the world into {template}")
        rc, text, _ = run(
            [
                "synth",
                template,
                "--scenes",
                "2",
                "--videos",
                args.videos,
                "--seconds",
                args.seconds,
                "--seed",
                args.world_seed,
                "--set",
                "width=640",
                "--set",
                "height=360",
                "--set",
                "fps=5",
            ],
            out / "synth.log",
        )
        if rc != 0:
            sys.exit(f"howto3d synth failed ({rc}):\n{text[-2000:]}")
        ws = Workspace(template)
        for task_file in ("tasks.json", "tasks.toml"):
            (ws.scene_dir(ws.scenes()[-1]) / task_file).unlink(missing_ok=True)  # this scene discovers its steps
        marker.write_text(world)
    ws = Workspace(template)
    ws.remember("frames", "num_frames", args.frames)
    ws.remember("reconstruct", "num_threads", args.threads)
    return template, f"{world}/{args.frames}/{args.threads}"


def copy_ws(src: Path, dst: Path) -> Path:
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, symlinks=True, ignore=shutil.ignore_patterns(".chaos-ready"))
    return dst


def scenes_of(ws: Path) -> list[str]:
    return sorted(p.name for p in (ws / "scenes").iterdir() if (p / "videos").is_dir())


def records(ws: Path) -> dict[tuple[str, str], dict]:
    out = {}
    for f in sorted((ws / "state").glob("*.json")):
        try:
            items = json.loads(f.read_text())["items"]
        except (OSError, ValueError, KeyError):
            continue
        for k, v in items.items():
            out[(f.stem, k)] = v
    return out


@dataclass
class Item:
    record: str
    key: str
    start: float
    """Seconds after the run started (``when - seconds`` of its record)."""
    end: float

    @property
    def stage(self) -> str:
        return RECORD_STAGE.get(self.record, self.record)


def item_order(ws: Path, wall0: float) -> list[Item]:
    """Every recorded item of a finished run, in the order it finished, with its time window in that run."""
    items = []
    for (rec, key), v in records(ws).items():
        if v.get("status") == "done":
            end = v["when"] - wall0
            items.append(Item(rec, key, max(0.0, end - float(v.get("seconds") or 0.0)), end))
    items.sort(key=lambda i: i.end)
    for a, b in zip(items, items[1:], strict=False):  # an item starts no earlier than the one before it ended
        b.start = max(b.start, a.end)
    return items


def temporaries(ws: Path) -> list[str]:
    return sorted(str(p.relative_to(ws)) for p in ws.rglob("*") if LEFTOVER.search(p.name))


def stage_at(ws: Path, order: list[Item]) -> tuple[str, str]:
    """(stage, item) a killed run was in: the first item of the reference's order without a done record."""
    done = {k for k, v in records(ws).items() if v.get("status") == "done"}
    for i, it in enumerate(order):
        if (it.record, it.key) not in done:
            if i == 0 and not temporaries(ws):
                return "startup", ""
            return it.stage, it.key
    return "check", ""


def file_hashes(ws: Path) -> dict[str, str]:
    out = {}
    for p in sorted(ws.rglob("*")):
        if p.is_file() and not p.is_symlink():
            rel = str(p.relative_to(ws))
            if rel.startswith("state/") and rel.endswith(".json") and "/." not in "/" + rel:
                out[rel] = _records_digest(p)
            elif rel == "state/lock":
                out[rel] = "lock"  # flock'ed, its text names the last holder: never compared
            elif p.suffix == ".db":
                out[rel] = _sqlite_digest(p.read_bytes())
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def _sqlite_digest(data: bytes) -> str:
    """An SQLite file without its header's change counters (bytes 24-27 and 92-95): ``align`` opens every video's
    ``database.db`` with ``pycolmap.Database.open``, which writes (nothing) and so bumps them each time."""
    if data[:16] == b"SQLite format 3\0" and len(data) >= 100:
        data = data[:24] + bytes(4) + data[28:92] + bytes(4) + data[96:]
    return hashlib.sha256(data).hexdigest()


def _records_digest(path: Path) -> str:
    """A stage record without its times (``when``, ``seconds``): what was recorded, not when."""
    try:
        items = json.loads(path.read_text())["items"]
    except (OSError, ValueError, KeyError):
        return "unreadable"
    clean = {k: {f: x for f, x in v.items() if f not in ("when", "seconds")} for k, v in items.items()}
    return hashlib.sha256(json.dumps(clean, sort_keys=True).encode()).hexdigest()


# ---- comparing results ---------------------------------------------------------------------------------------------


def cameras(ws: Path, logs: Path) -> dict[str, dict]:
    """``howto3d cameras --json`` per scene: {scene: {(video, frame name): camera dict}} (None when it failed)."""
    out = {}
    for s in scenes_of(ws):
        rc, text, _ = run(["cameras", ws, "--scene", s, "--json"], logs / f"cameras_{s}.log")
        try:
            start = text.index("{")
            data = json.loads(text[start : text.rindex("}") + 1])
            out[s] = {(f["video"], f["name"]): f for f in data["frames"]}
        except (ValueError, KeyError):
            out[s] = None
    return out


def _numbers(f: dict) -> np.ndarray:
    return np.concatenate([np.ravel(np.asarray(f[k], float)) for k in ("cam_from_world", "K", "params")])


def _centre(P) -> np.ndarray:
    P = np.asarray(P, float)
    return -P[:, :3].T @ P[:, 3]


def umeyama(src: np.ndarray, dst: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity dst ≈ s R src + t: (s, R, t)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    U, S, Vt = np.linalg.svd(b.T @ a / len(src))
    d = np.diag([1, 1, np.sign(np.linalg.det(U @ Vt))])
    R = U @ d @ Vt
    s = float(np.trace(np.diag(S) @ d) / (a**2).sum(1).mean())
    return s, R, mu_d - s * R @ mu_s


def metres_per_unit(ws: Path, cams: dict[str, dict]) -> dict[str, float]:
    """Per scene: the scale of the reference's shared frame in metres (a Sim(3) of its centres onto the truth)."""
    out = {}
    for s, frames in cams.items():
        gt = json.loads((ws / "scenes" / s / "ground_truth.json").read_text())
        src, dst = [], []
        for (v, _), f in (frames or {}).items():
            truth = {round(g["time"], 3): g for g in gt["videos"][v]["frames"] if g["cam_from_world"] is not None}
            g = truth.get(round(float(f["time"]), 3))
            if g is not None:
                src.append(_centre(f["cam_from_world"]))
                dst.append(_centre(g["cam_from_world"]))
        out[s] = umeyama(np.array(src), np.array(dst))[0] if len(src) >= 3 else float("nan")
    return out


def compare_cameras(ref: dict, got: dict, m_per_unit: dict[str, float]) -> tuple[float, float]:
    """(max abs difference of any camera number, max camera-centre difference in mm after a Sim(3) of the trial's
    centres onto the reference's); inf when a scene's cameras could not be read or the frame sets differ."""
    worst, worst_mm = 0.0, 0.0
    for s, frames in ref.items():
        mine = got.get(s)
        if frames is None or mine is None or set(frames) != set(mine):
            return float("inf"), float("inf")
        keys = sorted(frames)
        worst = max(worst, max(float(np.abs(_numbers(frames[k]) - _numbers(mine[k])).max()) for k in keys))
        a = np.array([_centre(mine[k]["cam_from_world"]) for k in keys])
        b = np.array([_centre(frames[k]["cam_from_world"]) for k in keys])
        sc, R, t = umeyama(a, b)
        err = np.linalg.norm(sc * a @ R.T + t - b, axis=1).max() * m_per_unit[s] * 1000
        worst_mm = max(worst_mm, float(err))
    return worst, worst_mm


def timeline_diff(ref: Path, ws: Path) -> float:
    """Largest difference of a step's start or end (s) between two workspaces' timelines; inf when they list
    different steps or videos."""
    worst = 0.0
    for a in sorted(ref.glob("scenes/*/temporal/steps/*.json")):
        b = ws / a.relative_to(ref)
        try:
            sa, sb = json.loads(a.read_text())["steps"], json.loads(b.read_text())["steps"]
        except (OSError, ValueError, KeyError):
            return float("inf")
        if [(x["task"], x["step"]) for x in sa] != [(x["task"], x["step"]) for x in sb]:
            return float("inf")
        for x, y in zip(sa, sb, strict=True):
            worst = max(worst, abs(x["start"] - y["start"]), abs(x["end"] - y["end"]))
    return worst


def query_points(ws: Path, logs: Path) -> dict[str, np.ndarray | None]:
    out = {}
    for s in scenes_of(ws):
        rc, text, _ = run(["query", ws, QUERY, "--scene", s, "--json"], logs / f"query_{s}.log")
        try:
            data = json.loads(text[text.index("{") : text.rindex("}") + 1])
            out[s] = np.asarray(data["point"], float)
        except (ValueError, KeyError, TypeError):
            out[s] = None
    return out


@dataclass
class Reference:
    ws: Path
    order: list[Item]
    hashes: dict[str, str]
    cams: dict
    m_per_unit: dict[str, float]
    seconds: float
    noisy: set[str] = field(default_factory=set)
    """Files that the control run did not reproduce byte for byte."""
    camera_noise: float = 0.0
    camera_noise_mm: float = 0.0
    query: dict = field(default_factory=dict)


def _json_close(a: Path, b: Path) -> bool:
    """Two JSON files equal up to a relative 1e-9 in every number (a frame scaled again by 1 ± 1e-16)."""
    if a.suffix != ".json" or a.parent.name == "state":
        return False
    try:
        x, y = json.loads(a.read_text()), json.loads(b.read_text())
    except (OSError, ValueError):
        return False

    def close(u, v) -> bool:
        if isinstance(u, dict) and isinstance(v, dict):
            return u.keys() == v.keys() and all(close(u[k], v[k]) for k in u)
        if isinstance(u, list) and isinstance(v, list):
            return len(u) == len(v) and all(map(close, u, v))
        if isinstance(u, float | int) and isinstance(v, float | int) and not isinstance(u, bool):
            return abs(u - v) <= CAMERA_TOL * max(1.0, abs(u), abs(v))
        return u == v

    return close(x, y)


def model_files(hashes: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in hashes.items() if k.startswith("grounding/model/") and k.endswith(".safetensors")}


def timeline_files(hashes: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in hashes.items() if re.match(r"scenes/[^/]+/temporal/steps/[^/]+\.json$", k)}


@dataclass
class Outcome:
    kind: str
    n: int
    target: str = ""
    seconds: float = 0.0
    stage: str = ""
    item: str = ""
    last_line: str = ""
    temporaries: list[str] = field(default_factory=list)
    check: str = ""
    check_lines: list[str] = field(default_factory=list)
    rerun_rc: int | None = None
    run_rc: int | None = None
    camera_diff: float | None = None
    camera_mm: float | None = None
    model_same: bool | None = None
    timelines_same: bool | None = None
    timeline_diff_s: float | None = None
    leftovers: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    other_diffs: list[str] = field(default_factory=list)
    query_diff_mm: float | None = None
    failures: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def do_check(ws: Path, log: Path, o: Outcome) -> None:
    rc, text, _ = run(["check", ws], log)
    lines = [line for line in text.splitlines() if line.strip()]
    o.check_lines = lines
    if traceback_in(text) or rc not in (0, 1):
        o.check = f"FAIL (rc {rc})"
        o.failures.append(f"check exited {rc}" + (" with a traceback" if traceback_in(text) else ""))
    elif rc == 0:
        o.check = "pass"
    else:
        fixes = sorted({m.group(1) for line in lines if (m := re.search(r"run `howto3d (\S+)", line))})
        o.check = f"redo: {', '.join(fixes) or '?'} ({len(lines)} line{'s' * (len(lines) != 1)})"


def compare(ref: Reference, ws: Path, logs: Path, o: Outcome, *, with_query: bool = True) -> None:
    """Cameras, model, timelines, every other file and leftovers against the reference."""
    got = cameras(ws, logs)
    o.camera_diff, o.camera_mm = compare_cameras(ref.cams, got, ref.m_per_unit)
    if ref.camera_noise <= CAMERA_TOL:  # SfM reproduced itself: the resumed run must too
        if o.camera_diff > CAMERA_TOL:
            o.failures.append(f"cameras differ by {o.camera_diff:.3g} (the control reproduced them)")
    elif o.camera_mm > NOISE_FACTOR * ref.camera_noise_mm:
        o.failures.append(f"camera centres differ by {o.camera_mm:.3g} mm (control: {ref.camera_noise_mm:.3g} mm)")
    hashes = file_hashes(ws)
    o.model_same = model_files(hashes) == model_files(ref.hashes)
    o.timelines_same = timeline_files(hashes) == timeline_files(ref.hashes)
    if not o.timelines_same:
        o.timeline_diff_s = timeline_diff(ref.ws, ws)
    o.leftovers = sorted(set(hashes) - set(ref.hashes))
    o.missing = sorted(set(ref.hashes) - set(hashes))
    o.other_diffs = sorted(
        k
        for k in set(hashes) & set(ref.hashes)
        if hashes[k] != ref.hashes[k] and k not in ref.noisy and not _json_close(ref.ws / k, ws / k)
    )
    if o.leftovers:
        o.failures.append(f"left over: {', '.join(o.leftovers[:5])}")
    if o.missing:
        o.failures.append(f"missing: {', '.join(o.missing[:5])}")
    if o.other_diffs:
        o.failures.append(f"differ although the control reproduced them: {', '.join(o.other_diffs[:5])}")
    if with_query and not o.model_same and ref.query:
        pts = query_points(ws, logs)
        diffs = [
            np.linalg.norm(pts[s] - ref.query[s]) * ref.m_per_unit[s] * 1000
            for s in ref.query
            if pts.get(s) is not None and ref.query[s] is not None
        ]
        o.query_diff_mm = float(max(diffs)) if diffs else float("inf")


# ---- the main kills ------------------------------------------------------------------------------------------------


def make_reference(out: Path, template: Path, key: str, name: str) -> tuple[Path, float, float]:
    """An uninterrupted run of a copy of the template (reused from an earlier invocation with the same --out)."""
    ws, marker = out / name, out / f"{name}.json"
    if marker.is_file() and ws.is_dir():
        done = json.loads(marker.read_text())
        if done.get("template") == key:
            say(f"{name}: reused ({done['seconds']:.1f} s)")
            return ws, done["wall0"], done["seconds"]
    marker.unlink(missing_ok=True)
    copy_ws(template, ws)
    say(f"{name}: uninterrupted `howto3d run`")
    p = Proc(["run", ws], out / f"{name}.log")
    rc = p.wait(3600)
    if rc != 0:
        sys.exit(f"the {name} run failed ({rc}); see {out / f'{name}.log'}")
    say(f"{name}: {p.elapsed():.1f} s")
    marker.write_text(json.dumps({"template": key, "wall0": p.wall0, "seconds": p.elapsed()}))
    return ws, p.wall0, p.elapsed()


def plan(order: list[Item], n: int, rng: random.Random) -> list[tuple[str, int, float]]:
    """Per kill: (target stage, index of the item in ``order``, seconds after the previous item's record)."""
    by_stage = {s: [i for i, it in enumerate(order) if it.stage == s] for s in STAGES}
    stages = [s for s in STAGES if by_stage[s]]
    out = []
    for k in range(n):
        s = stages[k % len(stages)]
        idx = by_stage[s]
        lengths = np.array([max(order[i].end - order[i].start, 0.01) for i in idx])
        i = idx[rng.choices(range(len(idx)), weights=lengths)[0]]
        prev_end = order[i - 1].end if i > 0 else 0.0
        at = order[i].start + rng.random() * (order[i].end - order[i].start)
        out.append((s, i, at - prev_end))
    return out


def kill_run(ref: Reference, template: Path, out: Path, n: int, target: tuple[str, int, float]) -> Outcome:
    stage, idx, offset = target
    o = Outcome("run", n, target=f"{stage} +{offset:.2f}s")
    ws = copy_ws(template, out / f"kill_{n:02d}")
    logs = out / f"kill_{n:02d}_logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir()
    p = Proc(["run", ws], logs / "run_killed.log")
    prev = ref.order[idx - 1] if idx > 0 else None
    armed: float | None = None if prev else p.wall0
    mtimes: dict = {}
    killed = False
    while p.p.poll() is None:
        if armed is None:
            now = (
                {f.name: f.stat().st_mtime_ns for f in (ws / "state").glob("*.json")} if (ws / "state").is_dir() else {}
            )
            if now != mtimes:
                mtimes = now
                entry = records(ws).get((prev.record, prev.key))
                if entry and entry.get("status") == "done":
                    armed = entry["when"]
        if armed is not None and time.time() >= armed + offset:
            o.seconds = p.kill()
            killed = True
            break
        time.sleep(0.02)
    if not killed:
        p.wait(60)
        o.seconds = p.elapsed()
        o.stage, o.item = "finished", ""
    else:
        o.stage, o.item = stage_at(ws, ref.order)
    o.last_line = p.last_line()
    o.temporaries = temporaries(ws)
    do_check(ws, logs / "check.log", o)
    rc, text, _ = run(["run", ws], logs / "rerun.log")
    o.rerun_rc = rc
    if rc != 0:
        o.failures.append(f"rerun exited {rc}" + (" with a traceback" if traceback_in(text) else ""))
    else:
        compare(ref, ws, logs, o)
    if o.ok:
        shutil.rmtree(ws, ignore_errors=True)
    return o


# ---- align --reanchor, scale, add ---------------------------------------------------------------------------------


def extra_reference(
    out: Path, finished: Path, name: str, args: list, m_per_unit: dict[str, float], noisy: set[str]
) -> tuple[Reference, float]:
    """``howto3d ARGS`` run uninterrupted on two copies of the finished reference: the first is what a killed and
    rerun one is compared with, the second says what the command itself does not reproduce."""
    runs = []
    for tag in ("", "_control"):
        ws = copy_ws(finished, out / f"{name}{tag}")
        rc, text, seconds = run([args[0], ws, *args[1:]], out / f"{name}{tag}.log")
        if rc != 0:
            sys.exit(f"{name}{tag} failed ({rc}): {text[-1500:]}")
        runs.append((ws, seconds))
    (ws, seconds), (control, _) = runs
    ref = Reference(ws, [], file_hashes(ws), cameras(ws, out), m_per_unit, seconds)
    hashes = file_hashes(control)
    ref.noisy = noisy | {k for k in set(ref.hashes) | set(hashes) if ref.hashes.get(k) != hashes.get(k)}
    ref.camera_noise, ref.camera_noise_mm = compare_cameras(ref.cams, cameras(control, out), m_per_unit)
    say(f"{name}: {seconds:.1f} s; its control: cameras {ref.camera_noise:.3g} ({ref.camera_noise_mm:.3g} mm)")
    return ref, seconds


def kill_writer(
    kind: str, ref: Reference, finished: Path, out: Path, n: int, args: list, seconds: float, rng: random.Random
) -> Outcome:
    """Kill ``howto3d ARGS`` (on a copy of the finished reference) at a uniform moment of its duration, check,
    run it again, compare with its uninterrupted result, then ``run``."""
    at = (0.1 + 0.85 * rng.random()) * seconds
    o = Outcome(kind, n, target=f"+{at:.2f}s of {seconds:.1f}s")
    slug = kind.replace(" --", "_")
    ws = copy_ws(finished, out / f"{slug}_{n:02d}")
    logs = out / f"{slug}_{n:02d}_logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir()
    p = Proc([args[0], ws, *args[1:]], logs / "killed.log")
    while p.p.poll() is None and p.elapsed() < at:
        time.sleep(0.02)
    if p.p.poll() is None:
        o.seconds = p.kill()
        o.stage = "killed"
    else:
        p.wait(10)
        o.seconds, o.stage = p.elapsed(), "finished"
    o.last_line = p.last_line()
    o.temporaries = temporaries(ws)
    do_check(ws, logs / "check.log", o)
    rc, text, _ = run([args[0], ws, *args[1:]], logs / "rerun.log")
    o.rerun_rc = rc
    if rc != 0:
        o.failures.append(f"rerun of {kind} exited {rc}" + (" with a traceback" if traceback_in(text) else ""))
        return o
    compare(ref, ws, logs, o, with_query=False)
    rc, text, _ = run(["run", ws], logs / "run.log")
    o.run_rc = rc
    if rc != 0:
        o.failures.append(f"`run` after {kind} exited {rc}" + (" with a traceback" if traceback_in(text) else ""))
    if o.ok:
        shutil.rmtree(ws, ignore_errors=True)
    return o


def big_video(out: Path, source: Path, mib: int) -> Path:
    """A real video padded with an MP4 ``free`` box to ``mib`` MiB (decoders skip it)."""
    path = out / "big" / "bigvideo.mp4"
    if path.is_file() and path.stat().st_size >= mib << 20:
        return path
    path.parent.mkdir(exist_ok=True)
    data = source.read_bytes()
    pad = max((mib << 20) - len(data) - 8, 0)
    with open(path, "wb") as f:
        f.write(data)
        f.write(struct.pack(">I4s", pad + 8, b"free"))
        block = os.urandom(1 << 20)
        while pad > 0:
            f.write(block[: min(pad, len(block))])
            pad -= len(block)
    return path


def kill_add(finished: Path, out: Path, n: int, video: Path, scene: str, rng: random.Random) -> Outcome:
    """Kill ``add`` of a large video once its temporary copy holds a uniform fraction (5-95 %) of the bytes."""
    share = 0.05 + 0.9 * rng.random()
    o = Outcome("add", n, target=f"at {share:.0%} of the copy")
    ws = copy_ws(finished, out / f"add_{n:02d}")
    logs = out / f"add_{n:02d}_logs"
    shutil.rmtree(logs, ignore_errors=True)
    logs.mkdir()
    videos = ws / "scenes" / scene / "videos"
    tmp = videos / f".{video.name}.tmp"
    size = video.stat().st_size
    p = Proc(["add", ws, "--scene", scene, video], logs / "killed.log")
    while p.p.poll() is None:
        try:
            if tmp.stat().st_size >= share * size:
                o.seconds = p.kill()
                break
        except FileNotFoundError:
            pass
        time.sleep(0.001)
    if p.p.poll() is not None and not o.seconds:
        p.wait(10)
        o.seconds = p.elapsed()
    partial = tmp.stat().st_size if tmp.exists() else None
    final = (videos / video.name).is_file()
    o.stage = (
        f"mid-copy ({partial / video.stat().st_size:.0%} copied)"
        if partial is not None and not final
        else "copied"
        if final
        else "before the copy"
    )
    o.temporaries = temporaries(ws)
    from howto3d.workspace import Workspace

    listed = [v.name for v in Workspace(ws).videos(scene)]
    if video.stem in listed and _sha(videos / video.name) != _sha(video):
        o.failures.append("a half-copied video is listed as a video")
    do_check(ws, logs / "check.log", o)
    rc, text, _ = run(["run", ws], logs / "run.log")
    o.run_rc = rc
    if rc != 0:
        o.failures.append(f"`run` after the killed add exited {rc}")
    if (
        not final
        and (ws / "state" / "frames.json").is_file()
        and f"{scene}/{video.stem}" in json.loads((ws / "state" / "frames.json").read_text())["items"]
    ):
        o.failures.append("`run` took the half copy for a video")
    o.leftovers = temporaries(ws)
    if o.leftovers:
        o.failures.append(f"left over after `run`: {', '.join(o.leftovers)}")
    rc, text, _ = run(["add", ws, "--scene", scene, video], logs / "readd.log")
    o.rerun_rc = rc
    if rc != 0:
        o.failures.append(f"adding again exited {rc}")
    elif _sha(videos / video.name) != _sha(video):
        o.failures.append("the added video differs from its source")
    if o.ok:
        shutil.rmtree(ws, ignore_errors=True)
    return o


def _sha(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            h.update(block)
    return h.hexdigest()


def scale_request(ref: Path, cams: dict, logs: Path) -> tuple[str, str, Path, list[str]] | None:
    """(scene, source video, keypoints file, --distance args): two parts clicked where the truth projects them."""
    from synth.render import project

    s = scenes_of(ref)[0]
    gt = json.loads((ref / "scenes" / s / "ground_truth.json").read_text())
    times: dict[str, list[float]] = {}
    for (v, _), f in cams[s].items():
        times.setdefault(v, []).append(float(f["time"]))
    source = max(times, key=lambda v: len(times[v]))
    truth = gt["videos"][source]
    by_time = {round(f["time"], 3): f for f in truth["frames"] if f["cam_from_world"] is not None}
    k1 = float(truth["camera"]["params"][3]) if "camera" in truth else 0.0
    kps = []
    for part, X in truth["parts"].items():
        seen = []
        for t in sorted(times[source]):
            f = by_time.get(round(t, 3))
            if f is None:
                continue
            P = np.asarray(f["cam_from_world"], float)
            if (P[:, :3] @ np.asarray(X, float) + P[:, 3])[2] <= 0.05:
                continue
            u, v = project(np.asarray(f["K"], float), k1, P, np.asarray(X, float)[None])[0]
            if 0 <= u < truth["width"] and 0 <= v < truth["height"]:
                seen.append({"time": t, "xy": [float(u), float(v)]})
        if len(seen) >= 2:
            pick = np.unique(np.linspace(0, len(seen) - 1, 4).round().astype(int))
            kps.append({"name": part, "observations": [seen[i] for i in pick]})
        if len(kps) == 2:
            break
    if len(kps) < 2:
        return None
    path = logs / "keypoints.json"
    path.write_text(json.dumps({"keypoints": kps}, indent=1))
    a, b = kps[0]["name"], kps[1]["name"]
    metres = float(np.linalg.norm(np.asarray(truth["parts"][a], float) - np.asarray(truth["parts"][b], float)))
    return s, source, path, ["--distance", a, b, f"{metres:.6f}"]


def extra_kills(
    args: argparse.Namespace,
    out: Path,
    ref: Reference,
    ref_ws: Path,
    cams: dict,
    rng: random.Random,
    outcomes: list[Outcome],
    save,
) -> None:
    """Kills of ``align --reanchor``, ``scale`` and ``add`` (``--extra`` each)."""
    reanchor, t_re = extra_reference(out, ref_ws, "reanchor_ref", ["align", "--reanchor"], ref.m_per_unit, set())
    for n in range(1, args.extra + 1):
        o = kill_writer("align --reanchor", reanchor, ref_ws, out, n, ["align", "--reanchor"], t_re, rng)
        outcomes.append(o)
        save()
        say(f"reanchor kill {n}: {o.seconds:.1f} s; check {o.check}; " + ("ok" if o.ok else "; ".join(o.failures)))
    req = scale_request(ref_ws, cams, out)
    if req is None:
        say("scale: fewer than 2 parts seen in 2 registered frames: not tested")
    else:
        s, source, kp, dist = req
        cmd = ["scale", "--scene", s, "--source", source, "--keypoints", kp, *dist]
        scaled, t_sc = extra_reference(out, ref_ws, "scale_ref", cmd, ref.m_per_unit, set())
        for n in range(1, args.extra + 1):
            o = kill_writer("scale", scaled, ref_ws, out, n, cmd, t_sc, rng)
            outcomes.append(o)
            save()
            say(f"scale kill {n}: {o.seconds:.1f} s; check {o.check}; " + ("ok" if o.ok else "; ".join(o.failures)))
    s = scenes_of(ref_ws)[0]
    video = big_video(out, next((ref_ws / "scenes" / s / "videos").glob("*.mp4")), args.add_mb)
    for n in range(1, args.extra + 1):
        o = kill_add(ref_ws, out, n, video, s, rng)
        outcomes.append(o)
        save()
        say(f"add kill {n}: {o.stage}; check {o.check}; " + ("ok" if o.ok else "; ".join(o.failures)))


# ---- report --------------------------------------------------------------------------------------------------------


def fmt(x: float | None, spec: str = ".2g") -> str:
    if x is None:
        return "-"
    if x == float("inf"):
        return "inf"
    return "0" if x == 0 else format(x, spec)


def yes(x: bool | None) -> str:
    return "-" if x is None else "yes" if x else "**no**"


def table(outcomes: list[Outcome]) -> str:
    rows = [
        "| kill # | time (s) | target | stage at kill | check result | rerun rc | cameras max diff | centres (mm) "
        "| model same? | timelines same? | leftovers | result |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        stage = f"{o.stage} {o.item}".strip()
        left = ", ".join(o.leftovers + [f"missing {m}" for m in o.missing]) or "none"
        result = "ok" if o.ok else "**FAIL**: " + "; ".join(o.failures)
        model = yes(o.model_same) + (f" (query Δ {o.query_diff_mm:.2g} mm)" if o.query_diff_mm is not None else "")
        steps = yes(o.timelines_same) + (
            ""
            if o.timeline_diff_s is None
            else " (other steps)"
            if o.timeline_diff_s == float("inf")
            else f" (Δ {fmt(o.timeline_diff_s)} s)"
        )
        rows.append(
            f"| {o.n} | {o.seconds:.1f} | {o.target} | {stage} | {o.check} | {fmt(o.rerun_rc, 'd')}"
            f"{'' if o.run_rc is None else f' (run {o.run_rc})'} | {fmt(o.camera_diff)} | {fmt(o.camera_mm)} "
            f"| {model} | {steps} | {left} | {result} |"
        )
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="4 kills of `run` and 1 of each other writer (make bench)")
    ap.add_argument("--kills", type=int, default=20, help="kills of `howto3d run` (default 20)")
    ap.add_argument("--extra", type=int, default=3, help="kills of each of align --reanchor, scale, add (default 3)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    ap.add_argument("--world-seed", type=int, default=0)
    ap.add_argument("--seconds", type=float, default=12.0)
    ap.add_argument("--videos", type=int, default=2)
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument(
        "--threads",
        type=int,
        default=-1,
        help="[reconstruct] num_threads of the workspace (default -1: all cores, the product default)",
    )
    ap.add_argument("--add-mb", type=int, default=768, help="size of the video `add` copies (MiB)")
    ap.add_argument("--out", type=Path, help="work folder (kept; the template and references are reused)")
    ap.add_argument("--json", type=Path, help="write every outcome here")
    ap.add_argument("--keep", action="store_true", help="keep the temporary work folder")
    args = ap.parse_args()
    if args.kills < 0 or args.extra < 0:
        ap.error("--kills and --extra must be >= 0")
    if args.quick:
        args.kills, args.extra = min(args.kills, 4), min(args.extra, 1)
    rng = random.Random(args.seed)
    out = args.out or Path(tempfile.mkdtemp(prefix="howto3d-chaos-"))
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    try:
        code = _main(args, out, rng)
    finally:
        if args.out is None and not args.keep:
            shutil.rmtree(out, ignore_errors=True)
    say(f"done in {(time.perf_counter() - t_start) / 60:.1f} min")
    sys.exit(code)


def _main(args: argparse.Namespace, out: Path, rng: random.Random) -> int:
    template, key = build_template(out, args)
    ref_ws, wall0, seconds = make_reference(out, template, key, "reference")
    control_ws, _, control_seconds = make_reference(out, template, key, "control")
    order = item_order(ref_ws, wall0)
    say("reference order: " + ", ".join(f"{it.stage} {it.key} {it.start:.1f}-{it.end:.1f}" for it in order))
    cams = cameras(ref_ws, out)
    ref = Reference(ref_ws, order, file_hashes(ref_ws), cams, metres_per_unit(ref_ws, cams), seconds)
    control_hashes = file_hashes(control_ws)
    control_diffs = sorted(
        k for k in set(ref.hashes) | set(control_hashes) if ref.hashes.get(k) != control_hashes.get(k)
    )
    ref.noisy = set(control_diffs)
    ref.camera_noise, ref.camera_noise_mm = compare_cameras(cams, cameras(control_ws, out), ref.m_per_unit)
    if ref.camera_noise > CAMERA_TOL:  # SfM differs run to run: so may everything made from it, by chance or not
        ref.noisy |= {k for k in ref.hashes if DOWNSTREAM_OF_SFM.match(k)}
    timeline_noise = timeline_diff(ref_ws, control_ws)
    ref.query = query_points(ref_ws, out)
    control_query = query_points(control_ws, out)
    query_noise = max(
        (
            np.linalg.norm(control_query[s] - ref.query[s]) * ref.m_per_unit[s] * 1000
            for s in ref.query
            if ref.query[s] is not None and control_query.get(s) is not None
        ),
        default=float("nan"),
    )
    say(
        f"control: {len(control_diffs)} file(s) differ from the reference; cameras {ref.camera_noise:.3g} "
        f"({ref.camera_noise_mm:.3g} mm); query {query_noise:.3g} mm"
    )
    outcomes: list[Outcome] = []
    targets = plan(order, args.kills, rng)

    def save() -> None:
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "reference_seconds": seconds,
                        "control_seconds": control_seconds,
                        "control_diffs": control_diffs,
                        "noisy": sorted(ref.noisy),
                        "camera_noise": ref.camera_noise,
                        "camera_noise_mm": ref.camera_noise_mm,
                        "query_noise_mm": query_noise,
                        "timeline_noise_s": timeline_noise,
                        "order": [asdict(i) for i in order],
                        "outcomes": [asdict(o) for o in outcomes],
                    },
                    indent=1,
                    default=str,
                )
            )

    if args.extra:
        try:
            extra_kills(args, out, ref, ref_ws, cams, random.Random(args.seed + 1), outcomes, save)
        except Exception as e:  # a broken harness must not lose the kills' table
            import traceback

            traceback.print_exc()
            outcomes.append(Outcome("extra", 0, failures=[f"harness error: {e!r}"]))
    for n, target in enumerate(targets, 1):
        o = kill_run(ref, template, out, n, target)
        outcomes.append(o)
        save()
        say(
            f"kill {n}/{args.kills}: {o.seconds:.1f} s, {o.stage} {o.item}; check {o.check}; rerun {o.rerun_rc}; "
            f"cameras {fmt(o.camera_diff)}; model {o.model_same}; timelines {o.timelines_same}; "
            + ("ok" if o.ok else "FAIL: " + "; ".join(o.failures))
        )

    runs = [o for o in outcomes if o.kind == "run"]
    print(
        f"\n## Chaos: kill -9 in `howto3d run` ({len(runs)} kills, seed {args.seed}; uninterrupted run "
        f"{seconds:.0f} s, control {control_seconds:.0f} s)\n"
    )
    print(table(runs))
    for kind in ("align --reanchor", "scale", "add"):
        mine = [o for o in outcomes if o.kind == kind]
        if mine:
            print(f"\n### `{kind}`\n")
            print(table(mine))
    per_stage = {s: sum(o.stage == s for o in runs) for s in ("startup", *STAGES, "check", "finished")}
    failed = [o for o in outcomes if not o.ok]
    print(f"\nkills per stage: {', '.join(f'{s} {k}' for s, k in per_stage.items() if k)}")
    kinds = sorted(
        {
            re.sub(r"^scenes/[^/]+/", "scenes/*/", k).split("/")[2 if k.startswith("scenes/") else 0]
            for k in control_diffs
        }
    )
    listed = f" (under {', '.join(kinds)})" if kinds else ""
    print(
        f"control run (uninterrupted, same settings) vs reference: {len(control_diffs)} file(s) differ{listed}"
        f"; cameras max diff {fmt(ref.camera_noise)} ({fmt(ref.camera_noise_mm)} mm after Sim(3)); "
        f"query point {fmt(query_noise)} mm; step boundaries {fmt(timeline_noise)} s (inf: other steps)"
    )
    worst = max((o.camera_mm for o in runs if o.camera_mm is not None), default=None)
    worst_q = max((o.query_diff_mm for o in runs if o.query_diff_mm is not None), default=None)
    worst_t = max((o.timeline_diff_s for o in runs if o.timeline_diff_s is not None), default=None)
    print(
        f"summary: {len(outcomes) - len(failed)} of {len(outcomes)} kills resumed to the reference "
        f"({len(runs)} of `run`); worst after a kill: camera centres {fmt(worst)} mm, query point {fmt(worst_q)} mm, "
        f"step boundaries {fmt(worst_t)} s (inf: other steps); {len(failed)} failure(s)"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    main()
