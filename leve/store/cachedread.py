"""The local-disk fast path on a bucket store's read-through cache (:mod:`leve.store.readcache`).

:class:`CachedShardReader` is :class:`leve.store.fastread.ShardReader` (one ``pread`` per sample, the shard index
and every chunk's crc32c checked) reading the cached shard files; a shard missing from the cache folder is
fetched whole from the bucket first. With the cache warm, a bucket store is read as fast as a local one.

Read-ahead (:func:`read_ahead`): a process that knows which samples it reads next (a training loader worker, told
by :class:`leve.train.batches.SlottedSampler`) has a background thread fetch their shard files into the cache folder
before the reads reach them, in order of first use, at most ``shards`` files ahead and at most
``max_bytes / (2 * workers)`` bytes of them not yet opened, so the shards in use keep half the cache. Only the
arrays the process has read are fetched ahead. A shard is fetched once: in a process the reader waits for the
read-ahead's fetch in flight instead of starting its own; between processes sharing the cache folder whoever
fetches a shard holds an exclusive ``flock`` on its lock file in ``<folder>.locks/`` (:func:`_lock`: readers wait
on it, then open the copy; the read-ahead skips a shard another process holds). The reader fetches a shard itself
when the read-ahead failed (a one-line warning on stderr) or the file was evicted. The bytes read are those a
reader without read-ahead reads, checked the same way. The thread runs only while it has a shard to fetch within
the bounds (it never idles), so it ends with the process; a caller done reading in a process that goes on (an
evaluation) ends it with :func:`end_read_ahead`.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import uuid
import weakref
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # not POSIX: no lock between processes (each fetches for itself)
    fcntl = None  # type: ignore[assignment]

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
        self.url, self.split, self.prefix = url.rstrip("/"), split, f"{split}/{array}"
        self.folder, self.max_bytes = Path(cache[0]), int(cache[1])
        self.sizes: dict[int, int] | None = None  # shard -> object size, listed once per process for read-ahead

    def __getstate__(self) -> dict[str, Any]:
        return {**super().__getstate__(), "sizes": None}

    def cached(self, shard: int) -> Path:
        """Where shard file ``shard`` is kept in the cache folder."""
        return cached_file(self.folder, f"{self.prefix}/{self._key(shard)}")

    def is_open(self, shard: int) -> bool:
        """Whether this process already holds shard ``shard`` open (it never opens it again)."""
        return self._pid == os.getpid() and shard in self._files

    def _open(self, shard: int) -> int:
        path = self.cached(shard)
        ahead = _prefetcher()
        ahead.register(self)
        try:
            fd = os.open(path, os.O_RDONLY)
            os.utime(path)  # recently used
            ahead.opened(path)
            return fd
        except FileNotFoundError:
            pass
        pending = ahead.claim(path)
        if pending is not None:  # being fetched ahead: its copy, or (read-ahead failed, or evicted) our own fetch
            pending.wait()
            try:
                fd = os.open(path, os.O_RDONLY)
                ahead.opened(path)
                return fd
            except FileNotFoundError:
                ahead.claim(path, force=True)
        try:
            return self._fetch(shard, path)
        finally:
            ahead.release(path)

    def _fetch(self, shard: int, path: Path) -> int:
        """Fetch shard file ``shard`` whole from the bucket into ``path`` (within the bound) and open it; while
        another process fetches it, wait and open its copy."""
        lock = _lock(path, wait=True)
        try:
            try:
                return os.open(path, os.O_RDONLY)  # fetched by another process meanwhile
            except FileNotFoundError:
                return self._get(shard, path)
        finally:
            _unlock(path, lock)

    def _get(self, shard: int, path: Path) -> int:
        key = f"{self.prefix}/{self._key(shard)}"
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



class _ReadAhead:
    """This process's read-ahead (see the module's notes): the readers it has used, by source (store URL, split),
    the samples it reads next, the shard files to fetch, those in flight and those fetched but not yet opened."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.cond = threading.Condition()
        self.readers: dict[tuple[str, str], list[weakref.ref[CachedShardReader]]] = {}  # by source, as used
        self.plan: dict[tuple[str, str], list[int]] = {}  # source -> the samples read next, in order
        self.shards = 0  # at most this many shard files ahead (in flight or fetched, not yet opened)
        self.workers = 1
        self.queue: deque[tuple[CachedShardReader, int]] = deque()
        self.inflight: dict[Path, threading.Event] = {}  # being fetched (by the thread, or a reader: claimed)
        self.ahead: dict[Path, tuple[Path, int]] = {}  # fetched or fetching ahead, not yet opened: folder, bytes
        self.thread: threading.Thread | None = None
        self.last: threading.Thread | None = None  # the thread started last (joined by :func:`end_read_ahead`)
        self.failed: set[Path] = set()  # shard files whose read-ahead failed (a warning line each): not tried again

    # ---------------------------------------------------------------- the reading thread's side

    def want(self, sources: Iterable[tuple[str, str]], samples: list[int], shards: int, workers: int) -> None:
        """The samples of ``sources`` this process reads next (it will read them in this order): their shard files
        are fetched ahead from now on, replacing the previous plan."""
        with self.cond:
            self.plan = {(url.rstrip("/"), split): samples for url, split in sources}
            self.shards, self.workers = max(int(shards), 0), max(int(workers), 1)
            self._requeue()

    def register(self, reader: CachedShardReader) -> None:
        """``reader`` is read in this process: its shards are fetched ahead from now on."""
        with self.cond:
            mine = self.readers.setdefault((reader.url, reader.split), [])
            if any(r() is reader for r in mine):
                return
            mine[:] = [r for r in mine if r() is not None]
            mine.append(weakref.ref(reader))
            if (reader.url, reader.split) in self.plan:
                self._requeue()

    def opened(self, path: Path) -> None:
        """The reader opened ``path``: no longer ahead, which makes room for another."""
        with self.cond:
            if self.ahead.pop(path, None) is not None:
                self._start()

    def claim(self, path: Path, force: bool = False) -> threading.Event | None:
        """The event of the read-ahead fetching ``path`` now (wait for it, then open the file), or None: the
        reader fetches it itself and the read-ahead leaves it alone until :meth:`release` (``force``: claim it
        in any case)."""
        with self.cond:
            pending = self.inflight.get(path)
            if pending is not None and not force:
                return pending
            self.inflight[path] = threading.Event()
            return None

    def release(self, path: Path) -> None:
        """The reader's own fetch of ``path`` is over (the file, if any, is no longer ahead)."""
        with self.cond:
            event = self.inflight.pop(path, None)
            if event is not None:
                event.set()
            if self.ahead.pop(path, None) is not None:
                self._start()

    # ---------------------------------------------------------------- the read-ahead thread's side

    def _requeue(self) -> None:
        """The plan's shard files in order of first use (every array read so far); the ones fetched ahead that
        the plan no longer holds stop counting as ahead. Starts the thread when there is work."""
        queue: deque[tuple[CachedShardReader, int]] = deque()
        seen: set[Path] = set()
        for source, samples in self.plan.items():
            readers = [r for r in (ref() for ref in self.readers.get(source, [])) if r is not None]
            for i in samples:
                for reader in readers:
                    shard = i // reader.per_shard
                    path = reader.cached(shard)
                    if path not in seen:
                        seen.add(path)
                        queue.append((reader, shard))
        for path in [p for p in self.ahead if p not in seen and p not in self.inflight]:
            del self.ahead[path]
        self.queue = queue
        self._start()

    def _start(self) -> None:
        if self.thread is None and self.queue and self.shards:
            self.thread = self.last = threading.Thread(target=self._run, name="leve-read-ahead", daemon=True)
            self.thread.start()

    def _next(self) -> tuple[CachedShardReader, int, Path] | CachedShardReader | None:
        """The next shard to fetch ahead (marked in flight), a reader whose shard sizes must be listed first, or
        None when there is nothing within the bounds: the thread then ends (a new plan or an opened file
        starts another)."""
        while self.queue:
            reader, shard = self.queue[0]
            path = reader.cached(shard)
            if (path in self.inflight or path in self.ahead or path in self.failed or reader.is_open(shard)
                    or path.exists()):
                self.queue.popleft()
                continue
            if len(self.ahead) >= self.shards:
                break
            if reader.sizes is None:
                return reader
            size = reader.sizes.get(shard)
            if size is None or size > reader.max_bytes:  # no such object (the read says so), or never kept
                self.queue.popleft()
                continue
            budget = reader.max_bytes // (2 * self.workers)
            if sum(n for folder, n in self.ahead.values() if folder == reader.folder) + size > budget:
                break
            self.queue.popleft()
            self.inflight[path] = threading.Event()
            self.ahead[path] = (reader.folder, size)
            return reader, shard, path
        self.thread = None
        return None

    def _run(self) -> None:
        while True:
            with self.cond:
                job = self._next()
            if job is None:
                return
            if isinstance(job, CachedShardReader):
                sizes = _list_sizes(job)
                with self.cond:
                    job.sizes = sizes
                continue
            reader, shard, path = job
            key = f"{reader.prefix}/{reader._key(shard)}"
            lock = _lock(path, wait=False)
            problem, kept = "", lock is not None and path.exists()  # None: another process is fetching it
            try:
                if lock is not None and not kept:
                    fs, root = filesystem(reader.url)
                    data = fs.cat_file(f"{root.rstrip('/')}/{key}")
                    kept = keep(reader.folder, reader.max_bytes, path, data)
                    if not kept:
                        problem = f"{reader.url}/{key}: the cache folder {reader.folder} refused it (full or read-only)"
            except Exception as exc:  # one line, never the credentials (remote_error)
                problem = str(remote_error(f"{reader.url}/{key}", exc))
            finally:
                _unlock(path, lock)
            if problem:  # the reader fetches it itself (and says in one line what is wrong with the object)
                print(f"warning: reading ahead failed: {problem}; the loader reads it itself", file=sys.stderr,
                      flush=True)
            with self.cond:
                if not kept:
                    self.ahead.pop(path, None)
                if problem:
                    self.failed.add(path)
                event = self.inflight.pop(path, None)
                if event is not None:
                    event.set()


