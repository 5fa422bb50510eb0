"""The Ray executor: same results as the local one, no shared filesystem, per-video failures, resume.

One local Ray cluster (2 CPUs) serves the module and is shut down after it; its workers get their own TMPDIR.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pycolmap
import pytest

from howto3d import temporal_cmds
from howto3d.config import RunConfig
from howto3d.executor import Task, pack_files, run_tasks, unpack_files
from howto3d.workspace import Workspace
from recon.align import Alignment
from temporal.features import load_features

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A local 2-CPU cluster whose workers' temporary folder is not the test's: (address, worker TMPDIR)."""
    worker_tmp = tmp_path_factory.mktemp("ray_worker_tmp")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    ctx = ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": {"TMPDIR": str(worker_tmp)}}
    )
    try:
        yield ctx.address_info["address"], worker_tmp
    finally:
        ray.shutdown()


def test_folders_round_trip_as_bytes(tmp_path):
    src = tmp_path / "src"
    (src / "model").mkdir(parents=True)
    (src / "frames.json").write_text("{}")
    (src / "model" / "images.bin").write_bytes(bytes(range(256)))
    unpack_files(pack_files(src), tmp_path / "dst")
    assert pack_files(tmp_path / "dst") == pack_files(src)
    assert pack_files(src / "frames.json") == {"frames.json": b"{}"}
    with pytest.raises(ValueError, match="outside"):
        unpack_files({"../evil": b""}, tmp_path / "x")
    assert not (tmp_path / "evil").exists() and not (tmp_path / "x").exists()


def _copy_where_it_runs(src: Path, out: Path) -> dict:
    """Task run on a Ray worker: says where its input and output live, and copies the input to the output."""
    out.mkdir()
    (out / "copy.bin").write_bytes(src.read_bytes())
    return {"status": "done", "src": str(src), "out": str(out)}


@pytest.mark.slow
def test_workers_get_bytes_in_their_own_temp_dir_and_only_the_driver_writes(ray_cluster, tmp_path):
    _, worker_tmp = ray_cluster
    src, out = tmp_path / "ws" / "video.mp4", tmp_path / "ws" / "out" / "video"
    src.parent.mkdir()
    src.write_bytes(os.urandom(300_000))  # above Ray's inline size: through the object store
    results = []
    run_tasks(
        [Task("v", _copy_where_it_runs, (src, out), inputs=(0,), output=1)],
        0,
        lambda t, r: results.append(r) or [],
        RunConfig(executor="ray"),
    )
    (r,) = results
    assert r["status"] == "done" and "files" not in r
    assert Path(r["src"]).is_relative_to(worker_tmp) and Path(r["out"]).is_relative_to(worker_tmp)
    assert (out / "copy.bin").read_bytes() == src.read_bytes()  # written here, by the driver
    assert not list(worker_tmp.iterdir())  # the worker cleaned up after itself


def _workspace(root: Path, videos: dict[str, Path | bytes], **settings) -> Workspace:
    ws = Workspace.init(root)
    folder = ws.scene_dir("s") / "videos"
    folder.mkdir(parents=True)
    for name, src in videos.items():
        if isinstance(src, bytes):
            (folder / name).write_bytes(src)
        else:
            shutil.copy(src, folder / name)
    ws.remember("frames", "num_frames", 12)
    ws.remember("reconstruct", "num_threads", 1)  # the same threads both ways, so the same models
    for (section, key), value in settings.items():
        ws.remember(section, key, value)
    return ws


def _registered(ws: Workspace, video: str) -> list[str]:
    rec = pycolmap.Reconstruction(str(ws.sfm_dir("s", video) / "model"))
    return sorted(rec.images[i].name for i in rec.reg_image_ids())


