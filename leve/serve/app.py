"""The FastAPI app: one page, a JSON prediction API and downloads of the metric depth.

Routes (relative, so the app also works behind a reverse proxy under a path prefix):
``GET /`` the page; ``GET api/info``; ``GET api/samples/{i}.png``;
``POST api/predict?name=&flip=`` with the raw JPEG/PNG as the body;
``POST api/samples/{i}/predict?flip=``; ``GET api/results/{id}/depth16.png|depth.npy``;
``GET api/results/{id}/pointcloud.ply`` (metric models: a coloured point cloud, intrinsics from
the upload's EXIF focal length or the assumed ``pointcloud_fov_deg``; :mod:`leve.serve.pointcloud`).
Refused uploads answer 4xx with ``{"error": "<one line>"}``; the page shows that line.

Under load: at most ``max_active`` requests decode and predict at once, and a request takes
its turn only once its whole body has arrived (read asynchronously as it comes), so a slow
upload holds nothing but its own connection (and is refused with 408 after ``upload_timeout_s``);
the results kept for download are capped in count and bytes. Every response carries
:data:`SECURITY_HEADERS`. Nothing a client sends is written to disk; its file name only becomes
a sanitised ``Content-Disposition`` name.
"""

from __future__ import annotations

import asyncio
import html
import logging
import re
import secrets
import string
import threading
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from importlib import resources
from pathlib import PurePosixPath
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from leve.errors import LeveError
from leve.outputs.intrinsics import Intrinsics
from leve.outputs.pointcloud import cloud_bytes
from leve.predict import colorize, depth_npy, depth_png16
from leve.serve import render
from leve.serve.config import Config, check
from leve.serve.images import UploadError, check_bytes, read_image
from leve.serve.model import LoadedModel, load_model
from leve.serve.pointcloud import sample_intrinsics, upload_intrinsics
from leve.store.images import encode_png

STATIC = resources.files("leve.serve") / "static"
KEY_BYTES = 16  # result ids: 128 random bits from the secrets module

# Sent with every response. The page loads its script and stylesheet from static/ only and
# shows its images as data: URLs; nothing may frame it, sniff types or leak the URL onwards.
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}


@dataclass
class Sample:
    """A bundled synthetic room with its exact metric depth."""

    rgb: np.ndarray
    depth: np.ndarray
    png: bytes


def render_samples(cfg: Config) -> list[Sample]:
    """Render ``cfg.samples`` rooms of the synthetic test split (same seed, same pictures)."""
    from leve.datasets.synthetic import render_sample

    out = []
    for i in range(cfg.samples):
        rgb, depth = render_sample(0, "test", i, cfg.sample_height, cfg.sample_width)
        out.append(Sample(rgb, depth, encode_png(rgb)))
    return out


@dataclass(frozen=True)
class Result:
    """A kept result: the depth map and, for the point cloud of a metric model, the RGB and intrinsics."""

    stem: str
    depth: np.ndarray
    rgb: np.ndarray | None = None
    camera: Intrinsics | None = None

    @property
    def nbytes(self) -> int:
        return self.depth.nbytes + (self.rgb.nbytes if self.rgb is not None else 0)


class ResultStore:
    """The most recent depth maps, by unguessable id, for the download links.

    At most ``size`` results and ``max_bytes`` bytes (depth, plus the RGB kept for a point cloud)
    are kept; the oldest go first. A single result larger than ``max_bytes`` is not kept (its
    download answers 404).
    """

    def __init__(self, size: int, max_bytes: int) -> None:
        self._items: OrderedDict[str, Result] = OrderedDict()
        self._size = max(1, size)
        self._max_bytes = max_bytes
        self._bytes = 0
        self._lock = threading.Lock()

    def put(self, stem: str, depth: np.ndarray, rgb: np.ndarray | None = None, camera: Intrinsics | None = None) -> str:
        key = secrets.token_urlsafe(KEY_BYTES)
        result = Result(stem, depth, rgb if camera is not None else None, camera)
        if result.nbytes > self._max_bytes:
            return key
        with self._lock:
            while self._items and (len(self._items) >= self._size or self._bytes + result.nbytes > self._max_bytes):
                self._bytes -= self._items.popitem(last=False)[1].nbytes
            self._items[key] = result
            self._bytes += result.nbytes
        return key

    def result(self, key: str) -> Result:
        with self._lock:
            if key not in self._items:
                raise UploadError(404, "result expired or unknown; run the prediction again")
            return self._items[key]

    def get(self, key: str) -> tuple[str, np.ndarray]:
        found = self.result(key)
        return found.stem, found.depth

    def stats(self) -> dict[str, int]:
        """How many results and bytes are kept, and the caps."""
        with self._lock:
            return {"results": len(self._items), "bytes": self._bytes, "max_results": self._size,
                    "max_bytes": self._max_bytes}


