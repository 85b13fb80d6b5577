"""Stage ``prepare@<dataset>``: params ``prepare.<dataset>`` -> ``data/zarr/<dataset>.zarr``."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

from leve.datasets import endoslam, kitti, nyu, synthetic
from leve.params import PARAMS_FILE, build_config, load_params, section

# dataset name -> adapter module exposing ``Config`` (a dataclass) and ``prepare(cfg, ...)``
DATASETS: dict[str, ModuleType] = {
    "synthetic": synthetic,
    "nyu": nyu,
    "kitti": kitti,
    "endoslam": endoslam,
}


def config(dataset: str, overrides: dict[str, Any] | None = None, params_file: Path = PARAMS_FILE) -> Any:
    """The typed config of ``prepare.<dataset>``: code defaults < params.yaml < overrides."""
    module = DATASETS[dataset]
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
    module = DATASETS[dataset]
    cfg = config(dataset, overrides, params_file)
    return module.prepare(cfg, force=force, show_progress=show_progress)
