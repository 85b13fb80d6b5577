"""The FastAPI app: one page, a JSON prediction API and downloads of the predicted depth.

Routes (relative, so the app also works behind a reverse proxy under a path prefix):
``GET /`` the page; ``GET api/info``; ``GET api/samples/{i}.png``;
``POST api/predict?name=&flip=`` with the raw JPEG/PNG as the body;
``POST api/samples/{i}/predict?flip=``; ``GET api/results/{id}/depth16.png|depth.npy``;
``GET api/results/{id}/pointcloud.ply`` (metric models: a coloured point cloud, intrinsics from
the upload's EXIF focal length or the assumed ``pointcloud_fov_deg``; :mod:`leve.serve.pointcloud`).
Refused uploads answer 4xx with ``{"error": "<one line>"}``; the page shows that line.

The checkpoint's ``depth_kind`` decides what is shown. ``metric``: metres (colour bar ticks, depth
range, the 16-bit PNG in millimetres, AbsRel/RMSE against a sample room's exact depth, the point
cloud). ``relative`` (distilled without depth: right up to an unknown scale): "relative depth, near =
bright", a bar from far to near, no metres anywhere; the downloads are the relative depth (``.npy``)
and the inverse depth scaled to 0..65535 in the image (16-bit PNG, near = 65535); a sample room is
scored only after median scaling (labelled so); no point cloud.

Under load: at most ``max_active`` requests decode and predict at once, and a request takes
its turn only once its whole body has arrived (read asynchronously as it comes), so a slow
upload holds nothing but its own connection (and is refused with 408 after ``upload_timeout_s``);
a client that disconnects mid-body is one log line. The results kept for download are capped in
count and bytes; the ``.npy`` and ``.ply`` downloads are streamed a block of rows at a time (bounded
memory, however many run at once) and the 16-bit PNG is encoded under the ``max_active`` gate. At
most ``max_connections`` requests are in progress at once (503 beyond), and connections that ask
nothing are closed after ``idle_timeout_s`` (:mod:`leve.serve.server`). Every response, uvicorn's
own 400 and the 503 included, carries :data:`SECURITY_HEADERS`. Nothing a client sends is written
to disk; its file name only becomes a sanitised ``Content-Disposition`` name.
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
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from pathlib import PurePosixPath
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from leve.errors import LeveError
from leve.outputs.intrinsics import Intrinsics
from leve.predict import depth_png16
from leve.serve import render
from leve.serve.config import Config, check
from leve.serve.images import UploadError, check_bytes, read_image
from leve.serve.model import LoadedModel, load_model
from leve.serve.pointcloud import cloud_chunks, npy_chunks, sample_intrinsics, upload_intrinsics
from leve.serve.server import LOG, SECURITY_HEADERS, RequestLimit, SecurityHeaders
from leve.store.images import encode_png

__all__ = ["SECURITY_HEADERS", "create_app"]

STATIC = resources.files("leve.serve") / "static"
KEY_BYTES = 16  # result ids: 128 random bits from the secrets module

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


def reference_metrics(pred: np.ndarray, gt: np.ndarray, align: str = "none") -> dict[str, Any]:
    """AbsRel and RMSE (m) against exact depth, over pixels with depth > 0; ``align="median"`` first
    scales the prediction by median(gt) / median(pred) (a relative model has no metres of its own)."""
    valid = gt > 0
    p, g = pred[valid].astype(np.float64), gt[valid].astype(np.float64)
    if align == "median":
        p = p * (np.median(g) / np.median(p))
    return {"abs_rel": float(np.mean(np.abs(p - g) / g)), "rmse_m": float(np.sqrt(np.mean((p - g) ** 2))),
            "alignment": align}


def reference_text(ref: dict[str, Any]) -> str:
    """The page's line about a sample room's exact depth."""
    numbers = f"AbsRel {ref['abs_rel']:.3f}, RMSE {ref['rmse_m']:.3f} m"
    if ref["alignment"] == "median":
        return f"Against the exact synthetic depth, after median scaling (relative depth has no metres): {numbers}."
    return f"Against the exact synthetic depth: {numbers}."


def safe_stem(name: str) -> str:
    """A file-name stem safe for Content-Disposition: letters, digits, ``-``, ``_``, inner ``.``
    (never a path: folders, leading dots and control characters are dropped)."""
    stem = PurePosixPath(name.replace("\\", "/")).stem if name else "image"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._")[:80] or "image"


def result_json(state: State, stem: str, rgb: np.ndarray, flip: bool,
                gt: np.ndarray | None = None, camera: Intrinsics | None = None) -> dict[str, Any]:
    """Predict and describe the result as the page needs it (with ``camera``: a point-cloud download)."""
    lm, cfg = state.model, state.cfg
    metric = lm.depth_kind == "metric"
    depth, seconds = lm.predict(rgb, flip)
    key = state.results.put(stem, depth, rgb, camera)
    d_min, d_max = float(depth.min()), float(depth.max())
    downloads = {"png16": f"api/results/{key}/depth16.png", "npy": f"api/results/{key}/depth.npy"}
    if camera is not None:
        downloads["ply"] = f"api/results/{key}/pointcloud.ply"
    out: dict[str, Any] = {
        "id": key, "name": stem, "height": int(depth.shape[0]), "width": int(depth.shape[1]),
        "inference_ms": round(seconds * 1000.0, 1), "device": lm.device, "flip": flip,
        "model": lm.name, "checkpoint": lm.checkpoint, "random": lm.random, "depth_kind": lm.depth_kind,
        "input": render.data_url(render.display_image(rgb, cfg.display_max_side, "JPEG"), "image/jpeg"),
        "depth": render.data_url(render.display_depth(depth, cfg.cmap, cfg.display_max_side), "image/png"),
        "colorbar": state.colour_bar, "downloads": downloads, "labels": download_labels(lm.depth_kind, stem),
    }
    if metric:
        out.update(depth_min_m=d_min, depth_max_m=d_max, range_text=f"Depth range {d_min:.2f}\u2013{d_max:.2f} m.",
                   ticks=[{**t, "label": render.metres(t["m"])} for t in render.nice_ticks(d_min, d_max)])
    else:
        out.update(range_text="Relative depth, near = bright: right up to an unknown scale, no metres.",
                   ticks=[{"pos": 0.0, "label": "far"}, {"pos": 1.0, "label": "near"}])
    if camera is not None:
        out["intrinsics"] = camera.describe()
    if gt is not None:
        out["reference"] = reference_metrics(depth, gt, "none" if metric else "median")
        out["reference_text"] = reference_text(out["reference"])
    return out


def download_labels(depth_kind: str, stem: str) -> dict[str, Any]:
    """What the page calls the downloads, and their file names (those of the ``Content-Disposition``)."""
    if depth_kind == "metric":
        return {"heading": "Download the metric depth at full resolution:",
                "png16": ["16-bit PNG (millimetres)", f"{stem}_depth16.png"],
                "npy": [".npy (float32 metres)", f"{stem}_depth.npy"], "ply": ["point cloud (.ply)", f"{stem}.ply"]}
    return {"heading": "Download the relative depth at full resolution (no metres):",
            "png16": ["16-bit PNG (inverse depth, near = 65535)", f"{stem}_inverse16.png"],
            "npy": [".npy (float32 relative depth, unknown scale)", f"{stem}_relative.npy"]}


@dataclass
class State:
    """Everything loaded once per process."""

    cfg: Config
    model: LoadedModel
    samples: list[Sample]
    results: ResultStore
    colour_bar: str
    gate: Gate


class ClientGone(Exception):
    """The client closed its connection before its request was read: nothing to answer."""


async def read_body(request: Request, name: str, limit: int, timeout_s: float) -> bytes:
    """The request body, refused as soon as it exceeds ``limit`` bytes (never read whole first)
    or when it has not arrived in full within ``timeout_s`` seconds (a stalled or trickling client).
    A client that disconnects meanwhile is logged in one line (:class:`ClientGone`)."""
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
    except ClientDisconnect:
        client = request.client
        who = f"{client.host}:{client.port}" if client else "a client"
        of = f" of {int(declared):,}" if declared.isdigit() else ""
        LOG.warning("leve serve: %s disconnected during the upload of %s (%s%s bytes received)", who, safe_stem(name),
                    f"{len(body):,}", of)
        raise ClientGone from None
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


def lineage_html(lm: LoadedModel) -> str:
    """The page's lineage line (teacher, data, licence; a non-commercial model says so in bold), escaped."""
    if lm.random:
        return ""
    note = '<b class="warning">Non-commercial use only.</b> ' if lm.lineage.non_commercial else ""
    if lm.lineage.synthetic_only():
        note += ('<b class="warning" id="synthetic-only">Trained on synthetic rooms only: on real photos its depth '
                 'is not meaningful.</b> ')
    return f'<p class="model" id="lineage">{note}{html.escape(lm.lineage.summary())}</p>'


