"""Zarr v3 stores: one group per dataset, one subgroup per split, arrays aligned on samples.

Layout of ``data/zarr/<dataset>.zarr``::

    zarr.json                 root attributes: dataset, units, max_depth, sources, leve
                              version, creation params, fingerprint, ``complete``
    <split>/rgb               (N, H, W, 3) uint8      (``rgb_codec: raw``)
    <split>/rgb_jpeg          (N,) bytes               (``rgb_codec: jpeg``: the source JPEG)
    <split>/depth             (N, H, W) float32, dataset units, 0 = invalid
    <split>/meta/<field>      (N,) per-sample metadata (source, scene, height, width, ...)

Writers build the whole store in ``<path>.partial`` and rename it into place after
the completion attribute is written (last), so the final path only ever holds a
complete store. Work is done in blocks of ``block_size`` samples, one Zarr shard
per block per array: a block is written whole (no read-modify-write) and then
marked done, so an interrupted build resumes at the first unfinished block.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr
import zarr.codecs
from zarr.core.dtype import VariableLengthBytes

from leve import __version__
from leve.errors import LeveError

STORE_FORMAT = 1
PARTIAL_SUFFIX = ".partial"
PROGRESS_DIR = "_progress"
RGB_CODECS = ("raw", "jpeg")


# --------------------------------------------------------------------------- specs


@dataclass(frozen=True)
class ArraySpec:
    """One per-sample array: shape after the sample axis, dtype and compression."""

    tail: tuple[int, ...]
    dtype: Any
    compressor: str = "zstd"  # "zstd" | "lz4" | "blosc-zstd-shuffle" | "none"

    def compressors(self) -> Any:
        if self.compressor == "none":
            return None
        if self.compressor == "zstd":
            return zarr.codecs.ZstdCodec(level=3)
        if self.compressor == "lz4":  # decodes ~15x faster than zstd; photos barely compress anyway
            return zarr.codecs.BloscCodec(cname="lz4", clevel=5, shuffle="noshuffle", typesize=1)
        if self.compressor == "blosc-zstd-shuffle":
            return zarr.codecs.BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")
        raise ValueError(f"unknown compressor {self.compressor}")


def dataset_arrays(height: int, width: int, rgb_codec: str = "raw") -> dict[str, ArraySpec]:
    """The arrays of a dataset split: RGB (raw or source JPEG bytes) and float32 depth."""
    if rgb_codec not in RGB_CODECS:
        raise LeveError(f"rgb_codec must be one of {RGB_CODECS}, got '{rgb_codec}'")
    rgb = (
        ArraySpec((height, width, 3), "uint8", "lz4")
        if rgb_codec == "raw"
        else ArraySpec((), VariableLengthBytes(), "none")
    )
    return {
        "rgb" if rgb_codec == "raw" else "rgb_jpeg": rgb,
        "depth": ArraySpec((height, width), "float32", "zstd"),
    }


@dataclass
class SplitSpec:
    """What a split holds: its length, arrays, per-sample metadata fields and attributes."""

    name: str
    length: int
    arrays: dict[str, ArraySpec]
    meta: dict[str, str]  # field -> numpy dtype name or "str"
    attrs: dict[str, Any] = field(default_factory=dict)
    meta_group: str = "meta"


def fingerprint(obj: Any) -> str:
    """A stable sha256 of a JSON-serialisable description (params, sources, format)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


# --------------------------------------------------------------------------- writing


