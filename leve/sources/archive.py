"""Reading files out of folders, zips and zips nested in zips, without letting any
archive path escape its folder.

A file is addressed by a picklable :class:`Member`: a container (a local zip, a
remote zip URL, or ``None`` for a plain file) and a path inside it. Nested zips are
copied out once into a cache folder (safely named) and then read like any local zip.
"""

from __future__ import annotations

import os
import shutil
import stat
import struct
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from leve.errors import LeveError

# Open zips per process (loaders run in worker processes; each opens its own handles).
_OPEN: dict[tuple[int, str], zipfile.ZipFile] = {}
# What reading a damaged zip can raise: bad headers or CRCs, truncated or corrupt streams, an
# unsupported compression method (NotImplementedError), an encrypted member (RuntimeError).
ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError, NotImplementedError, RuntimeError, ValueError,
              struct.error)


def is_symlink(info: zipfile.ZipInfo) -> bool:
    """True for a member stored as a symbolic link (Unix mode in the external attributes)."""
    return stat.S_ISLNK(info.external_attr >> 16)


def safe_member(name: str, where: str = "archive") -> str:
    """The normalised relative POSIX path of an archive member; refuses absolute or ``..`` paths."""
    norm = name.replace("\\", "/")
    parts = PurePosixPath(norm).parts
    if not parts or norm.startswith("/") or (parts[0].endswith(":")) or ".." in parts or "\0" in norm:
        raise LeveError(f"{where}: unsafe member path '{name}' (absolute or escaping the archive)")
    return "/".join(p for p in parts if p not in ("", "."))


def safe_join(root: Path, member: str, where: str = "archive") -> Path:
    """``root / member`` for a safe member, checked to stay under ``root``."""
    target = (root / safe_member(member, where)).resolve()
    if not target.is_relative_to(root.resolve()):
        raise LeveError(f"{where}: member '{member}' escapes {root}")
    return target


@dataclass(frozen=True)
class Member:
    """One file: ``path`` inside ``container`` (local zip path or zip URL), or a plain file."""

    container: str | None
    path: str
    logical: str = field(default="", compare=False)  # one path through nested archives

    @property
    def name(self) -> str:
        return f"{self.container}/{self.path}" if self.container else self.path

    def read(self) -> bytes:
        """The file's bytes; a missing or unreadable file is a one-line error naming it."""
        if self.container is None:
            try:
                return Path(self.path).read_bytes()
            except OSError as exc:
                raise LeveError(f"{self.path}: cannot read ({exc.strerror or exc})") from exc
        zf = open_zip(self.container)
        try:
            return zf.read(self.path)
        except KeyError as exc:
            raise LeveError(f"{self.container}: no member '{self.path}'") from exc
        except ZIP_ERRORS as exc:
            raise LeveError(f"{self.name}: cannot read member ({exc.__class__.__name__}: {exc})") from exc

    def exists(self) -> bool:
        if self.container is None:
            return Path(self.path).is_file()
        return self.path in zip_names(self.container)


def open_zip(container: str) -> zipfile.ZipFile:
    """A zip opened once per process: a local path, or an ``http(s)://`` URL read by ranges."""
    key = (os.getpid(), container)
    zf = _OPEN.get(key)
    if zf is None:
        zf = _open_zip_uncached(container)
        _OPEN[key] = zf
    return zf


def _open_zip_uncached(container: str) -> zipfile.ZipFile:
    if container.startswith(("http://", "https://")):
        from leve.sources.remote_zip import HttpRangeFile

        fileobj: Any = HttpRangeFile(container)
    else:
        fileobj = container
    try:
        return zipfile.ZipFile(fileobj)
    except ZIP_ERRORS as exc:
        raise LeveError(f"{container}: not a readable zip ({exc.__class__.__name__}: {exc})") from exc


def zip_names(container: str) -> set[str]:
    """Safe member names (files only) of a zip; refuses a zip holding an escaping path or a link."""
    zf = open_zip(container)
    names = set()
    for info in zf.infolist():
        if info.is_dir():
            continue
        name = safe_member(info.filename, container)
        if is_symlink(info):
            raise LeveError(f"{container}: member '{info.filename}' is a symbolic link (refused: it may point "
                            f"outside the archive)")
        names.add(name)
    return names


def close_all() -> None:
    """Close this process's open zips (tests, or before deleting cached files)."""
    for key in [k for k in _OPEN if k[0] == os.getpid()]:
        _OPEN.pop(key).close()


def list_tree(root: Path, cache: Path, depth: int = 3) -> list[Member]:
    """Every file under ``root`` (a folder or a zip), looking into zips up to ``depth`` levels.

    Zips found inside zips are copied once into ``cache`` and read from there. Each
    member's ``logical`` path runs through the nesting (``outer.zip/inner.zip/a/b.png``).
    """
    root = Path(root)
    if root.is_file():
        return _list_zip(str(root), cache, depth, root.name)
    if not root.is_dir():
        raise LeveError(f"{root}: no such file or folder")
    out: list[Member] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if name.lower().endswith(".zip") and depth > 0:
                out.extend(_list_zip(str(path), cache, depth, rel))
            else:
                out.append(Member(None, str(path), rel))
    return out


def _list_zip(container: str, cache: Path, depth: int, prefix: str) -> list[Member]:
    out: list[Member] = []
    for name in sorted(zip_names(container)):
        if name.lower().endswith(".zip") and depth > 1:
            inner = extract_member(Member(container, name), cache)
            out.extend(_list_zip(str(inner), cache, depth - 1, f"{prefix}/{name}"))
        else:
            out.append(Member(container, name, f"{prefix}/{name}"))
    return out


def extract_member(member: Member, cache: Path) -> Path:
    """Copy one zip member to ``cache`` (kept across runs; size-checked), returning its path."""
    assert member.container is not None
    zf = open_zip(member.container)
    info = zf.getinfo(member.path)
    stem = Path(member.container).name
    dest = safe_join(cache, f"{stem}.d/{safe_member(member.path, member.container)}", member.container)
    if dest.is_file() and dest.stat().st_size == info.file_size:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with zf.open(info) as src, open(part, "wb") as out:
            shutil.copyfileobj(src, out, 1 << 20)
    except ZIP_ERRORS as exc:
        raise LeveError(f"{member.name}: cannot extract ({exc.__class__.__name__}: {exc})") from exc
    os.replace(part, dest)
    return dest
