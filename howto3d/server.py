"""``howto3d serve``: the workspace as an HTTP API an AR client can call, plus a small web page.

An AR client (phone app, WebXR page, Unity) cannot start a Python process per question, so the server loads
each scene's model once and answers:

- ``POST /query`` ``{"scene", "text"}`` → the ``query --json`` contract;
- ``POST /localize`` (form: ``scene``, ``image``) → the ``localize --json`` contract;
- ``POST /overlay`` (form: ``scene``, ``text``, ``image``) → the photo as PNG with the heatmap drawn in;
- ``GET /guide?scene=S&task=T`` → the ``guide --json`` contract, from the saved step timelines;
- ``GET /scene/{S}/video/{V}`` → the workspace's video file, with HTTP range requests (a page seeks in it);
- ``GET /scene/{S}/anchors.json[?name=PART...]`` → the ``export --anchors`` file (parts and guide steps);
- ``GET /scenes`` (with each scene's videos and tasks), ``GET /scene/{S}/export.glb[?query=TEXT][&anchors=true]``,
  ``GET /health``, and the page at ``/``.

FastAPI + uvicorn: typed request models, multipart uploads and an asyncio loop that keeps answering while
work runs elsewhere. Queries go to one thread that batches whatever is waiting into one BERT forward pass
(8 concurrent clients cost about one pass, not eight) with a small LRU cache in front. Localization runs
in a separate process: pycolmap holds the GIL for the whole SIFT extraction, so in a thread it would stall
queries for its full duration. Errors are JSON ``{"error": "<the CLI's one-line message>"}`` with 400
(bad input), 404 (unknown scene), 413 (a text, body or photo over the ``[serve]`` limits), 422 (malformed
request; photo not localized, for ``/overlay``), 503 (no model trained; every localization slot busy, with
``Retry-After``) or 504 (past ``[serve] request_timeout_s``).

Limits come from the workspace's ``[serve]`` section (:class:`howto3d.config.ServeConfig`) and are checked
before any work: a body's size from its ``Content-Length`` (or its streamed bytes), a photo's pixels from
its header (``[localize] max_photo_mp``), so an oversize or bomb input costs the server milliseconds. With
``warm`` (the default) each scene answers one query and localizes one of its own frames at start-up;
``/health/ready`` says 503 until then, while ``/health/live`` (and ``/health``) answer at once.

The workspace may change while it is served: a re-alignment (a video added, ``--reanchor``, ``scale``) is
noticed from ``transforms.json``'s stat, and the cameras, narration and localization index are loaded again; a
model trained again is loaded in the background and swapped in whole (its answers never mix with the old
model's cache). In between, the old model answers, or, in a frame that moved, gets the one-line 409 "retrain".
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import math
import mimetypes
import os
import queue
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from concurrent.futures import ProcessPoolExecutor
from contextlib import asynccontextmanager
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import uvicorn
from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from PIL import Image

from howto3d import grounding_cmds, scenes, viewer_cmds
from howto3d.config import ServeConfig
from howto3d.scenes import StaleFrameError
from howto3d.workspace import Workspace
from recon.align import Alignment
from recon.io import InputError, atomic_write_json, read_json
from recon.localize import PhotoTooLarge, open_photo, read_photo
from recon.transfer import parse_keypoints
from viewer.export import export
from viewer.overlay import draw_frame

if TYPE_CHECKING:
    from grounding.query import Answer, Grounder
    from howto3d.anchors_cmds import AnchorsFile
    from howto3d.guide_cmds import Guide

log = logging.getLogger("howto3d.server")

WEB_DIR = Path(__file__).with_name("web")
MAX_NAMES = 64
"""Anchor names one request may ask for (each is a query)."""
SMALL_BODY_BYTES = 64 << 10
"""Body cap of the routes that take no photo, beyond the text limit's own bytes (a JSON query, form fields)."""


