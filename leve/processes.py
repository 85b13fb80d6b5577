"""Processes that leave nothing behind: children die with their parent, one writer per output.

Children (decoding pools, DataLoader workers, torchrun workers) call :func:`die_with_parent`.
On Linux it asks the kernel for ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` (documented in prctl(2)):
the child is killed the moment its parent dies, whatever killed the parent, SIGKILL included.
The kernel ties the signal to the parent *thread* that created the child; leve creates its
workers from the main thread, so that is the parent's death. Where prctl is unavailable, a
daemon thread polls ``os.getppid()`` (a child whose parent died is re-parented).

Outputs (a store, a training run) are guarded by :func:`exclusive_writer`: an ``fcntl.flock``
on ``<output>.lock`` beside it. The kernel drops the lock when its holder dies, SIGKILL
included, so there is never a stale lock to clean up; a second writer is refused at once.
The lock's descriptor is closed in forked children (DataLoader workers), so that it is
released when the writer releases it, not when its last worker ends.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from leve.errors import LeveError

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_HELD: set[int] = set()  # descriptors of the write locks this process holds


def die_with_parent(parent: int | None = None) -> None:
    """Make this process end when ``parent`` (default: the current parent) dies; end now if it
    already has (the parent may die before the request is in place)."""
    expected = os.getppid() if parent is None else parent
    if not _kernel_kills_orphan():
        threading.Thread(target=_watch_parent, args=(expected,), daemon=True, name="leve-parent-watch").start()
    if os.getppid() != expected:
        os._exit(1)


def _kernel_kills_orphan() -> bool:
    """``prctl(PR_SET_PDEATHSIG, SIGKILL)`` on Linux; False where it cannot be had."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _watch_parent(expected: int, interval: float = 1.0) -> None:
    while os.getppid() == expected:
        time.sleep(interval)
    os._exit(1)


class DiesWithParent:
    """A picklable process-pool ``initializer`` / DataLoader ``worker_init_fn``: the worker dies
    with the process that created this object (the one that starts the workers)."""

    def __init__(self) -> None:
        self.parent = os.getpid()

    def __call__(self, *_: object) -> None:
        die_with_parent(self.parent)


def under_torchrun() -> bool:
    """True in a worker process started by torchrun's elastic agent."""
    return "TORCHELASTIC_RUN_ID" in os.environ


# --------------------------------------------------------------------------- one writer


def lock_path(output: Path) -> Path:
    """The lock file of an output: ``<output>.lock`` beside it (never inside what is published)."""
    return output.with_name(output.name + ".lock")


@contextlib.contextmanager
def exclusive_writer(output: str | Path, lock: Path | None = None) -> Iterator[None]:
    """Hold the write lock of ``output`` for the block; refuse at once when another process holds it."""
    handle = acquire(Path(output), lock)
    try:
        yield
    finally:
        handle.close()  # unlocks and closes the file


def acquire(output: Path, lock: Path | None = None) -> _LockFile:
    """Take the write lock of ``output`` (the file ``lock``, default :func:`lock_path`), released by
    :meth:`_LockFile.close` or this process's end; no lock where fcntl is unavailable."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        return _LockFile(None)
    path = lock or lock_path(output)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as exc:
        raise LeveError(f"{path}: cannot create the lock file ({exc.strerror or exc})") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _holder(fd)
        os.close(fd)
        raise LeveError(f"{output}: another leve process is writing it (pid {holder})") from None
    except BaseException:
        os.close(fd)
        raise
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    _HELD.add(fd)
    return _LockFile(fd)


def _holder(fd: int) -> str:
    """The pid the holder wrote into the lock file ('?' while it is still writing it)."""
    for _ in range(20):
        text = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if text:
            return text
        time.sleep(0.01)
    return "?"


class _LockFile:
    """An open, locked lock file; the file itself stays (removing it would race with a new writer)."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd

    def close(self) -> None:
        if self.fd is not None and self.fd in _HELD:
            _HELD.discard(self.fd)
            import fcntl

            # Unlock explicitly before closing: a flock belongs to the open file description, which a
            # child forked meanwhile shares until its at-fork hook closes its copy; LOCK_UN through any
            # copy releases it for all, so the release never waits on that child being scheduled.
            with contextlib.suppress(OSError):
                fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
        self.fd = None


def _close_inherited() -> None:
    """In a forked child: close the copies of the parent's lock descriptors (the parent keeps the lock)."""
    for fd in _HELD:
        with contextlib.suppress(OSError):
            os.close(fd)
    _HELD.clear()


if hasattr(os, "register_at_fork"):  # POSIX
    os.register_at_fork(after_in_child=_close_inherited)
