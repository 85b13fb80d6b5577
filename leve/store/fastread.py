"""Direct single-sample reads from local sharded Zarr v3 arrays.

Zarr's generic read path costs about a millisecond per call here, as much as
decoding the source JPEG, which defeats the point of storing raw pixels. The
arrays leve writes have one fixed layout: ``sharding_indexed`` with inner chunks
of one sample, inner codecs ``bytes`` + ``zstd`` or ``blosc``, and the shard
index (``offset, nbytes`` as little-endian uint64 per chunk, then a crc32c) at
the end of each shard file. For that layout on a local disk this module reads a
sample with one ``pread`` and one decompression (a ``variable_length_bytes``
array with inner codec ``vlen-bytes``, e.g. the source JPEGs: one ``pread``,
:meth:`ShardReader.read_bytes`); anything else returns ``None``
from :func:`shard_reader` and the caller uses Zarr. Tests compare every sample
against Zarr's own read.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np

EMPTY = np.uint64(2**64 - 1)
VLEN = "variable_length_bytes"  # read with ShardReader.read_bytes (e.g. a store's source JPEGs)


class ShardReader:
    """Reads sample ``i`` of one local sharded array without going through Zarr."""

    def __init__(self, array_dir: Path, meta: dict[str, Any]) -> None:
        sharding = meta["codecs"][0]["configuration"]
        self.dir = array_dir
        self.shape = tuple(meta["shape"])
        self.tail = tuple(sharding["chunk_shape"][1:])
        self.per_shard = int(meta["chunk_grid"]["configuration"]["chunk_shape"][0])
        self.dtype = np.dtype(meta["data_type"]).newbyteorder("<") if meta["data_type"] != VLEN else np.dtype("O")
        self.fill = meta["fill_value"]
        self.codec = _inner_codec(sharding["codecs"])
        self.suffix = "/".join("0" * 1 for _ in self.tail)
        self._files: dict[int, int] = {}
        self._index: dict[int, np.ndarray] = {}
        self._pid = os.getpid()

    def _fd(self, shard: int) -> int | None:
        if self._pid != os.getpid():  # after fork: reopen
            self._files, self._index, self._pid = {}, {}, os.getpid()
        if shard not in self._files:
            path = self.dir / "c" / str(shard) / self.suffix
            if not path.exists():
                return None
            fd = os.open(path, os.O_RDONLY)
            size = os.fstat(fd).st_size
            n = self.per_shard
            raw = os.pread(fd, 16 * n + 4, size - 16 * n - 4)
            self._index[shard] = np.frombuffer(raw[:-4], dtype="<u8").reshape(n, 2)
            self._files[shard] = fd
        return self._files[shard]

    def read(self, i: int, out: np.ndarray | None = None) -> np.ndarray:
        """Sample ``i``, decoded into ``out`` when given (C-contiguous, of the array's dtype and sample
        shape: a loader's batch buffer, with no copy) or into a new writable array."""
        shard, j = divmod(i, self.per_shard)
        fd = self._fd(shard)
        if fd is None or self._index[shard][j, 0] == EMPTY:
            if out is None:
                return np.full(self.tail, self.fill, dtype=self.dtype)
            out.fill(self.fill)
            return out
        offset, nbytes = (int(v) for v in self._index[shard][j])
        data = os.pread(fd, nbytes, offset)
        if self.codec is None:
            raw = np.frombuffer(data, dtype=self.dtype).reshape(self.tail)
            if out is None:
                return raw
            np.copyto(out, raw)
            return out
        if out is None:
            out = np.empty(self.tail, dtype=self.dtype)  # decoded in place: writable, no copy needed by a loader
        self.codec.decode(data, out=out)
        return out

    def read_bytes(self, i: int) -> bytes:
        """Element ``i`` of a variable-length bytes array (inner codec ``vlen-bytes``: a uint32
        count, then per element a uint32 length and the bytes; here one element per chunk)."""
        shard, j = divmod(i, self.per_shard)
        fd = self._fd(shard)
        if fd is None or self._index[shard][j, 0] == EMPTY:
            return b""
        offset, nbytes = (int(v) for v in self._index[shard][j])
        data = os.pread(fd, nbytes, offset)
        count, length = np.frombuffer(data[:8], dtype="<u4")
        if count != 1 or 8 + int(length) > len(data):
            raise ValueError(f"{self.dir}: sample {i}: not a one-element vlen-bytes chunk")
        return data[8 : 8 + int(length)]

    def close(self) -> None:
        for fd in self._files.values():
            os.close(fd)
        self._files, self._index = {}, {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_files": {}, "_index": {}}


def _inner_codec(codecs: list[dict[str, Any]]) -> Any:
    names = [c["name"] for c in codecs]
    if names == ["bytes"]:
        return None
    if names == ["bytes", "zstd"]:
        return numcodecs.Zstd()
    if names == ["bytes", "blosc"]:
        return numcodecs.Blosc()
    if names == ["vlen-bytes"]:
        return None
    raise ValueError(f"unsupported codecs {names}")


def shard_reader(array_dir: str | Path) -> ShardReader | None:
    """A fast reader for a local array in leve's layout, or ``None`` where Zarr must be used."""
    array_dir = Path(array_dir)
    meta_path = array_dir / "zarr.json"
    if "://" in str(array_dir) or not meta_path.is_file():
        return None
    meta = json.loads(meta_path.read_text())
    try:
        codecs = meta["codecs"]
        sharding = codecs[0]["configuration"]
        ok = (
            len(codecs) == 1
            and codecs[0]["name"] == "sharding_indexed"
            and sharding.get("index_location", "end") == "end"
            and [c["name"] for c in sharding["index_codecs"]] == ["bytes", "crc32c"]
            and sharding["chunk_shape"][0] == 1
            and list(sharding["chunk_shape"][1:]) == list(meta["shape"][1:])
            and meta["chunk_key_encoding"]["name"] == "default"
            and meta["chunk_key_encoding"]["configuration"].get("separator", "/") == "/"
            and (meta["data_type"] == VLEN and [c["name"] for c in sharding["codecs"]] == ["vlen-bytes"]
                 or meta["data_type"] != VLEN and np.dtype(meta["data_type"]).kind in "uif")
        )
        if ok:
            _inner_codec(sharding["codecs"])
            for c in sharding["codecs"]:
                if c["name"] == "bytes" and c.get("configuration", {}).get("endian", "little") != "little":
                    return None
    except (KeyError, IndexError, TypeError, ValueError):
        return None
    return ShardReader(array_dir, meta) if ok else None
