"""Reading a store: :func:`open_store` / :func:`open_split`, lazily opened in each process."""

from __future__ import annotations

import contextlib
import functools
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr

from leve.errors import LeveError
from leve.store.format import STORE_FORMAT, meta_paths
from leve.store.integrity import WRITTEN, StoreDamage, damaged, open_group, read_error, reading, rebuild_hint
from leve.store.remote import MANIFEST, check_published, location, read_manifest, remote_error

READ_CACHE_BYTES_ENV = "LEVE_READ_CACHE_BYTES"


def read_root_attrs(path: str | Path) -> dict[str, Any]:
    return dict(zarr.open_group(str(path), mode="r").attrs)


def is_complete(path: str | Path) -> bool:
    """True when ``path`` holds a store whose completion marker is set."""
    try:
        return bool(read_root_attrs(path).get("complete"))
    except Exception:
        return False


@dataclass
class Sample:
    """One sample: RGB (H, W, 3) uint8, depth (H, W) float32 (None in a split without depth)
    and its metadata."""

    index: int
    rgb: np.ndarray
    depth: np.ndarray | None
    meta: dict[str, Any]


class Split:
    """Read access to one split. Safe to pickle into DataLoader workers: Zarr is opened lazily
    in each process on first use."""

    def __init__(self, path: str | Path, name: str, cache: tuple[Path, int] | None = None) -> None:
        self.path = str(path)
        self.name = name
        self.cache = cache  # a URL's bounded local read-through cache: (folder, bytes)
        self._pid: int | None = None
        self._group: zarr.Group | None = None
        self._zarrs: dict[str, Any] = {}  # this process's open arrays: a URL store's metadata is fetched once
        with self._reading("zarr.json"):
            self.attrs: dict[str, Any] = dict(self.group.attrs)
        written = self.attrs.get(WRITTEN)
        if not isinstance(written, dict):
            raise LeveError(f"{self.path}/{name}: records no written chunks (written by an older leve, before chunk "
                            f"checksums); rebuild it with {rebuild_hint(self.path, name)}")
        self.written: dict[str, int] = written  # array path -> chunk files written at publish
        self.length: int = int(self.attrs.get("length", 0))
        self.rgb_codec = "jpeg" if "rgb_jpeg" in written else "raw"
        # a split without depth (images only, distilled from the teacher alone) has no `depth` array
        self.has_depth: bool = "depth" in written
        self._meta: pd.DataFrame | None = None
        self._sizes: np.ndarray | None = None
        self._fast: dict[str, Any] = {}

    def _reading(self, array: str, sample: int | None = None) -> contextlib.AbstractContextManager[None]:
        """Errors while reading ``array`` of this split become one line naming it (:func:`reading`)."""
        return reading(self.path, f"{self.name}/{array}", sample)

    def _array(self, name: str, i: int, out: np.ndarray | None = None) -> np.ndarray:
        """Sample ``i`` of array ``name``: a direct shard read where possible, else Zarr; into ``out``
        (the full stored shape and dtype) when given."""
        reader = self._reader(name)
        if reader is not None:
            return reader.read(i, out)
        with self._reading(name, i):
            value = np.asarray(self._zarr(name)[i])
        if out is None:
            return value
        np.copyto(out, value)
        return out

    def _reader(self, name: str) -> Any:
        """The direct shard reader of array ``name`` (:mod:`leve.store.fastread`), or None where Zarr reads it."""
        if name not in self._fast:
            from leve.store.fastread import shard_reader

            if "://" in self.path:  # a bucket store: the fast path on the cached shard files, with a cache
                from leve.store.cachedread import cached_shard_reader

                self._fast[name] = cached_shard_reader(self.path, self.name, name, self.cache) if self.cache else None
            else:
                local = Path(self.path).is_dir()
                self._fast[name] = shard_reader(Path(self.path) / self.name / name, self.path) if local else None
        return self._fast[name]

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_group"] = None
        state["_pid"] = None
        state["_zarrs"] = {}
        return state

    @property
    def group(self) -> zarr.Group:
        """The split's Zarr group, opened in this process through :class:`leve.store.integrity.WrittenChunks`."""
        if self._group is None or self._pid != os.getpid():
            self._group = open_group(self.path, self.cache)[self.name]
            self._pid = os.getpid()
            self._zarrs = {}
        return self._group

    def _zarr(self, name: str) -> Any:
        """Array ``name`` of the split, opened once per process (opening reads its zarr.json: at a URL, a request)."""
        group = self.group
        if name not in self._zarrs:
            self._zarrs[name] = group[name]
        return self._zarrs[name]

    def __len__(self) -> int:
        return self.length

    @property
    def meta(self) -> pd.DataFrame:
        """Per-sample metadata as a DataFrame (one row per sample)."""
        if self._meta is None:
            cols = {}
            for field, path in sorted(meta_paths(self.attrs.get("spec", {})).items()):
                with self._reading(path):
                    cols[field] = np.asarray(self.group[path][:])
                if cols[field].shape != (self.length,):
                    raise damaged(self.path, f"{self.name}/{path}", f"holds {len(cols[field])} values, the split "
                                  f"{self.length} samples")
            self._meta = pd.DataFrame(cols)
        return self._meta

    @functools.cached_property
    def array_shape(self) -> tuple[int, int]:
        """(height, width) the split's arrays are padded to: the depth array's, else the RGB
        array's, else (source JPEG bytes without depth) the largest true size. Read once: a Zarr
        metadata lookup costs more than a sample's decode."""
        for name in ("depth", "rgb"):
            if name in self.written:
                with self._reading(name):
                    h, w = self.group[name].shape[1:3]
                return int(h), int(w)
        m = self.meta
        return int(m["height"].max()), int(m["width"].max())

    def size(self, i: int) -> tuple[int, int]:
        """True (height, width) of sample ``i`` (arrays may be padded to the largest size)."""
        if self._sizes is None:  # read once: a pandas lookup per call costs more than a sample's read
            m = self.meta
            self._sizes = (np.stack([m["height"].to_numpy(), m["width"].to_numpy()], 1).astype(np.int64)
                           if "height" in m and "width" in m else np.empty((0, 2), np.int64))
        if len(self._sizes):
            h, w = self._sizes[i]
            return int(h), int(w)
        return self.array_shape

    def _check(self, i: int) -> int:
        if not -self.length <= i < self.length:
            raise IndexError(f"sample {i} out of range for split '{self.name}' of length {self.length}")
        return i % self.length

    def rgb(self, i: int) -> np.ndarray:
        i = self._check(i)
        h, w = self.size(i)
        if self.rgb_codec == "jpeg":
            from leve.store.images import decode_rgb

            return decode_rgb(self.rgb_bytes(i), f"{self.path}/{self.name}[{i}]")
        return self._array("rgb", i)[:h, :w]

    def rgb_draft(self, i: int, size: tuple[int, int]) -> np.ndarray:
        """Sample ``i``'s RGB for use at ``size``: with ``rgb_codec: jpeg`` decoded at the
        smallest DCT scale still at least ``size`` (:func:`leve.store.images.decode_rgb_draft`,
        not bit-equal to :meth:`rgb`); a raw store returns :meth:`rgb`."""
        if self.rgb_codec != "jpeg":
            return self.rgb(i)
        from leve.store.images import decode_rgb_draft

        i = self._check(i)
        return decode_rgb_draft(self.rgb_bytes(i), f"{self.path}/{self.name}[{i}]", size)

    def rgb_bytes(self, i: int) -> bytes:
        """The stored source JPEG of sample ``i`` (``rgb_codec: jpeg`` only).

        Read as a one-element slice: Zarr's scalar read of variable-length bytes
        drops trailing NUL bytes.
        """
        i = self._check(i)
        reader = self._reader("rgb_jpeg")
        if reader is not None:  # one pread; Zarr's read costs twice the JPEG's decode
            return reader.read_bytes(i)
        with self._reading("rgb_jpeg", i):
            return bytes(self._zarr("rgb_jpeg")[i : i + 1][0])

    def depth(self, i: int, out: np.ndarray | None = None) -> np.ndarray:
        """Sample ``i``'s float32 depth at its true size; decoded into ``out`` when given (float32, the
        sample's size: a loader's batch buffer)."""
        if not self.has_depth:
            raise LeveError(f"{self.path}: split '{self.name}' has no depth (an images-only split)")
        i = self._check(i)
        h, w = self.size(i)
        if out is not None and (h, w) == self.array_shape:
            return checked_depth(self._array("depth", i, out), f"{self.path}/{self.name}[{i}]")
        depth = checked_depth(self._array("depth", i)[:h, :w], f"{self.path}/{self.name}[{i}]")
        if out is None:
            return depth
        np.copyto(out, depth)
        return out

    def __getitem__(self, i: int) -> Sample:
        i = self._check(i)
        row = self.meta.iloc[i].to_dict() if len(self.meta.columns) else {}
        return Sample(i, self.rgb(i), self.depth(i) if self.has_depth else None, row)

    def iter_chunks(self, size: int = 64) -> Iterator[tuple[int, np.ndarray, np.ndarray | None]]:
        """Yield ``(start, rgb, depth)`` blocks of up to ``size`` samples, in order (depth None
        in a split without depth).

        Arrays come padded to the split's array shape; use :meth:`size` for true sizes.
        """
        for start in range(0, self.length, size):
            stop = min(start + size, self.length)
            if self.rgb_codec == "jpeg":
                rgb = np.stack([self.rgb(i) for i in range(start, stop)])
            else:
                rgb = np.stack([self._array("rgb", i) for i in range(start, stop)])
            depth = np.stack([self._array("depth", i) for i in range(start, stop)]) if self.has_depth else None
            yield start, rgb, depth