class QueryBatcher:
    """One thread answers queries in batches: concurrent requests share one BERT forward pass.

    Same text → same answer (the model is fixed while serving), so recent answers are cached, as the JSON bytes
    the response sends (serialized once, in this thread). The forward pass runs on one torch thread (the
    service loads the model with ``encoder="torch"``; on a 2-core machine the other core serves HTTP). Once
    requests arrive concurrently (the last batch held several), a new batch waits up to ``window_s`` for more
    texts, so 8 clients share one pass instead of alternating a pass of one with a pass of seven; a lone client
    never waits.
    """

    def __init__(
        self,
        grounder: Grounder,
        max_batch: int = 32,
        cache_size: int = 1024,
        window_s: float = 0.002,
        extend: Callable[[str, list[Answer]], None] | None = None,
    ):
        self.grounder = grounder
        self.extend = extend
        """Adds to a batch's answers of one scene what the model alone does not know (their video moments)."""
        self.max_batch = max_batch
        self.cache_size = cache_size
        self.window_s = window_s
        self._cache: OrderedDict[tuple[str, str], bytes] = OrderedDict()
        self._generation = 0
        """Bumped by :meth:`swap`: a batch answered by the previous model is not cached under the new one."""
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

    def swap(self, grounder: Grounder) -> None:
        """Answer with ``grounder`` from the next batch on (a retrained model); forget the old answers."""
        with self._lock:
            self.grounder = grounder
            self._generation += 1
            self._cache.clear()

    def warm(self, scene: str) -> None:
        """Answer one query of ``scene`` as a client's would be answered; returns when it has been."""
        done = threading.Event()
        self._queue.put((scene, "where is it", None, done))
        done.wait()

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

    def _query(self, grounder: Grounder, scene: str, texts: list[str]) -> list[Answer]:
        results = grounder.query(scene, texts)
        if self.extend is not None:
            self.extend(scene, results)
        return results

    def _answer(self, scene: str, items: list[tuple[str, asyncio.AbstractEventLoop, asyncio.Future]]) -> None:
        texts = list(dict.fromkeys(t for t, _, _ in items))
        answers: dict[str, bytes | Exception] = {}
        with self._lock:
            grounder, generation = self.grounder, self._generation
        try:
            answers = {t: _json(a) for t, a in zip(texts, self._query(grounder, scene, texts), strict=True)}
        except Exception:  # one bad text (empty) must not fail the others: answer them one by one
            for t in texts:
                try:
                    answers[t] = _json(self._query(grounder, scene, [t])[0])
                except Exception as e:  # noqa: BLE001 - handed to the waiting request
                    answers[t] = e
        with self._lock:
            for t, a in answers.items():
                if not isinstance(a, Exception) and generation == self._generation:
                    self._cache[(scene, t)] = a
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        # One wake-up of the event loop per batch, not per request (each is a write to its self-pipe).
        done: dict[asyncio.AbstractEventLoop, list] = {}
        for t, loop, fut in items:
            if loop is None:  # a warm-up: nobody reads the answer
                fut.set()
                continue
            done.setdefault(loop, []).append((fut, answers[t]))
        for loop, results in done.items():
            with contextlib.suppress(RuntimeError):  # that loop closed (shutting down): nobody waits for these
                loop.call_soon_threadsafe(_settle, results)


def _file_key(path: Path) -> tuple[int, int, int] | None:
    """(mtime, size, inode) of a file, None when absent: the stages replace their files by renaming, so a
    rewritten model or alignment shows here without reading it."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_size, st.st_ino


def _settle(results: list[tuple[asyncio.Future, bytes | Exception]]) -> None:
    for fut, a in results:
        if fut.done():  # the request was cancelled (client gone)
            continue
        if isinstance(a, Exception):
            fut.set_exception(a)
        else:
            fut.set_result(a)


def _json(answer: Mapping[str, Any]) -> bytes:
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
    """The scene's cameras and localizer, built again when the scene was aligned again (a video added)."""
    ws = _WORKER["ws"]
    key = _file_key(ws.align_dir(scene) / "transforms.json")
    if _WORKER["scenes"].get(scene, (None,))[0] != key:
        shared = scenes.shared_scene(ws, scene)
        _WORKER["scenes"][scene] = (key, shared, viewer_cmds.localizer(ws, scene, shared))
    return _WORKER["scenes"][scene][1:]


