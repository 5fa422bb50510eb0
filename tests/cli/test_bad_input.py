"""Hostile input and bad days: one clear line and the right exit code, one bad file never stops the
others, two runs on one workspace never lose each other's work, nothing half-written is left behind."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

from grounding.narration import read_narrations
from grounding.query import read_queries
from howto3d import recon_cmds, temporal_cmds
from howto3d.config import Config, from_dict, to_toml
from howto3d.workspace import Workspace, release_locks
from recon.io import InputError, atomic_dir, atomic_write_json
from recon.transfer import parse_observations

SRT = "1\n00:00:00,000 --> 00:00:02,000\npull the dipstick out\n"


def one_line_error(out, code: int | None = None) -> str:
    """The promise: a non-zero exit (``code`` when given) and exactly one line, never a traceback."""
    lines = out.stderr.strip().splitlines()
    assert out.returncode != 0 and (code is None or out.returncode == code), (out.returncode, out.stderr)
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in out.stderr, out.stderr
    return lines[0]


@pytest.fixture
def ws_with_video(tmp_path, make_video):
    ws = tmp_path / "ws"
    Workspace.init(ws)
    make_video(tmp_path / "clip.mp4", n=5)
    (tmp_path / "clip.srt").write_text(SRT)
    Workspace(ws).add_videos("civic", [tmp_path / "clip.mp4"])
    return ws


# ---- usage mistakes and bad files: one line ----------------------------------------------------------------
@pytest.mark.parametrize(
    "args, needle",
    [
        (("query", "{ws}", "dipstick"), "Missing option '--scene'"),
        (("reconstruct", "{ws}", "--bogus"), "No such option"),
        (("querry", "{ws}"), "No such command 'querry'"),
        (("reconstruct", "{ws}", "--frames", "x"), "'--frames'"),
        (("reconstruct", "{ws}", "--frames", "-5"), "'--frames'"),
        (("train", "{ws}", "--epochs", "0"), "'--epochs'"),
    ],
)
def test_usage_mistakes_are_one_line(cli, ws_with_video, args, needle):
    line = one_line_error(cli(*(a.format(ws=ws_with_video) for a in args)), 2)
    assert needle in line and "--help" in line


@pytest.mark.parametrize("args", [(), ("crosstask",)])
def test_a_bare_command_shows_its_help(cli, args):
    """typer's usage errors are caught through the public ``typer.TyperException`` (howto3d.cli.main): a bare
    command's help request among them must still print the help and exit 0."""
    out = cli(*args)
    assert out.returncode == 0 and "Traceback" not in out.stderr and not out.stderr.strip(), out.stderr
    assert "Usage:" in out.stdout and ("crosstask" if not args else "localize") in out.stdout, out.stdout


@pytest.mark.parametrize(
    "toml, needle",
    [
        ("[bogus_section]\nx = 1\n", "unknown section [bogus_section]"),
        ("[frames]\nnum_frames = -5\n", "frames.num_frames = -5"),
        ("[frames]\nmax_side = 0\n", "frames.max_side = 0"),
        ("[grounding]\ndivisions = 0\n", "grounding.divisions = 0"),
        ("[align]\nratio = 1.5\n", "align.ratio = 1.5"),
    ],
)
def test_bad_settings_name_the_field(cli, ws_with_video, toml, needle):
    (ws_with_video / "howto3d.toml").write_text(toml)
    assert needle in one_line_error(cli("reconstruct", str(ws_with_video)), 2)


def test_default_settings_are_in_range():
    import tomllib

    from_dict(tomllib.loads(to_toml(Config())), Path("howto3d.toml"))


def test_non_utf8_config_and_bracketed_paths(cli, tmp_path, ws_with_video):
    (ws_with_video / "howto3d.toml").write_bytes(b"[frames]\n# caf\xe9\n")
    assert "not UTF-8" in one_line_error(cli("reconstruct", str(ws_with_video)), 2)
    odd = tmp_path / "a[/]b" / "[red]ws"
    line = one_line_error(cli("cameras", str(odd), "--scene", "x"), 2)
    assert str(odd) in line  # printed as given: no markup eaten, no crash of the printer


# ---- ingest: names, content, subtitles -------------------------------------------------------------------
def test_same_name_videos_are_refused(cli, tmp_path, make_video, ws_with_video):
    for folder, suffix in (("a", ".mp4"), ("b", ".mov")):
        (tmp_path / folder).mkdir()
        make_video(tmp_path / folder / f"video_00{suffix}", n=5 + len(folder))
    ws = str(ws_with_video)
    a, b = str(tmp_path / "a" / "video_00.mp4"), str(tmp_path / "b" / "video_00.mov")
    both = cli("add", ws, "--scene", "civic", a, b)
    assert "video_00" in one_line_error(both, 2)
    assert cli("add", ws, "--scene", "civic", a).returncode == 0
    later = cli("add", ws, "--scene", "civic", b)
    assert "already" in one_line_error(later, 2)
    assert [v.path.name for v in Workspace(ws_with_video).videos("civic")] == ["clip.mp4", "video_00.mp4"]
    long_name = tmp_path / ("v" * 230 + ".mp4")
    make_video(long_name, n=5)
    assert "characters long" in one_line_error(cli("add", ws, "--scene", "civic", str(long_name)), 2)


