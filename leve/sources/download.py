"""Checked, resumable downloads and source-file verification.

``download`` fetches into ``<dest>.part`` and continues an interrupted transfer
with an HTTP ``Range`` request; the finished file is checked against the expected
size (known size or the server's ``Content-Length``) and sha256, then renamed into
place. The sha256 of a file is recorded beside it (``<file>.sha256``) the first
time it is seen, and verified every later time, so a file that changes on disk
is refused.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import requests

from leve.errors import LeveError
from leve.progress import progress_bar

CHUNK = 1 << 20
TIMEOUT = (10, 60)  # connect, read (seconds)


def sha256_file(path: Path, show_progress: bool = False) -> str:
    """The hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    size = path.stat().st_size
    with open(path, "rb") as f, progress_bar(show_progress and size > 256 * CHUNK) as bar:
        task = bar.add_task(f"sha256 {path.name}", total=size)
        while block := f.read(CHUNK):
            h.update(block)
            bar.advance(task, len(block))
    return h.hexdigest()


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def verify_file(path: Path, sha256: str | None = None, size: int | None = None, show_progress: bool = True) -> str:
    """Check size and sha256 of ``path``; record the hash beside it on first sight.

    The expected hash is ``sha256`` when given, else the one recorded in
    ``<path>.sha256`` by an earlier run. Returns the file's sha256.
    """
    if not path.is_file():
        raise LeveError(f"{path}: file not found")
    actual_size = path.stat().st_size
    if size is not None and actual_size != size:
        raise LeveError(f"{path}: size {actual_size} bytes, expected {size} (incomplete or wrong file)")
    recorded = sidecar(path)
    expected = sha256 or (recorded.read_text().split()[0] if recorded.exists() else None)
    digest = sha256_file(path, show_progress)
    if expected and digest != expected.lower():
        raise LeveError(f"{path}: sha256 mismatch (expected {expected[:16]}…, got {digest[:16]}…)")
    if not recorded.exists():
        try:
            recorded.write_text(f"{digest}  {path.name}\n")
        except OSError:
            pass  # a read-only source folder is fine; the hash is still recorded in the store
    return digest


def obtain(
    source: Path | None,
    url: str,
    dest: Path,
    sha256: str | None = None,
    size: int | None = None,
    show_progress: bool = True,
) -> tuple[Path, str]:
    """A file the user already has (``source``), or ``url`` downloaded to ``dest``.

    Either way the file is verified (hashed) once; returns it with its sha256.
    ``size`` is the expected size of the download.
    """
    if source is not None:
        return Path(source), verify_file(Path(source), sha256, show_progress=show_progress)
    return download_verified(url, dest, size, sha256, show_progress)


def download(
    url: str,
    dest: Path,
    size: int | None = None,
    sha256: str | None = None,
    show_progress: bool = True,
    session: requests.Session | None = None,
) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), check it and return ``dest``.

    An existing ``dest`` is only verified. Offline or failing servers give a
    one-line error that says how to pass the file with ``--source``.
    """
    return download_verified(url, dest, size, sha256, show_progress, session)[0]


def download_verified(
    url: str,
    dest: Path,
    size: int | None = None,
    sha256: str | None = None,
    show_progress: bool = True,
    session: requests.Session | None = None,
) -> tuple[Path, str]:
    """:func:`download`, also returning the sha256 it verified (the file is hashed once)."""
    dest = Path(dest)
    if dest.exists():
        return dest, verify_file(dest, sha256, size, show_progress)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    http = session or requests.Session()
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    try:
        resp = http.get(url, headers=headers, stream=True, timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise LeveError(
            f"{url}: download failed ({exc.__class__.__name__}); fetch it elsewhere and pass --source FILE"
        ) from exc
    total: int | None
    with resp:
        if resp.status_code == 416 and have:  # the part file is already whole
            total = have
        elif resp.status_code not in (200, 206):
            raise LeveError(f"{url}: HTTP {resp.status_code}; fetch it elsewhere and pass --source FILE")
        else:
            if resp.status_code == 200:  # server ignored Range: start over
                have = 0
            total = have + int(resp.headers.get("Content-Length", 0)) or None
            _stream(resp, part, have, total, dest.name, show_progress)
    if size is not None and total is not None and total != size:
        raise LeveError(f"{url}: size {total} bytes on the server, expected {size} (wrong URL or changed file)")
    total = size or total
    if total is not None and part.stat().st_size != total:
        raise LeveError(f"{url}: got {part.stat().st_size} of {total} bytes; rerun to resume")
    os.replace(part, dest)
    return dest, verify_file(dest, sha256, size, show_progress)


def _stream(resp: requests.Response, part: Path, have: int, total: int | None, name: str, show: bool) -> None:
    mode = "ab" if have else "wb"
    with open(part, mode) as f, progress_bar(show) as bar:
        task = bar.add_task(f"download {name}", total=total, completed=have)
        try:
            for block in resp.iter_content(CHUNK):
                f.write(block)
                bar.advance(task, len(block))
        except requests.RequestException as exc:
            raise LeveError(f"{part}: transfer interrupted ({exc.__class__.__name__}); rerun to resume") from exc
