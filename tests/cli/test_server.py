"""``howto3d serve``: a real uvicorn server on a trained workspace, called over HTTP and from headless Chromium."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import socket
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pycolmap
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, given, settings
from PIL import Image

from howto3d import grounding_cmds
from howto3d.config import ServeConfig
from howto3d.server import create_app
from howto3d.workspace import Workspace
from recon.align import Alignment
from recon.sampling import load as load_frames
from recon.video import read_frames
from temporal.tasks import find_task_file, read_task_file


@contextlib.contextmanager
def _running(app):
    """The base URL of ``app`` served by uvicorn in a thread, until the block ends."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        thread.join(timeout=20)


@pytest.fixture(scope="module")
def server(trained_ws):
    """(base URL, workspace, scene) of a server (the `serve` defaults: warm) running in a thread for this module,
    once it says it is ready; its readiness answer right after start-up is in ``READY_AT_START``."""
    ws, scene, _ = trained_ws
    with _running(create_app(ws)) as url, httpx.Client(base_url=url, timeout=60) as c:
        READY_AT_START.append((c.get("/health/ready"), c.get("/health/live"), c.get("/health").json()))
        deadline = time.monotonic() + 300
        while c.get("/health/ready").status_code != 200:
            assert time.monotonic() < deadline, "the server never became ready"
            time.sleep(0.2)
        yield url, ws, scene


READY_AT_START: list = []


def _jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def _unsampled_frame(ws, scene: str, video: str) -> bytes:
    """A frame of a workspace video that SfM never saw (between two sampled frames), as a JPEG photo."""
    sampled = {f["index"] for f in load_frames(ws.frames_dir(scene, video))["frames"]}
    index = next(i for i in range(7, 80) if i not in sampled and i - 1 in sampled)
    path = next(v.path for v in ws.videos(scene) if v.name == video)
    return _jpeg(next(iter(read_frames(path, [index])))[2])


def _same_answer(a, b) -> None:
    """Same JSON shape and values; floats may differ in the last digit (BERT batches pad differently)."""
    assert type(a) is type(b) or {type(a), type(b)} <= {int, float}, (a, b)
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _same_answer(a[k], b[k])
    elif isinstance(a, list):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _same_answer(x, y)
    elif isinstance(a, float | int) and not isinstance(a, bool):
        assert abs(a - b) <= 1e-4, (a, b)
    else:
        assert a == b


def test_health_scenes_page_and_export(server):
    url, _, scene = server
    with httpx.Client(base_url=url, timeout=600) as c:
        assert c.get("/health").json()["status"] == "ok"
        scenes = c.get("/scenes").json()["scenes"]
        assert [s["scene"] for s in scenes] == [scene] and scenes[0]["grounding"] and scenes[0]["aligned"]
        page = c.get("/")
        assert page.status_code == 200 and "importmap" in page.text
        assert c.get("/static/vendor/three/three.module.js").status_code == 200
        glb = c.get(f"/scene/{scene}/export.glb")
        assert glb.status_code == 200 and glb.content[:4] == b"glTF"
        missing = c.get("/scene/nowhere/export.glb")
        assert missing.status_code == 404 and "unknown scene 'nowhere'" in missing.json()["error"]


def test_query_answers_the_cli_contract(server):
    url, ws, scene = server
    texts = ["where is the dipstick", "check the brake fluid", "unscrew the oil filler cap"]
    expected = grounding_cmds.query(ws, scene, texts, with_moments=True)  # `query --json --moments`
    with httpx.Client(base_url=url, timeout=600) as c, ThreadPoolExecutor(8) as pool:
        # concurrent requests are batched together; each still gets its own answer
        got = list(pool.map(lambda t: c.post("/query", json={"scene": scene, "text": t}).json(), texts * 4))
        for a, b in zip(got, expected * 4, strict=True):
            _same_answer(a, b)
        empty = c.post("/query", json={"scene": scene, "text": "  "})
        assert empty.status_code == 400 and "empty query" in empty.json()["error"]
        unknown = c.post("/query", json={"scene": "nowhere", "text": "dipstick"})
        assert unknown.status_code == 404 and "unknown scene" in unknown.json()["error"]
        assert c.post("/query", json={"scene": scene}).status_code == 422