def reference_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """AbsRel and RMSE (m) against exact depth, over pixels with depth > 0."""
    valid = gt > 0
    p, g = pred[valid].astype(np.float64), gt[valid].astype(np.float64)
    return {"abs_rel": float(np.mean(np.abs(p - g) / g)), "rmse_m": float(np.sqrt(np.mean((p - g) ** 2)))}


def safe_stem(name: str) -> str:
    """A file-name stem safe for Content-Disposition: letters, digits, ``-``, ``_``, inner ``.``
    (never a path: folders, leading dots and control characters are dropped)."""
    stem = PurePosixPath(name.replace("\\", "/")).stem if name else "image"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._")[:80] or "image"


def result_json(state: State, stem: str, rgb: np.ndarray, flip: bool,
                gt: np.ndarray | None = None, camera: Intrinsics | None = None) -> dict[str, Any]:
    """Predict and describe the result as the page needs it (with ``camera``: a point-cloud download)."""
    lm, cfg = state.model, state.cfg
    depth, seconds = lm.predict(rgb, flip)
    key = state.results.put(stem, depth, rgb, camera)
    d_min, d_max = float(depth.min()), float(depth.max())
    downloads = {"png16": f"api/results/{key}/depth16.png", "npy": f"api/results/{key}/depth.npy"}
    if camera is not None:
        downloads["ply"] = f"api/results/{key}/pointcloud.ply"
    out = {
        "id": key, "name": stem, "height": int(depth.shape[0]), "width": int(depth.shape[1]),
        "inference_ms": round(seconds * 1000.0, 1), "device": lm.device, "flip": flip,
        "model": lm.name, "checkpoint": lm.checkpoint, "random": lm.random,
        "depth_min_m": d_min, "depth_max_m": d_max,
        "input": render.data_url(render.display_image(rgb, cfg.display_max_side, "JPEG"), "image/jpeg"),
        "depth": render.data_url(render.display_image(colorize(depth, cfg.cmap), cfg.display_max_side), "image/png"),
        "colorbar": state.colour_bar, "ticks": render.nice_ticks(d_min, d_max),
        "downloads": downloads,
    }
    if camera is not None:
        out["intrinsics"] = camera.describe()
    if gt is not None:
        out["reference"] = reference_metrics(depth, gt)
    return out


@dataclass
class State:
    """Everything loaded once per process."""

    cfg: Config
    model: LoadedModel
    samples: list[Sample]
    results: ResultStore
    colour_bar: str
    gate: Gate


