"""The ``serve`` section of params.yaml as a typed config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leve.errors import LeveError
from leve.params import PARAMS_FILE, build_config, load_params, param, params_section, section


@params_section("serve")
@dataclass(frozen=True)
class Config:
    """How ``leve serve`` runs. Limits protect the server from hostile uploads."""

    checkpoint: Path | None = param(url=True)  # a leve checkpoint (or its s3:// URL); None = random weights
    model: str | None = param()         # registered model without a checkpoint (None: leve);
                                        # with one, must match the checkpoint's model if set
    host: str = param()                 # loopback only; 0.0.0.0 serves every interface
    port: int = param()
    device: str = param()               # auto (CUDA when available) | cpu | cuda | cuda:N
    runtime: str = param()              # leve.models.runtime: auto (onnx on a CPU, else torch) | torch | compiled |
                                        # onnx | openvino | onnx-int8 (the checkpoint's int8 export) | eager
    max_upload_bytes: int = param()     # request bodies above this are refused (HTTP 413)
    max_pixels: int = param()           # width x height above this is refused before decoding
    samples: int = param()              # synthetic rooms rendered at start-up to try
    sample_height: int = param()
    sample_width: int = param()
    max_depth: float = param()          # metres; for the random model (a checkpoint has its own)
    cmap: str = param()
    display_max_side: int = param()     # images on the page are downscaled to this; downloads are not
    keep_results: int = param()         # recent results kept for download (LRU)
    max_result_bytes: int = param()      # byte cap on the kept results (float32 depth + the RGB kept for
                                         # the point cloud: 7 bytes a pixel; 4 for a relative-depth model)
    pointcloud_fov_deg: float = param()  # point cloud of an upload without a usable EXIF focal length:
                                        # this horizontal field of view is assumed (and said)
    max_active: int = param()           # requests decoding or predicting at once; the others wait their turn
    upload_timeout_s: float = param()   # a body not received in full within this is refused (HTTP 408)
    max_connections: int = param()      # requests in progress at once (uploading, waiting, predicting,
                                        # downloading); one more is answered 503. Connections that have
                                        # not sent a request do not count (leve.serve.server)
    idle_timeout_s: float = param()     # a connection with no request in progress (none yet, a request head
                                        # still arriving, or between keep-alive requests) is closed after this
    warmup: bool = param()              # one forward pass at start-up, so the first upload is not slow


def load_config(overrides: dict[str, Any] | None = None, params_file: Path = PARAMS_FILE) -> Config:
    """Code defaults < ``serve:`` in params.yaml < overrides (CLI flags and ``--set``)."""
    values = {**section(load_params(params_file), "serve"), **(overrides or {})}
    return check(build_config(Config, values, "serve"))


def check(cfg: Config) -> Config:
    """Refuse limits that would leave the server unbounded or unable to answer."""
    for key in ("max_upload_bytes", "max_pixels", "keep_results", "max_result_bytes", "max_active", "max_connections"):
        if getattr(cfg, key) < 1:
            raise LeveError(f"serve.{key} must be >= 1, got {getattr(cfg, key)}")
    for key in ("upload_timeout_s", "idle_timeout_s"):
        if not getattr(cfg, key) > 0:
            raise LeveError(f"serve.{key} must be > 0, got {getattr(cfg, key)}")
    if not 0 < cfg.pointcloud_fov_deg < 180:
        raise LeveError(f"serve.pointcloud_fov_deg must be between 0 and 180 degrees, got {cfg.pointcloud_fov_deg}")
    return cfg