def test_localize_and_overlay_endpoints(server):
    url, ws, scene = server
    photo = _unsampled_frame(ws, scene, "video_01")
    other_car = _jpeg(next(iter(read_frames(next(v.path for v in ws.videos(scene) if v.name == "intruder"), [20])))[2])
    with httpx.Client(base_url=url, timeout=600) as c:
        r = c.post("/localize", data={"scene": scene}, files={"image": ("mine.jpg", photo, "image/jpeg")}).json()
        (entry,) = r["images"]
        assert r["scene"] == scene and entry["image"] == "mine.jpg" and entry["status"] == "localized"
        assert np.asarray(entry["cam_from_world"]).shape == (3, 4) and entry["inliers"] >= 30
        r = c.post("/localize", data={"scene": scene}, files={"image": ("other.jpg", other_car, "image/jpeg")}).json()
        assert r["images"][0]["status"] == "not localized" and r["images"][0]["cam_from_world"] is None
        r = c.post("/localize", data={"scene": scene}, files={"image": ("x.jpg", b"garbage", "image/jpeg")}).json()
        assert "cannot read the image" in r["images"][0]["reason"]

        png = c.post(
            "/overlay",
            data={"scene": scene, "text": "where is the dipstick"},
            files={"image": ("mine.jpg", photo, "image/jpeg")},
        )
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        drawn = np.asarray(Image.open(io.BytesIO(png.content)).convert("RGB")).astype(float)
        original = np.asarray(Image.open(io.BytesIO(photo)).convert("RGB")).astype(float)
        assert drawn.shape == original.shape and (drawn - original)[..., 0].max() > 60
        bad = c.post(
            "/overlay",
            data={"scene": scene, "text": "where is the dipstick"},
            files={"image": ("other.jpg", other_car, "image/jpeg")},
        )
        assert bad.status_code == 422 and "not localized" in bad.json()["error"]


def test_a_slow_localization_does_not_block_queries(server):
    url, _, scene = server
    # a large textured photo keeps the localization worker busy for seconds (SIFT on 1024 px, many features)
    noise = (np.random.default_rng(0).random((1152, 2048, 3)) * 255).astype(np.uint8)
    big = _jpeg(noise)
    with httpx.Client(base_url=url, timeout=600) as c, ThreadPoolExecutor(1) as pool:
        slow = pool.submit(c.post, "/localize", data={"scene": scene}, files={"image": ("big.jpg", big, "image/jpeg")})
        time.sleep(0.3)  # the upload is in the worker now
        for k in range(5):
            r = c.post("/query", json={"scene": scene, "text": f"where is the battery {k}"})
            assert r.status_code == 200
        assert not slow.done(), "queries waited for the localization"
        assert slow.result().json()["images"][0]["status"] == "not localized"


def test_readiness_waits_for_the_warm_up(server):
    url, _, scene = server
    ready, live, health = READY_AT_START[0]
    assert live.status_code == 200 and health["status"] == "ok"  # alive at once ...
    assert ready.status_code == 503 and ready.headers["retry-after"] == "1"  # ... ready once warmed up
    assert ready.json()["warming"] == [scene] and health["ready"] is False and health["warming"] == [scene]
    with httpx.Client(base_url=url) as c:
        assert c.get("/health").json() | {"ready": True, "warming": []} == c.get("/health").json()


