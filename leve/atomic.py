"""Outputs written whole or not at all.

Every file leve writes goes through :func:`atomic_path`: the content is written under a
temporary name beside the target, unique to this process and call (two writers never share one),
then renamed onto the target in one step (``os.replace``). A failure while writing (disk full,
quota, a read-only folder, the writer's own exception) removes the temporary file and leaves the
previous output untouched; the operating system's errors become one line naming the output.

A name longer than the file system allows is refused before anything is written; the
temporary name is shortened so that it is never the one that fails.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

from leve.errors import LeveError

NAME_MAX = 255  # bytes in one path component (Linux, macOS, Windows)

# OS errors that say something about the place written to, not about leve: one line each
_PLAIN = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for this file system or its limits",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENAMETOOLONG: "file name too long",
    errno.ENOTDIR: "a part of the path is not a folder",
    errno.EISDIR: "is a folder",
    errno.EIO: "input/output error",
}
# The temporary files being written, each with the output it stands for (a writer handed a staged
# temporary path, as atomic_group does, reports errors under the output's name)
_OPEN: dict[Path, Path] = {}
# What libraries that write through their own C++ streams (torch.save) say on such errors
_LIBRARY_WRITE_FAILURES = ("file write failed", "No space left", "unexpected pos")


_SUFFIX_KEPT = 32  # a longer "suffix" is part of the name, not a format (and would leave no room for the token)


def check_name(path: Path) -> None:
    """Refuse, in one line, a file name longer than the file system allows."""
    if len(os.fsencode(Path(path).name)) > NAME_MAX:
        name = Path(path).name
        raise LeveError(f"{Path(path).parent / name[:60]}...: file name too long ({len(os.fsencode(name))} bytes; "
                        f"at most {NAME_MAX}); choose a shorter output name")


def temporary_name(path: Path) -> Path:
    """A name beside ``path`` unique to this process and call, keeping the suffix (libraries that
    choose a format from it, such as matplotlib and Pillow, still see it)."""
    path = Path(path)
    suffix = path.suffix if len(os.fsencode(path.suffix)) <= _SUFFIX_KEPT else ""
    token = f".tmp-{os.getpid()}-{secrets.token_hex(4)}{suffix}"
    stem = path.name
    room = NAME_MAX - len(os.fsencode(token)) - 1
    while len(os.fsencode(stem)) > room:
        stem = stem[: max(1, len(stem) - 8)]
    return path.with_name(f".{stem}{token}")


_TEMPORARY = re.compile(r"^\..+\.tmp-\d+-[0-9a-f]{8}")


def stale_temporaries(folder: Path) -> list[Path]:
    """The temporary files of :func:`atomic_path` in ``folder`` (not below it): what a writer killed
    mid-write leaves. Only the holder of the folder's write lock may remove them."""
    try:
        return sorted(p for p in Path(folder).iterdir() if _TEMPORARY.match(p.name) and p.is_file())
    except (FileNotFoundError, NotADirectoryError):
        return []


def plain_os_error(exc: BaseException, path: Path) -> LeveError | None:
    """The one-line error for an OS failure while writing ``path``, or None when it is not one."""
    if isinstance(exc, OSError) and exc.errno in _PLAIN:
        return LeveError(f"{path}: cannot write: {_PLAIN[exc.errno]}; the previous file (if any) is unchanged")
    if isinstance(exc, RuntimeError) and any(s in str(exc) for s in _LIBRARY_WRITE_FAILURES):
        return LeveError(f"{path}: cannot write: the write failed (disk full?); the previous file (if any) is unchanged")
    return None


@contextlib.contextmanager
def atomic_path(path: Path | str, *, mkdir: bool = True) -> Iterator[Path]:
    """Yield a temporary path to write ``path``'s content to; on success it replaces ``path``.

    On any exception the temporary file is removed and ``path`` keeps its previous content;
    OS errors about the destination (disk full, quota, name too long, read-only) are raised as
    one-line :class:`LeveError`.
    """
    path = Path(path)
    named = _OPEN.get(path, path)  # what errors call it: a staged temporary file is called by its target's name
    check_name(path)
    try:
        if mkdir:
            path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise (plain_os_error(exc, named) or exc) from exc
    tmp = temporary_name(path)
    _OPEN[tmp] = named
    try:
        yield tmp
        _flush(tmp)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        plain = plain_os_error(exc, named)
        if plain is not None:
            raise plain from exc
        raise
    finally:
        _OPEN.pop(tmp, None)


@contextlib.contextmanager
def atomic_group() -> Iterator[Callable[[Path | str], Path]]:
    """Several outputs that stand together (one evaluation's metrics, tables, figures and card): the
    block receives ``stage(target) -> temporary path``; every target is replaced only once the whole
    block has succeeded (in the reverse order of staging), and on any failure none is touched and
    every temporary file is removed."""
    with contextlib.ExitStack() as stack:
        def stage(target: Path | str) -> Path:
            return stack.enter_context(atomic_path(target))

        yield stage


def _flush(tmp: Path) -> None:
    """Put the written bytes on the device before the rename: a file system that allocates space
    late (delayed allocation, network mounts) reports a full disk here, while the old file is still
    in place, and a crash right after the rename never leaves an empty file under the target's name."""
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes(path: Path | str, data: bytes) -> Path:
    """``data`` to ``path``, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
    return path


def write_text(path: Path | str, text: str, encoding: str = "utf-8") -> Path:
    """``text`` to ``path``, atomically."""
    return write_bytes(path, text.encode(encoding))
