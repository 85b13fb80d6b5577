"""Every byte of a store or teacher cache is checked (store format 2).

- Every chunk carries a crc32c: Zarr v3's ``crc32c`` codec, last of each array's inner codecs (after
  the compressor: it covers the bytes on disk), and the sharding codec's index carries its own.
- Every chunk of a sample is written, also one equal to the fill value (``write_empty_chunks``): a
  missing chunk is never legal. The only empty index entries are those past the array's end in its
  last shard (padding of the shard, no sample).
- At publish each split records what was written (attribute ``written``: array path -> number of chunk
  files), so a deleted array folder or chunk file is an error, never a fill value or an "images-only"
  split.

Readers: :mod:`leve.store.fastread` checks the index and each chunk's crc32c itself; the Zarr path
opens stores through :class:`WrittenChunks`, which refuses a missing chunk and a damaged ``zarr.json``,
and its crc32c codec refuses damaged bytes. Either way the failure is one :class:`LeveError` line
(:func:`damaged`) naming the store, the array, the chunk and what to do. :func:`verify_store` checks a
whole store (``leve verify``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np
import zarr
from zarr.abc.store import ByteRequest, RangeByteRequest
from zarr.core.buffer import Buffer, BufferPrototype
from zarr.storage import FsspecStore, LocalStore, WrapperStore

from leve.errors import LeveError
from leve.store.remote import MANIFEST, copy_problems, location, read_manifest, url_of

CRC = "crc32c"
EMPTY = 2**64 - 1  # an index entry with no chunk (sharding codec)
WRITTEN = "written"  # split attribute: array path -> number of chunk files written at publish
CHANGED = "checksum mismatch: its bytes changed on disk (damaged or truncated)"
MISSING = "file missing (it was written when the store was published)"
PAST_END = "the shard index points past the end of the file (truncated?)"
_CHUNK_KEY = re.compile(r"(^|/)c(/\d+)+$")


def crc32c(data: Any) -> int:
    """CRC-32C (Castagnoli) of a bytes-like object or a contiguous uint8 array (google-crc32c's C code)."""
    return int(google_crc32c.value(data))


def check_crc(chunk: bytes) -> np.ndarray | None:
    """The payload of ``chunk`` (its bytes before the trailing little-endian crc32c, a view) when the
    checksum matches, else None."""
    if len(chunk) < 4:
        return None
    view = np.frombuffer(chunk, dtype=np.uint8)
    if crc32c(view[:-4]) != int.from_bytes(chunk[-4:], "little"):
        return None
    return view[:-4]


# --------------------------------------------------------------------------- errors


class StoreDamage(Exception):
    """Raised inside Zarr by :class:`WrittenChunks` (converted to a :class:`LeveError` at the read boundary)."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key}: {problem}")
        self.key, self.problem = key, problem


def rebuild_hint(store: str | Path, splits: str | Iterable[str] | None = None) -> str:
    """The command that rebuilds ``store`` (a dataset store or a teacher cache, ``splits`` of it), from its
    root attributes."""
    attrs = _root_attributes(str(store))
    dataset = attrs.get("dataset") or "<dataset>"
    if attrs.get("kind") == "teacher-cache" or (not attrs and Path(store).parent.name == "teacher"):
        names = [splits] if isinstance(splits, str) else sorted(set(splits or [])) or ["<split>"]
        return f"`leve teacher-cache --dataset {dataset} {' '.join(f'--split {n}' for n in names)} --force`"
    return f"`leve prepare {dataset} --force`"


def _root_attributes(store: str) -> dict[str, Any]:
    """The root group's attributes of a local store or an fsspec URL; {} when unreadable."""
    try:
        if "://" in store:
            import fsspec

            with fsspec.open(f"{store.rstrip('/')}/zarr.json", "rb") as fh:
                text = fh.read()
        else:
            text = (Path(store) / "zarr.json").read_bytes()
        attrs = json.loads(text).get("attributes", {})
    except Exception:  # damaged, missing or unreachable: a generic hint
        return {}
    return attrs if isinstance(attrs, dict) else {}


def advice(store: str | Path, splits: str | Iterable[str] | None = None) -> str:
    return f"run `leve verify {store}`, then rebuild it with {rebuild_hint(store, splits)}"


def where(array: str, sample: int | None = None, file: str | None = None) -> str:
    """``split/array sample i (file c/0/0/0)``: the part of a store a problem is in."""
    text = array + (f" sample {sample}" if sample is not None else "")
    return f"{text} (file {file})" if text and file else text or file or "."


def damaged(store: str | Path, array: str, problem: str, sample: int | None = None, file: str | None = None) -> LeveError:
    """One line: the store, the array (``split/array``), the sample and file, the problem, what to do."""
    part = where(array, sample, file)
    head = f"{store}: {problem}" if part == "." else f"{store}: {part}: {problem}"
    return LeveError(f"{head}; {advice(store, array.split('/', 1)[0] or None)}")


def read_error(store: str | Path, array: str, exc: BaseException, sample: int | None = None) -> LeveError:
    """The one line for an exception met while Zarr read ``array`` (``split/array``) of ``store``."""
    if isinstance(exc, StoreDamage):
        if exc.key.startswith(array + "/"):
            return damaged(store, array, exc.problem, sample, exc.key[len(array) + 1 :])
        head, _, name = exc.key.rpartition("/")
        return damaged(store, head, exc.problem, None, name)
    return damaged(store, array, describe(exc), sample)


@contextlib.contextmanager
def reading(store: str | Path, array: str, sample: int | None = None) -> Iterator[None]:
    """Zarr's, numcodecs' and blosc's exceptions while reading ``array`` (``split/array``) of ``store``
    become one line naming it (:func:`read_error`); leve's own errors pass as they are."""
    try:
        yield
    except LeveError:
        raise
    except Exception as exc:
        raise read_error(store, array, exc, sample) from exc


def describe(exc: BaseException) -> str:
    """What a Zarr / numcodecs / blosc exception met while reading a store means, in a few words."""
    if isinstance(exc, StoreDamage):
        return f"{exc.key}: {exc.problem}"
    text = str(exc).splitlines()[0][:160] if str(exc) else ""
    if isinstance(exc, ValueError) and "checksum" in text.lower():
        return CHANGED
    if isinstance(exc, json.JSONDecodeError):
        return f"a zarr.json is not valid JSON (truncated or damaged: {text})"
    if isinstance(exc, KeyError):
        return f"{text or 'an array'} is missing (its folder or zarr.json was deleted)"
    return f"unreadable ({exc.__class__.__name__}: {text})"


# --------------------------------------------------------------------------- the Zarr path


class WrittenChunks(WrapperStore[Any]):
    """A read-only store that refuses to invent data: a missing chunk key raises (Zarr would return
    the fill value; in format 2 every chunk was written), and so does a ``zarr.json`` that is not JSON
    (Zarr's own error names no file)."""

    def __init__(self, store: Any) -> None:
        super().__init__(store)
        self._sizes: dict[str, int] = {}

    async def get(self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None) -> Buffer | None:
        if isinstance(byte_range, RangeByteRequest) and _CHUNK_KEY.search(key):
            # a chunk inside a shard, where its index says: past the end of the file (a damaged or truncated
            # shard) it is refused before the read allocates what the index claims
            if key not in self._sizes:  # one size request per shard (a HEAD on object storage)
                try:
                    self._sizes[key] = await self._store.getsize(key)
                except FileNotFoundError:
                    raise StoreDamage(key, MISSING) from None
            if byte_range.end > self._sizes[key] or byte_range.start < 0:
                raise StoreDamage(key, PAST_END)
        buf = await self._store.get(key, prototype, byte_range)
        if buf is None:
            if _CHUNK_KEY.search(key):
                raise StoreDamage(key, MISSING)
            return None
        if key.endswith("zarr.json") and byte_range is None:
            try:
                json.loads(buf.to_bytes())
            except ValueError:
                raise StoreDamage(key, "not valid JSON (truncated or damaged)") from None
        return buf

    async def get_partial_values(self, prototype: BufferPrototype,
                                 key_ranges: Iterable[tuple[str, ByteRequest | None]]) -> list[Buffer | None]:
        key_ranges = list(key_ranges)
        values = await self._store.get_partial_values(prototype, key_ranges)
        for (key, _), value in zip(key_ranges, values):
            if value is None and _CHUNK_KEY.search(key):
                raise StoreDamage(key, MISSING)
        return values


def open_group(path: str | Path, cache: tuple[Path, int] | None = None) -> zarr.Group:
    """The root group of the store at ``path`` (local folder or fsspec URL), read-only, through
    :class:`WrittenChunks`. A missing store raises FileNotFoundError, as ``zarr.open_group`` does.
    ``cache`` (folder, bytes): a URL's chunk files are read through a bounded local cache
    (:class:`leve.store.readcache.ReadThroughCache`)."""
    path = str(path)
    base: Any = FsspecStore.from_url(path, read_only=True) if "://" in path else LocalStore(path, read_only=True)
    if cache is not None and "://" in path and cache[1] > 0:
        from leve.store.readcache import ReadThroughCache

        base = ReadThroughCache(base, cache[0], cache[1], _CHUNK_KEY)
    return zarr.open_group(WrittenChunks(base), mode="r")


# --------------------------------------------------------------------------- a whole store


@dataclass
class Bad:
    """One damaged part of a store: the array (``split/array``), the chunk file, the sample, the problem."""

    array: str
    chunk: str
    problem: str
    sample: int | None = None

    def line(self) -> str:
        return f"{where(self.array, self.sample, self.chunk)}: {self.problem}"


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


class Files:
    """The files of a store, a local folder or an fsspec URL (fsspec's own local filesystem for a path)."""

    def __init__(self, path: str | Path) -> None:
        from fsspec.core import url_to_fs

        self.fs, self.root = url_to_fs(str(path))

    def read(self, rel: str) -> bytes:
        """The bytes of ``rel`` (``split/array/c/0/0``); FileNotFoundError when it is not there."""
        return bytes(self.fs.cat_file(f"{self.root}/{rel}"))

    def json(self, rel: str) -> dict[str, Any]:
        return dict(json.loads(self.read(rel)))

    def groups(self) -> list[str]:
        """The sub-folders that hold a ``zarr.json`` (a store's splits), sorted."""
        try:
            entries = self.fs.ls(self.root, detail=True)
        except FileNotFoundError:
            return []
        names = [e["name"].rstrip("/").rsplit("/", 1)[-1] for e in entries if e.get("type") == "directory"]
        return sorted(n for n in names if self.fs.exists(f"{self.root}/{n}/zarr.json"))


def chunk_keys(meta: dict[str, Any], files: int) -> list[str]:
    """The first ``files`` chunk keys (default encoding, ``/``) of a 1-D chunked array: ``c/k/0/...``."""
    zeros = "/0" * (len(meta["shape"]) - 1)
    return [f"c/{k}{zeros}" for k in range(files)]


def check_shard(blob: bytes, per_shard: int, rows: int) -> Iterator[tuple[int | None, str]]:
    """Problems of one shard file (index at the end, ``per_shard`` one-sample chunks of which the first
    ``rows`` hold samples): ``(row or None, problem)``."""
    index_bytes = 16 * per_shard + 4
    if len(blob) < index_bytes:
        yield None, f"truncated: {len(blob)} bytes, shorter than its {index_bytes}-byte index"
        return
    raw = blob[-index_bytes:]
    if check_crc(raw) is None:
        yield None, "the shard index fails its checksum (damaged or truncated file)"
        return
    index = np.frombuffer(raw[:-4], dtype="<u8").reshape(per_shard, 2)
    end = len(blob) - index_bytes
    for j in range(per_shard):
        offset, nbytes = int(index[j, 0]), int(index[j, 1])
        if offset == EMPTY:
            if j < rows:
                yield j, "chunk missing from its shard (it was written)"
            continue
        if nbytes < 4 or offset > end or nbytes > end - offset:
            yield j, PAST_END
        elif check_crc(blob[offset : offset + nbytes]) is None:
            yield j, CHANGED


def _is_sharded(meta: dict[str, Any]) -> bool:
    return meta["codecs"][0]["name"] == "sharding_indexed"


def _checksummed(meta: dict[str, Any]) -> bool:
    if _is_sharded(meta):
        conf = meta["codecs"][0]["configuration"]
        return conf["codecs"][-1]["name"] == CRC and [c["name"] for c in conf["index_codecs"]][-1] == CRC
    return meta["codecs"][-1]["name"] == CRC


def array_work(meta: dict[str, Any], files: int) -> int:
    """Samples (chunks of one sample) an array of ``files`` chunk files holds, for a progress bar."""
    return int(meta["shape"][0]) if meta["shape"] else files


def verify_array(store: Files, array: str, files: int, advance: Callable[[int], None]) -> tuple[list[Bad], int]:
    """Check every chunk file of ``array`` (``split/array``; ``files`` written at publish): the problems and
    the bytes read."""
    try:
        meta = store.json(f"{array}/zarr.json")
    except FileNotFoundError:
        return [Bad(array, "zarr.json", "array missing (its folder or zarr.json was deleted)")], 0
    except (OSError, ValueError) as exc:
        return [Bad(array, "zarr.json", f"unreadable metadata ({exc.__class__.__name__}: truncated or damaged)")], 0
    try:
        sharded, summed = _is_sharded(meta), _checksummed(meta)
        per_shard = int(meta["chunk_grid"]["configuration"]["chunk_shape"][0]) if meta["shape"] else 1
        length = int(meta["shape"][0]) if meta["shape"] else 1
    except (KeyError, IndexError, TypeError, ValueError):
        return [Bad(array, "zarr.json", "not the metadata of a leve array")], 0
    if not summed:
        return [Bad(array, "zarr.json", "its chunks carry no checksum (an older layout)")], 0
    bad: list[Bad] = []
    nbytes = 0
    expected = -(-length // per_shard) if length else 0
    if files != expected:
        bad.append(Bad(array, "zarr.json", f"{files} chunk file(s) were written, its shape needs {expected}"))
    for k, key in enumerate(chunk_keys(meta, files)):
        rows = min(per_shard, length - k * per_shard)
        try:
            blob = store.read(f"{array}/{key}")
        except FileNotFoundError:
            first = k * per_shard
            bad.append(Bad(array, key, f"file missing (samples {first}-{first + rows - 1}; it was written when the "
                                       f"store was published)"))
            advance(rows)
            continue
        except OSError as exc:
            bad.append(Bad(array, key, f"unreadable ({exc.strerror or exc})"))
            advance(rows)
            continue
        nbytes += len(blob)
        if sharded:
            inner = int(meta["codecs"][0]["configuration"]["chunk_shape"][0])
            for row, problem in check_shard(blob, per_shard // inner, rows):
                sample = None if row is None else k * per_shard + row
                bad.append(Bad(array, key, problem, sample))
        elif check_crc(blob) is None:
            bad.append(Bad(array, key, CHANGED))
        advance(rows)
    return bad, nbytes


def store_arrays(path: str, store: Files) -> tuple[str, list[tuple[str, int]], list[Bad]]:
    """What a whole store holds: its kind (``dataset`` | ``teacher-cache``), every array (``split/array``,
    chunk files written) from the splits' records, and the metadata already found damaged."""
    bad: list[Bad] = []
    try:
        attrs = store.json("zarr.json").get("attributes", {})
    except FileNotFoundError:
        raise LeveError(f"{path}: no store here (no zarr.json)") from None
    except (OSError, ValueError) as exc:
        return "unknown", [], [Bad("", "zarr.json", f"unreadable metadata ({exc.__class__.__name__}: truncated or damaged)")]
    kind = "teacher-cache" if attrs.get("kind") == "teacher-cache" else "dataset"
    if not attrs.get("complete"):
        bad.append(Bad("", "zarr.json", "the store is incomplete (its build did not finish)"))
    arrays: list[tuple[str, int]] = []
    splits = store.groups()
    if not splits:
        raise LeveError(f"{path}: no splits in this store")
    for split in splits:
        try:
            sattrs = store.json(f"{split}/zarr.json").get("attributes", {})
        except (OSError, ValueError) as exc:
            bad.append(Bad(split, f"{split}/zarr.json", f"unreadable metadata ({exc.__class__.__name__}: truncated or damaged)"))
            continue
        written = sattrs.get(WRITTEN)
        if not isinstance(written, dict):
            raise LeveError(f"{path}/{split}: records no written chunks (written by an older leve, before chunk "
                            f"checksums); rebuild it with {rebuild_hint(path, split)}")
        if not sattrs.get("complete", kind == "dataset"):
            bad.append(Bad(split, f"{split}/zarr.json", "the split is incomplete (its build did not finish)"))
        arrays += [(f"{split}/{name}", int(files)) for name, files in sorted(written.items())]
    return kind, arrays, bad


def verify_store(path: str | Path, bar: Any = None) -> tuple[list[Bad], dict[str, int]]:
    """Check every chunk of every array of every split of ``path`` (a dataset store or a teacher cache):
    the problems found and counts (``arrays``, ``chunk_files``, ``samples``, ``bytes``). ``bar``: a
    :func:`leve.progress.progress_bar`, advanced by the samples checked."""
    store = Files(path)
    _, arrays, bad = store_arrays(str(path), store)
    url = location(path) if url_of(path) is not None else None
    if isinstance(url, str) and _root_attributes(url).get("kind") == "teacher-cache":  # a manifest per split
        for split in store.groups():  # (leve.teacher.cache.bucket: each split is published on its own)
            manifest = read_manifest(f"{url.rstrip('/')}/{split}")
            if (manifest or {}).get("fingerprint") != _attributes(store, split).get("identity_fingerprint"):
                bad.append(Bad(split, MANIFEST, "no manifest, or another build's: the split's publish did not finish"))
    elif isinstance(url, str):  # a bucket store is published whole only with its manifest (leve.store.remote)
        manifest = read_manifest(url)
        if manifest is None:
            bad.append(Bad("", MANIFEST, "no manifest: the store's upload or publish did not finish"))
        elif manifest.get("fingerprint") != _root_attributes(url).get("fingerprint"):
            bad.append(Bad("", MANIFEST, "the manifest is of another build than zarr.json (a publish was interrupted)"))
    elif (Path(path) / MANIFEST).is_file():  # a local copy of a bucket store: its manifest is checked too
        bad += [Bad("", rel, problem) for rel, problem in copy_problems(Path(path))]
    metas: dict[str, dict[str, Any]] = {}
    for array, _ in arrays:
        try:
            metas[array] = store.json(f"{array}/zarr.json")
        except (OSError, ValueError):
            metas[array] = {"shape": []}
    total = sum(array_work(metas[a], files) for a, files in arrays)
    task = bar.add_task(f"verify {str(path).rstrip('/').rsplit('/', 1)[-1]}", total=total) if bar is not None else None

    def advance(n: int) -> None:
        if bar is not None:
            bar.advance(task, n)

    nbytes = 0
    for array, files in arrays:
        found, read = verify_array(store, array, files, advance)
        bad += found
        nbytes += read
    counts = {"arrays": len(arrays), "chunk_files": sum(f for _, f in arrays), "samples": total, "bytes": nbytes}
    return bad, counts


def _attributes(store: Files, group: str) -> dict[str, Any]:
    """The attributes of group ``group`` of ``store``; {} when unreadable."""
    try:
        return dict(store.json(f"{group}/zarr.json").get("attributes", {}))
    except (OSError, ValueError, AttributeError):
        return {}


def written_files(split_dir: Path, arrays: Iterable[str]) -> dict[str, int]:
    """At publish: per array path (``split/array`` relative to ``split_dir``), the number of chunk files its
    shape needs, each checked to be on disk (a missing one is a build error, not a store to publish)."""
    written: dict[str, int] = {}
    for name in arrays:
        folder = split_dir / name
        meta = _read_json(folder / "zarr.json")
        length = int(meta["shape"][0]) if meta["shape"] else 1
        per = int(meta["chunk_grid"]["configuration"]["chunk_shape"][0]) if meta["shape"] else 1
        files = -(-length // per) if length else 0
        for key in chunk_keys(meta, files):
            if not os.path.exists(folder / key):
                raise LeveError(f"{folder}: chunk file {key} was not written; rebuild")
        written[name] = files
    return written