def _bomb(side: int) -> bytes:
    """A PNG of a few hundred kilobytes that declares ``side`` x ``side`` pixels."""
    buf = io.BytesIO()
    Image.new("L", (side, side)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def test_oversize_and_bomb_inputs_are_refused_at_once(server):
    url, _, scene = server
    bomb = _bomb(12000)
    port = int(url.rsplit(":", 1)[1])
    with httpx.Client(base_url=url, timeout=60) as c:
        refused = {
            "1 MB query": c.post("/query", json={"scene": scene, "text": "dipstick " * 111_112}),
            "1001-character query": c.post("/query", json={"scene": scene, "text": "x" * 1001}),
            "streamed query": c.post("/query", content=iter([b"x" * 10_000] * 40)),  # chunked: no Content-Length
            "bomb": c.post("/localize", data={"scene": scene}, files={"image": ("bomb.png", bomb, "image/png")}),
            "bomb overlay": c.post(
                "/overlay", data={"scene": scene, "text": "dipstick"}, files={"image": ("bomb.png", bomb, "image/png")}
            ),
            "25 MB upload": c.post(
                "/localize", data={"scene": scene}, files={"image": ("big.jpg", b"\xff" * 25_000_000, "image/jpeg")}
            ),
            "long task": c.get("/guide", params={"scene": scene, "task": "y" * 5000}),
            "long glb query": c.get(f"/scene/{scene}/export.glb", params={"query": "y" * 5000}),
        }
        for what, r in refused.items():
            assert r.status_code == 413, (what, r.status_code, r.text)
            assert r.elapsed.total_seconds() < 1.0, (what, r.elapsed)  # decoding the bomb takes 10+ s
            assert r.json()["error"].endswith(("send a smaller photo", "send a shorter text")), (what, r.text)
        assert "12000 x 12000 pixels (144 MP)" in refused["bomb"].json()["error"]
        assert "max_text_chars" in refused["1001-character query"].json()["error"]
        # a client that declares 900 MB and sends a little: answered without waiting for the rest
        with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
            raw.sendall(
                b"POST /localize HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                b"Content-Length: 900000000\r\n\r\n" + b"a" * 1000
            )
            assert raw.recv(64).startswith(b"HTTP/1.1 413")
        # still healthy, and the limit is the limit: 1000 characters are answered
        assert c.get("/health").json()["status"] == "ok"
        assert c.post("/query", json={"scene": scene, "text": "dipstick " * 111 + "x"}).status_code == 200


def test_busy_and_slow_localizations_get_503_and_504(trained_ws):
    ws, scene, _ = trained_ws
    noise = _jpeg((np.random.default_rng(0).random((1152, 2048, 3)) * 255).astype(np.uint8))
    limits = ServeConfig(request_timeout_s=2.0, max_localizations=1, warm=False)
    with (
        _running(create_app(ws, limits=limits)) as url,
        httpx.Client(base_url=url, timeout=60) as c,
        ThreadPoolExecutor(1) as pool,
    ):

        def post():
            return c.post("/localize", data={"scene": scene}, files={"image": ("noise.jpg", noise, "image/jpeg")})

        first = pool.submit(post)  # a cold worker: starting it and indexing the scene take longer than 2 s
        time.sleep(0.5)
        busy = post()
        assert busy.status_code == 503 and "max_localizations" in busy.json()["error"]
        assert int(busy.headers["retry-after"]) >= 1
        slow = first.result()
        assert slow.status_code == 504 and "request_timeout_s" in slow.json()["error"]
        assert c.get("/health/live").status_code == 200 and c.get("/health").json()["localizing"] == 0


def test_serving_while_the_frame_moves_and_the_model_is_retrained(trained_ws, tmp_path):
    """The server stays up while the workspace changes under it: after a re-alignment moves the frame, queries
    get the one-line "retrain" refusal (never an answer of the old model in the new frame) and photos localize in
    the new frame; after `train`, the new model answers, without a restart."""
    ws0, scene, _ = trained_ws
    ws = Workspace(shutil.copytree(ws0.root, tmp_path / "ws"))
    photo = _unsampled_frame(ws, scene, "video_01")
    text = "where is the dipstick"
    with _running(create_app(ws, warm=False)) as url, httpx.Client(base_url=url, timeout=600) as c:
        before = c.post("/query", json={"scene": scene, "text": text})
        loc0 = c.post("/localize", data={"scene": scene}, files={"image": ("p.jpg", photo, "image/jpeg")}).json()
        assert before.status_code == 200 and loc0["images"][0]["status"] == "localized"

        move = pycolmap.Sim3d(1.3, pycolmap.Rotation3d(np.array([0.0, 0.0, np.sin(0.2), np.cos(0.2)])), [0.5, 0, 0])
        alignment = Alignment.load(ws.align_dir(scene))
        alignment.shared_from_segment = {
            v: {k: move * t for k, t in segs.items()} for v, segs in alignment.shared_from_segment.items()
        }
        alignment.save(ws.align_dir(scene))  # as `align` saves a new frame: one atomic replace

        stale = c.post("/query", json={"scene": scene, "text": text})
        assert stale.status_code == 409 and "run `howto3d train`" in stale.json()["error"], stale.text
        loc1 = c.post("/localize", data={"scene": scene}, files={"image": ("p.jpg", photo, "image/jpeg")}).json()
        moved = np.asarray(move * np.array([loc0["images"][0]["center"]]))[0]
        assert np.linalg.norm(np.array(loc1["images"][0]["center"]) - moved) < 1e-3 * 1.3, (loc1, moved)

        grounding_cmds.train(ws)
        deadline = time.monotonic() + 120
        while (after := c.post("/query", json={"scene": scene, "text": text})).status_code != 200:
            assert after.status_code == 409 and time.monotonic() < deadline, after.text  # the old model, refusing
            time.sleep(0.2)
        _same_answer(after.json(), grounding_cmds.query(ws, scene, [text], with_moments=True)[0])


def test_annotations_are_saved_in_the_formats_their_readers_take(server):
    """`PUT` keypoints and step spans: good ones land where `transfer`/`eval-steps --annotations` read them, bad
    ones get one line naming the problem and write nothing."""
    url, ws, scene = server
    folder = ws.annotations_dir(scene)
    doc = {
        "keypoints": [
            {"name": "cap", "observations": [{"time": 2.0, "xy": [320.5, 180.0]}, {"time": 6.0, "xy": [300.0, 170.25]}]}
        ]
    }
    with httpx.Client(base_url=url, timeout=60) as c:
        r = c.put(f"/scene/{scene}/annotations/keypoints/video_01", json=doc)
        assert r.status_code == 200 and r.json()["keypoints"] == 1 and r.json()["observations"] == 2, r.text
        saved = json.loads((folder / "keypoints" / "video_01.json").read_text())
        assert saved == {"video": "video_01", **doc}
        assert c.get(f"/scene/{scene}/annotations").json()["keypoints"]["video_01"] == saved
        bad = c.put(
            f"/scene/{scene}/annotations/keypoints/video_02", json={"keypoints": [{"name": "x", "observations": [{}]}]}
        )
        assert bad.status_code == 400 and "needs 'time' and 'xy'" in bad.json()["error"]
        assert c.put(f"/scene/{scene}/annotations/keypoints/nope", json=doc).status_code == 404
        assert not (folder / "keypoints" / "video_02.json").exists()

        tasks = read_task_file(find_task_file(ws.scene_dir(scene)))
        step = next(iter(tasks.tasks.values())).steps[0]
        spans = {"steps": [{"step": step, "start": 1.25, "end": 4.5}]}
        r = c.put(f"/scene/{scene}/annotations/steps/video_01", json=spans)
        assert r.status_code == 200 and r.json()["steps"] == 1, r.text
        assert (folder / "steps" / "video_01.csv").read_text() == f"step,start,end\n{step},1.250,4.500\n"
        unknown = c.put(
            f"/scene/{scene}/annotations/steps/video_02", json={"steps": [{"step": "juggle", "start": 1, "end": 2}]}
        )
        assert unknown.status_code == 400 and "juggle" in unknown.json()["error"], unknown.text
        late = c.put(
            f"/scene/{scene}/annotations/steps/video_02", json={"steps": [{"step": "a", "start": 5, "end": 2}]}
        )
        assert late.status_code == 400 and "before start" in late.json()["error"], late.text
        assert not (folder / "steps" / "video_02.csv").exists()


def test_fuzzed_requests_never_get_a_server_error(server):
    """Every route, with inputs generated from its OpenAPI schema by schemathesis (half of them in the real
    scene, so they get past the scene check): 2xx or 4xx, never a 5xx."""
    url, _, scene = server
    schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/query", "/localize", "/overlay", "/guide", "/health/ready"}
    answers: list[int] = []

    for op in operations:

        @settings(
            max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None
        )
        @given(case=op.as_strategy())
        def call(case) -> None:
            for params in (case.path_parameters, case.body, case.query):
                if isinstance(params, dict) and "scene" in params and zlib.crc32(repr(params).encode()) % 2:
                    params["scene"] = scene
            r = case.call(timeout=60)
            answers.append(r.status_code)
            ok = r.status_code < 500 or (r.status_code == 503 and case.operation.path == "/health/ready")
            assert ok, (case.method, case.formatted_path, r.status_code, r.text[:300])

        call()
    assert len(answers) >= 5 * len(operations) and 200 in answers and 404 in answers


@pytest.mark.slow
def test_page_in_headless_chromium(server, headless_chromium):
    if headless_chromium is None:
        pytest.skip("Debian chromium + chromedriver not installed")
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    url, _, scene = server
    driver = headless_chromium()
    driver.get(url + "/")
    wait = WebDriverWait(driver, 60)
    wait.until(lambda d: d.execute_script("return window.howto3d && window.howto3d.ready"))
    assert driver.execute_script("return window.howto3d.scene") == scene
    assert driver.execute_script("return window.howto3d.heatmapVoxels") == 0
    before = driver.get_screenshot_as_png()
    driver.find_element(By.ID, "text").send_keys("where is the dipstick")
    driver.find_element(By.CSS_SELECTOR, "#ask button").click()
    wait.until(lambda d: d.execute_script("return window.howto3d.heatmapVoxels > 0 && window.howto3d.busy == 0"))
    assert "point" in driver.find_element(By.ID, "answer").text
    time.sleep(0.5)  # a few animation frames with the heatmap
    after = driver.get_screenshot_as_png()
    a, b = (np.asarray(Image.open(io.BytesIO(p)).convert("RGB")).astype(int) for p in (before, after))
    assert np.abs(a - b).sum(axis=2).astype(bool).mean() > 0.001  # the voxels are drawn: pixels changed
    assert driver.execute_script("return window.howto3d.errors") == []
    severe = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert severe == [], severe
