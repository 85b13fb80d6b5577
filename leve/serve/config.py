"""The ``serve`` section of params.yaml as a typed config."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leve.params import PARAMS_FILE, build_config, load_params, section


@dataclass(frozen=True)
class Config:
    """How ``leve serve`` runs. Limits protect the server from hostile uploads."""

    checkpoint: Path | None = None      # a leve checkpoint; None = randomly initialised model
    model: str | None = None            # registered model without a checkpoint (None: leve);
                                        # with one, must match the checkpoint's model if set
    host: str = "127.0.0.1"             # loopback only; 0.0.0.0 serves every interface
    port: int = 8000
    device: str = "auto"                # auto (CUDA when available) | cpu | cuda | cuda:N
    max_upload_bytes: int = 20_000_000  # request bodies above this are refused (HTTP 413)
    max_pixels: int = 24_000_000        # width x height above this is refused before decoding
    samples: int = 4                    # synthetic rooms rendered at start-up to try
    sample_height: int = 240
    sample_width: int = 320
    max_depth: float = 10.0             # metres; for the random model (a checkpoint has its own)
    cmap: str = "magma"
    display_max_side: int = 1024        # images on the page are downscaled to this; downloads are not
    keep_results: int = 8               # recent results kept for download (LRU)
    warmup: bool = True                 # one forward pass at start-up, so the first upload is not slow


def load_config(overrides: dict[str, Any] | None = None, params_file: Path = PARAMS_FILE) -> Config:
    """Code defaults < ``serve:`` in params.yaml < overrides (CLI flags and ``--set``)."""
    values = {**section(load_params(params_file), "serve"), **(overrides or {})}
    return build_config(Config, values, "serve")