def checked_depth(depth: np.ndarray, where: str) -> np.ndarray:
    """``depth`` unchanged; a map with NaN, inf or negative values (no leve store holds one) is refused."""
    if depth.size and not (depth.min() >= 0 and depth.max() < np.inf):  # NaN fails >= 0; two reductions, no temporaries
        bad = int((~np.isfinite(depth) | (depth < 0)).sum())
        raise LeveError(f"{where}: depth has {bad} NaN, inf or negative value(s); a store holds depth >= 0 "
                        f"(0 = no measurement): rebuild it with `leve prepare`")
    return depth


def check_layout(path: str, attrs: dict[str, Any], dataset: bool) -> None:
    """Refuse a store written by a newer leve, and (``dataset``) any Zarr group that is not a
    dataset store, a teacher cache included, and a store of an older layout (without checksums)."""
    version = attrs.get("store_format")
    if isinstance(version, int) and version > STORE_FORMAT:
        raise LeveError(f"{path}: store format {version} was written by a newer leve (this one reads format "
                        f"{STORE_FORMAT}); upgrade leve or rebuild the store")
    if dataset and attrs.get("kind") == "teacher-cache":
        raise LeveError(f"{path}: a teacher cache, not a dataset store (stores live in data/zarr/)")
    if dataset and version is None:
        raise LeveError(f"{path}: not a leve dataset store (no store_format attribute; a different layout)")
    if dataset and isinstance(version, int) and version < STORE_FORMAT:
        raise LeveError(f"{path}: store format {version} was written by an older leve, without chunk checksums (this "
                        f"one reads format {STORE_FORMAT}); rebuild it with {rebuild_hint(path)}")


