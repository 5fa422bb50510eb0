"""``howto3d serve``: the workspace as an HTTP API an AR client can call, plus a small web page.

An AR client (phone app, WebXR page, Unity) cannot start a Python process per question, so the server loads
each scene's model once and answers:

- ``POST /query`` ``{"scene", "text"}`` → the ``query --json`` contract;
- ``POST /localize`` (form: ``scene``, ``image``) → the ``localize --json`` contract;
- ``POST /overlay`` (form: ``scene``, ``text``, ``image``) → the photo as PNG with the heatmap drawn in;
- ``GET /guide?scene=S&task=T`` → the ``guide --json`` contract, from the saved step timelines;
- ``GET /scene/{S}/video/{V}`` → the workspace's video file, with HTTP range requests (a page seeks in it);
- ``GET /scenes`` (with each scene's videos and tasks), ``GET /scene/{S}/export.glb[?query=TEXT]``,
  ``GET /health``, and the page at ``/``.

FastAPI + uvicorn: typed request models, multipart uploads and an asyncio loop that keeps answering while
work runs elsewhere. Queries go to one thread that batches whatever is waiting into one BERT forward pass
(8 concurrent clients cost about one pass, not eight) with a small LRU cache in front. Localization runs
in a separate process: pycolmap holds the GIL for the whole SIFT extraction, so in a thread it would stall
queries for its full duration. Errors are JSON ``{"error": "<the CLI's one-line message>"}`` with 400
(bad input), 404 (unknown scene), 422 (photo not localized, for ``/overlay``) or 503 (no model trained).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import mimetypes
import os
import queue
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager
from multiprocessing import get_context
from pathlib import Path

import uvicorn
from fastapi import FastAPI, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image

from howto3d import grounding_cmds, scenes, viewer_cmds
from howto3d.scenes import StaleFrameError
from howto3d.workspace import Workspace
from recon.align import Alignment
from recon.io import InputError
from recon.localize import read_photo
from viewer.export import export
from viewer.overlay import draw_frame

log = logging.getLogger("howto3d.server")

WEB_DIR = Path(__file__).with_name("web")
MAX_UPLOAD_BYTES = 40 << 20


class QueryBatcher:
    """One thread answers queries in batches: concurrent requests share one BERT forward pass.

    Same text → same answer (the model is fixed while serving), so recent answers are cached, as the JSON bytes
    the response sends (serialized once, in this thread). The forward pass runs on one torch thread (the
    service loads the model with ``encoder="torch"``; on a 2-core machine the other core serves HTTP). Once
    requests arrive concurrently (the last batch held several), a new batch waits up to ``window_s`` for more
    texts, so 8 clients share one pass instead of alternating a pass of one with a pass of seven; a lone client
    never waits.
    """

    def __init__(self, grounder, max_batch: int = 32, cache_size: int = 1024, window_s: float = 0.002,
                 extend: Callable[[str, list[dict]], None] | None = None):
        self.grounder = grounder
        self.extend = extend
        """Adds to a batch's answers of one scene what the model alone does not know (their video moments)."""
        self.max_batch = max_batch
        self.cache_size = cache_size
        self.window_s = window_s
        self._cache: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._lock = threading.Lock()
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="query-batcher", daemon=True)
        self._thread.start()

    async def ask(self, scene: str, text: str) -> bytes:
        """The answer's JSON bytes, from the cache or from the next batch."""
        with self._lock:
            hit = self._cache.get((scene, text))
            if hit is not None:
                self._cache.move_to_end((scene, text))
                return hit
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        self._queue.put((scene, text, loop, fut))
        return await fut

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        last = 1
        while (item := self._queue.get()) is not None:
            batch = [item]
            deadline = time.perf_counter() + (self.window_s if last > 1 else 0.0)
            while len(batch) < self.max_batch:
                try:
                    wait = deadline - time.perf_counter()
                    nxt = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                batch.append(nxt)
            last = len(batch)
            for scene in dict.fromkeys(item[0] for item in batch):
                self._answer(scene, [item[1:] for item in batch if item[0] == scene])

    def _query(self, scene: str, texts: list[str]) -> list[dict]:
        results = self.grounder.query(scene, texts)
        if self.extend is not None:
            self.extend(scene, results)
        return results

    def _answer(self, scene: str, items: list[tuple[str, asyncio.AbstractEventLoop, asyncio.Future]]) -> None:
        texts = list(dict.fromkeys(t for t, _, _ in items))
        answers: dict[str, bytes | Exception] = {}
        try:
            answers = {t: _json(a) for t, a in zip(texts, self._query(scene, texts), strict=True)}
        except Exception:  # one bad text (empty) must not fail the others: answer them one by one
            for t in texts:
                try:
                    answers[t] = _json(self._query(scene, [t])[0])
                except Exception as e:  # noqa: BLE001 - handed to the waiting request
                    answers[t] = e
        with self._lock:
            for t, a in answers.items():
                if not isinstance(a, Exception):
                    self._cache[(scene, t)] = a
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        # One wake-up of the event loop per batch, not per request (each is a write to its self-pipe).
        done: dict[asyncio.AbstractEventLoop, list] = {}
        for t, loop, fut in items:
            done.setdefault(loop, []).append((fut, answers[t]))
        for loop, results in done.items():
            with contextlib.suppress(RuntimeError):  # that loop closed (shutting down): nobody waits for these
                loop.call_soon_threadsafe(_settle, results)


