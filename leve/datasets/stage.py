"""Stage ``prepare@<dataset>``: params ``prepare.<dataset>`` -> ``data/zarr/<dataset>.zarr``.

A dataset's section names its adapter: the built-in datasets are their own adapter
(``prepare.nyu`` is read by :mod:`leve.datasets.nyu`); any other name needs ``adapter`` in its
section (``prepare.mydata: {adapter: folder, source: ...}``), or is prepared with
``leve prepare folder mydata``. An adapter used under another name writes
``data/zarr/<name>.zarr`` unless ``out`` says otherwise, so the pipeline's foreach finds it.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from types import ModuleType
from typing import Any

from leve.datasets import endoslam, folder, kitti, nyu, synthetic
from leve.errors import LeveError
from leve.params import PARAMS_FILE, build_config, resolved, resolved_params, section
from leve.store.remote import location, url_of

# dataset name -> adapter module exposing ``Config`` (a dataclass) and ``prepare(cfg, ...)``
DATASETS: dict[str, ModuleType] = {
    "synthetic": synthetic,
    "nyu": nyu,
    "kitti": kitti,
    "endoslam": endoslam,
}
# adapter name -> module: the built-in datasets and the generic ones, named by `adapter:`
ADAPTERS: dict[str, ModuleType] = {**DATASETS, "folder": folder}
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _adapter(dataset: str, values: dict[str, Any], expected: str | None) -> str:
    """The adapter of ``prepare.<dataset>`` (removing ``adapter`` from ``values``)."""
    given = values.pop("adapter", None)
    if not NAME.fullmatch(dataset) or dataset.endswith(".zarr"):
        raise LeveError(f"'{dataset}': a dataset name is letters, digits, '_', '-' or '.' (it names data/zarr/<name>.zarr)")
    if expected is not None and given is None and dataset in DATASETS and dataset != expected:
        raise LeveError(f"'{dataset}' is a built-in dataset (leve prepare {dataset}); choose another name")
    if expected is not None and given is not None and given != expected:
        raise LeveError(f"prepare.{dataset}.adapter is '{given}' in params.yaml, not '{expected}'")
    name = str(given or expected or dataset)
    if name not in ADAPTERS:
        raise LeveError(f"prepare.{dataset}: unknown dataset; built in: {', '.join(DATASETS)}; for your own data run "
                        f"`leve prepare folder {dataset} --source DIR` or set `adapter: folder` in prepare.{dataset}")
    return name


def resolve(
    dataset: str, overrides: dict[str, Any] | None = None, params_file: Path = PARAMS_FILE, adapter: str | None = None
) -> tuple[ModuleType, Any]:
    """The adapter module of ``dataset`` and its typed config: defaults < params.yaml < overrides.
    ``adapter`` is the one the command asked for (``leve prepare folder NAME``), if any."""
    params = resolved_params(params_file)
    values = {**section(params, f"prepare.{dataset}"), **(overrides or {})}
    name = _adapter(dataset, values, adapter)
    if values.get("out") is None:  # the store the later stages read: <paths.stores>/<dataset>.zarr
        stores = location(str(resolved("paths.stores", params_file)))
        values["out"] = f"{stores.rstrip('/')}/{dataset}.zarr" if isinstance(stores, str) else stores / f"{dataset}.zarr"
    # `out` may be an fsspec URL (s3://bucket/prefix/x.zarr): checked here (an unknown scheme is one line), it
    # travels in the config as a Path that leve.store.remote.location reads back as the URL (the builder and
    # store_path do), never as a local folder named `s3:`
    out = values.get("out")
    where = location(out) if isinstance(out, str | Path) and url_of(out) is not None else None
    if where is not None:
        values["out"] = None if isinstance(where, str) else where  # a file:// URL: its local path
    module = ADAPTERS[name]
    cfg = build_config(module.Config, values, f"prepare.{dataset}")
    return module, dataclasses.replace(cfg, out=Path(where)) if isinstance(where, str) else cfg


def config(dataset: str, overrides: dict[str, Any] | None = None, params_file: Path = PARAMS_FILE) -> Any:
    """The typed config of ``prepare.<dataset>``: defaults < params.yaml < overrides."""
    return resolve(dataset, overrides, params_file)[1]


def run(
    dataset: str,
    overrides: dict[str, Any] | None = None,
    params_file: Path = PARAMS_FILE,
    force: bool = False,
    show_progress: bool = True,
    adapter: str | None = None,
) -> Any:
    """Build the store of ``dataset``; returns the build result (path, counts, timing)."""
    module, cfg = resolve(dataset, overrides, params_file, adapter)
    return module.prepare(cfg, force=force, show_progress=show_progress)