class Store:
    """A dataset store: its attributes and splits. At a URL (``s3://bucket/prefix/x.zarr``) the store must
    have been published whole: its manifest is required (:mod:`leve.store.remote`)."""

    def __init__(self, path: str | Path, require_complete: bool = True, cache_bytes: int | None = None) -> None:
        where = location(path)  # Path("s3://b/k") is read back as the URL
        remote = isinstance(where, str)
        self.path = where if isinstance(where, str) else str(path)
        # at a URL a missing bucket, denied access or a wrong endpoint is one line (read_manifest)
        manifest = read_manifest(self.path) if remote and require_complete else None
        try:
            self.root = open_group(self.path)
        except LeveError:
            raise
        except FileNotFoundError as exc:
            if remote and require_complete and manifest is None:
                raise LeveError(f"{self.path}: no store here, or its upload did not finish (no {MANIFEST}); run "
                                f"`leve prepare --out {self.path}`") from exc
            raise LeveError(f"{self.path}: no store here (run `leve prepare` first)") from exc
        except StoreDamage as exc:  # the root zarr.json damaged
            raise read_error(self.path, "", exc) from exc
        except Exception as exc:
            if remote:
                raise remote_error(self.path, exc) from exc
            raise LeveError(f"{self.path}: not a readable Zarr store ({exc.__class__.__name__})") from exc
        self.attrs: dict[str, Any] = dict(self.root.attrs)
        check_layout(self.path, self.attrs, dataset=require_complete)
        if require_complete and not self.attrs.get("complete"):
            raise LeveError(f"{self.path}: store is incomplete (its build did not finish); rerun `leve prepare`")
        if remote and require_complete:
            check_published(self.path, self.attrs)
        self.cache = read_cache(self.path, self.attrs, cache_bytes) if remote else None

    @property
    def splits(self) -> list[str]:
        order = {"train": 0, "val": 1, "test": 2}
        try:
            with warnings.catch_warnings():  # a bucket store's leve-manifest.json is no Zarr node
                warnings.filterwarnings("ignore", message=".*not recognized as a component of a Zarr hierarchy")
                names = list(self.root.group_keys())
        except Exception as exc:  # a split's zarr.json damaged
            raise read_error(self.path, "", exc) from exc
        return sorted(names, key=lambda s: (order.get(s, 3), s))

    def split(self, name: str) -> Split:
        if name not in self.splits:
            raise LeveError(f"{self.path}: no split '{name}' (has: {', '.join(self.splits) or 'none'})")
        return Split(self.path, name, self.cache)


