"""``howto3d serve``: a real uvicorn server on a trained workspace, called over HTTP and from headless Chromium."""

from __future__ import annotations

import io
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest
import uvicorn
from PIL import Image

from howto3d import grounding_cmds
from howto3d.server import create_app
from recon.sampling import load as load_frames
from recon.video import read_frames


@pytest.fixture(scope="module")
def server(trained_ws):
    """(base URL, workspace, scene) of a server running in a thread for this module."""
    ws, scene, _ = trained_ws
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(create_app(ws, warm=True), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not srv.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", ws, scene
    srv.should_exit = True
    thread.join(timeout=20)


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

        png = c.post("/overlay", data={"scene": scene, "text": "where is the dipstick"},
                     files={"image": ("mine.jpg", photo, "image/jpeg")})
        assert png.status_code == 200 and png.headers["content-type"] == "image/png"
        drawn = np.asarray(Image.open(io.BytesIO(png.content)).convert("RGB")).astype(float)
        original = np.asarray(Image.open(io.BytesIO(photo)).convert("RGB")).astype(float)
        assert drawn.shape == original.shape and (drawn - original)[..., 0].max() > 60
        bad = c.post("/overlay", data={"scene": scene, "text": "where is the dipstick"},
                     files={"image": ("other.jpg", other_car, "image/jpeg")})
        assert bad.status_code == 422 and "not localized" in bad.json()["error"]


def test_a_slow_localization_does_not_block_queries(server):
    url, _, scene = server
    # a large textured photo keeps the localization worker busy for seconds (SIFT on 1024 px, many features)
    noise = (np.random.default_rng(0).random((1152, 2048, 3)) * 255).astype(np.uint8)
    big = _jpeg(noise)
    with httpx.Client(base_url=url, timeout=600) as c, ThreadPoolExecutor(1) as pool:
        slow = pool.submit(c.post, "/localize", data={"scene": scene},
                           files={"image": ("big.jpg", big, "image/jpeg")})
        time.sleep(0.3)  # the upload is in the worker now
        for k in range(5):
            r = c.post("/query", json={"scene": scene, "text": f"where is the battery {k}"})
            assert r.status_code == 200
        assert not slow.done(), "queries waited for the localization"
        assert slow.result().json()["images"][0]["status"] == "not localized"


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
