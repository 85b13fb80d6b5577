"""Stage ``prepare@<dataset>``: params ``prepare.<dataset>`` -> ``data/zarr/<dataset>.zarr``."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from leve.params import PARAMS_FILE, build_config, load_params, section

# dataset name -> module exposing ``Config`` (a dataclass) and ``prepare(cfg, ...)``
DATASETS: dict[str, str] = {
    "synthetic": "leve.data.synthetic",
    "nyu": "leve.data.nyu",
    "kitti": "leve.data.kitti",
    "endoslam": "leve.data.endoslam",
}


def config(dataset: str, overrides: dict[str, Any] | None = None, params_file: Path = PARAMS_FILE) -> Any:
    """The typed config of ``prepare.<dataset>``: code defaults < params.yaml < overrides."""
    module = importlib.import_module(DATASETS[dataset])
    values = {**section(load_params(params_file), f"prepare.{dataset}"), **(overrides or {})}
    return build_config(module.Config, values, f"prepare.{dataset}")


def run(
    dataset: str,
    overrides: dict[str, Any] | None = None,
    params_file: Path = PARAMS_FILE,
    force: bool = False,
    show_progress: bool = True,
) -> Any:
    """Build the store of ``dataset``; returns the build result (path, counts, timing)."""
    module = importlib.import_module(DATASETS[dataset])
    cfg = config(dataset, overrides, params_file)
    return module.prepare(cfg, force=force, show_progress=show_progress)