def page(state: State) -> str:
    """The HTML page with the model description filled in (escaped)."""
    lm = state.model
    warning = ("" if not lm.random else
               f'<p class="warning" id="random-warning">No checkpoint: this is a <b>randomly initialised</b> '
               f'{html.escape(lm.name)} model, so its depth maps mean nothing. Start with '
               f'<code>leve serve --checkpoint models/student/best.pt</code> to see a trained one.</p>')
    if lm.depth_kind == "metric":
        depth_note, bar = f"max depth {lm.max_depth:g} m", "colour bar in metres"
        caption = "predicted depth (near = bright; colours span this image's depth range)"
    else:
        depth_note, bar = "relative depth, near = bright", "colour bar from far to near"
        caption = "relative depth, near = bright (distilled without depth: no metres)"
    labels = download_labels(lm.depth_kind, "")
    template = string.Template((STATIC / "index.html").read_text(encoding="utf-8"))
    return template.substitute(
        model=html.escape(lm.name), checkpoint=html.escape(lm.checkpoint or "none (random weights)"),
        device=html.escape(lm.device), resolution=f"{lm.resolution[0]}x{lm.resolution[1]}",
        depth_kind=lm.depth_kind, depth_note=depth_note, caption=caption, bar_label=bar,
        download_heading=html.escape(labels["heading"]), png16_label=html.escape(labels["png16"][0]),
        npy_label=html.escape(labels["npy"][0]),
        params=f"{lm.parameters:,}", warning=warning, lineage=lineage_html(lm),
        max_bytes=str(state.cfg.max_upload_bytes), max_mb=f"{state.cfg.max_upload_bytes / 1e6:g}",
        max_mp=f"{state.cfg.max_pixels / 1e6:g}",
        samples="".join(f'<button type="button" class="sample" data-index="{i}" title="synthetic room {i}">'
                        f'<img src="api/samples/{i}.png" alt="sample {i}"></button>'
                        for i in range(len(state.samples))),
    )


