"""The shared machinery of every ``leve prepare <dataset>``: block loop, parallel decoding,
progress, resumption and the completion marker.

A dataset module describes its splits as :class:`SplitSource` objects: a
:class:`SplitSpec` plus a picklable ``loader`` that turns a sample index into its
arrays and metadata. :func:`build_store` does the rest.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from leve.params import default
from leve.processes import DiesWithParent
from leve.progress import console, progress_bar
from leve.store.builder import StoreBuilder
from leve.store.format import SplitSpec
from leve.store.reader import disk_usage
from leve.store.remote import location, usage

# A loader maps a sample index to (arrays by name, metadata by field).
Loader = Callable[[int], tuple[dict[str, Any], dict[str, Any]]]
# Root attributes known only once every sample is written (e.g. the largest depth), from the
# metadata of each split (split name -> field -> values in sample order).
FinalAttrs = Callable[[dict[str, dict[str, list[Any]]]], dict[str, Any]]


@dataclass
class SplitSource:
    """One split to build: what it holds and how to load sample ``i``."""

    spec: SplitSpec
    loader: Loader


@dataclass
class BuildResult:
    path: Path | str  # a local path, or the URL the store was published to
    samples: int
    written: int
    seconds: float
    bytes: int
    files: int
    resumed: bool
    up_to_date: bool

    def summary(self) -> str:
        if self.up_to_date:
            return f"{self.path}: up to date ({self.samples} samples)"
        rate = self.written / self.seconds if self.seconds > 0 else float("nan")
        how = " (resumed)" if self.resumed else ""
        return (
            f"{self.path}: {self.samples} samples, wrote {self.written} in {self.seconds:.1f} s "
            f"({rate:.1f} samples/s){how}; {self.bytes / 1e6:.1f} MB in {self.files} files"
        )


def store_path(out: str | Path | None, name: str) -> str | Path:
    """Where dataset ``name``'s store is built: ``out`` (a local path or an fsspec URL, never a URL taken for
    a local path), or ``<paths.stores>/<name>.zarr`` when null (the path teacher, train and eval read; the
    stage passes its params file's ``paths.stores``)."""
    if out is not None:
        return location(out)
    stores = location(default("paths.stores"))
    return f"{stores.rstrip('/')}/{name}.zarr" if isinstance(stores, str) else stores / f"{name}.zarr"


def _usage(path: str | Path) -> tuple[int, int]:
    """(bytes, files) of a local store, or of a published one at a URL (its manifest)."""
    return usage(path) if isinstance(path, str) else disk_usage(path)


def build_store(
    path: str | Path,
    attrs: dict[str, Any],
    params_fingerprint: str,
    splits: list[SplitSource],
    workers: int = 1,
    block_size: int = 256,
    force: bool = False,
    show_progress: bool = True,
    final_attrs: FinalAttrs | None = None,
) -> BuildResult:
    """Build every split into a store at ``path``, resuming an interrupted build.

    The store is written under ``<path>.partial`` and moved into place with its
    completion marker only once every block of every split is written; ``final_attrs``
    adds root attributes computed from the written metadata just before that marker.
    """
    with StoreBuilder(path, attrs, params_fingerprint, block_size=block_size) as builder:  # one writer at a time
        return _build(builder, splits, workers, force, show_progress, final_attrs)


def _build(
    builder: StoreBuilder,
    splits: list[SplitSource],
    workers: int,
    force: bool,
    show_progress: bool,
    final_attrs: FinalAttrs | None = None,
) -> BuildResult:
    path = builder.target
    total = sum(s.spec.length for s in splits)
    if builder.up_to_date() and not force:
        builder.discard()
        b, f = _usage(path)
        return BuildResult(path, total, 0, 0.0, b, f, False, True)
    if builder.built_not_published() and not force:  # a URL: built here in full, its upload interrupted
        builder.discard()
        console.print(f"resuming the upload of {path}")
        builder.publish()
        b, f = _usage(path)
        return BuildResult(path, total, 0, 0.0, b, f, True, False)
    writers = [(builder.split(s.spec), s.loader) for s in splits]
    todo = [(w, loader, blk) for w, loader in writers for blk in w.pending_blocks()]
    pending = sum(len(w.block_range(blk)) for w, _, blk in todo)
    if builder.resumed and pending < total:
        console.print(f"resuming {builder.partial}: {total - pending} of {total} samples already written")
    start = time.perf_counter()
    with _decoder(workers) as decode, progress_bar(show_progress) as bar:
        task = bar.add_task(f"prepare {str(path).rstrip('/').rsplit('/', 1)[-1]}", total=pending)
        for writer, loader, blk in todo:
            rows = list(writer.block_range(blk))
            arrays, meta = _collect(decode(loader, rows), writer.spec)
            writer.write_block(blk, arrays, meta)
            bar.advance(task, len(rows))
    seconds = time.perf_counter() - start
    extra = final_attrs({w.spec.name: w.read_meta() for w, _ in writers}) if final_attrs else None
    builder.finalize(extra)
    b, f = _usage(path)
    return BuildResult(path, total, pending, seconds, b, f, builder.resumed, False)


def _collect(
    samples: Iterator[tuple[dict[str, Any], dict[str, Any]]], spec: SplitSpec
) -> tuple[dict[str, np.ndarray], dict[str, list[Any]]]:
    arrays: dict[str, list[Any]] = {k: [] for k in spec.arrays}
    meta: dict[str, list[Any]] = {k: [] for k in spec.meta}
    for arr, m in samples:
        for k in arrays:
            arrays[k].append(arr[k])
        for k in meta:
            meta[k].append(m[k])
    stacked = {}
    for k, values in arrays.items():
        if spec.arrays[k].tail == ():  # variable-length bytes
            out = np.empty(len(values), dtype=object)
            out[:] = values
            stacked[k] = out
        else:
            stacked[k] = _pad_stack(values, spec.arrays[k].tail)
    return stacked, meta


def _pad_stack(values: list[np.ndarray], tail: tuple[int, ...]) -> np.ndarray:
    """Stack samples into (n, *tail), zero-padding smaller ones at the bottom/right."""
    out = np.zeros((len(values), *tail), dtype=values[0].dtype if values else np.uint8)
    for i, v in enumerate(values):
        if v.ndim != len(tail) or any(s > t for s, t in zip(v.shape, tail, strict=True)):
            raise ValueError(f"sample of shape {v.shape} does not fit array tail {tail}")
        region: tuple[int | slice, ...] = (i, *(slice(0, s) for s in v.shape))
        out[region] = v
    return out


class _decoder:
    """Context manager giving ``decode(loader, rows)``: in-process or through a process pool."""

    def __init__(self, workers: int) -> None:
        self.workers = max(int(workers), 1)
        self.pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Callable[[Loader, list[int]], Iterator[Any]]:
        if self.workers > 1:
            ctx = multiprocessing.get_context("spawn")
            # the decoding processes end with this one, however it ends (SIGKILL too)
            self.pool = ProcessPoolExecutor(self.workers, mp_context=ctx, initializer=DiesWithParent())
        return self.decode

    def decode(self, loader: Loader, rows: list[int]) -> Iterator[Any]:
        if self.pool is None:
            return map(loader, rows)
        chunk = max(1, len(rows) // (self.workers * 4))
        return self.pool.map(loader, rows, chunksize=chunk)

    def __exit__(self, *exc: Any) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