def read_cache(url: str, attrs: dict[str, Any], cache_bytes: int | None) -> tuple[Path, int] | None:
    """The bounded local read-through cache of the store at ``url``: (folder, bytes), or None. ``cache_bytes``
    None: ``$LEVE_READ_CACHE_BYTES`` (default 0, no cache)."""
    from leve.store.readcache import cache_dir

    if cache_bytes is None:
        text = os.environ.get(READ_CACHE_BYTES_ENV, "0") or "0"
        try:
            cache_bytes = int(float(text))
        except ValueError:
            raise LeveError(f"{READ_CACHE_BYTES_ENV}={text!r}: expected a number of bytes") from None
    if cache_bytes < 0:
        raise LeveError(f"read cache: expected a number of bytes >= 0, got {cache_bytes}")
    return (cache_dir(url, str(attrs.get("fingerprint"))), cache_bytes) if cache_bytes else None


def open_store(path: str | Path, require_complete: bool = True, cache_bytes: int | None = None) -> Store:
    """Open a dataset store (local path or fsspec URL); refuses an incomplete one by default. At a URL,
    ``cache_bytes`` bounds a local read-through cache of its chunk files (:mod:`leve.store.readcache`;
    None: ``$LEVE_READ_CACHE_BYTES``, default 0: none)."""
    return Store(path, require_complete, cache_bytes)


def open_split(path: str | Path, split: str, cache_bytes: int | None = None) -> Split:
    """Open one split of a complete store: ``len(s)``, ``s[i]``, ``s.rgb(i)``, ``s.iter_chunks()``."""
    return open_store(path, cache_bytes=cache_bytes).split(split)


def disk_usage(path: str | Path) -> tuple[int, int]:
    """(bytes, files) under a local directory."""
    total, files = 0, 0
    for root, _, names in os.walk(path):
        for n in names:
            total += os.path.getsize(os.path.join(root, n))
            files += 1
    return total, files
