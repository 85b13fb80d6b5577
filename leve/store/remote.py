"""Stores at fsspec URLs (``s3://bucket/prefix/nyu.zarr``, ``gs://...``, ``file://...``).

A URL is never a local path. :func:`location` turns what the user gave into either a local
:class:`~pathlib.Path` (a plain path or a ``file://`` URL) or a URL string, validated: an unknown
scheme, or one whose fsspec package is not installed, is one :class:`~leve.errors.LeveError` line
naming the URL. A ``Path`` made from a URL (``Path("s3://b/k")`` folds the double slash into
``s3:/b/k``, as a typer ``Path`` option does) is recognised and read back as the URL it was, so
no writer ever creates a local folder named ``s3:``.

Writing (``leve prepare ... --out s3://bucket/prefix/x.zarr``): object stores have no rename, so
the folder-swap publish of a local store becomes three steps, each resumable:

1. **Build locally.** The store is built as a local one (block by block, resumable, format 2:
   crc32c per chunk, written-chunk records) in a local staging folder (``$LEVE_STAGING``, default
   ``~/.cache/leve/staging``, one sub-folder per URL), under the usual flock.
2. **Upload to a staging prefix** ``<url>.partial/``: every file of the finished local store, one
   PUT each (a PUT is atomic: an object is there whole or not at all). A rerun after an interrupted
   upload skips the objects already there with the right size. Readers never look at this prefix,
   and the published store at ``<url>`` (if any) stays whole and readable throughout.
3. **Publish.** Delete ``<url>/leve-manifest.json`` (from here on readers refuse ``<url>``), copy
   every staged object to ``<url>/`` server-side (CopyObject: no bytes through this machine),
   delete objects of an older store that the new one lacks, then write the **manifest last**: the
   store's fingerprint and every object's key, size and crc32c. Then the staging prefix goes.
   A rerun after an interruption here copies again from the (complete) staging prefix.

Readers (:class:`leve.store.reader.Store` at a URL) require the manifest and its fingerprint to
equal the root ``zarr.json``'s: a store whose publish did not finish, or that is being replaced,
is refused in one line (``no leve-manifest.json ... rerun leve prepare``). The chunks' crc32c are
checked on every read as for a local store.

One writer: besides the local flock, the writer creates ``<url>.lock`` with a conditional PUT
(``If-None-Match: *``, which S3 honours since 2024 and moto's server implements): a second
writer's create fails and it is refused in one line naming the holder (host, pid, start time).
The lock object is deleted when the build ends. A writer killed (SIGKILL) leaves it behind; a
rerun on the same host whose holder pid is no longer alive takes it over; from another host the
line says to delete the object once that writer is known to be gone (there is no lease renewal).

Credentials come from the standard sources of each fsspec backend (for S3: ``AWS_*`` environment
variables, ``~/.aws`` profiles, ``AWS_ENDPOINT_URL_S3`` for another endpoint) and are never
printed: error lines name the URL and, for a connection failure, the endpoint.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import time
from pathlib import Path
from typing import Any

from leve.errors import LeveError

MANIFEST = "leve-manifest.json"
STAGING_SUFFIX = ".partial"
LOCK_SUFFIX = ".lock"
STAGING_ENV = "LEVE_STAGING"
# a scheme of two or more characters ("C:/" is a Windows drive), then "://" or, from a Path, ":/"
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):(/+)")


def url_of(path: str | os.PathLike[str]) -> str | None:
    """The URL ``path`` names (``s3://b/k``), or None for a local path. ``s3:/b/k`` (a URL that went
    through :class:`~pathlib.Path`, which folds ``//``) is read back as ``s3://b/k``."""
    text = os.fspath(path)
    m = _URL.match(text)
    if m is None:
        return None
    scheme, slashes, rest = m.group(1), m.group(2), text[m.end():]
    if scheme.lower() in ("file", "local") and len(slashes) != 2:  # file:/abs (from a Path) or file:///abs
        return f"{scheme}:///{rest}"
    return f"{scheme}://{rest}"


def location(path: str | os.PathLike[str]) -> str | Path:
    """A local ``Path`` (a path, or a ``file://`` URL) or a remote URL whose fsspec backend is installed;
    anything else is one line naming the URL."""
    url = url_of(path)
    if url is None:
        return Path(path)
    scheme, _, rest = url.partition("://")
    if scheme.lower() in ("file", "local"):
        return Path("/" + rest.lstrip("/")) if rest.startswith("/") else Path(rest)
    import fsspec

    try:
        fsspec.get_filesystem_class(scheme.lower())
    except ValueError:
        raise LeveError(f"{url}: unknown URL scheme '{scheme}://' (a store is a local path or an fsspec URL such as "
                        f"s3://bucket/prefix/name.zarr)") from None
    except ImportError as exc:
        raise LeveError(f"{url}: reading {scheme}:// needs a package that is not installed ({exc})") from None
    if not rest.strip("/"):
        raise LeveError(f"{url}: the URL names no bucket or path")
    return url


def filesystem(url: str) -> tuple[Any, str]:
    """The fsspec filesystem of ``url`` and the path in it (credentials from the backend's own sources)."""
    from fsspec.core import url_to_fs

    try:
        return url_to_fs(url)
    except Exception as exc:
        raise remote_error(url, exc) from exc


def remote_error(url: str, exc: BaseException) -> LeveError:
    """One line for a failure talking to the object store of ``url``: a missing bucket, denied access or an
    unreachable endpoint; never the credentials."""
    text = str(exc).splitlines()[0][:200] if str(exc) else exc.__class__.__name__
    name = exc.__class__.__name__
    bucket = url.partition("://")[2].split("/", 1)[0]
    if isinstance(exc, FileNotFoundError) and "bucket" in text.lower():
        return LeveError(f"{url}: bucket '{bucket}' does not exist (create it, or check the URL)")
    if isinstance(exc, PermissionError) or "AccessDenied" in text or "Forbidden" in text:
        return LeveError(f"{url}: access denied ({text}); check the credentials (AWS_* variables or profile) "
                         f"and the bucket's policy")
    if "Endpoint" in name or "Connect" in name or "Connect" in text:
        return LeveError(f"{url}: cannot reach the object store ({text}); check the endpoint "
                         f"(AWS_ENDPOINT_URL_S3) and the network")
    if isinstance(exc, FileNotFoundError):
        return LeveError(f"{url}: not found ({text})")
    return LeveError(f"{url}: object store error ({name}: {text})")


def staging_dir(url: str) -> Path:
    """The local folder a store for ``url`` is built in before its upload (``$LEVE_STAGING/<hash>/<name>``)."""
    base = Path(os.environ.get(STAGING_ENV) or Path.home() / ".cache" / "leve" / "staging")
    digest = hashlib.sha256(url.encode()).hexdigest()[:16]
    return base / digest / url.rstrip("/").rsplit("/", 1)[-1]


# --------------------------------------------------------------------------- the manifest


def read_manifest(url: str) -> dict[str, Any] | None:
    """The manifest of the store at ``url``; None when there is none (never published, or being replaced).
    A missing bucket, denied access or an unreachable endpoint is one line."""
    fs, root = filesystem(url)
    try:
        blob = fs.cat_file(f"{root}/{MANIFEST}")
    except FileNotFoundError as exc:
        if "bucket" in str(exc).lower():
            raise remote_error(url, exc) from exc
        return None
    except Exception as exc:
        raise remote_error(url, exc) from exc
    try:
        manifest = json.loads(blob)
    except ValueError:
        return None
    return manifest if isinstance(manifest, dict) else None


def check_published(url: str, attrs: dict[str, Any]) -> None:
    """Refuse a store at ``url`` whose manifest is missing or does not match its root attributes."""
    manifest = read_manifest(url)
    if manifest is None:
        raise LeveError(f"{url}: no {MANIFEST}: the store's upload did not finish or it is being replaced; "
                        f"rerun `leve prepare` (with --out {url})")
    if manifest.get("fingerprint") != attrs.get("fingerprint"):
        raise LeveError(f"{url}: its {MANIFEST} and zarr.json are of different builds (a publish was interrupted); "
                        f"rerun `leve prepare` (with --out {url})")


def copy_problems(folder: Path) -> list[tuple[str, str]]:
    """(file, problem) for a local copy of a bucket store (``dvc import-url``, ``aws s3 sync``) that carries its
    ``leve-manifest.json``: the copy must hold the build the manifest names (the root zarr.json's fingerprint)
    and every object it lists with that size and crc32c. A copy taken while the store was being republished
    mixes two builds, each chunk whole and checksummed: only the manifest tells them apart."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        objects = manifest["objects"]
        root = json.loads((folder / "zarr.json").read_text()).get("attributes", {})
    except FileNotFoundError as exc:
        return [(Path(exc.filename or MANIFEST).name, "missing from the copy")]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return [(MANIFEST, f"unreadable ({exc.__class__.__name__})")]
    problems = []
    if manifest.get("fingerprint") != root.get("fingerprint"):
        problems.append((MANIFEST, "names another build than zarr.json (copied while the store was being republished)"))
    for rel, want in sorted(objects.items()):
        path = folder / rel
        if not path.is_file():
            problems.append((rel, "listed in the manifest, missing from the copy"))
        elif path.stat().st_size != int(want["size"]) or _crc(path) != int(want["crc32c"]):
            problems.append((rel, "differs from the manifest's (another build, or changed after the copy)"))
    return problems


def usage(url: str) -> tuple[int, int]:
    """(bytes, objects) of the published store at ``url``, from its manifest."""
    manifest = read_manifest(url) or {}
    objects = manifest.get("objects", {})
    return sum(int(o["size"]) for o in objects.values()), len(objects)


# --------------------------------------------------------------------------- one writer


class RemoteLock:
    """``<url>.lock``, created with a conditional PUT (If-None-Match: *); see the module docstring."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.fs, root = filesystem(url)
        self.key = root.rstrip("/") + LOCK_SUFFIX
        self.token = f"{socket.gethostname()}:{os.getpid()}:{time.time_ns()}"
        body = json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "token": self.token,
                           "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}).encode()
        if not self._create(body):
            holder = self._holder()
            if not _stale(holder) or not self._take_over(holder, body):
                where = f"{holder.get('host')} pid {holder.get('pid')} since {holder.get('since')}" if holder else "unknown"
                raise LeveError(f"{url}: another writer holds {url.rstrip('/')}{LOCK_SUFFIX} ({where}); if it is gone, "
                                f"delete that object and rerun")
        self.held = True

    def _create(self, body: bytes) -> bool:
        try:
            self.fs.pipe_file(self.key, body, mode="create")
        except FileExistsError:
            return False
        except Exception as exc:
            raise remote_error(self.url, exc) from exc
        return True

    def _holder(self) -> dict[str, Any]:
        try:
            holder = json.loads(self.fs.cat_file(self.key))
        except Exception:
            return {}
        return holder if isinstance(holder, dict) else {}

    def _take_over(self, holder: dict[str, Any], body: bytes) -> bool:
        if self._holder().get("token") != holder.get("token"):
            return False
        self.fs.rm_file(self.key)
        return self._create(body)

    def close(self) -> None:
        if getattr(self, "held", False):
            self.held = False
            try:
                if self._holder().get("token") == self.token:
                    self.fs.rm_file(self.key)
            except Exception:  # the lock is left behind; the next writer on this host takes it over
                pass


def _stale(holder: dict[str, Any]) -> bool:
    """True when the lock's holder ran on this host and its process is gone (killed)."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return False
    if holder["pid"] == os.getpid():
        return False
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


# --------------------------------------------------------------------------- upload and publish


def _crc(path: Path) -> int:
    import google_crc32c

    return int(google_crc32c.value(path.read_bytes()))


def publish(local: Path, url: str, fingerprint: str) -> dict[str, Any]:
    """Upload the complete local store ``local`` to ``url`` (staging prefix, server-side copy, manifest
    last; see the module docstring); returns the manifest."""
    fs, root = filesystem(url)
    root = root.rstrip("/")
    staging = root + STAGING_SUFFIX
    files = {p.relative_to(local).as_posix(): p for p in sorted(local.rglob("*")) if p.is_file()}
    objects = {rel: {"size": p.stat().st_size, "crc32c": _crc(p)} for rel, p in files.items()}
    try:
        fs.invalidate_cache()
        staged = object_sizes(fs, staging)
        for rel, p in files.items():  # the root zarr.json last: a staging prefix without it is unfinished
            if staged.get(rel) != objects[rel]["size"] and rel != "zarr.json":
                fs.put_file(str(p), f"{staging}/{rel}")
        fs.put_file(str(files["zarr.json"]), f"{staging}/zarr.json")
        # publish: readers refuse the store from the manifest's removal until the new one is written
        if fs.exists(f"{root}/{MANIFEST}"):
            fs.rm_file(f"{root}/{MANIFEST}")
        fs.invalidate_cache()
        old = object_sizes(fs, root)
        for rel in files:
            if rel != "zarr.json":
                fs.copy(f"{staging}/{rel}", f"{root}/{rel}")
        fs.copy(f"{staging}/zarr.json", f"{root}/zarr.json")
        for rel in sorted(set(old) - set(files) - {MANIFEST}):
            fs.rm_file(f"{root}/{rel}")
        manifest = {"format": 1, "fingerprint": fingerprint, "published_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "objects": objects}
        fs.pipe_file(f"{root}/{MANIFEST}", json.dumps(manifest, sort_keys=True).encode())
        fs.rm(staging, recursive=True)
        fs.invalidate_cache()
    except LeveError:
        raise
    except Exception as exc:
        raise remote_error(url, exc) from exc
    return manifest


def object_sizes(fs: Any, prefix: str) -> dict[str, int]:
    """Key (relative to ``prefix``) -> size of every object under ``prefix``; {} when there is none."""
    try:
        found = fs.find(prefix, detail=True)
    except FileNotFoundError as exc:
        if "bucket" in str(exc).lower():
            raise
        return {}
    return {name[len(prefix) + 1:]: int(info.get("size") or 0) for name, info in found.items()
            if name.startswith(prefix + "/")}


# --------------------------------------------------------------------------- single objects (checkpoints)


def object_cache_dir() -> Path:
    """The local folder of whole objects fetched from URLs (checkpoints): ``objects/`` in the read caches' folder
    (``$LEVE_READ_CACHE``, default ``~/.cache/leve/reads``)."""
    from leve.store.readcache import CACHE_ENV

    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "leve" / "reads") / "objects"


def fetch_object(url: str, what: str = "object") -> Path:
    """A local copy of the object at ``url``.

    One HEAD names the object's version (ETag and size); a copy of that version already in
    :func:`object_cache_dir` is used as it is, else the object is fetched whole (one GET) to a temporary
    name, its size checked against the HEAD's and renamed into place, and the copies of the URL's older
    versions are removed. The copy keeps the object's file name (``best.pt``), so what is read from it is
    what a local file of that name gives. A missing object, a missing bucket, denied access or an
    unreachable endpoint is one line naming the URL (``what`` says what was looked for)."""
    fs, key = filesystem(url)
    try:
        fs.invalidate_cache(key)  # the object as it is now, not as listed before
        info = fs.info(key)
    except FileNotFoundError as exc:
        if "bucket" in str(exc).lower():
            raise remote_error(url, exc) from exc
        raise LeveError(f"{url}: {what} not found") from None
    except Exception as exc:
        raise remote_error(url, exc) from exc
    if info.get("type") == "directory":
        raise LeveError(f"{url}: {what} not found (the URL names a prefix, not an object)")
    size = int(info.get("size") or 0)
    version = str(info.get("ETag") or info.get("etag") or info.get("md5Hash") or info.get("LastModified") or "")
    folder = object_cache_dir() / hashlib.sha256(url.encode()).hexdigest()[:20]
    here = folder / hashlib.sha256(f"{version}\n{size}".encode()).hexdigest()[:16]
    target = here / (key.rstrip("/").rsplit("/", 1)[-1] or "object")
    if target.is_file() and target.stat().st_size == size:
        return target
    here.mkdir(parents=True, exist_ok=True)
    tmp = here / f".{target.name}.{os.getpid()}.{time.time_ns()}.partial"
    try:
        try:
            fs.get_file(key, str(tmp))
        except Exception as exc:
            raise remote_error(url, exc) from exc
        got = tmp.stat().st_size
        if got != size:
            raise LeveError(f"{url}: fetched {got} bytes of the {size} the object holds (changed while read?); rerun")
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    for other in folder.iterdir():  # older versions of this URL
        if other != here and other.is_dir():
            for f in other.iterdir():
                f.unlink(missing_ok=True)
            try:
                other.rmdir()
            except OSError:
                pass
    return target



def upload_file(local: Path, url: str) -> None:
    """Put the local file ``local`` at ``url`` in one atomic write: a reader sees the previous object or the new
    one whole, never part of it (an S3 PUT, or a multipart upload, which appears only once completed)."""
    fs, key = filesystem(url)
    try:
        fs.put_file(str(local), key)
        fs.invalidate_cache(key)
    except Exception as exc:
        raise remote_error(url, exc) from exc
