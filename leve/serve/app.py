"""The FastAPI app: one page, a JSON prediction API and downloads of the metric depth.

Routes (relative, so the app also works behind a reverse proxy under a path prefix):
``GET /`` the page; ``GET api/info``; ``GET api/samples/{i}.png``;
``POST api/predict?name=&flip=`` with the raw JPEG/PNG as the body;
``POST api/samples/{i}/predict?flip=``; ``GET api/results/{id}/depth16.png|depth.npy``.
Refused uploads answer 4xx with ``{"error": "<one line>"}``; the page shows that line.
"""

from __future__ import annotations

import html
import re
import secrets
import string
import threading
from collections import OrderedDict
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from leve.errors import LeveError
from leve.predict import colorize, depth_npy, depth_png16
from leve.serve import render
from leve.serve.config import Config
from leve.serve.images import UploadError, check_bytes, read_image
from leve.serve.model import LoadedModel, load_model
from leve.store.images import encode_png

STATIC = resources.files("leve.serve") / "static"


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


class ResultStore:
    """The last ``size`` depth maps, by random id, for the download links."""

    def __init__(self, size: int) -> None:
        self._items: OrderedDict[str, tuple[str, np.ndarray]] = OrderedDict()
        self._size = max(1, size)
        self._lock = threading.Lock()

    def put(self, stem: str, depth: np.ndarray) -> str:
        key = secrets.token_urlsafe(12)
        with self._lock:
            self._items[key] = (stem, depth)
            while len(self._items) > self._size:
                self._items.popitem(last=False)
        return key

    def get(self, key: str) -> tuple[str, np.ndarray]:
        with self._lock:
            if key not in self._items:
                raise UploadError(404, "result expired or unknown; run the prediction again")
            return self._items[key]


def reference_metrics(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """AbsRel and RMSE (m) against exact depth, over pixels with depth > 0."""
    valid = gt > 0
    p, g = pred[valid].astype(np.float64), gt[valid].astype(np.float64)
    return {"abs_rel": float(np.mean(np.abs(p - g) / g)), "rmse_m": float(np.sqrt(np.mean((p - g) ** 2)))}


def safe_stem(name: str) -> str:
    """A file-name stem safe for Content-Disposition: letters, digits, ``-``, ``_``, ``.``."""
    stem = Path(name).stem if name else "image"
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)[:80] or "image"


def result_json(state: State, stem: str, rgb: np.ndarray, flip: bool,
                gt: np.ndarray | None = None) -> dict[str, Any]:
    """Predict and describe the result as the page needs it."""
    lm, cfg = state.model, state.cfg
    depth, seconds = lm.predict(rgb, flip)
    key = state.results.put(stem, depth)
    d_min, d_max = float(depth.min()), float(depth.max())
    out = {
        "id": key, "name": stem, "height": int(depth.shape[0]), "width": int(depth.shape[1]),
        "inference_ms": round(seconds * 1000.0, 1), "device": lm.device, "flip": flip,
        "model": lm.name, "checkpoint": lm.checkpoint, "random": lm.random,
        "depth_min_m": d_min, "depth_max_m": d_max,
        "input": render.data_url(render.display_image(rgb, cfg.display_max_side, "JPEG"), "image/jpeg"),
        "depth": render.data_url(render.display_image(colorize(depth, cfg.cmap), cfg.display_max_side), "image/png"),
        "colorbar": state.colour_bar, "ticks": render.nice_ticks(d_min, d_max),
        "downloads": {"png16": f"api/results/{key}/depth16.png", "npy": f"api/results/{key}/depth.npy"},
    }
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


async def read_body(request: Request, name: str, limit: int) -> bytes:
    """The request body, refused as soon as it exceeds ``limit`` bytes (never read whole first)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit():
        check_bytes(max(int(declared), 1), name, limit)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        check_bytes(max(len(body), 1), name, limit)
    return bytes(body)


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
        max_depth=f"{lm.max_depth:g}", params=f"{lm.parameters:,}", warning=warning,
        max_bytes=str(state.cfg.max_upload_bytes), max_mb=f"{state.cfg.max_upload_bytes / 1e6:g}",
        max_mp=f"{state.cfg.max_pixels / 1e6:g}",
        samples="".join(f'<button type="button" class="sample" data-index="{i}" title="synthetic room {i}">'
                        f'<img src="api/samples/{i}.png" alt="sample {i}"></button>'
                        for i in range(len(state.samples))),
    )


def create_app(cfg: Config, model: LoadedModel | None = None) -> FastAPI:
    """Build the app; loads the model (unless given) and renders the samples now, once."""
    state = State(cfg, model or load_model(cfg), render_samples(cfg), ResultStore(cfg.keep_results),
                  render.data_url(render.colour_bar(cfg.cmap), "image/png"))
    if cfg.warmup:
        state.model.warm_up()
    app = FastAPI(title="leve serve", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.leve = state
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
                "resolution": list(lm.resolution), "max_depth": lm.max_depth, "parameters": lm.parameters,
                "max_upload_bytes": cfg.max_upload_bytes, "max_pixels": cfg.max_pixels,
                "samples": len(state.samples)}

    @app.post("/api/predict")
    async def predict(request: Request, name: str = "upload", flip: bool = False) -> dict[str, Any]:
        data = await read_body(request, name, cfg.max_upload_bytes)
        rgb = await run_in_threadpool(read_image, data, name, cfg.max_upload_bytes, cfg.max_pixels)
        return await run_in_threadpool(result_json, state, safe_stem(name), rgb, flip)

    @app.get("/api/samples/{index}.png")
    def sample_png(index: int) -> Response:
        return Response(_sample(state, index).png, media_type="image/png")

    @app.post("/api/samples/{index}/predict")
    async def sample_predict(index: int, flip: bool = False) -> dict[str, Any]:
        s = _sample(state, index)
        return await run_in_threadpool(result_json, state, f"sample{index}", s.rgb, flip, s.depth)

    @app.get("/api/results/{key}/depth16.png")
    def download_png16(key: str) -> Response:
        stem, depth = state.results.get(key)
        return _attachment(depth_png16(depth), "image/png", f"{stem}_depth16.png")

    @app.get("/api/results/{key}/depth.npy")
    def download_npy(key: str) -> Response:
        stem, depth = state.results.get(key)
        return _attachment(depth_npy(depth), "application/octet-stream", f"{stem}_depth.npy")


def _sample(state: State, index: int) -> Sample:
    if not 0 <= index < len(state.samples):
        raise UploadError(404, f"no sample {index}; there are {len(state.samples)}")
    return state.samples[index]


def _attachment(data: bytes, mime: str, filename: str) -> Response:
    return Response(data, media_type=mime, headers={"Content-Disposition": f'attachment; filename="{filename}"'})
