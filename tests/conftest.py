"""Shared fixtures."""

from __future__ import annotations

import ast
import functools
import shutil
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from howto3d import recon_cmds
from howto3d.cli import main
from howto3d.workspace import Workspace
from synth import WorldConfig, generate_world

SHARED_FIXTURES = {"pipeline_ws": "pipeline", "trained_ws": "pipeline", "small_world": "small_world"}
"""Session fixtures that take minutes to build: every test that needs one runs where it is built (once)."""


@functools.cache
def _module_groups(path: Path) -> dict[str, str]:
    """``{test function: group}`` of the tests of a module whose arguments reach a shared fixture, directly or
    through the module's own fixtures."""
    tree = ast.parse(path.read_text())
    args = {f.name: [a.arg for a in f.args.args] for f in tree.body if isinstance(f, ast.FunctionDef)}

    def reach(name: str, seen: frozenset[str]) -> str | None:
        if name in SHARED_FIXTURES:
            return SHARED_FIXTURES[name]
        hits = (reach(a, seen | {name}) for a in args.get(name, ()) if a not in seen)
        return next((h for h in hits if h), None)

    return {name: group for name in args if name.startswith("test") and (group := reach(name, frozenset()))}


def worker_group(rootpath: Path, nodeid: str) -> str:
    """The worker group of a test (``make test`` runs two: ``-n 2``): its shared fixture's, else its module's (the
    module's fixtures are then built once)."""
    path, _, name = nodeid.partition("::")
    return _module_groups(rootpath / path).get(name.split("[")[0].split("::")[-1], path)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """Schedule by :func:`worker_group` (xdist's own ``loadgroup`` marks do not reach pytest 9's node ids)."""
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return worker_group(config.rootpath, nodeid)

    return GroupScheduling(config, log)


SMALL_WORLD = WorldConfig(scenes=1, videos=2, seconds=12.0, seed=0, width=640, height=360, fps=10.0)


@pytest.fixture(scope="session")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> tuple[WorldConfig, list[Path]]:
    """One synthetic scene × 2 videos × 12 s (640x360, 10 fps): (config, scene dirs)."""
    out = tmp_path_factory.mktemp("small_world")
    return SMALL_WORLD, generate_world(out, SMALL_WORLD)


def write_video(
    path: Path, n: int = 30, fps: int = 10, size: tuple[int, int] = (96, 64), vfr: bool = False, flat: bool = False
) -> None:
    """A small H.264 video whose frame i shows the value i in its top-left block (``flat``: one plain colour)."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = size[0], size[1], "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        t = 0
        for i in range(n):
            img = np.full((size[1], size[0], 3), 0, np.uint8)
            if not flat:
                img[:16, :16] = i * 8
            frame = av.VideoFrame.from_ndarray(img, format="rgb24")
            frame.pts, frame.time_base = t, Fraction(1, 1000)
            t += 1000 // fps + (37 if vfr and i % 3 == 0 else 0)
            for p in stream.encode(frame):
                out.mux(p)
        for p in stream.encode():
            out.mux(p)


@pytest.fixture
def make_video():
    """Writes small real H.264 files: ``make_video(path, n=30, fps=10, vfr=False, flat=False)``."""
    return write_video


PIPELINE_WORLD = WorldConfig(scenes=1, videos=4, seconds=16.0, seed=0, width=640, height=360, fps=5.0)
INTRUDER_WORLD = WorldConfig(scenes=1, videos=1, seconds=16.0, seed=7, width=640, height=360, fps=5.0)


@pytest.fixture(scope="session")
def pipeline_ws(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, str]:
    """A real end-to-end workspace: 4 videos of one scene, reconstructed (30 frames each) and aligned.

    The scene also holds a video of a *different* synthetic car (``intruder``) that must stay unaligned.
    """
    ws = Workspace.init(tmp_path_factory.mktemp("pipeline") / "ws")
    (scene_dir,) = generate_world(ws.root, PIPELINE_WORLD)
    (other,) = generate_world(tmp_path_factory.mktemp("intruder"), INTRUDER_WORLD)
    intruder = scene_dir / "videos" / "intruder.mp4"
    (other / "videos" / "video_00.mp4").rename(intruder)
    recon_cmds.reconstruct(ws, scene_dir.name, frames=30)
    recon_cmds.align(ws, scene_dir.name)
    return ws, scene_dir.name


@pytest.fixture(scope="session")
def trained_ws(pipeline_ws: tuple[Workspace, str]) -> tuple[Workspace, str, dict]:
    """``pipeline_ws`` with the grounding model trained once for every test that needs it: (ws, scene, summary)."""
    from howto3d import grounding_cmds

    ws, scene = pipeline_ws
    return ws, scene, grounding_cmds.train(ws)


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capfd, monkeypatch):
    """Runs the real console entry point in-process (exit code, stdout, stderr)."""

    def run(*args: str) -> Result:
        monkeypatch.setattr(sys, "argv", ["howto3d", *args])
        capfd.readouterr()
        with pytest.raises(SystemExit) as e:
            main()
        out, err = capfd.readouterr()
        return Result(int(e.value.code or 0), out, err)

    return run


@pytest.fixture
def headless_chromium():
    """Opens Debian's Chromium headless through Selenium (1000×700 px, software WebGL, browser log kept); every
    browser opened is closed after the test. ``None`` when chromium or chromedriver is not installed."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if binary is None or driver_path is None:
        yield None
        return
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opened = []

    def open_browser():
        opts = webdriver.ChromeOptions()
        opts.binary_location = binary
        for arg in (
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--window-size=1000,700",
            "--use-angle=swiftshader",
            "--enable-unsafe-swiftshader",
            "--disable-background-networking",
        ):
            opts.add_argument(arg)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        opened.append(webdriver.Chrome(options=opts, service=Service(driver_path)))
        return opened[-1]

    yield open_browser
    for d in opened:
        d.quit()