@pytest.mark.slow
def test_run_on_ray_matches_local_and_a_killed_run_resumes(ray_cluster, small_world, tmp_path, cli):
    """`howto3d run --executor ray` end to end (SfM, alignment pairs and clip features as Ray tasks)."""
    address, worker_tmp = ray_cluster
    _, (scene_dir,) = small_world
    good = {f"v{i}{ext}": scene_dir / "videos" / f"video_0{i}{ext}" for i in range(2) for ext in (".mp4", ".srt")}
    ws = _workspace(tmp_path / "ray", good | {"corrupt.mp4": os.urandom(4096)})
    ws.remember("run", "ray_address", address)  # the killed CLI run joins the test's cluster
    ws.remember("run", "workers", 1)  # one video at a time, so the kill lands between two videos
    local = _workspace(tmp_path / "local", good)
    for w in (ws, local):
        shutil.copy(scene_dir / "tasks.json", w.scene_dir("s") / "tasks.json")

    # A CLI run on Ray, killed once a video is recorded done.
    run = subprocess.Popen(
        [str(Path(sys.executable).parent / "howto3d"), "run", str(ws.root), "--executor", "ray"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.monotonic() + 240
    while not any(e["status"] == "done" for e in ws.record("reconstruct").items.values()):
        assert run.poll() is None, run.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "no video finished on Ray"
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()
    finished = {k: e for k, e in ws.record("reconstruct").items.items() if e["status"] == "done"}
    assert len(finished) == 1 and ws.config.run.executor == "ray"  # --executor is remembered
    stamps = {k: (ws.sfm_dir("s", k.split("/")[1]) / "model" / "images.bin").stat().st_mtime_ns for k in finished}

    # The same command again (in-process, on the test's cluster): it resumes and runs every stage.
    ws.remember("run", "workers", 0)
    on_ray = cli("run", str(ws.root), "--executor", "ray")
    assert on_ray.returncode == 0, on_ray.stderr[-3000:]
    records = ws.record("reconstruct").items
    assert all(records[k] == e for k, e in finished.items())  # not redone ...
    assert all(
        (ws.sfm_dir("s", k.split("/")[1]) / "model" / "images.bin").stat().st_mtime_ns == t for k, t in stamps.items()
    )  # ... and not rewritten
    assert records["s/v0"]["status"] == records["s/v1"]["status"] == "done"
    assert records["s/corrupt"]["status"] == "failed" and "corrupt.mp4" in records["s/corrupt"]["error"]
    # the corrupt video has no clip features; the message names the workspace file, not a worker's copy
    logged = "".join(on_ray.stderr.split())  # rich wraps long lines
    assert f"corrupt:noclipfeatures({ws.scene_dir('s') / 'videos' / 'corrupt.mp4'}:" in logged
    assert "howto3d-task-" not in logged
    assert not list(ws.root.rglob(".*.tmp")) and not list(worker_tmp.iterdir())

    here = cli("run", str(local.root), "--executor", "local")
    assert here.returncode == 0, here.stderr[-3000:]
    for v in ("v0", "v1"):
        assert _registered(ws, v) == _registered(local, v) and len(_registered(ws, v)) >= 6
        assert records[f"s/{v}"]["registered"] == local.record("reconstruct").items[f"s/{v}"]["registered"]
    aligned, aligned_here = Alignment.load(ws.align_dir("s")), Alignment.load(local.align_dir("s"))
    assert sorted(aligned.shared_from_video) == sorted(aligned_here.shared_from_video) == ["v0", "v1"]
    for v, s in aligned_here.shared_from_video.items():
        assert np.allclose(aligned.shared_from_video[v].matrix(), s.matrix(), atol=1e-9)
    feats, feats_here = load_features(ws.temporal_dir("s"))[0], load_features(local.temporal_dir("s"))[0]
    assert sorted(feats) == sorted(feats_here) == ["v0", "v1"]
    assert all(np.array_equal(feats[v], feats_here[v]) for v in feats)  # computed on Ray vs here
    act, act_here = temporal_cmds.load_actionness(ws, "s"), temporal_cmds.load_actionness(local, "s")
    assert sorted(act) == ["v0", "v1"] and all(np.array_equal(act[v], act_here[v]) for v in act)
    steps, steps_here = temporal_cmds.load_steps(ws, "s"), temporal_cmds.load_steps(local, "s")
    assert sorted(steps) == ["v0", "v1"]
    assert all(steps[v]["steps"] == steps_here[v]["steps"] and steps[v]["steps"] for v in steps)
