"""``train.out_dir`` at a URL (``s3://bucket/runs/student``): training writes its checkpoints to a local
folder as it does for a local ``out_dir`` (atomically, resumable; the folder is
:func:`leve.store.remote.staging_dir` of the URL), and each file it saves there (``last.pt``, ``best.pt`` and
its ``MODEL_CARD.md``) is then uploaded to ``<url>/<name>`` in one atomic write
(:func:`leve.store.remote.upload_file`: a reader of the bucket sees the previous object or the new one whole,
never part of one). A ``best.pt`` removed locally (a restart, a run with other params) is deleted from the
bucket too.

Before training, :meth:`OutMirror.sync` makes the local folder hold the furthest run of the two places: the
bucket's ``last.pt`` (and its ``best.pt`` and card) replace the local ones when the bucket's is further
(another machine trained on), or when there are none here (a fresh machine resumes from the bucket); local
files ahead of the bucket's (a kill between a save and its upload) are uploaded. One writer per URL:
``<url>.lock`` (:class:`leve.store.remote.RemoteLock`) besides the local folder's lock.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from leve.models.card import CARD_NAME
from leve.models.checkpoint import local_checkpoint
from leve.progress import console
from leve.store.remote import RemoteLock, fetch_object, filesystem, location, remote_error, staging_dir, upload_file
from leve.train.state import read_state

LAST, BEST = "last.pt", "best.pt"
MIRRORED = (LAST, BEST, CARD_NAME)  # the files of out_dir that go to the bucket


class OutMirror:
    """Uploads the files of the local folder ``local`` to the bucket prefix ``url`` (called with each file
    training writes or removes there)."""

    def __init__(self, url: str, local: Path) -> None:
        self.url, self.local = url.rstrip("/"), local

    def __call__(self, path: Path) -> None:
        target = f"{self.url}/{path.name}"
        if path.exists():
            upload_file(path, target)
            return
        fs, key = filesystem(target)
        try:
            if fs.exists(key):
                fs.rm_file(key)
        except Exception as exc:
            raise remote_error(target, exc) from exc

    def _remote(self, name: str) -> Path | None:
        """A local copy of ``<url>/<name>`` (checked as a checkpoint when it is one), None when there is none."""
        fs, key = filesystem(f"{self.url}/{name}")
        try:
            fs.invalidate_cache(key)
            there = fs.exists(key)
        except Exception as exc:
            raise remote_error(f"{self.url}/{name}", exc) from exc
        if not there:
            return None
        if name.endswith(".pt"):
            return local_checkpoint(f"{self.url}/{name}")
        return fetch_object(f"{self.url}/{name}")

    def sync(self, restart: bool, upload: bool) -> None:
        """Before training: the local folder takes the bucket's run when that is further or there is none here;
        with ``upload`` (process 0), local files ahead of the bucket's are uploaded. ``restart``: nothing to
        take (the run starts over and its saves replace the bucket's files)."""
        self.local.mkdir(parents=True, exist_ok=True)
        if restart:
            return
        remote = self._remote(LAST)
        here = self.local / LAST
        if remote is not None and (not here.exists() or _step(remote) > _step(here)):
            console.print(f"{self.url}/{LAST}: step {_step(remote)} in the bucket; continuing from it", markup=False,
                          highlight=False)
            for name in MIRRORED:
                source = remote if name == LAST else self._remote(name)
                if source is None:
                    (self.local / name).unlink(missing_ok=True)
                else:
                    _copy(source, self.local / name)
            return
        if upload and here.exists() and (remote is None or remote.read_bytes() != here.read_bytes()):
            for name in MIRRORED:  # saved here, not (all) uploaded: a kill between a save and its upload
                if (self.local / name).exists():
                    self(self.local / name)


def _step(path: Path) -> int:
    """The optimiser steps a ``last.pt`` was saved after."""
    return int(read_state(path)[1]["position"].get("step", 0))


def _copy(source: Path, target: Path) -> None:
    """``source`` to ``target`` under a temporary name, renamed into place (a reader never sees part of it)."""
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.copyfile(source, tmp)
    os.replace(tmp, target)


@contextmanager
def out_at_url(out_dir: Path, restart: bool) -> Iterator[tuple[Path, OutMirror | None]]:
    """For a ``train.out_dir`` at a URL: the local folder training writes to and the :class:`OutMirror` that
    uploads its checkpoints, the bucket's run synced in first, ``<url>.lock`` held by process 0 meanwhile. A
    local ``out_dir``: itself and no mirror."""
    where = location(out_dir)
    if not isinstance(where, str):
        yield where, None
        return
    main = os.environ.get("RANK", "0") == "0"
    local = staging_dir(where)
    lock = RemoteLock(where) if main else None
    try:
        mirror = OutMirror(where, local)
        mirror.sync(restart, upload=main)
        if main:
            console.print(f"train.out_dir {where}: checkpoints written to {local}, each uploaded once saved",
                          markup=False, highlight=False)
        yield local, mirror
    finally:
        if lock is not None:
            lock.close()
