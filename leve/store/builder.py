"""Writing a store: build in ``<path>.partial`` block by block, then publish it (completion
marker last, atomic swap into place). Dataset stores and the teacher cache share this.

A store at a URL (``s3://bucket/prefix/x.zarr``) is built the same way in a local staging folder,
then uploaded and published with a manifest written last (:mod:`leve.store.remote`)."""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.core.dtype import VariableLengthBytes
from zarr.core.dtype.common import UnstableSpecificationWarning

from leve import __version__
from leve.errors import LeveError
from leve.processes import acquire
from leve.store.format import (
    PARTIAL_SUFFIX,
    PROGRESS_DIR,
    STORE_FORMAT,
    ArraySpec,
    SplitSpec,
    describe_spec,
    fingerprint,
    meta_compressors,
    meta_paths,
    spec_from_description,
)
from leve.store.integrity import WRITTEN, written_files
from leve.store.reader import is_complete, read_root_attrs
from leve.store.remote import RemoteLock, location, publish, read_manifest, staging_dir


def replace_dir(src: Path, dst: Path) -> None:
    """Move the finished folder ``src`` to ``dst``, replacing what is there (old copy removed last)."""
    old = dst.with_name(dst.name + ".old")
    if dst.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(dst, old)
    os.replace(src, dst)
    shutil.rmtree(old, ignore_errors=True)