def test_add_compares_content_and_updates_subtitles(tmp_path, make_video, ws_with_video):
    ws = Workspace(ws_with_video)
    src = tmp_path / "clip.mp4"
    assert ws.add_videos("civic", [src]) == []  # unchanged: nothing to redo
    (tmp_path / "clip.srt").write_text(SRT.replace("dipstick", "oil cap"))
    (tmp_path / "clip.en.vtt").write_text("WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nhello\n")
    (changed,) = ws.add_videos("civic", [src])
    videos = ws.scene_dir("civic") / "videos"
    assert "oil cap" in (videos / "clip.srt").read_text() and changed.subtitles.name == "clip.en.vtt"
    size = src.stat().st_size
    data = bytearray(src.read_bytes())
    data[-1] ^= 0xFF  # same name, same size, other content
    src.write_bytes(bytes(data))
    assert src.stat().st_size == size and len(ws.add_videos("civic", [src])) == 1
    assert (videos / "clip.mp4").read_bytes() == bytes(data)


# ---- per-video failures never stop the others ---------------------------------------------------------------
def test_any_failure_of_one_video_is_recorded_and_the_others_finish(cli, small_world, tmp_path):
    _, (scene_dir,) = small_world
    ws = Workspace.init(tmp_path / "ws")
    videos = ws.scene_dir("s") / "videos"
    videos.mkdir(parents=True)
    shutil.copy(scene_dir / "videos" / "video_00.mp4", videos / "good.mp4")
    (videos / "corrupt.mp4").write_bytes(os.urandom(2048))
    shutil.copy(scene_dir / "videos" / "video_01.mp4", videos / ("n" * 245 + ".mp4"))  # temp names too long
    out = cli("reconstruct", str(ws.root), "--frames", "12")
    assert out.returncode == 0, out.stderr
    items = json.loads((ws.root / "state" / "reconstruct.json").read_text())["items"]
    assert items["s/good"]["status"] == "done"
    assert items["s/corrupt"]["status"] == "failed" and "corrupt.mp4" in items["s/corrupt"]["error"]
    long_entry = items["s/" + "n" * 245]
    assert long_entry["status"] == "failed" and "name too long" in long_entry["error"].lower()
    assert not list(ws.root.rglob(".*.tmp"))
    assert "num_frames = 12" in ws.config_path.read_text()  # the override is remembered for `run`
    for v in ("good", "n" * 245):
        shutil.rmtree(ws.frames_dir("s", v), ignore_errors=True)
        (videos / f"{v}.mp4").unlink()
    out = cli("reconstruct", str(ws.root), "--force")  # nothing succeeded → non-zero, after the per-video table
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip().splitlines()[-1].startswith("error: every video failed"), out.stderr


def _sfm_dies_on_bad(conf, frames_dir: Path, sfm_dir: Path) -> dict:
    """One video's SfM worker ends the way a segfault or the OOM killer ends it: no exception, no result."""
    if Path(frames_dir).name == "bad":
        os._exit(139)
    return recon_cmds._structure_from_motion(conf, frames_dir, sfm_dir)


def test_a_worker_that_dies_fails_its_video_alone(cli, small_world, tmp_path, monkeypatch):
    _, (scene_dir,) = small_world
    ws = Workspace.init(tmp_path / "ws")
    videos = ws.scene_dir("s") / "videos"
    videos.mkdir(parents=True)
    shutil.copy(scene_dir / "videos" / "video_00.mp4", videos / "good.mp4")
    shutil.copy(scene_dir / "videos" / "video_01.mp4", videos / "bad.mp4")
    monkeypatch.setattr(recon_cmds, "_structure_from_motion", _sfm_dies_on_bad)  # workers unpickle it by name
    out = cli("reconstruct", str(ws.root), "--frames", "12")
    assert out.returncode == 0 and "Traceback" not in out.stderr, out.stderr
    items = json.loads((ws.root / "state" / "reconstruct.json").read_text())["items"]
    assert items["s/good"]["status"] == "done"
    assert items["s/bad"]["status"] == "failed" and "worker process died" in items["s/bad"]["error"]
    assert not list(ws.root.rglob(".*.tmp"))


