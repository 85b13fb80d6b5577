"""A bounded local read-through cache for stores at URLs (``s3://...``).

A chunk file (a shard) of a bucket store is fetched whole on first use, kept in a local folder and
every later read of it (a sample, its index) is served from there. The folder holds at most
``max_bytes``: after each fetch the least recently used files go until the total fits again (a
shard larger than the bound is read through and not kept; opening a folder filled under a larger
bound first evicts down to this one). The folder is named by the store's URL
and its fingerprint (:func:`cache_dir`), so a republished store never meets the cached bytes of
another build. Nothing cached is trusted more than the bucket: each chunk's crc32c is checked as it
is decoded, as for any read. Processes (DataLoader workers) share the folder: files appear by an
atomic rename and a file another process evicts is fetched again; the fast path
(:class:`leve.store.cachedread.CachedShardReader`) fetches each shard once across them (a lock per shard).

Two readers use the folder: Zarr, through :class:`ReadThroughCache` (a Zarr store wrapping the bucket's),
and, for arrays in leve's sharded layout, :class:`leve.store.cachedread.CachedShardReader`: the local-disk fast path
(:class:`leve.store.fastread.ShardReader`, one ``pread`` per sample, index and chunk crc32c checked) on
the cached shard files, fetching a missing one whole from the bucket first. With the cache warm, a
bucket store is read as fast as a local one.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from zarr.abc.store import ByteRequest, OffsetByteRequest, RangeByteRequest, SuffixByteRequest
from zarr.core.buffer import Buffer, BufferPrototype
from zarr.storage import WrapperStore

CACHE_ENV = "LEVE_READ_CACHE"  # the folder of the read caches (default ~/.cache/leve/reads)


def cache_dir(url: str, fingerprint: str) -> Path:
    """The local folder that caches the store at ``url`` built as ``fingerprint``."""
    base = Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "leve" / "reads")
    return base / hashlib.sha256(f"{url}\n{fingerprint}".encode()).hexdigest()[:20]


def _slice(data: bytes, byte_range: ByteRequest | None) -> bytes:
    if byte_range is None:
        return data
    if isinstance(byte_range, RangeByteRequest):
        return data[byte_range.start : byte_range.end]
    if isinstance(byte_range, OffsetByteRequest):
        return data[byte_range.offset :]
    if isinstance(byte_range, SuffixByteRequest):
        return data[-byte_range.suffix :] if byte_range.suffix else b""
    raise TypeError(f"unexpected byte range {byte_range!r}")


class ReadThroughCache(WrapperStore[Any]):
    """Serves the chunk files (keys matching ``cached``) of the wrapped store from ``folder``, at most
    ``max_bytes`` of them, least recently used evicted first; everything else is read through."""

    def __init__(self, store: Any, folder: Path, max_bytes: int, cached: Any) -> None:
        super().__init__(store)
        self.folder = Path(folder)
        self.max_bytes = int(max_bytes)
        self.cached = cached  # a compiled pattern of the keys to cache
        if self.folder.is_dir():  # a folder filled under a larger bound is brought within this one
            evict(self.folder, self.max_bytes, keep=None)

    def _file(self, key: str) -> Path:
        return cached_file(self.folder, key)

    async def get(self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None) -> Buffer | None:
        if not self.cached.search(key):
            return await self._store.get(key, prototype, byte_range)
        path = self._file(key)
        try:
            data = path.read_bytes()
            os.utime(path)  # recently used
        except FileNotFoundError:
            buf = await self._store.get(key, prototype)
            if buf is None:
                return None
            data = buf.to_bytes()
            if len(data) <= self.max_bytes:
                keep(self.folder, self.max_bytes, path, data)
        return prototype.buffer.from_bytes(_slice(data, byte_range))

    async def getsize(self, key: str) -> int:
        path = self._file(key)
        try:
            return path.stat().st_size
        except FileNotFoundError:
            return int(await self._store.getsize(key))

    async def get_partial_values(self, prototype: BufferPrototype,
                                 key_ranges: Iterable[tuple[str, ByteRequest | None]]) -> list[Buffer | None]:
        return [await self.get(key, prototype, byte_range) for key, byte_range in key_ranges]


def cached_file(folder: Path, key: str) -> Path:
    """Where the chunk file ``key`` (relative to the store's root) is kept in ``folder``."""
    return folder / key.replace("/", "%")


def keep(folder: Path, max_bytes: int, path: Path, data: bytes) -> bool:
    """Store ``data`` at ``path`` in ``folder`` (atomic rename), then evict the least recently used files beyond
    ``max_bytes``; False when the disk refused it (full or read-only: the caller reads through)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{uuid.uuid4().hex}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, path)
        evict(folder, max_bytes, keep=path)
    except OSError:
        return False
    return True


def evict(folder: Path, max_bytes: int, keep: Path | None) -> None:
    """Remove the least recently used files of ``folder`` (never ``keep``) until it holds at most ``max_bytes``."""
    files = []
    for entry in os.scandir(folder):
        try:
            st = entry.stat()
        except FileNotFoundError:  # evicted by another process
            continue
        files.append((st.st_mtime_ns, entry.path, st.st_size))
    total = sum(size for _, _, size in files)
    for _, name, size in sorted(files):
        if total <= max_bytes:
            break
        if keep is not None and name == str(keep):
            continue
        try:
            os.remove(name)
        except FileNotFoundError:
            pass
        total -= size