def _list_sizes(reader: CachedShardReader) -> dict[int, int]:
    """Shard index -> object size of ``reader``'s array in the bucket (one listing); empty when it fails (nothing
    of it is read ahead; a warning line says why)."""
    fs, root = filesystem(reader.url)
    base = f"{root.rstrip('/')}/{reader.prefix}/c/"
    try:
        found = fs.find(base, detail=True)
    except Exception as exc:
        print(f"warning: listing {reader.url}/{reader.prefix} to read ahead failed ({exc.__class__.__name__}: {exc});"
              " its shards are read when needed", file=sys.stderr, flush=True)
        return {}
    sizes: dict[int, int] = {}
    for name, info in found.items():
        rest = name[len(base):] if name.startswith(base) else name.rsplit("/c/", 1)[-1]
        head = rest.split("/", 1)[0]
        if head.isdigit() and rest == reader._key(int(head))[2:]:
            sizes[int(head)] = int(info.get("size") or 0)
    return sizes


def _lock(path: Path, wait: bool) -> int | None:
    """Hold the fetch of cache file ``path`` for this process against the other processes reading the same cache
    folder (DataLoader workers), so each shard is fetched once: an exclusive ``flock`` on ``<folder>.locks/<name>``,
    its descriptor; with ``wait`` False None when another process holds it. -1 where nothing can be locked (no
    ``flock``, the folder not writable): every process then fetches for itself, as before."""
    if fcntl is None:
        return -1
    name = path.parent.parent / f"{path.parent.name}.locks" / path.name
    try:
        name.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(name, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                os.close(fd)
                return None
            try:
                if os.fstat(fd).st_ino == os.stat(name).st_ino:
                    return fd
            except FileNotFoundError:  # its holder removed it after the fetch: lock the next one
                pass
            os.close(fd)
    except OSError:
        return -1


def _unlock(path: Path, fd: int | None) -> None:
    """Release :func:`_lock`'s lock (the lock file is removed first, while still held)."""
    if fd is None or fd < 0:
        return
    try:
        os.unlink(path.parent.parent / f"{path.parent.name}.locks" / path.name)
    except FileNotFoundError:
        pass
    os.close(fd)


_STATE: _ReadAhead | None = None
_STATE_LOCK = threading.Lock()


def _prefetcher() -> _ReadAhead:
    """This process's read-ahead (a new one after a fork: a worker shares nothing with its parent's)."""
    global _STATE
    with _STATE_LOCK:
        if _STATE is None or _STATE.pid != os.getpid():
            _STATE = _ReadAhead()
        return _STATE


def read_ahead(sources: Iterable[tuple[str, str]], samples: list[int], shards: int, workers: int = 1) -> None:
    """Fetch, in a background thread, the shard files that samples ``samples`` (read next, in this order) of the
    bucket stores ``sources`` (``(url, split)``: a store's split and its teacher cache's) need, at most ``shards``
    files ahead and ``max_bytes / (2 * workers)`` bytes (``workers``: the loader processes sharing the cache)."""
    _prefetcher().want(sources, samples, shards, workers)


def end_read_ahead() -> None:
    """Forget this process's read-ahead plan and wait for its thread to end (a fetch in flight completes first; the
    files fetched ahead stay in the cache folder): what a reader that is done (an evaluation) calls, so that no
    thread outlives its reads. Nothing to do where this process never read ahead."""
    with _STATE_LOCK:
        state = _STATE if _STATE is not None and _STATE.pid == os.getpid() else None
    if state is None:
        return
    state.want([], [], 0, 1)
    with state.cond:
        thread = state.last
    if thread is not None and thread is not threading.current_thread():
        thread.join()