def test_short_videos_skip_actionness_with_a_reason(ws_with_video, caplog):
    ws = Workspace(ws_with_video)
    assert temporal_cmds.actionness(ws, "civic", features={"clip": np.zeros((4, 8), np.float32)}) == {}
    assert "shorter than" in caplog.text and not (ws.temporal_dir("civic") / "actionness" / "clip.json").exists()


# ---- concurrency, kills, leftovers --------------------------------------------------------------------------
def _python(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_concurrent_records_are_never_lost(tmp_path):
    code = (
        "import sys; from howto3d.workspace import Workspace\n"
        "w = Workspace(sys.argv[1])\n"
        "for i in range(40): w.record('reconstruct').put(f'{sys.argv[2]}/{i}', 'fp', 'done')\n"
    )
    Workspace.init(tmp_path / "ws")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "ws"), scene]) for scene in ("a", "b")]
    assert [p.wait(120) for p in procs] == [0, 0]
    items = Workspace(tmp_path / "ws").record("reconstruct").items
    assert sorted(items) == sorted(f"{s}/{i}" for s in ("a", "b") for i in range(40))


def test_second_writer_waits_and_a_dead_holder_frees_the_lock(cli, ws_with_video, tmp_path, make_video):
    holder = _python(
        f"import time; from howto3d.workspace import Workspace\n"
        f"Workspace({str(ws_with_video)!r}).lock('howto3d test'); print('locked', flush=True)\n"
        f"time.sleep(60)\n"
    )
    assert holder.stdout.readline().strip() == "locked"
    make_video(tmp_path / "more.mp4", n=6)
    waiter = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "howto3d"),
            "add",
            str(ws_with_video),
            "--scene",
            "civic",
            str(tmp_path / "more.mp4"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    err: list[str] = []
    reader = threading.Thread(target=lambda: err.extend(waiter.stderr), daemon=True)
    reader.start()
    deadline = time.monotonic() + 300
    while not any("busy" in line for line in err) and time.monotonic() < deadline:
        assert waiter.poll() is None, err  # it must wait for the holder, not run beside it
        time.sleep(0.2)
    assert "howto3d test" in "".join(err) and waiter.poll() is None
    holder.send_signal(signal.SIGKILL)  # a dead holder's lock is free: no stale lock file to clear by hand
    holder.wait()
    assert waiter.wait(300) == 0, err
    assert (ws_with_video / "scenes" / "civic" / "videos" / "more.mp4").is_file()


def test_leftovers_of_a_killed_run_are_cleaned(cli, ws_with_video):
    ws = Workspace(ws_with_video)
    with contextlib.suppress(KeyboardInterrupt), atomic_dir(ws.sfm_dir("civic", "clip")):
        raise KeyboardInterrupt
    stale = ws.sfm_dir("civic", "clip").parent / ".clip.k1ll.tmp"
    stale.mkdir(parents=True)
    (ws.scene_dir("civic") / "videos" / ".clip.mp4.tmp").write_bytes(b"half")
    assert cli("align", str(ws_with_video)).returncode == 0
    assert not stale.exists() and not list(ws_with_video.rglob(".*.tmp"))


def test_a_kill_between_atomic_dirs_renames_keeps_the_previous_folder(ws_with_video, monkeypatch):
    """``atomic_dir`` replaces a folder in two renames (final → .old, tmp → final): a run killed between them
    must not lose the folder its record still describes (benchmarks/chaos.py)."""
    ws = Workspace(ws_with_video)
    folder = ws.align_dir("civic")
    with atomic_dir(folder) as tmp:
        (tmp / "transforms.json").write_text("old")
    real_replace = os.replace

    def killed_after_the_first_rename(src, dst):
        real_replace(src, dst)
        if str(dst).endswith(".old"):
            raise KeyboardInterrupt  # as SIGKILL would stop it, before the new folder is renamed into place

    monkeypatch.setattr(os, "replace", killed_after_the_first_rename)
    with contextlib.suppress(KeyboardInterrupt), atomic_dir(folder) as tmp:
        (tmp / "transforms.json").write_text("new")
    monkeypatch.setattr(os, "replace", real_replace)
    assert not folder.exists() and (folder.parent / ".align.old").is_dir()
    try:
        ws.lock("test")  # the next writer sweeps the dead run's temporaries
    finally:
        release_locks()
    assert (folder / "transforms.json").read_text() == "old"
    assert not list(ws.root.rglob(".*.old")) and not list(ws.root.rglob(".*.tmp"))


def test_files_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "a.json", {})
        with atomic_dir(tmp_path / "d") as d:
            (d / "x").write_text("1")
            save_file({"w": np.zeros(3, np.float32)}, str(d / "model.safetensors"))  # safetensors writes 0600
    finally:
        os.umask(old)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "d" / "model.safetensors").stat().st_mode & 0o777 == 0o644