async def read_body(request: Request, name: str, limit: int, timeout_s: float) -> bytes:
    """The request body, refused as soon as it exceeds ``limit`` bytes (never read whole first)
    or when it has not arrived in full within ``timeout_s`` seconds (a stalled or trickling client)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit():
        check_bytes(max(int(declared), 1), name, limit)
    body = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                body += chunk
                check_bytes(max(len(body), 1), name, limit)
    except TimeoutError:
        raise UploadError(408, f"{name}: upload not received within {timeout_s:g} s") from None
    return bytes(body)


class Gate:
    """At most ``limit`` requests decode and predict at once (each holds a decoded image and its
    depth map); the others wait. One asyncio semaphore per event loop (test clients start several)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Semaphore] = (
            weakref.WeakKeyDictionary())

    def __call__(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if loop not in self._semaphores:
            self._semaphores[loop] = asyncio.Semaphore(self.limit)
        return self._semaphores[loop]


class SecurityHeaders:
    """ASGI middleware: adds :data:`SECURITY_HEADERS` to every response, and ``no-store`` to API ones."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items()]
        if "/api/" in scope.get("path", ""):
            extra.append((b"cache-control", b"no-store"))

        async def send_with_headers(message: Any) -> None:
            if message["type"] == "http.response.start":
                names = {k.lower() for k, _ in message.get("headers", [])}
                message = {**message, "headers": [*message.get("headers", []), *(h for h in extra if h[0] not in names)]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def lineage_html(lm: LoadedModel) -> str:
    """The page's lineage line (teacher, data, licence; a non-commercial model says so in bold), escaped."""
    if lm.random:
        return ""
    note = '<b class="warning">Non-commercial use only.</b> ' if lm.lineage.non_commercial else ""
    return f'<p class="model" id="lineage">{note}{html.escape(lm.lineage.summary())}</p>'


def page(state: State) -> str:
    """The HTML page with the model description filled in (escaped)."""
    lm = state.model
    warning = ("" if not lm.random else
               f'<p class="warning" id="random-warning">No checkpoint: this is a <b>randomly initialised</b> '
               f'{html.escape(lm.name)} model, so its depth maps mean nothing. Start with '
               f'<code>leve serve --checkpoint models/student/best.pt</code> to see a trained one.</p>')
    template = string.Template((STATIC / "index.html").read_text(encoding="utf-8"))
    return template.substitute(
        model=html.escape(lm.name), checkpoint=html.escape(lm.checkpoint or "none (random weights)"),
        device=html.escape(lm.device), resolution=f"{lm.resolution[0]}x{lm.resolution[1]}",
        max_depth=f"{lm.max_depth:g}", params=f"{lm.parameters:,}", warning=warning, lineage=lineage_html(lm),
        max_bytes=str(state.cfg.max_upload_bytes), max_mb=f"{state.cfg.max_upload_bytes / 1e6:g}",
        max_mp=f"{state.cfg.max_pixels / 1e6:g}",
        samples="".join(f'<button type="button" class="sample" data-index="{i}" title="synthetic room {i}">'
                        f'<img src="api/samples/{i}.png" alt="sample {i}"></button>'
                        for i in range(len(state.samples))),
    )


def create_app(cfg: Config, model: LoadedModel | None = None) -> FastAPI:
    """Build the app; loads the model (unless given) and renders the samples now, once."""
    cfg = check(cfg)
    state = State(cfg, model or load_model(cfg), render_samples(cfg), ResultStore(cfg.keep_results, cfg.max_result_bytes),
                  render.data_url(render.colour_bar(cfg.cmap), "image/png"), Gate(cfg.max_active))
    if cfg.warmup:
        state.model.warm_up()
    app = FastAPI(title="leve serve", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.leve = state
    app.add_middleware(SecurityHeaders)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    _add_error_handlers(app)
    _add_routes(app, state)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(UploadError)
    async def upload_error(_: Request, exc: UploadError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(LeveError)
    async def leve_error(_: Request, exc: LeveError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> JSONResponse:
        logging.getLogger("leve.serve").error("request failed", exc_info=exc)
        return JSONResponse({"error": f"internal error ({exc.__class__.__name__}); see the server log"},
                            status_code=500)


def _add_routes(app: FastAPI, state: State) -> None:
    cfg = state.cfg

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page(state)

    @app.get("/api/info")
    def info() -> dict[str, Any]:
        lm = state.model
        return {"model": lm.name, "checkpoint": lm.checkpoint, "random": lm.random, "device": lm.device,
                "lineage": lm.lineage.to_dict(),
                "resolution": list(lm.resolution), "max_depth": lm.max_depth, "parameters": lm.parameters,
                "max_upload_bytes": cfg.max_upload_bytes, "max_pixels": cfg.max_pixels,
                "samples": len(state.samples), "result_cache": state.results.stats()}

    @app.post("/api/predict")
    async def predict(request: Request, name: str = "upload", flip: bool = False) -> dict[str, Any]:
        data = await read_body(request, name, cfg.max_upload_bytes, cfg.upload_timeout_s)
        async with state.gate():
            rgb = await run_in_threadpool(read_image, data, name, cfg.max_upload_bytes, cfg.max_pixels)
            camera = await run_in_threadpool(_upload_camera, state, data, name, rgb)
            del data
            return await run_in_threadpool(result_json, state, safe_stem(name), rgb, flip, None, camera)

    @app.get("/api/samples/{index}.png")
    def sample_png(index: int) -> Response:
        return Response(_sample(state, index).png, media_type="image/png")

    @app.post("/api/samples/{index}/predict")
    async def sample_predict(index: int, flip: bool = False) -> dict[str, Any]:
        s = _sample(state, index)
        async with state.gate():
            camera = sample_intrinsics(*s.rgb.shape[:2]) if state.model.depth_kind == "metric" else None
            return await run_in_threadpool(result_json, state, f"sample{index}", s.rgb, flip, s.depth, camera)

    @app.get("/api/results/{key}/depth16.png")
    def download_png16(key: str) -> Response:
        stem, depth = state.results.get(key)
        return _attachment(depth_png16(depth), "image/png", f"{stem}_depth16.png")

    @app.get("/api/results/{key}/depth.npy")
    def download_npy(key: str) -> Response:
        stem, depth = state.results.get(key)
        return _attachment(depth_npy(depth), "application/octet-stream", f"{stem}_depth.npy")

    @app.get("/api/results/{key}/pointcloud.ply")
    def download_ply(key: str) -> Response:
        found = state.results.result(key)
        if found.camera is None or found.rgb is None:
            raise UploadError(409, f"{found.stem}: no point cloud: relative depth (distilled without depth) has no metres")
        ply = cloud_bytes(found.depth, found.rgb, found.camera)
        return _attachment(ply, "application/octet-stream", f"{found.stem}.ply")


def _upload_camera(state: State, data: bytes, name: str, rgb: np.ndarray) -> Intrinsics | None:
    """An upload's intrinsics for its point cloud (EXIF or the assumed field of view); None for a
    relative-depth model, which has no metres to back-project."""
    if state.model.depth_kind != "metric":
        return None
    return upload_intrinsics(data, name, rgb.shape[0], rgb.shape[1], state.cfg.pointcloud_fov_deg)


def _sample(state: State, index: int) -> Sample:
    if not 0 <= index < len(state.samples):
        raise UploadError(404, f"no sample {index}; there are {len(state.samples)}")
    return state.samples[index]


def _attachment(data: bytes, mime: str, filename: str) -> Response:
    return Response(data, media_type=mime, headers={"Content-Disposition": f'attachment; filename="{filename}"'})