class StoreBuilder:
    """Build (or resume building) a store in ``<path>.partial``; move it into place when done.

    With ``exclusive`` (the default) it holds the write lock of ``path`` (``<path>.lock``, see
    :mod:`leve.processes`) from before it touches anything until :meth:`close`: a second
    builder of the same store is refused with one line. The teacher cache's shards build one
    staging store together and pass ``exclusive=False`` (they coordinate with a lock of their own).

    ``path`` may be an fsspec URL (``s3://bucket/prefix/x.zarr``): the store is then built in a local
    staging folder (:func:`leve.store.remote.staging_dir`, ``self.path``) and :meth:`finalize` uploads
    and publishes it (``self.url``); the lock object ``<url>.lock`` keeps a second writer out.
    """

    def __init__(
        self,
        path: str | Path,
        attrs: dict[str, Any],
        params_fingerprint: str,
        block_size: int = 256,
        exclusive: bool = True,
    ) -> None:
        where = location(path)  # a URL is never a local path (no folder named `s3:`)
        self.url: str | None = where if isinstance(where, str) else None
        self.path = staging_dir(where) if isinstance(where, str) else where
        self.partial = self.path.with_name(self.path.name + PARTIAL_SUFFIX)
        self.block_size = int(block_size)
        self.fingerprint = fingerprint([STORE_FORMAT, params_fingerprint, self.block_size])
        self.attrs = attrs
        self.resumed = False
        self._lock = acquire(self.path) if exclusive else None
        self._remote_lock: RemoteLock | None = None
        try:
            if self.url is not None:
                if not exclusive:
                    raise LeveError(f"{self.url}: only a whole store (`leve prepare --out URL`) is written to a URL")
                self._remote_lock = RemoteLock(self.url)
            self._root = self._open_or_create()
        except BaseException:
            self.close()
            raise

    # -- lifecycle -----------------------------------------------------------

    def discard(self) -> None:
        """Remove ``<path>.partial`` (nothing to build: the store is up to date)."""
        shutil.rmtree(self.partial, ignore_errors=True)

    def close(self) -> None:
        """Release the write lock (also released by the OS when this process ends)."""
        if self._remote_lock is not None:
            self._remote_lock.close()
            self._remote_lock = None
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> StoreBuilder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def target(self) -> str | Path:
        """Where the store is published: its URL, or its local path."""
        return self.url if self.url is not None else self.path

    def up_to_date(self) -> bool:
        """True when the final path (or URL: its manifest) already holds a complete store built from the same inputs."""
        if self.url is not None:
            return (read_manifest(self.url) or {}).get("fingerprint") == self.fingerprint
        return self._built()

    def _built(self) -> bool:
        return is_complete(self.path) and read_root_attrs(self.path).get("fingerprint") == self.fingerprint

    def built_not_published(self) -> bool:
        """True for a URL whose store is built in full in the local staging folder but not yet published
        (an interrupted upload or publish): :meth:`publish` finishes it."""
        return self.url is not None and self._built()

    def publish(self) -> str | Path:
        """Upload and publish the local build to the URL (manifest last), then remove the local staging
        copy; a local store is already in place."""
        if self.url is None:
            return self.path
        publish(self.path, self.url, self.fingerprint)
        shutil.rmtree(self.path, ignore_errors=True)
        return self.url

    def _open_or_create(self) -> zarr.Group:
        if self.partial.exists():
            try:
                root = zarr.open_group(str(self.partial), mode="r+")
                if root.attrs.get("fingerprint") == self.fingerprint:
                    self.resumed = True
                    return root
            except Exception:  # unreadable leftovers are rebuilt
                pass
            shutil.rmtree(self.partial)
        self.partial.parent.mkdir(parents=True, exist_ok=True)
        try:
            root = zarr.open_group(str(self.partial), mode="w")
            root.attrs.update(
                {
                    **self.attrs,
                    "fingerprint": self.fingerprint,
                    "store_format": STORE_FORMAT,
                    "leve_version": __version__,
                    "block_size": self.block_size,
                    "complete": False,
                }
            )
        except OSError as exc:
            raise LeveError(f"{self.partial}: cannot create store ({exc.strerror or exc})") from exc
        return root

    def split(self, spec: SplitSpec) -> SplitWriter:
        """Create (or reopen, when resuming) the arrays of one split."""
        return SplitWriter(self, spec)

    def finalize(self, extra_attrs: dict[str, Any] | None = None) -> str | Path:
        """Check every split is whole, write metadata, mark complete (last) and move into place (a URL:
        upload and publish, :meth:`publish`)."""
        with warnings.catch_warnings():  # the _progress folder is not a Zarr node
            warnings.simplefilter("ignore")
            names = list(self._root.group_keys())
        for name in names:
            SplitWriter.reopen(self, name).finish(mark_complete=False)
        self._drop_progress()
        _mark_complete(self._root.attrs, extra_attrs)
        replace_dir(self.partial, self.path)
        return self.publish()

    def publish_split(self, writer: SplitWriter, target: Path) -> None:
        """Finish one split, mark it complete (last) and move it to ``target`` (the teacher cache:
        each split is published into a shared store on its own); the staging store is removed."""
        if self.url is not None:
            raise LeveError(f"{self.url}: a split is published on its own only into a local store")
        writer.finish(mark_complete=True)
        self._drop_progress()
        replace_dir(self.partial / writer.spec.name, target)
        shutil.rmtree(self.partial, ignore_errors=True)

    def _drop_progress(self) -> None:
        shutil.rmtree(self.partial / PROGRESS_DIR, ignore_errors=True)