class StoreBuilder:
    """Build (or resume building) a store in ``<path>.partial``; move it into place when done."""

    def __init__(
        self,
        path: str | Path,
        attrs: dict[str, Any],
        params_fingerprint: str,
        block_size: int = 256,
    ) -> None:
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + PARTIAL_SUFFIX)
        self.block_size = int(block_size)
        self.fingerprint = fingerprint([STORE_FORMAT, params_fingerprint, self.block_size])
        self.attrs = attrs
        self.resumed = False
        self._root = self._open_or_create()

    # -- lifecycle -----------------------------------------------------------

    def up_to_date(self) -> bool:
        """True when the final path already holds a complete store built from the same inputs."""
        return is_complete(self.path) and _read_root_attrs(self.path).get("fingerprint") == self.fingerprint

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

    def finalize(self, extra_attrs: dict[str, Any] | None = None) -> Path:
        """Check every split is whole, write metadata, mark complete (last) and move into place."""
        with warnings.catch_warnings():  # the _progress folder is not a Zarr node
            warnings.simplefilter("ignore")
            names = list(self._root.group_keys())
        for name in names:
            writer = SplitWriter.reopen(self, name)
            missing = writer.pending_blocks()
            if missing:
                raise LeveError(f"{self.partial}: split '{name}' has {len(missing)} unfinished block(s)")
            writer.write_meta()
        shutil.rmtree(self.partial / PROGRESS_DIR, ignore_errors=True)
        self._root.attrs.update({**(extra_attrs or {}), "completed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        self._root.attrs["complete"] = True  # the completion marker, written last
        old = self.path.with_name(self.path.name + ".old")
        if self.path.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(self.path, old)
        os.replace(self.partial, self.path)
        shutil.rmtree(old, ignore_errors=True)
        return self.path


class SplitWriter:
    """Writes one split block by block; each finished block is recorded for resumption."""

    def __init__(self, builder: StoreBuilder, spec: SplitSpec) -> None:
        self.builder = builder
        self.spec = spec
        self.block_size = builder.block_size
        root = builder._root
        description = _describe_spec(spec)
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
        spec = _spec_from_description(name, group.attrs["spec"])
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
                self.group[name][rows.start : rows.stop] = data
            except OSError as exc:
                raise LeveError(
                    f"{self.builder.partial / self.spec.name / name}: write failed ({exc.strerror or exc})"
                ) from exc
        missing = set(self.spec.meta) - set(meta)
        if missing:
            raise ValueError(f"block {block} lacks metadata {sorted(missing)}")
        record = {k: [_plain(v) for v in meta[k]] for k in self.spec.meta}
        _atomic_write_text(self._progress_dir / f"{block}.json", json.dumps(record))

    def write_meta(self) -> None:
        """Gather the per-block metadata into one array per field (called by ``finalize``)."""
        columns: dict[str, list[Any]] = {k: [] for k in self.spec.meta}
        for b in range(self.n_blocks):
            record = json.loads((self._progress_dir / f"{b}.json").read_text())
            for k in columns:
                columns[k].extend(record[k])
        target = self.group.require_group(self.spec.meta_group) if self.spec.meta_group else self.group
        for k, dtype in self.spec.meta.items():
            values = np.asarray(columns[k], dtype=str if dtype == "str" else dtype)
            n = max(len(values), 1)
            arr = target.create_array(k, shape=values.shape, chunks=(n,), dtype=values.dtype, overwrite=True)
            if len(values):
                arr[:] = values


def _describe_spec(spec: SplitSpec) -> dict[str, Any]:
    return {
        "length": spec.length,
        "arrays": {k: [list(a.tail), str(a.dtype), a.compressor] for k, a in spec.arrays.items()},
        "meta": spec.meta,
        "meta_group": spec.meta_group,
    }


def _spec_from_description(name: str, d: dict[str, Any]) -> SplitSpec:
    arrays = {
        k: ArraySpec(tuple(tail), VariableLengthBytes() if "VariableLengthBytes" in dt else dt, comp)
        for k, (tail, dt, comp) in d["arrays"].items()
    }
    return SplitSpec(name, d["length"], arrays, d["meta"], meta_group=d["meta_group"])


def _plain(v: Any) -> Any:
    return v.item() if isinstance(v, np.generic) else v


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- reading


def _read_root_attrs(path: str | Path) -> dict[str, Any]:
    return dict(zarr.open_group(str(path), mode="r").attrs)


def is_complete(path: str | Path) -> bool:
    """True when ``path`` holds a store whose completion marker is set."""
    try:
        return bool(_read_root_attrs(path).get("complete"))
    except Exception:
        return False


@dataclass
class Sample:
    """One sample: RGB (H, W, 3) uint8, depth (H, W) float32 and its metadata."""

    index: int
    rgb: np.ndarray
    depth: np.ndarray
    meta: dict[str, Any]


class Split:
    """Read access to one split. Safe to pickle into DataLoader workers: Zarr is opened lazily
    in each process on first use."""

    def __init__(self, path: str | Path, name: str) -> None:
        self.path = str(path)
        self.name = name
        self._pid: int | None = None
        self._group: zarr.Group | None = None
        group = self.group
        self.attrs: dict[str, Any] = dict(group.attrs)
        self.length: int = int(self.attrs.get("length", 0))
        self.rgb_codec = "jpeg" if "rgb_jpeg" in group else "raw"
        self._meta: pd.DataFrame | None = None
        self._fast: dict[str, Any] = {}

    def _array(self, name: str, i: int) -> np.ndarray:
        """Sample ``i`` of array ``name``: a direct shard read where possible, else Zarr."""
        if name not in self._fast:
            from leve.store.fastread import shard_reader

            self._fast[name] = shard_reader(Path(self.path) / self.name / name) if Path(self.path).is_dir() else None
        reader = self._fast[name]
        return reader.read(i) if reader is not None else np.asarray(self.group[name][i])

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_group"] = None
        state["_pid"] = None
        return state

    @property
    def group(self) -> zarr.Group:
        if self._group is None or self._pid != os.getpid():
            self._group = zarr.open_group(self.path, mode="r")[self.name]
            self._pid = os.getpid()
        return self._group

    def __len__(self) -> int:
        return self.length

    @property
    def meta(self) -> pd.DataFrame:
        """Per-sample metadata as a DataFrame (one row per sample)."""
        if self._meta is None:
            g = self.group["meta"] if "meta" in self.group else self.group
            cols = {k: np.asarray(g[k][:]) for k in sorted(g.array_keys()) if g[k].ndim == 1 and g[k].shape[0] == self.length}
            self._meta = pd.DataFrame(cols)
        return self._meta

    def size(self, i: int) -> tuple[int, int]:
        """True (height, width) of sample ``i`` (arrays may be padded to the largest size)."""
        m = self.meta
        if "height" in m and "width" in m:
            return int(m["height"].iat[i]), int(m["width"].iat[i])
        return tuple(self.group["depth"].shape[1:3])  # type: ignore[return-value]

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

    def rgb_bytes(self, i: int) -> bytes:
        """The stored source JPEG of sample ``i`` (``rgb_codec: jpeg`` only).

        Read as a one-element slice: Zarr's scalar read of variable-length bytes
        drops trailing NUL bytes.
        """
        return bytes(self.group["rgb_jpeg"][i : i + 1][0])

    def depth(self, i: int) -> np.ndarray:
        i = self._check(i)
        h, w = self.size(i)
        return self._array("depth", i)[:h, :w]

    def __getitem__(self, i: int) -> Sample:
        i = self._check(i)
        row = self.meta.iloc[i].to_dict() if len(self.meta.columns) else {}
        return Sample(i, self.rgb(i), self.depth(i), row)

    def iter_chunks(self, size: int = 64) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """Yield ``(start, rgb, depth)`` blocks of up to ``size`` samples, in order.

        Arrays come padded to the split's array shape; use :meth:`size` for true sizes.
        """
        for start in range(0, self.length, size):
            stop = min(start + size, self.length)
            if self.rgb_codec == "jpeg":
                rgb = np.stack([self.rgb(i) for i in range(start, stop)])
            else:
                rgb = np.asarray(self.group["rgb"][start:stop])
            yield start, rgb, np.asarray(self.group["depth"][start:stop])


class Store:
    """A dataset store: its attributes and splits."""

    def __init__(self, path: str | Path, require_complete: bool = True) -> None:
        self.path = str(path)
        try:
            self.root = zarr.open_group(self.path, mode="r")
        except FileNotFoundError as exc:
            raise LeveError(f"{self.path}: no store here (run `leve prepare` first)") from exc
        except Exception as exc:
            raise LeveError(f"{self.path}: not a readable Zarr store ({exc.__class__.__name__})") from exc
        self.attrs: dict[str, Any] = dict(self.root.attrs)
        if require_complete and not self.attrs.get("complete"):
            raise LeveError(f"{self.path}: store is incomplete (its build did not finish); rerun `leve prepare`")

    @property
    def splits(self) -> list[str]:
        order = {"train": 0, "val": 1, "test": 2}
        return sorted(self.root.group_keys(), key=lambda s: (order.get(s, 3), s))

    def split(self, name: str) -> Split:
        if name not in self.splits:
            raise LeveError(f"{self.path}: no split '{name}' (has: {', '.join(self.splits) or 'none'})")
        return Split(self.path, name)


def open_store(path: str | Path, require_complete: bool = True) -> Store:
    """Open a dataset store (local path or fsspec URL); refuses an incomplete one by default."""
    return Store(path, require_complete)


def open_split(path: str | Path, split: str) -> Split:
    """Open one split of a complete store: ``len(s)``, ``s[i]``, ``s.rgb(i)``, ``s.iter_chunks()``."""
    return open_store(path).split(split)


def disk_usage(path: str | Path) -> tuple[int, int]:
    """(bytes, files) under a local directory."""
    total, files = 0, 0
    for root, _, names in os.walk(path):
        for n in names:
            total += os.path.getsize(os.path.join(root, n))
            files += 1
    return total, files