class ServeApp(FastAPI):
    """FastAPI with :class:`SecurityHeaders` and :class:`RequestLimit` outside its whole stack, so that
    Starlette's own 500 (``ServerErrorMiddleware``, the outermost layer) and the 503 carry the headers."""

    limit = 64

    def build_middleware_stack(self) -> Any:
        return SecurityHeaders(RequestLimit(super().build_middleware_stack(), self.limit))


def create_app(cfg: Config, model: LoadedModel | None = None) -> FastAPI:
    """Build the app; loads the model (unless given) and renders the samples now, once."""
    cfg = check(cfg)
    state = State(cfg, model or load_model(cfg), render_samples(cfg), ResultStore(cfg.keep_results, cfg.max_result_bytes),
                  render.data_url(render.colour_bar(cfg.cmap), "image/png"), Gate(cfg.max_active))
    if cfg.warmup:
        state.model.warm_up()
    app = ServeApp(title="leve serve", docs_url=None, redoc_url=None, openapi_url=None)
    app.limit = cfg.max_connections
    app.state.leve = state
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    _add_error_handlers(app)
    _add_routes(app, state)
    return app


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(UploadError)
    async def upload_error(_: Request, exc: UploadError) -> JSONResponse:
        return JSONResponse({"error": exc.message}, status_code=exc.status)

    @app.exception_handler(ClientGone)
    async def client_gone(_: Request, __: ClientGone) -> Response:
        return Response(status_code=400)  # nobody reads it: the connection is closed

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
                "lineage": lm.lineage.to_dict(), "depth_kind": lm.depth_kind,
                "resolution": list(lm.resolution), "parameters": lm.parameters,
                **({"max_depth": lm.max_depth} if lm.depth_kind == "metric" else {}),
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
    async def download_png16(key: str) -> Response:
        stem, depth = state.results.get(key)
        names = download_labels(state.model.depth_kind, stem)
        encode = depth_png16 if state.model.depth_kind == "metric" else inverse_png16
        async with state.gate():  # a whole-image encode: bounded like a prediction
            data = await run_in_threadpool(encode, depth)
        return _attachment(data, "image/png", names["png16"][1])

    @app.get("/api/results/{key}/depth.npy")
    def download_npy(key: str) -> Response:
        stem, depth = state.results.get(key)
        chunks, size = npy_chunks(depth)
        return _attachment(chunks, "application/octet-stream", download_labels(state.model.depth_kind, stem)["npy"][1],
                           size)

    @app.get("/api/results/{key}/pointcloud.ply")
    def download_ply(key: str) -> Response:
        found = state.results.result(key)
        if found.camera is None or found.rgb is None:
            raise UploadError(409, f"{found.stem}: no point cloud: relative depth (distilled without depth) has no metres")
        chunks, size = cloud_chunks(found.depth, found.rgb, found.camera)
        return _attachment(chunks, "application/octet-stream", f"{found.stem}.ply", size)


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


def inverse_png16(depth: np.ndarray) -> bytes:
    """Relative depth as a 16-bit PNG of its inverse scaled to the image's range: near = 65535, far = 0."""
    inv = 1.0 / np.maximum(depth.astype(np.float64), 1e-12)
    lo, hi = float(inv.min()), float(inv.max())
    scaled = (inv - lo) / (hi - lo) if hi > lo else np.zeros_like(inv)
    return encode_png(np.rint(scaled * 65535.0).astype(np.uint16))


def _attachment(data: bytes | Iterator[bytes], mime: str, filename: str, size: int | None = None) -> Response:
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if isinstance(data, bytes):
        return Response(data, media_type=mime, headers=headers)
    return StreamingResponse(data, media_type=mime, headers={**headers, "Content-Length": str(size)})