def _mark_complete(attrs: Any, extra: dict[str, Any] | None = None) -> None:
    """Record the completion time, then the completion marker itself, written last."""
    attrs.update({**(extra or {}), "completed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
    attrs["complete"] = True


class SplitWriter:
    """Writes one split block by block; each finished block is recorded for resumption."""

    def __init__(self, builder: StoreBuilder, spec: SplitSpec) -> None:
        self.builder = builder
        self.spec = spec
        self.block_size = builder.block_size
        root = builder._root
        description = describe_spec(spec)
        if spec.name in root and root[spec.name].attrs.get("spec") == description:
            self.group = root[spec.name]
        else:
            if spec.name in root:
                del root[spec.name]
            shutil.rmtree(self._progress_dir, ignore_errors=True)
            self.group = root.create_group(spec.name)
            self.group.attrs.update({**spec.attrs, "spec": description, "length": spec.length})
            for name, aspec in spec.arrays.items():
                self._create_array(name, aspec)
        self._progress_dir.mkdir(parents=True, exist_ok=True)

    @classmethod
    def reopen(cls, builder: StoreBuilder, name: str) -> SplitWriter:
        group = builder._root[name]
        spec = spec_from_description(name, group.attrs["spec"])
        return cls(builder, spec)

    @property
    def _progress_dir(self) -> Path:
        return self.builder.partial / PROGRESS_DIR / self.spec.name

    def _create_array(self, name: str, aspec: ArraySpec) -> None:
        n = max(self.spec.length, 1)
        shard = min(self.block_size, n)
        self.group.create_array(
            name,
            shape=(self.spec.length, *aspec.tail),
            chunks=(1, *aspec.tail),
            shards=(shard, *aspec.tail),
            dtype=aspec.dtype,
            compressors=aspec.compressors(),
            fill_value=b"" if isinstance(aspec.dtype, VariableLengthBytes) else 0,
        )

    # -- blocks --------------------------------------------------------------

    @property
    def n_blocks(self) -> int:
        return -(-self.spec.length // self.block_size)

    def block_range(self, block: int) -> range:
        start = block * self.block_size
        return range(start, min(start + self.block_size, self.spec.length))

    def pending_blocks(self) -> list[int]:
        return [b for b in range(self.n_blocks) if not (self._progress_dir / f"{b}.json").exists()]

    def write_block(self, block: int, arrays: dict[str, np.ndarray], meta: dict[str, list[Any]]) -> None:
        """Write all arrays of one block (whole shards), then record the block and its metadata."""
        rows = self.block_range(block)
        for name in self.spec.arrays:
            data = arrays[name]
            if len(data) != len(rows):
                raise ValueError(f"block {block} of '{name}' has {len(data)} rows, expected {len(rows)}")
            try:
                # every sample's chunk is written, also one equal to the fill value: a missing chunk is never legal
                self.group[name].with_config({"write_empty_chunks": True})[rows.start : rows.stop] = data
            except OSError as exc:
                raise LeveError(
                    f"{self.builder.partial / self.spec.name / name}: write failed ({exc.strerror or exc})"
                ) from exc
        missing = set(self.spec.meta) - set(meta)
        if missing:
            raise ValueError(f"block {block} lacks metadata {sorted(missing)}")
        record = {k: [_plain(v) for v in meta[k]] for k in self.spec.meta}
        _atomic_write_text(self._progress_dir / f"{block}.json", json.dumps(record))

    def finish(self, mark_complete: bool) -> None:
        """Refuse unfinished blocks, gather the metadata, record what was written (attribute ``written``:
        array path -> chunk files, each checked on disk); optionally mark the split group complete."""
        missing = self.pending_blocks()
        if missing:
            raise LeveError(f"{self.builder.partial}: split '{self.spec.name}' has {len(missing)} unfinished block(s)")
        self.write_meta()
        paths = [*self.spec.arrays, *meta_paths(describe_spec(self.spec)).values()]
        self.group.attrs[WRITTEN] = written_files(self.builder.partial / self.spec.name, paths)
        if mark_complete:
            _mark_complete(self.group.attrs)

    def read_meta(self) -> dict[str, list[Any]]:
        """The metadata of every written block, one list per field, in sample order."""
        columns: dict[str, list[Any]] = {k: [] for k in self.spec.meta}
        for b in range(self.n_blocks):
            record = json.loads((self._progress_dir / f"{b}.json").read_text())
            for k in columns:
                columns[k].extend(record[k])
        return columns

    def write_meta(self) -> None:
        """Gather the per-block metadata into one array per field (called by ``finalize``)."""
        columns = self.read_meta()
        target = self.group.require_group(self.spec.meta_group) if self.spec.meta_group else self.group
        for k, dtype in self.spec.meta.items():
            values = np.asarray(columns[k], dtype=str if dtype == "str" else dtype)
            n = max(len(values), 1)
            with warnings.catch_warnings():  # fixed-length strings: read back by this zarr, warned as "unstable"
                warnings.simplefilter("ignore", UnstableSpecificationWarning)
                arr = target.create_array(k, shape=values.shape, chunks=(n,), dtype=values.dtype, overwrite=True,
                                          compressors=meta_compressors(), config={"write_empty_chunks": True})
            if len(values):
                arr[:] = values


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _atomic_write_text(path: Path, text: str) -> None:
    from leve.atomic import write_text

    write_text(path, text)