def _worker_warm(scene: str, photo: str | None) -> int:
    """Builds the scene's index and, with ``photo``, localizes it: every lazy import and first-call cost paid."""
    localizer = _worker_scene(scene)[1]
    if photo is not None:
        localizer.localize(Path(photo))
    return len(localizer.frames)


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

    def __init__(self, ws: Workspace, localize_workers: int = 1, limits: ServeConfig | None = None):
        self.ws = ws
        config = ws.config
        self.limits = limits or config.serve
        self.max_photo_mp = config.localize.max_photo_mp
        self.workers = localize_workers
        self.localizing = 0
        """Localizations running or queued (at most ``limits.max_localizations``)."""
        self.localize_s = 2.0
        """Running mean of a localization's seconds: what ``Retry-After`` is estimated from."""
        self.warming: set[str] = set()
        """Scenes whose start-up query and localization have not finished (``/health/ready`` waits for them)."""
        # torch's kernels: its import is paid once here, and they run a batch of queries 1.3-1.8x faster
        self.grounder = scenes.grounder(ws, encoder="torch") if (ws.grounding_dir / "model").is_dir() else None
        if self.grounder is not None:
            import torch

            torch.set_num_threads(1)  # one query thread; the other core answers HTTP (two threads stall each other)
        self.batcher = QueryBatcher(self.grounder, extend=self._moments) if self.grounder is not None else None
        self._model_key = _file_key(self._model_file)
        self._reloading = False
        self.pool = ProcessPoolExecutor(
            max_workers=localize_workers,
            mp_context=get_context("spawn"),
            initializer=_worker_init,
            initargs=(str(ws.root), os.getpid()),
        )
        self._loaded: dict[str, tuple] = {}
        """Per scene, (``transforms.json`` key, shared scene, narrations): loaded again after an alignment."""
        self._glb: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self._scenes = set(ws.scenes())
        self._frame_ok: dict[str, tuple[int, int, int]] = {}
        """Per scene, the ``transforms.json`` (mtime, size, inode) last found unmoved: reading and digesting it
        for every query was a quarter of a query's server CPU; alignment replaces the file, so a move shows."""

    def warm(self) -> None:
        """Per scene, in the background: load its cameras, answer one query (through the batcher, as a client's)
        and localize one of its registered frames in the worker. ``/health/ready`` waits for all of them."""
        self.warming = set(self.ws.scenes())
        threading.Thread(target=self._warm, name="warm-up", daemon=True).start()

    def _warm(self) -> None:
        for scene in sorted(self.warming):
            photo = None
            try:
                shared = self.shared(scene)
                if self.batcher is not None and self.grounder is not None and scene in self.grounder.spaces:
                    self.batcher.warm(scene)
                photo = next(
                    (
                        p
                        for f in shared.frames
                        if (p := self.ws.frames_dir(scene, f.video) / "images" / f.name).is_file()
                    ),
                    None,
                )
            except Exception as e:  # noqa: BLE001 - a scene that cannot load is reported by its requests
                log.warning("%s: not warmed up (%s)", scene, e)
            try:
                self.pool.submit(_worker_warm, scene, str(photo) if photo else None).result()
            except Exception as e:  # noqa: BLE001 - as above
                log.warning("%s: localization not warmed up (%s)", scene, e)
            self.warming.discard(scene)
        log.info("ready: every scene warmed up")

    def check_text(self, what: str, text: str | None) -> None:
        """413 for a text over ``[serve] max_text_chars``, before it costs a forward pass."""
        limit = self.limits.max_text_chars
        if text is not None and len(text) > limit:
            raise HTTPException(
                413,
                f"{what}: {len(text)} characters, over the limit of {limit} "
                "([serve] max_text_chars); send a shorter text",
            )

    def check_photo(self, data: bytes, name: str) -> None:
        """413 for a photo whose header declares more than ``[localize] max_photo_mp``: nothing is decoded."""
        try:
            open_photo(data, self.max_photo_mp).close()
        except PhotoTooLarge as e:
            raise HTTPException(413, f"{name}: {e}") from None
        except Exception:  # noqa: BLE001 - not an image: the localizer answers "cannot read the image"
            pass

    def check_names(self, names: list[str] | None) -> list[str]:
        """Anchor names of a request: each within the text limit, at most ``MAX_NAMES``, blanks dropped."""
        names = [n.strip() for n in names or [] if n.strip()]
        if len(names) > MAX_NAMES:
            raise HTTPException(413, f"{len(names)} names, over the limit of {MAX_NAMES}; ask for fewer parts")
        for n in names:
            self.check_text("name", n)
        return list(dict.fromkeys(names))

    @contextlib.contextmanager
    def localization_slot(self):
        """One of ``[serve] max_localizations`` slots; none free → 503 with a ``Retry-After`` estimate."""
        if self.localizing >= self.limits.max_localizations:
            wait = math.ceil(self.localize_s * self.localizing / self.workers)
            raise HTTPException(
                503,
                f"{self.localizing} localizations already running or queued "
                f"([serve] max_localizations); retry in {wait} s",
                headers={"Retry-After": str(max(1, wait))},
            )
        self.localizing += 1
        try:
            yield
        finally:
            self.localizing -= 1

    def localized(self, result: dict) -> None:
        """Keep the mean localization time (``Retry-After``'s estimate) current."""
        if isinstance(result.get("seconds"), float):
            self.localize_s = 0.8 * self.localize_s + 0.2 * result["seconds"]

    async def bounded(self, work):
        """``work`` (an awaitable) within ``[serve] request_timeout_s``; past it, 504."""
        try:
            return await asyncio.wait_for(work, self.limits.request_timeout_s)
        except TimeoutError:
            raise HTTPException(
                504, f"not answered within {self.limits.request_timeout_s:g} s ([serve] request_timeout_s); retry later"
            ) from None

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

    @property
    def _model_file(self) -> Path:
        return self.ws.grounding_dir / "model" / "model.safetensors"

    def _check_model(self) -> None:
        """A model trained again since it was loaded is loaded in the background; until it is, the old one
        answers (or, in a frame that moved, says to retrain): never a mix of the two."""
        key = _file_key(self._model_file)
        if key is None or key == self._model_key or self._reloading:
            return
        self._reloading = True
        threading.Thread(target=self._reload, args=(key,), name="model-reload", daemon=True).start()

    def _reload(self, key: tuple[int, int, int]) -> None:
        try:
            grounder = scenes.grounder(self.ws, encoder="torch")
            import torch

            torch.set_num_threads(1)  # as at start-up (a server started before any model was trained)
        except Exception as e:  # noqa: BLE001 - keep serving the loaded model; retried when the file changes
            log.warning(
                "%s: the retrained grounding model did not load (%s); still serving the previous one",
                self.ws.grounding_dir,
                e,
            )
        else:
            with self._lock:
                self.grounder = grounder
                if self.batcher is None:
                    self.batcher = QueryBatcher(grounder, extend=self._moments)
                else:
                    self.batcher.swap(grounder)
                self._glb.clear()
                self._frame_ok.clear()
            log.info("%s: serving the retrained grounding model", self.ws.grounding_dir)
        finally:
            self._model_key = key
            self._reloading = False

    def require_grounder(self, scene: str | None = None):
        """The model; with ``scene``, checked to be trained in that scene's current shared frame (409 else)."""
        self._check_model()
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

    def _moments(self, scene: str, results: list[Answer]) -> None:
        """The answers' video moments (``query --moments``), from the scene's cameras and narration, loaded once."""
        try:
            shared = self.shared(scene)
        except InputError as e:  # answers without moments rather than no answers
            log.warning("%s: answers come without video moments (%s)", scene, e)
            return
        grounding_cmds.add_moments(shared, self.narrations(scene), results)

    def _scene_state(self, scene: str) -> tuple:
        key = _file_key(self.ws.align_dir(scene) / "transforms.json")
        with self._lock:
            if self._loaded.get(scene, (None,))[0] != key or scene not in self._loaded:
                self._loaded[scene] = (key, scenes.shared_scene(self.ws, scene), scenes.narrations(self.ws, scene))
                self._glb.pop(scene, None)
            return self._loaded[scene]

    def shared(self, scene: str):
        """The scene's cameras and points, loaded again once the scene is aligned again."""
        return self._scene_state(scene)[1]

    def narrations(self, scene: str) -> dict:
        """The scene's narration per video, as loaded with :meth:`shared`."""
        return self._scene_state(scene)[2]

    def guide(self, scene: str, task: str) -> Guide:
        from howto3d import guide_cmds, temporal_cmds  # the step timelines' readers: only a guide needs them

        timelines = temporal_cmds.load_steps(self.ws, scene)
        if not timelines:
            raise InputError(f"{self.ws.temporal_dir(scene) / 'steps'}: no step timelines; run `howto3d run`")
        grounder = self.grounder if self.grounder is not None and scene in self.grounder.spaces else None
        return guide_cmds.guide(
            self.ws,
            scene,
            task,
            timelines=timelines,
            grounder=grounder,
            shared=self.shared(scene),
            narrations=self.narrations(scene),
        )

    def anchors(self, scene: str, names: list[str]) -> AnchorsFile:
        """The anchors file (``export --anchors``): ``names`` as parts, every guide step of the saved timelines."""
        from howto3d import anchors_cmds, temporal_cmds

        grounder = self.grounder if self.grounder is not None and scene in self.grounder.spaces else None
        if names and grounder is None:
            self.require_grounder(scene)
        return anchors_cmds.anchors(
            self.ws,
            scene,
            names,
            grounder=grounder,
            shared=self.shared(scene),
            timelines=temporal_cmds.load_steps(self.ws, scene),
        )

    def annotations(self, scene: str) -> dict:
        """The labels saved so far (``Workspace.annotations_dir``): keypoints (documents) and step spans (the CSV
        text) per video."""
        folder = self.ws.annotations_dir(scene) / "keypoints"
        keypoints = {}
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            try:
                keypoints[path.stem] = read_json(path)
            except InputError as e:  # one damaged file must not hide the others
                log.warning("%s", e)
        spans = {}
        folder = self.ws.annotations_dir(scene) / "steps"
        for path in sorted(folder.glob("*.csv")) if folder.is_dir() else []:
            spans[path.stem] = path.read_text(encoding="utf-8", errors="replace")
        return {"scene": scene, "keypoints": keypoints, "steps": spans}

    def save_keypoints(self, scene: str, video: str, doc) -> dict:
        """Write the page's clicks as ``annotations/keypoints/<video>.json``: the ``transfer`` input, checked by
        its own parser first (a bad document is a 400 naming the field, and nothing is written)."""
        self.video(scene, video)
        keypoints = parse_keypoints(doc)
        if isinstance(doc, dict) and doc.get("video", video) != video:
            raise InputError(f"the document says video {doc['video']!r} but was sent for {video!r}")
        path = self.ws.annotations_dir(scene) / "keypoints" / f"{video}.json"
        atomic_write_json(path, {"video": video, "keypoints": doc["keypoints"]})
        return {
            "scene": scene,
            "video": video,
            "path": str(path),
            "keypoints": len(keypoints),
            "observations": sum(len(obs) for _, obs in keypoints),
        }

    def save_spans(self, scene: str, video: str, doc) -> dict:
        """Write the page's step spans as ``annotations/steps/<video>.csv`` (``eval-steps --annotations``), checked
        against the scene's task file as that command will read them."""
        from temporal.annotations import write_file
        from temporal.tasks import find_task_file, read_task_file

        self.video(scene, video)
        if not isinstance(doc, dict) or "steps" not in doc:
            raise InputError('the body must be JSON {"steps": [{"step", "start", "end"}]}')
        path = self.ws.annotations_dir(scene) / "steps" / f"{video}.csv"
        task_path = find_task_file(self.ws.scene_dir(scene))
        n = write_file(path, doc["steps"], video, read_task_file(task_path) if task_path else None)
        return {"scene": scene, "video": video, "path": str(path), "steps": n}

    def video(self, scene: str, name: str) -> Path:
        """The file of one video of the scene (404 naming the scene's videos when there is none)."""
        try:
            return scenes.video(self.ws, self.scene(scene), name).path
        except InputError as e:
            raise HTTPException(404, str(e)) from None

    def glb(self, scene: str, query: str | None, anchor_names: list[str] | None = None) -> bytes:
        """The GLB export; with ``anchor_names`` (possibly empty) its anchor nodes too (``anchors.json``'s)."""
        plain = query is None and anchor_names is None
        if plain and scene in self._glb:
            return self._glb[scene]
        heatmap = self.require_grounder(scene).heatmap(scene, query) if query is not None else None
        found = self.anchors(scene, anchor_names) if anchor_names is not None else None
        with tempfile.TemporaryDirectory() as tmp:
            data = export(self.shared(scene), Path(tmp) / "scene.glb", "glb", heatmap, found).read_bytes()
        if plain:
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


