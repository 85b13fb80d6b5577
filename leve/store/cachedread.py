"""The local-disk fast path on a bucket store's read-through cache (:mod:`leve.store.readcache`).

:class:`CachedShardReader` is :class:`leve.store.fastread.ShardReader` (one ``pread`` per sample, the shard index
and every chunk's crc32c checked) reading the cached shard files; a shard missing from the cache folder is
fetched whole from the bucket first. With the cache warm, a bucket store is read as fast as a local one.
"""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path
from typing import Any

from leve.store.fastread import ShardReader, fits
from leve.store.integrity import damaged
from leve.store.readcache import cached_file, keep
from leve.store.remote import filesystem, remote_error


class CachedShardReader(ShardReader):
    """:class:`~leve.store.fastread.ShardReader` on a bucket store's cached shard files: a shard missing from the
    cache folder is fetched whole from the bucket (and kept, within the bound) before it is opened; one larger than
    the bound is read from a private temporary file. Every index and chunk is checked as for a local store."""

    def __init__(self, url: str, split: str, array: str, meta: dict[str, Any], cache: tuple[Path, int]) -> None:
        super().__init__(Path(split) / array, meta, url)
        self.url, self.prefix = url.rstrip("/"), f"{split}/{array}"
        self.folder, self.max_bytes = Path(cache[0]), int(cache[1])

    def _open(self, shard: int) -> int:
        key = f"{self.prefix}/{self._key(shard)}"
        path = cached_file(self.folder, key)
        try:
            fd = os.open(path, os.O_RDONLY)
            os.utime(path)  # recently used
            return fd
        except FileNotFoundError:
            pass
        fs, root = filesystem(self.url)
        try:
            data = fs.cat_file(f"{root.rstrip('/')}/{key}")
        except FileNotFoundError:
            raise
        except Exception as exc:
            raise remote_error(self.url, exc) from exc
        if len(data) <= self.max_bytes and keep(self.folder, self.max_bytes, path, data):
            try:
                return os.open(path, os.O_RDONLY)
            except FileNotFoundError:  # evicted at once by another process: read through below
                pass
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / f".{uuid.uuid4().hex}.read"
        tmp.write_bytes(data)
        try:
            return os.open(tmp, os.O_RDONLY)
        finally:
            tmp.unlink()  # the descriptor keeps the bytes until it is closed


def cached_shard_reader(url: str, split: str, array: str, cache: tuple[Path, int]) -> CachedShardReader | None:
    """The fast reader of array ``split/array`` of the bucket store at ``url`` through its read-through cache, or
    None where the array is not in leve's sharded layout (Zarr reads it then)."""
    fs, root = filesystem(url)
    key = f"{split}/{array}/zarr.json"
    try:
        meta = json.loads(fs.cat_file(f"{root.rstrip('/')}/{key}"))
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise damaged(url, f"{split}/{array}", f"not valid JSON (truncated or damaged: {exc.__class__.__name__})",
                      file="zarr.json") from exc
    except Exception as exc:
        raise remote_error(url, exc) from exc
    return CachedShardReader(url, split, array, meta, cache) if isinstance(meta, dict) and fits(meta) else None