# ---- full and read-only disks (a real tmpfs: root only) -----------------------------------------------------
@pytest.fixture
def tiny_disk(tmp_path):
    """A 4 MiB tmpfs: real ENOSPC/EROFS from the kernel. Needs root (CI runs as root)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)], capture_output=True).returncode
        != 0
    ):
        pytest.skip("mounting a tmpfs needs root; full/read-only disk cases not exercised")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def test_disk_full_during_add_leaves_nothing_half_written(cli, tiny_disk, tmp_path):
    big = tmp_path / "big.mp4"
    big.write_bytes(os.urandom(6 << 20))
    line = one_line_error(cli("add", str(tiny_disk / "ws"), "--scene", "civic", str(big)), 1)
    assert "disk is full" in line and "big.mp4" in line
    assert not list((tiny_disk / "ws").rglob("*.tmp")) and not list((tiny_disk / "ws").rglob("big.mp4"))


def test_read_only_workspace_is_one_line(cli, tiny_disk, ws_with_video):
    shutil.copytree(ws_with_video, tiny_disk / "ws")
    subprocess.run(["mount", "-o", "remount,ro", str(tiny_disk)], check=True)
    line = one_line_error(cli("reconstruct", str(tiny_disk / "ws")), 1)
    assert "read-only" in line and str(tiny_disk / "ws") in line


def test_disk_full_during_reconstruct_fails_that_video_with_one_line(cli, small_world, tiny_disk):
    _, (scene_dir,) = small_world
    ws = Workspace.init(tiny_disk / "ws")
    ws.remember("frames", "num_frames", 6)
    ws.remember("frames", "max_side", 320)
    shutil.copytree(
        scene_dir / "videos",
        ws.scene_dir("s") / "videos",
        ignore=lambda d, names: [n for n in names if n != "video_00.mp4"],
    )
    filler = tiny_disk / "filler"
    with open(filler, "wb") as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * (1 << 16))
            f.flush()
    os.truncate(filler, filler.stat().st_size - (300 << 10))  # room for the frames, not for SfM's database
    out = cli("reconstruct", str(ws.root))
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    assert "disk is full" in out.stderr and out.stderr.strip().splitlines()[-1].startswith("error: "), out.stderr
    filler.unlink()
    assert not list(ws.root.rglob(".*.tmp"))


# ---- readers of user files: narrations/queries/keypoints or the one-line error, nothing else -------------------
_JSON = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "time",
                    "xy",
                    "name",
                    "observations",
                    "start",
                    "end",
                    "text",
                    "segments",
                    "words",
                    "word",
                    "events",
                    "tStartMs",
                    "segs",
                    "utf8",
                ]
            ),
            inner,
            max_size=4,
        )
    ),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    data=st.binary(max_size=400) | _JSON.map(lambda j: json.dumps(j).encode()),
    suffix=st.sampled_from([".srt", ".vtt", ".json", ".txt"]),
)
def test_user_file_readers_never_crash(tmp_path, data, suffix):
    path = tmp_path / f"clip{suffix}"
    path.write_bytes(data)
    reader = read_queries if suffix == ".txt" else read_narrations
    with contextlib.suppress(InputError):
        out = reader(path)
        assert isinstance(out, list)


@settings(max_examples=200, deadline=None)
@given(observations=_JSON)
def test_keypoint_observations_parse_or_name_the_keypoint(observations):
    try:
        parsed = parse_observations(observations, "dipstick")
    except InputError as e:
        assert "'dipstick'" in str(e)
    else:
        assert all(np.isfinite(t) and xy.shape == (2,) and np.isfinite(xy).all() for t, xy in parsed)


def test_frames_of_a_run_killed_during_sfm_are_kept(small_world, tmp_path):
    _, (scene_dir,) = small_world
    ws = Workspace.init(tmp_path / "ws")
    ws.remember("frames", "num_frames", 12)
    videos = ws.scene_dir("s") / "videos"
    videos.mkdir(parents=True)
    shutil.copy(scene_dir / "videos" / "video_00.mp4", videos / "v.mp4")
    run = subprocess.Popen(
        [str(Path(sys.executable).parent / "howto3d"), "reconstruct", str(ws.root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 300
    while not ws.record("frames").items and time.monotonic() < deadline:
        assert run.poll() is None, "reconstruct ended before its frames were recorded"
        time.sleep(0.1)
    os.killpg(run.pid, signal.SIGKILL)  # the whole run, workers included, in the middle of SfM
    run.wait()
    frames_json = ws.frames_dir("s", "v") / "frames.json"
    stamp = frames_json.stat().st_mtime_ns
    assert ws.record("reconstruct").items == {}
    try:
        summary = recon_cmds.reconstruct(Workspace(ws.root).lock("test"), "s")  # the lock sweeps the dead run's temps
    finally:
        release_locks()
    assert summary[0]["status"] == "done" and frames_json.stat().st_mtime_ns == stamp
    assert not list(ws.root.rglob(".*.tmp"))