async def _upload(s: Service, image: UploadFile) -> bytes:
    """The photo's bytes (the body cap already bounded them), refused when empty or over the pixel limit."""
    name = image.filename or "upload"
    data = await image.read()
    if not data:
        raise InputError(f"{name}: empty upload; send the photo's bytes as the 'image' field")
    s.check_photo(data, name)
    return data


class BodyTooLarge(Exception):
    """A request body past its cap: answered 413 (raised while the body streams in, or from its length)."""


class BodyLimit:
    """ASGI middleware: a request body may hold ``[serve] max_upload_mb`` on the photo routes and a text's worth
    elsewhere. A declared ``Content-Length`` over the cap is refused before the app sees the request; a body
    streamed without one is counted as it arrives and refused at the first chunk past the cap. Either way what
    the client is still sending (up to ``DRAIN_BYTES`` or ``DRAIN_S``) is read and dropped first, so it reads a
    413 instead of a connection reset."""

    DRAIN_BYTES = 64 << 20
    DRAIN_S = 1.0

    PHOTO_ROUTES = ("/localize", "/overlay")

    def __init__(self, app, limits: ServeConfig):
        self.app = app
        self.photo_cap = int(limits.max_upload_mb * 1e6)
        self.small_cap = SMALL_BODY_BYTES + 4 * limits.max_text_chars  # UTF-8: up to 4 bytes a character
        self.limits = limits

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        cap = self.photo_cap if scope["path"] in self.PHOTO_ROUTES else self.small_cap
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > cap:
            await self._drain(receive)
            return await JSONResponse({"error": self.message(cap)}, status_code=413)(scope, receive, send)
        seen = 0

        async def counted():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > cap:
                if message.get("more_body"):
                    await self._drain(receive)
                raise BodyTooLarge(self.message(cap))
            return message

        await self.app(scope, counted, send)

    def message(self, cap: int) -> str:
        if cap == self.photo_cap:
            return f"request body over {cap / 1e6:g} MB ([serve] max_upload_mb); send a smaller photo"
        return (
            f"request body over {cap >> 10} KiB, more than a {self.limits.max_text_chars}-character text "
            "([serve] max_text_chars) needs; send a shorter text"
        )

    async def _drain(self, receive) -> None:
        dropped, deadline = 0, time.monotonic() + self.DRAIN_S
        while dropped <= self.DRAIN_BYTES:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:  # a client that declared more than it sends: answer now
                return
            dropped += len(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body"):
                return


def create_app(
    ws: Workspace | Path, localize_workers: int = 1, warm: bool | None = None, limits: ServeConfig | None = None
) -> FastAPI:
    """The FastAPI app of a workspace; ``warm`` (default: ``[serve] warm``) warms every scene up at start-up.

    ``limits`` replaces the workspace's ``[serve]`` settings (an app that embeds the server sets its own)."""
    ws = ws if isinstance(ws, Workspace) else Workspace.open(Path(ws))
    limits = limits or ws.config.serve

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        service = Service(ws, localize_workers, limits)
        app.state.service = service
        if limits.warm if warm is None else warm:
            service.warm()
        try:
            yield
        finally:
            service.close()

    app = FastAPI(
        title="howto3d", summary="Ask where things are in a shared 3D space; localize photos in it.", lifespan=lifespan
    )
    app.mount("/static", StaticFiles(directory=WEB_DIR), name="static")
    app.add_middleware(BodyLimit, limits=limits)

    def svc(request: Request) -> Service:
        return request.app.state.service

    @app.exception_handler(InputError)
    async def input_error(request: Request, e: InputError) -> JSONResponse:
        return JSONResponse({"error": str(e)}, status_code=409 if isinstance(e, StaleFrameError) else 400)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        return JSONResponse({"error": str(e.detail)}, status_code=e.status_code, headers=e.headers)

    @app.exception_handler(BodyTooLarge)
    async def body_too_large(request: Request, e: BodyTooLarge) -> JSONResponse:
        return JSONResponse({"error": str(e)}, status_code=413)

    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, e: RequestValidationError) -> JSONResponse:
        """One line, as every other error: which field is missing or wrong, not FastAPI's list of dicts."""
        problems = "; ".join(
            f"{'.'.join(str(x) for x in err.get('loc', ())[1:]) or 'body'}: {err.get('msg')}" for err in e.errors()
        )
        return JSONResponse({"error": f"{request.url.path}: {problems}"}, status_code=422)

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html")

    @app.get("/health")
    async def health(request: Request) -> dict:
        """Liveness plus what readiness waits for (``warming``: scenes not yet warmed up)."""
        s = svc(request)
        return {
            "status": "ok",
            "ready": not s.warming,
            "warming": sorted(s.warming),
            "workspace": str(ws.root),
            "grounding": s.grounder is not None,
            "scenes": ws.scenes(),
            "localizing": s.localizing,
        }

    @app.get("/health/live")
    async def live() -> dict:
        """200 while the process answers at all (restart it otherwise)."""
        return {"status": "ok"}

    @app.get("/health/ready")
    async def ready(request: Request) -> JSONResponse:
        """200 once every scene is warmed up, 503 with ``Retry-After`` before (send traffic after)."""
        warming = sorted(svc(request).warming)
        if warming:
            return JSONResponse(
                {"status": "warming", "warming": warming}, status_code=503, headers={"Retry-After": "1"}
            )
        return JSONResponse({"status": "ready"})

    @app.get("/scenes")
    async def scenes(request: Request) -> dict:
        g = svc(request).grounder
        return {
            "scenes": [
                {
                    "scene": s,
                    "videos": [v.name for v in ws.videos(s)],
                    "aligned": Alignment.is_done(ws.align_dir(s)),
                    "grounding": g is not None and s in g.spaces,
                    "tasks": _tasks(ws, s),
                }
                for s in ws.scenes()
            ]
        }

    @app.post(
        "/query",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["scene", "text"],
                            "properties": {"scene": {"type": "string"}, "text": {"type": "string"}},
                        }
                    }
                },
            }
        },
    )
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
            return JSONResponse(
                {"error": 'the body must be JSON {"scene": "<scene>", "text": "<what to find>"}'}, status_code=422
            )
        s = svc(request)
        s.check_text("text", text)
        s.scene(scene)
        s.require_grounder(scene)
        assert s.batcher is not None  # made with the model require_grounder found
        return Response(await s.bounded(s.batcher.ask(scene, text)), media_type="application/json")

    @app.post("/localize")
    async def localize(request: Request, scene: str = Form(...), image: UploadFile = File(...)) -> dict:
        s = svc(request)
        s.scene(scene)
        data = await _upload(s, image)
        with s.localization_slot():
            result = await s.bounded(
                asyncio.wrap_future(s.pool.submit(_worker_localize, scene, data, image.filename or "upload"))
            )
        s.localized(result)
        return {"scene": scene, "images": [result]}

    @app.post("/overlay")
    async def overlay(
        request: Request, scene: str = Form(...), text: str = Form(...), image: UploadFile = File(...)
    ) -> Response:
        s = svc(request)
        s.check_text("text", text)
        s.scene(scene)
        grounder = s.require_grounder(scene)
        data = await _upload(s, image)
        with s.localization_slot():
            heatmap = await s.bounded(asyncio.to_thread(grounder.heatmap, scene, text))
            result, png = await s.bounded(
                asyncio.wrap_future(s.pool.submit(_worker_overlay, scene, data, image.filename or "upload", heatmap))
            )
        s.localized(result)
        if png is None:
            raise HTTPException(
                422,
                f"{result['image']}: not localized in scene {scene!r} ({result.get('reason')}); "
                "use a photo that shows more of the scene",
            )
        return Response(png, media_type="image/png", headers={"X-Howto3d-Inliers": str(result["inliers"])})

    @app.get("/guide")
    async def guide(request: Request, scene: str, task: str) -> dict:
        """``guide --json`` of the saved step timelines: each step of ``task`` where it happens, its moments."""
        s = svc(request)
        s.check_text("task", task)
        s.scene(scene)
        if s.grounder is not None:
            s.require_grounder(scene)
        return await s.bounded(asyncio.to_thread(s.guide, scene, task))

    @app.get("/scene/{scene}/video/{video}")
    async def video(request: Request, scene: str, video: str) -> FileResponse:
        """The video as the workspace holds it; Starlette answers ``Range`` requests (206), so a page can seek."""
        path = svc(request).video(scene, video)
        return FileResponse(path, media_type=mimetypes.guess_type(path.name)[0] or "application/octet-stream")

    @app.get("/scene/{scene}/export.glb")
    async def export_glb(
        request: Request,
        scene: str,
        query: str | None = None,
        anchors: bool = False,
        name: Annotated[list[str] | None, Query()] = None,
    ) -> Response:
        """The scene as GLB; ``query``'s heatmap; with ``anchors=true``, anchor nodes: each ``name`` (repeatable)
        and every guide step, as in ``anchors.json``."""
        s = svc(request)
        names = s.check_names(name)
        s.check_text("query", query)
        s.scene(scene)
        data = await s.bounded(asyncio.to_thread(s.glb, scene, query, names if anchors else None))
        return Response(data, media_type="model/gltf-binary")

    @app.get("/scene/{scene}/annotations")
    async def annotations(request: Request, scene: str) -> dict:
        """The keypoints saved from the page so far, per video (``transfer`` input documents)."""
        s = svc(request)
        s.scene(scene)
        return s.annotations(scene)

    @app.put(
        "/scene/{scene}/annotations/keypoints/{video}",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["keypoints"],
                            "properties": {
                                "keypoints": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "name": {"type": "string"},
                                            "observations": {
                                                "type": "array",
                                                "items": {
                                                    "type": "object",
                                                    "properties": {
                                                        "time": {"type": "number"},
                                                        "xy": {"type": "array", "items": {"type": "number"}},
                                                    },
                                                },
                                            },
                                        },
                                    },
                                }
                            },
                        }
                    }
                },
            }
        },
    )
    async def save_keypoints(request: Request, scene: str, video: str) -> dict:
        """Named keypoints clicked on a video's frames (several frames per name): saved as the ``transfer``
        input, ``annotations/keypoints/<video>.json``, which ``transfer``, ``scale`` and ``eval-transfer
        --annotations`` read."""
        s = svc(request)
        s.scene(scene)
        try:
            doc = json.loads(await request.body())
        except ValueError:
            raise HTTPException(
                422, 'the body must be JSON {"keypoints": [{"name", "observations": [{"time", "xy": [u, v]}]}]}'
            ) from None
        return await asyncio.to_thread(s.save_keypoints, scene, video, doc)

    @app.put(
        "/scene/{scene}/annotations/steps/{video}",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["steps"],
                            "properties": {
                                "steps": {
                                    "type": "array",
                                    "items": {
                                        "type": "object",
                                        "properties": {
                                            "step": {"type": "string"},
                                            "start": {"type": "number"},
                                            "end": {"type": "number"},
                                            "task": {"type": "string"},
                                        },
                                    },
                                }
                            },
                        }
                    }
                },
            }
        },
    )
    async def save_spans(request: Request, scene: str, video: str) -> dict:
        """Step spans marked on a video's timeline, saved as ``annotations/steps/<video>.csv``."""
        s = svc(request)
        s.scene(scene)
        try:
            doc = json.loads(await request.body())
        except ValueError:
            raise HTTPException(422, 'the body must be JSON {"steps": [{"step", "start", "end"}]}') from None
        return await asyncio.to_thread(s.save_spans, scene, video, doc)

    @app.get("/scene/{scene}/anchors.json")
    async def anchors_json(request: Request, scene: str, name: Annotated[list[str] | None, Query()] = None) -> dict:
        """Named anchors for AR engines (``export --anchors``' file): each ``name`` (repeatable) as a part, and
        every guide step of the saved step timelines, at shared-frame points."""
        s = svc(request)
        names = s.check_names(name)
        s.scene(scene)
        return await s.bounded(asyncio.to_thread(s.anchors, scene, names))

    return app


def serve(ws: Path, host: str = "127.0.0.1", port: int = 8000, localize_workers: int = 1) -> None:
    """Run the server until interrupted (limits and warm-up from the workspace's ``[serve]`` settings)."""
    app = create_app(Workspace.open(ws), localize_workers)
    log.info("serving %s on http://%s:%d", ws, host, port)
    uvicorn.run(app, host=host, port=port, log_level="info")
