"""Processes that leave nothing behind: children die with their parent, one writer per output.

Every ``leve`` command ends with the process that started it (:func:`end_with_driver`, called by
the CLI's entry point): ``dvc repro`` killed, its running stage goes too; ``leve demo`` starts its
children so that they die with it (:func:`child_dies_with_us`). The exceptions are the ways a user
asks a command to outlive its terminal: ``nohup`` (SIGHUP ignored), ``setsid`` (a session leader),
or ``LEVE_KEEP_ALIVE=1``; see :func:`end_with_driver` for why.

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
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import leve
from leve.errors import LeveError

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_HELD: set[int] = set()  # descriptors of the write locks this process holds
STARTED_BY: int = getattr(leve, "STARTED_BY", os.getppid())  # the parent when leve was first imported
SHELLS = frozenset({"sh", "dash", "bash", "zsh", "ksh", "mksh", "fish", "busybox"})
KEEP_ALIVE = "LEVE_KEEP_ALIVE"
_TIED: list[int] = []  # the parent this process was tied to, once


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


def end_with_driver(parent: int = STARTED_BY) -> str:
    """Make this ``leve`` command end when the process that started it (``parent``) ends, however it
    ends; through ``sh -c`` wrappers, when the process that started the wrapper ends. Returns how
    (``pdeathsig``, ``watch``, or why not: ``keep-alive``, ``nohup``, ``session leader``, ``orphan``).

    Why every command: a driver (``dvc repro``, ``leve demo``, a scheduler, a test) that is killed
    cannot stop what it started, and a stage left running keeps its outputs locked and the CPUs busy.
    ``dvc repro`` runs a stage through ``$SHELL -c`` (bash replaces itself with the command; dash, the
    ``/bin/sh`` of Debian, stays as a parent that does not die with dvc), hence the wrapper rule.

    Why not always: a user who types ``nohup leve train &`` or ``setsid leve train`` and then closes
    the terminal expects the training to go on; nohup leaves SIGHUP ignored and setsid makes the
    command a session leader, so both are honoured, as is ``LEVE_KEEP_ALIVE=1`` (e.g. for ``leve
    train & disown``). SIGHUP ignored counts as nohup only under a shell (a prompt or a script, not
    ``sh -c``): CI runners and daemons ignore SIGHUP for everything they start, which is no request to
    outlive a driver. A command typed at an interactive prompt dies with its shell, as it would by the
    terminal's SIGHUP anyway.

    How: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` when the parent is single-threaded. The kernel sends the
    signal when the parent *thread* that forked this process ends, so with a multi-threaded parent (a
    Python driver running commands from a worker thread) that could kill a command whose driver is
    alive; there, and for wrappers, a daemon thread polls the parent chain every 0.2 s instead.
    """
    if os.environ.get(KEEP_ALIVE, "") not in ("", "0"):
        return "keep-alive"
    if signal.getsignal(signal.SIGHUP) == signal.SIG_IGN and _is_shell(parent) and not _is_wrapper(parent):
        return "nohup"  # `nohup leve ...` typed at a prompt or in a script (a runner that ignores SIGHUP is no user)
    if os.getsid(0) == os.getpid():
        return "session leader"
    if os.getppid() != parent:  # the driver died while this command was starting
        os._exit(1)
    if parent <= 1:  # started by init (double fork) or as a container's first process: nothing to follow
        return "orphan"
    if _TIED:
        return "tied"
    _TIED.append(parent)
    chain = _wrapper_chain(parent)
    if not chain and _threads(parent) == 1 and _kernel_kills_orphan():
        if os.getppid() != parent:
            os._exit(1)
        return "pdeathsig"
    threading.Thread(target=_watch_chain, args=(parent, chain), daemon=True, name="leve-driver-watch").start()
    return "watch"


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(command name, parent pid) of a live process from /proc; None when it is gone or unreadable."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return text[text.index("(") + 1 : text.rindex(")")], int(fields[1])


def _is_shell(pid: int) -> bool:
    try:
        argv0 = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except (OSError, IndexError):
        return False
    return os.path.basename(argv0).lstrip("-") in SHELLS


def _is_wrapper(pid: int) -> bool:
    """A non-interactive shell running one command line (``sh -c '...'``)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    name = os.path.basename(argv[0].decode(errors="replace")).lstrip("-") if argv and argv[0] else ""
    if name not in SHELLS:
        return False
    for arg in argv[1:]:  # the options before the command string: -c, or a cluster such as -ec
        if not arg.startswith(b"-"):
            return False
        if not arg.startswith(b"--") and b"c" in arg[1:]:
            return True
    return False


def _wrapper_chain(parent: int) -> list[tuple[int, int]]:
    """(wrapper, its parent) for each ``sh -c`` wrapper from ``parent`` upwards."""
    chain: list[tuple[int, int]] = []
    pid = parent
    while pid > 1 and _is_wrapper(pid) and (stat := _proc_stat(pid)) is not None and len(chain) < 8:
        chain.append((pid, stat[1]))
        pid = stat[1]
    return chain


def _threads(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def _watch_chain(parent: int, chain: list[tuple[int, int]], interval: float = 0.2) -> None:
    """End this process when the parent or a wrapper's parent is gone (re-parented = its parent died)."""
    while True:
        if os.getppid() != parent:
            os._exit(1)
        for wrapper, its_parent in chain:
            stat = _proc_stat(wrapper)
            if stat is None or stat[1] != its_parent:
                os._exit(1)
        time.sleep(interval)


def child_dies_with_us() -> Callable[[], None]:
    """A ``subprocess`` ``preexec_fn``: the child (and what it execs) gets SIGKILL when this process
    ends, however it ends (the request survives ``execve``); where prctl is unavailable, nothing."""
    me = os.getpid()

    def arm() -> None:
        if _kernel_kills_orphan() and os.getppid() != me:
            os._exit(1)

    return arm


# --------------------------------------------------------------------------- a guard for a whole tree

_PR_SET_CHILD_SUBREAPER = 36  # <linux/prctl.h>


def guarded(cmd: list[str]) -> list[str]:
    """``cmd`` run under a guard (:func:`guard`) tied to this process, on Linux; ``cmd`` itself elsewhere."""
    if not sys.platform.startswith("linux"):
        return cmd
    return [sys.executable, "-m", "leve.processes", str(os.getpid()), *cmd]


def guard(parent: int, cmd: list[str]) -> int:
    """Run ``cmd`` and leave nothing of it behind: when ``parent`` dies (however: the kernel sends this
    guard SIGTERM, which it can act on) or when ``cmd`` ends, every process ``cmd`` started is killed.

    The guard is a child subreaper (prctl(2)), so a process whose parent has died (a stage whose ``dvc``
    was killed, a ``leve`` command still starting up and not yet tied to its driver) is re-parented to
    the guard instead of escaping to init; it kills its descendants until none is left. ``cmd`` itself
    gets SIGKILL if the guard is killed outright. Ctrl+C reaches ``cmd`` from the terminal as before."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:  # the parent died while this guard was starting: start nothing
        return 1

    def end(*_: object) -> None:
        kill_descendants()
        os._exit(128 + signal.SIGTERM)

    signal.signal(signal.SIGTERM, end)
    signal.signal(signal.SIGINT, lambda *_: None)  # a handler, not SIG_IGN (that one would pass to cmd)
    signal.signal(signal.SIGHUP, end)
    try:
        proc = subprocess.Popen(cmd, preexec_fn=child_dies_with_us())
    except OSError as exc:
        print(f"error: {cmd[0]}: cannot run it ({exc.strerror or exc})", file=sys.stderr)
        return 127
    code = proc.wait()
    kill_descendants()
    return code if code >= 0 else 128 - code


def kill_descendants(rounds: int = 100) -> None:
    """SIGKILL every live descendant of this process (through /proc), reaping the ones re-parented here,
    until none is left."""
    me = os.getpid()
    for _ in range(rounds):
        parents = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit() and (stat := _proc_stat(int(entry))) is not None:
                parents[int(entry)] = stat[1]
        found, grew = set(), True
        while grew:
            more = {pid for pid, ppid in parents.items() if (ppid == me or ppid in found) and pid not in found}
            found |= more
            grew = bool(more)
        for pid in found:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass
        if not found:
            return
        time.sleep(0.01)


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


if __name__ == "__main__":  # python -m leve.processes PARENT_PID CMD... (see guard)
    sys.exit(guard(int(sys.argv[1]), sys.argv[2:]))