def _settle(results: list[tuple[asyncio.Future, bytes | Exception]]) -> None:
    for fut, a in results:
        if fut.done():  # the request was cancelled (client gone)
            continue
        if isinstance(a, Exception):
            fut.set_exception(a)
        else:
            fut.set_result(a)


def _json(answer: dict) -> bytes:
    return json.dumps(answer, ensure_ascii=False, separators=(",", ":")).encode()


# --- localization worker process: its own workspace handle and per-scene localizers -----------------------

_WORKER: dict = {}


def _worker_init(root: str, parent: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    _WORKER["ws"] = Workspace.open(Path(root))
    _WORKER["scenes"] = {}
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """A worker whose server died (killed, not shut down) would wait for work forever: leave with it."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _worker_scene(scene: str):
    if scene not in _WORKER["scenes"]:
        ws = _WORKER["ws"]
        shared = scenes.shared_scene(ws, scene)
        _WORKER["scenes"][scene] = (shared, viewer_cmds.localizer(ws, scene, shared))
    return _WORKER["scenes"][scene]


def _worker_warm(scene: str) -> int:
    return len(_worker_scene(scene)[1].frames)


def _worker_localize(scene: str, data: bytes, name: str) -> dict:
    return _worker_scene(scene)[1].localize(data, name).to_json()


def _worker_overlay(scene: str, data: bytes, name: str, heatmap) -> tuple[dict, bytes | None]:
    shared, localizer = _worker_scene(scene)
    result = localizer.localize(data, name)
    if result.frame is None:
        return result.to_json(), None
    img = draw_frame(read_photo(data)[0], shared, result.frame, heatmap, None, result.frame)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return result.to_json(), buf.getvalue()


class Service:
    """What the endpoints share: the workspace, the grounding model, the query batcher, the localization pool."""

    def __init__(self, ws: Workspace, localize_workers: int = 1):
        self.ws = ws
        # torch's kernels: its import is paid once here, and they run a batch of queries 1.3-1.8x faster
        self.grounder = scenes.grounder(ws, encoder="torch") if (ws.grounding_dir / "model").is_dir() else None
        if self.grounder is not None:
            import torch

            torch.set_num_threads(1)  # one query thread; the other core answers HTTP (two threads stall each other)
        self.batcher = QueryBatcher(self.grounder, extend=self._moments) if self.grounder is not None else None
        self.pool = ProcessPoolExecutor(max_workers=localize_workers, mp_context=get_context("spawn"),
                                        initializer=_worker_init, initargs=(str(ws.root), os.getpid()))
        self._shared: dict[str, object] = {}
        self._glb: dict[str, bytes] = {}
        self._said: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._scenes = set(ws.scenes())
        self._frame_ok: dict[str, tuple[int, int, int]] = {}
        """Per scene, the ``transforms.json`` (mtime, size, inode) last found unmoved: reading and digesting it
        for every query was a quarter of a query's server CPU; alignment replaces the file, so a move shows."""

    def close(self) -> None:
        if self.batcher is not None:
            self.batcher.close()
        self.pool.shutdown(wait=True, cancel_futures=True)

    def scene(self, name: str) -> str:
        if name not in self._scenes:  # listed again only for a name not seen: a scene added while serving
            self._scenes = set(self.ws.scenes())
        if name not in self._scenes:
            known = ", ".join(sorted(self._scenes)) or "none"
            raise HTTPException(404, f"{self.ws.root}: unknown scene {name!r}; scenes: {known}")
        return name

    def require_grounder(self, scene: str | None = None):
        """The model; with ``scene``, checked to be trained in that scene's current shared frame (409 else)."""
        if self.grounder is None:
            raise HTTPException(503, f"{self.ws.root}: no trained grounding model; run `howto3d train`")
        if scene is not None and scene in self.grounder.spaces:
            try:
                st = (self.ws.align_dir(scene) / "transforms.json").stat()
                key = (st.st_mtime_ns, st.st_size, st.st_ino)
            except FileNotFoundError:
                key = None  # an unaligned scene's frame comes from its reconstructions: always checked
            if key is None or self._frame_ok.get(scene) != key:
                scenes.check_frame(self.ws, scene, self.grounder.frames.get(scene))
                if key is not None:
                    self._frame_ok[scene] = key
        return self.grounder

    def _moments(self, scene: str, results: list[dict]) -> None:
        """The answers' video moments (``query --moments``), from the scene's cameras and narration, loaded once."""
        try:
            shared = self.shared(scene)
        except InputError as e:  # answers without moments rather than no answers
            log.warning("%s: answers come without video moments (%s)", scene, e)
            return
        with self._lock:
            if scene not in self._said:
                self._said[scene] = scenes.narrations(self.ws, scene)
        grounding_cmds.add_moments(shared, self._said[scene], results)

    def shared(self, scene: str):
        with self._lock:
            if scene not in self._shared:
                self._shared[scene] = scenes.shared_scene(self.ws, scene)
            return self._shared[scene]

    def guide(self, scene: str, task: str) -> dict:
        from howto3d import guide_cmds, temporal_cmds  # the step timelines' readers: only a guide needs them

        timelines = temporal_cmds.load_steps(self.ws, scene)
        if not timelines:
            raise InputError(f"{self.ws.temporal_dir(scene) / 'steps'}: no step timelines; run `howto3d run`")
        with self._lock:
            if scene not in self._said:
                self._said[scene] = scenes.narrations(self.ws, scene)
        grounder = self.grounder if self.grounder is not None and scene in self.grounder.spaces else None
        return guide_cmds.guide(self.ws, scene, task, timelines=timelines, grounder=grounder,
                                shared=self.shared(scene), narrations=self._said[scene])

    def video(self, scene: str, name: str) -> Path:
        """The file of one video of the scene (404 naming the scene's videos when there is none)."""
        try:
            return scenes.video(self.ws, self.scene(scene), name).path
        except InputError as e:
            raise HTTPException(404, str(e)) from None

    def glb(self, scene: str, query: str | None) -> bytes:
        if query is None and scene in self._glb:
            return self._glb[scene]
        heatmap = self.require_grounder(scene).heatmap(scene, query) if query is not None else None
        with tempfile.TemporaryDirectory() as tmp:
            data = export(self.shared(scene), Path(tmp) / "scene.glb", "glb", heatmap).read_bytes()
        if query is None:
            self._glb[scene] = data
        return data


def _tasks(ws: Workspace, scene: str) -> list[dict]:
    """The scene's task file as the page lists it (empty without one or when it does not read)."""
    from temporal.tasks import find_task_file, read_task_file

    path = find_task_file(ws.scene_dir(scene))
    if path is None:
        return []
    try:
        tf = read_task_file(path)
    except InputError as e:
        log.warning("%s", e)
        return []
    return [{"id": t.id, "title": t.title, "steps": list(t.steps)} for t in tf.tasks.values()]


async def _upload(image: UploadFile) -> bytes:
    data = await image.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise InputError(f"{image.filename}: larger than {MAX_UPLOAD_BYTES >> 20} MiB; send a smaller photo")
    if not data:
        raise InputError(f"{image.filename}: empty upload; send the photo's bytes as the 'image' field")
    return data


def create_app(ws: Workspace | Path, localize_workers: int = 1, warm: bool = False) -> FastAPI:
    """The FastAPI app of a workspace; ``warm`` loads every scene's localization index at start-up."""
    ws = ws if isinstance(ws, Workspace) else Workspace.open(Path(ws))

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service = Service(ws, localize_workers)
        app.state.service = service
        if warm:
            for s in ws.scenes():
                service.pool.submit(_worker_warm, s)
        try:
            yield
        finally:
            service.close()

    app = FastAPI(title="howto3d", summary="Ask where things are in a shared 3D space; localize photos in it.",
                  lifespan=lifespan)
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")

    def svc(request: Request) -> Service:
        return request.app.state.service

    @app.exception_handler(InputError)
    async def input_error(request: Request, e: InputError) -> JSONResponse:
        return JSONResponse({"error": str(e)}, status_code=409 if isinstance(e, StaleFrameError) else 400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(e.detail)}, status_code=e.status_code)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html")

    @app.get("/health")
    async def health(request: Request) -> dict:
        s = svc(request)
        return {"status": "ok", "workspace": str(ws.root), "grounding": s.grounder is not None,
                "scenes": ws.scenes()}

    @app.get("/scenes")
    async def scenes(request: Request) -> dict:
        g = svc(request).grounder
        return {"scenes": [{"scene": s, "videos": [v.name for v in ws.videos(s)],
                            "aligned": Alignment.is_done(ws.align_dir(s)),
                            "grounding": g is not None and s in g.spaces, "tasks": _tasks(ws, s)}
                           for s in ws.scenes()]}

    @app.post("/query", openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"type": "object", "required": ["scene", "text"],
                   "properties": {"scene": {"type": "string"}, "text": {"type": "string"}}}}}}})
    async def query(request: Request) -> Response:
        """``{"scene", "text"}`` → the ``query --json`` answer. The body is read as plain JSON and the answer
        sent as the bytes the query thread serialized (and cached): FastAPI's body model and response encoding
        were most of the event loop's time per query."""
        try:
            body = json.loads(await request.body())
            scene, text = body["scene"], body["text"]
            if not isinstance(scene, str) or not isinstance(text, str):
                raise TypeError
        except (ValueError, TypeError, KeyError):
            return JSONResponse({"error": 'the body must be JSON {"scene": "<scene>", "text": "<what to find>"}'},
                                status_code=422)
        s = svc(request)
        s.scene(scene)
        s.require_grounder(scene)
        return Response(await s.batcher.ask(scene, text), media_type="application/json")

    @app.post("/localize")
    async def localize(request: Request, scene: str = Form(...), image: UploadFile = File(...)) -> dict:
        s = svc(request)
        s.scene(scene)
        data = await _upload(image)
        result = await asyncio.wrap_future(s.pool.submit(_worker_localize, scene, data, image.filename or "upload"))
        return {"scene": scene, "images": [result]}

    @app.post("/overlay")
    async def overlay(request: Request, scene: str = Form(...), text: str = Form(...),
                      image: UploadFile = File(...)) -> Response:
        s = svc(request)
        s.scene(scene)
        grounder = s.require_grounder(scene)
        data = await _upload(image)
        heatmap = await asyncio.to_thread(grounder.heatmap, scene, text)
        result, png = await asyncio.wrap_future(
            s.pool.submit(_worker_overlay, scene, data, image.filename or "upload", heatmap))
        if png is None:
            raise HTTPException(422, f"{result['image']}: not localized in scene {scene!r} ({result.get('reason')}); "
                                     "use a photo that shows more of the scene")
        return Response(png, media_type="image/png", headers={"X-Howto3d-Inliers": str(result["inliers"])})

    @app.get("/guide")
    async def guide(request: Request, scene: str, task: str) -> dict:
        """``guide --json`` of the saved step timelines: each step of ``task`` where it happens, its moments."""
        s = svc(request)
        s.scene(scene)
        if s.grounder is not None:
            s.require_grounder(scene)
        return await asyncio.to_thread(s.guide, scene, task)

    @app.get("/scene/{scene}/video/{video}")
    async def video(request: Request, scene: str, video: str) -> FileResponse:
        """The video as the workspace holds it; Starlette answers ``Range`` requests (206), so a page can seek."""
        path = svc(request).video(scene, video)
        return FileResponse(path, media_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream")

    @app.get("/scene/{scene}/export.glb")
    async def export_glb(request: Request, scene: str, query: str | None = None) -> Response:
        s = svc(request)
        s.scene(scene)
        data = await asyncio.to_thread(s.glb, scene, query)
        return Response(data, media_type="model/gltf-binary")

    return app


def serve(ws: Path, host: str = "127.0.0.1", port: int = 8000, localize_workers: int = 1) -> None:
    """Run the server until interrupted (every scene's localization index is loaded at start-up)."""
    app = create_app(Workspace.open(ws), localize_workers, warm=True)
    log.info("serving %s on http://%s:%d", ws, host, port)
    uvicorn.run(app, host=host, port=port, log_level="info")

