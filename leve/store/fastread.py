"""Direct single-sample reads from local sharded Zarr v3 arrays.

Zarr's generic read path costs about a millisecond per call here, as much as
decoding the source JPEG, which defeats the point of storing raw pixels. The
arrays leve writes have one fixed layout: ``sharding_indexed`` with inner chunks
of one sample, inner codecs ``bytes`` + ``zstd`` or ``blosc``, and the shard
index (``offset, nbytes`` as little-endian uint64 per chunk, then a crc32c) at
the end of each shard file; store format 2 ends the inner codecs with ``crc32c``.
For that layout on a local disk this module reads a sample with one ``pread``, one
crc32c and one decompression (a ``variable_length_bytes``
array with inner codec ``vlen-bytes``, e.g. the source JPEGs: one ``pread``,
:meth:`ShardReader.read_bytes`); anything else returns ``None``
from :func:`shard_reader` and the caller uses Zarr. Tests compare every sample
against Zarr's own read.

Nothing read is trusted: a missing shard, a shard shorter than its index, an index
whose crc32c fails or that points past the end of the file (checked before anything
is allocated), a sample's chunk missing from its shard and a chunk whose crc32c fails
are each one :class:`~leve.errors.LeveError` line naming the store, the array, the
sample and the chunk file (:func:`leve.store.integrity.damaged`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np

from leve.errors import LeveError
from leve.store.integrity import CHANGED, CRC, MISSING, PAST_END, check_crc, crc32c, damaged

EMPTY = np.uint64(2**64 - 1)  # an index entry without a chunk (only padding past an array's end, in format 2)
VLEN = "variable_length_bytes"  # read with ShardReader.read_bytes (e.g. a store's source JPEGs)


class ShardReader:
    """Reads sample ``i`` of one local sharded array without going through Zarr, checking every byte.

    ``store``: the store's path as the user named it (for error lines; default the array folder's
    grandparent). ``verify`` False skips the chunks' crc32c (only ``leve bench train`` does, to measure
    what checking costs); the index and its bounds are always checked."""

    def __init__(self, array_dir: Path, meta: dict[str, Any], store: str | Path | None = None) -> None:
        sharding = meta["codecs"][0]["configuration"]
        self.dir = array_dir
        self.store = str(store) if store is not None else str(array_dir.parent.parent)
        self.array = f"{array_dir.parent.name}/{array_dir.name}"
        self.shape = tuple(meta["shape"])
        self.length = int(self.shape[0])
        self.tail = tuple(sharding["chunk_shape"][1:])
        self.per_shard = int(meta["chunk_grid"]["configuration"]["chunk_shape"][0])
        self.dtype = np.dtype(meta["data_type"]).newbyteorder("<") if meta["data_type"] != VLEN else np.dtype("O")
        self.fill = meta["fill_value"]
        self.codec = _inner_codec(sharding["codecs"])
        self.suffix = "/".join("0" * 1 for _ in self.tail)
        self.verify = True
        self._files: dict[int, int] = {}
        self._index: dict[int, np.ndarray] = {}
        self._pid = os.getpid()

    def _key(self, shard: int) -> str:
        return f"c/{shard}/{self.suffix}" if self.suffix else f"c/{shard}"

    def _open(self, shard: int) -> int:
        """A descriptor of shard file ``shard`` (a bucket store's reader takes it from its local cache)."""
        return os.open(self.dir / self._key(shard), os.O_RDONLY)

    def _fail(self, problem: str, i: int, shard: int) -> LeveError:
        return damaged(self.store, self.array, problem, i, self._key(shard))

    def _fd(self, shard: int, i: int) -> int:
        """The open shard file, its index read and checked (crc32c, bounds) on first use in this process."""
        if self._pid != os.getpid():  # after fork: reopen
            self._files, self._index, self._pid = {}, {}, os.getpid()
        if shard not in self._files:
            try:
                fd = self._open(shard)
            except FileNotFoundError:
                raise self._fail(MISSING, i, shard) from None
            except OSError as exc:
                raise self._fail(f"cannot read ({exc.strerror or exc})", i, shard) from exc
            try:
                self._index[shard] = self._read_index(fd, shard, i)
            except BaseException:
                os.close(fd)
                raise
            self._files[shard] = fd
        return self._files[shard]

    def _read_index(self, fd: int, shard: int, i: int) -> np.ndarray:
        n = self.per_shard
        index_bytes = 16 * n + 4
        size = os.fstat(fd).st_size
        if size < index_bytes:
            raise self._fail(f"truncated: {size} bytes, shorter than its {index_bytes}-byte index", i, shard)
        raw = os.pread(fd, index_bytes, size - index_bytes)
        if len(raw) != index_bytes or check_crc(raw) is None:
            raise self._fail("the shard index fails its checksum (damaged or truncated file)", i, shard)
        index = np.frombuffer(raw[:-4], dtype="<u8").reshape(n, 2).astype(np.int64)  # EMPTY becomes -1
        end = size - index_bytes
        offsets, nbytes = index[:, 0], index[:, 1]
        bad = (offsets != -1) & ((nbytes < 4) | (offsets < 0) | (offsets > end) | (nbytes > end - offsets))
        if bad.any():
            j = int(np.argmax(bad))
            raise self._fail(PAST_END, shard * n + j, shard)
        return index

    def _chunk(self, i: int) -> tuple[bytes, np.ndarray]:
        """Sample ``i``'s stored chunk and its payload (the bytes before the crc32c, a view), checked."""
        if not 0 <= i < self.length:
            raise IndexError(f"{self.dir}: sample {i} out of range (length {self.length})")
        shard, j = divmod(i, self.per_shard)
        fd = self._fd(shard, i)
        offset, nbytes = (int(v) for v in self._index[shard][j])
        if offset == -1:
            raise self._fail("chunk missing from its shard (it was written)", i, shard)
        data = os.pread(fd, nbytes, offset)
        if len(data) != nbytes:
            raise self._fail(f"truncated: the chunk ends {nbytes - len(data)} byte(s) past the end of the file", i, shard)
        view = np.frombuffer(data, dtype=np.uint8)
        if self.verify and crc32c(view[:-4]) != int.from_bytes(data[-4:], "little"):
            raise self._fail(CHANGED, i, shard)
        return data, view[:-4]

    def read(self, i: int, out: np.ndarray | None = None) -> np.ndarray:
        """Sample ``i``, decoded into ``out`` when given (C-contiguous, of the array's dtype and sample
        shape: a loader's batch buffer, with no copy) or into a new writable array."""
        _, payload = self._chunk(i)
        try:
            if self.codec is None:
                raw = payload.view(self.dtype).reshape(self.tail)
                if out is None:
                    return raw.copy()
                np.copyto(out, raw)
                return out
            if out is None:
                out = np.empty(self.tail, dtype=self.dtype)  # decoded in place: writable, no copy needed by a loader
            self.codec.decode(payload, out=out)
        except (ValueError, RuntimeError, TypeError) as exc:  # checksum fine, yet not what the codec wrote
            shard = i // self.per_shard
            raise self._fail(f"cannot decode ({exc.__class__.__name__}: {exc})", i, shard) from exc
        return out

    def read_bytes(self, i: int) -> bytes:
        """Element ``i`` of a variable-length bytes array (inner codec ``vlen-bytes``: a uint32
        count, then per element a uint32 length and the bytes; here one element per chunk)."""
        data, payload = self._chunk(i)
        count, length = (int(v) for v in np.frombuffer(data[:8], dtype="<u4")) if len(payload) >= 8 else (0, 0)
        if count != 1 or 8 + length > len(payload):
            raise self._fail("not a one-element vlen-bytes chunk", i, i // self.per_shard)
        return data[8 : 8 + length]

    def close(self) -> None:
        for fd in self._files.values():
            os.close(fd)
        self._files, self._index = {}, {}

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_files": {}, "_index": {}}


def _inner_codec(codecs: list[dict[str, Any]]) -> Any:
    """The decompressor of inner codecs ending in ``crc32c`` (None: raw bytes); anything else raises."""
    names = [c["name"] for c in codecs]
    if not names or names[-1] != CRC:
        raise ValueError(f"codecs {names} carry no checksum")
    names = names[:-1]
    if names in (["bytes"], ["vlen-bytes"]):
        return None
    if names == ["bytes", "zstd"]:
        return numcodecs.Zstd()
    if names == ["bytes", "blosc"]:
        return numcodecs.Blosc()
    raise ValueError(f"unsupported codecs {names}")


def shard_reader(array_dir: str | Path, store: str | Path | None = None) -> ShardReader | None:
    """A fast reader for a local array in leve's layout (store format 2), or ``None`` where Zarr must be used
    (not local, not sharded, no zarr.json: Zarr's read then says why). A ``zarr.json`` that is not JSON is refused."""
    array_dir = Path(array_dir)
    meta_path = array_dir / "zarr.json"
    if "://" in str(array_dir) or not meta_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError) as exc:
        where = str(store) if store is not None else str(array_dir.parent.parent)
        raise damaged(where, f"{array_dir.parent.name}/{array_dir.name}",
                      f"not valid JSON (truncated or damaged: {exc.__class__.__name__})", file="zarr.json") from exc
    return ShardReader(array_dir, meta, store) if fits(meta) else None


def fits(meta: dict[str, Any]) -> bool:
    """Whether an array's ``zarr.json`` (parsed) is in the layout :class:`ShardReader` reads."""
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
            and (meta["data_type"] == VLEN and [c["name"] for c in sharding["codecs"]] == ["vlen-bytes", CRC]
                 or meta["data_type"] != VLEN and np.dtype(meta["data_type"]).kind in "uif")
        )
        if ok:
            _inner_codec(sharding["codecs"])
            for c in sharding["codecs"]:
                if c["name"] == "bytes" and c.get("configuration", {}).get("endian", "little") != "little":
                    return False
    except (KeyError, IndexError, TypeError, ValueError, AttributeError):
        return False
    return bool(ok)
