"""A teacher cache in a bucket: ``leve teacher-cache --out s3://bucket/prefix/<dataset>.zarr``.

Each split is published on its own, as in a local cache, with the all-or-nothing publish of a bucket store
(:mod:`leve.store.remote`): staged objects first, then a manifest that readers trust, written last. One
split of the cache at ``<url>`` is staged under ``<url>.<split>.partial/<build>/`` (``<build>``: the cache's
identity fingerprint and block size, so blocks of two builds never mix) and published to ``<url>/<split>/``
with ``<url>/<split>/leve-manifest.json``.

Writers, one per shard (``--shard I/N`` or torchrun's RANK/WORLD_SIZE; one shard is ``0/1``):

1. **Blocks.** Each shard builds its blocks (``b % N == I``) as a local build does, in a local staging folder
   of its own (``$LEVE_STAGING``), block by block, resumably. As soon as a block is written its shard files are
   uploaded to ``<staging>/<split>/<array>/c/<b>/...`` (one PUT each: an object is there whole or not at all),
   then ``<staging>/_blocks/<b>.json``: the block's per-sample statistics and its objects' sizes and crc32c.
   A block counts as staged once that record is there; a rerun uploads what it built but did not stage and
   computes only the blocks neither staged nor built.
2. **Done marker.** A shard whose blocks are all staged writes ``<staging>/_done/I-of-N.json`` listing them.
3. **Publish.** A shard that then finds every block of the split listed by the markers publishes: it takes
   ``<url>.<split>.publish.lock`` (a conditional PUT, as the writer lock; a shard that finds it taken leaves the
   publish to its holder). From the staged records alone (so any host can publish) it writes the statistics
   arrays and the split's attributes (``written``, ``complete`` last) locally, exactly as a local build does,
   then deletes ``<url>/<split>/leve-manifest.json`` (readers refuse the split from here on), copies the staged
   shard files server-side to ``<url>/<split>/``, puts the statistics, the ``zarr.json`` files (the split's
   last) and the cache's root ``zarr.json``, deletes objects of an older build the new one lacks, and writes the
   manifest **last** (the identity fingerprint, every object's key, size and crc32c). Then the staging prefix
   goes. Every step repeats safely: a rerun after an interruption anywhere before the manifest publishes again
   from the (complete) staging prefix; a publish that finds the manifest already written does nothing.

Coordination needs no flock and no shared disk: conditional-PUT locks (one per shard, ``<url>.<split>.I-of-N.lock``,
which refuses a second writer of the same shard in one line, and the publish lock) and the marker objects. A
lock left by a killed writer is taken over by a rerun on the same host (:class:`leve.store.remote.RemoteLock`).

Readers (:func:`leve.teacher.cache.read.check_cache_matches`) require the split's manifest and its fingerprint
to equal the split's ``identity_fingerprint``: a split whose upload or publish did not finish is refused in one
line.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zarr

from leve import __version__
from leve.errors import LeveError
from leve.store.builder import SplitWriter, StoreBuilder
from leve.store.format import PARTIAL_SUFFIX, PROGRESS_DIR, SplitSpec, describe_spec, meta_paths
from leve.store.integrity import WRITTEN, chunk_keys, crc32c, written_files
from leve.store.remote import (
    LOCK_SUFFIX,
    MANIFEST,
    RemoteLock,
    filesystem,
    object_sizes,
    read_manifest,
    remote_error,
    staging_dir,
)

BLOCKS = "_blocks"  # staging: per block, its statistics and its objects (written after them)
DONE = "_done"  # staging: per shard, the blocks it staged (written once they all are)
STAGING_KIND = {"kind": "teacher-cache-staging"}


@dataclass
class Outcome:
    """What one shard's run did (:class:`leve.teacher.cache.build.CacheResult` carries it)."""

    written: int = 0
    seconds: float = 0.0
    complete: bool = False
    up_to_date: bool = False
    pending_elsewhere: int = 0
    bytes: int = 0
    notes: list[str] = field(default_factory=list)


# the teacher's pass over some blocks of the split, each written through the writer: (images, seconds)
BlockRunner = Callable[[SplitWriter, list[int]], tuple[int, float]]


def published_bytes(url: str, split: str, identity_fp: str) -> int | None:
    """The bytes of split ``split`` published at ``url`` as the build ``identity_fp`` (its manifest's), else None."""
    manifest = read_manifest(f"{url.rstrip('/')}/{split}")
    if manifest is None or manifest.get("fingerprint") != identity_fp:
        return None
    return sum(int(o["size"]) for o in manifest.get("objects", {}).values())


def build_in_bucket(url: str, spec: SplitSpec, identity_fp: str, *, block_size: int, shard: tuple[int, int],
                    force: bool, max_blocks: int | None, run: BlockRunner) -> Outcome:
    """This shard's blocks of split ``spec.name`` of the cache at ``url``, staged; the split published by the shard
    that finds every block staged (see the module docstring)."""
    cache = BucketSplit(url, spec, identity_fp, block_size)
    if not force:
        done = published_bytes(cache.url, cache.split, identity_fp)
        if done is not None:
            return Outcome(complete=True, up_to_date=True, bytes=done)
    lock = RemoteLock(f"{cache.url}.{cache.split}.{shard[0]}-of-{shard[1]}")  # a second writer of this shard: one line
    try:
        return cache.build(shard, force, max_blocks, run)
    finally:
        lock.close()


class BucketSplit:
    """One split of a teacher cache at a URL: its staging prefix, its blocks, its publish."""

    def __init__(self, url: str, spec: SplitSpec, identity_fp: str, block_size: int) -> None:
        self.url = url.rstrip("/")
        self.spec = spec
        self.split = spec.name
        self.identity_fp = identity_fp
        self.block_size = int(block_size)
        self.fs, root = filesystem(self.url)
        self.root = root.rstrip("/")
        self.staging_all = f"{self.root}.{self.split}{PARTIAL_SUFFIX}"
        self.staging = f"{self.staging_all}/{identity_fp[:16]}-{self.block_size}"
        self.n_blocks = -(-spec.length // self.block_size)

    # -- objects ---------------------------------------------------------------

    def _call(self, what: Callable[[], Any]) -> Any:
        """``what()``; a failure talking to the object store is one line, a missing object FileNotFoundError."""
        try:
            return what()
        except LeveError:
            raise
        except FileNotFoundError as exc:
            if "bucket" in str(exc).lower():
                raise remote_error(self.url, exc) from exc
            raise
        except Exception as exc:
            raise remote_error(self.url, exc) from exc

    def sizes(self, prefix: str) -> dict[str, int]:
        """Key (relative to ``prefix``) -> size of every object under ``prefix``; {} when there is none."""
        def listing() -> dict[str, int]:
            self.fs.invalidate_cache()
            return object_sizes(self.fs, prefix)

        return dict(self._call(listing))

    def put_file(self, path: Path, key: str) -> None:
        self._call(lambda: self.fs.put_file(str(path), key))

    def put_json(self, key: str, doc: dict[str, Any]) -> None:
        self._call(lambda: self.fs.pipe_file(key, json.dumps(doc, sort_keys=True).encode()))

    def get_json(self, key: str) -> dict[str, Any]:
        return dict(json.loads(self._call(lambda: self.fs.cat_file(key))))

    def staged_blocks(self) -> set[int]:
        """The blocks whose record is staged (their shard files are, too: the record is written after them)."""
        return {int(k[: -len(".json")]) for k in self.sizes(f"{self.staging}/{BLOCKS}") if k.endswith(".json")}

    def covered(self) -> set[int]:
        """The blocks the staged done markers list."""
        blocks: set[int] = set()
        for key in self.sizes(f"{self.staging}/{DONE}"):
            try:
                blocks.update(int(b) for b in self.get_json(f"{self.staging}/{DONE}/{key}")["blocks"])
            except FileNotFoundError:  # removed by a publisher that has finished
                pass
        return blocks

    def local(self, name: str) -> Path:
        """A local staging folder of this split (``$LEVE_STAGING/<hash>/<cache>.<split>.<name>``)."""
        return staging_dir(f"{self.url}.{self.split}.{name}")

    # -- one shard ---------------------------------------------------------------

    def build(self, shard: tuple[int, int], force: bool, max_blocks: int | None, run: BlockRunner) -> Outcome:
        index, count = shard
        local = self.local(f"{index}-of-{count}")
        if force and count == 1:
            shutil.rmtree(local.parent, ignore_errors=True)
            if self.sizes(self.staging):
                self._call(lambda: self.fs.rm(self.staging, recursive=True))
        builder = StoreBuilder(local, STAGING_KIND, self.identity_fp, block_size=self.block_size, exclusive=False)
        writer = StagingWriter(builder, self.spec, self)
        staged = self.staged_blocks()
        built = set(range(writer.n_blocks)) - set(writer.pending_blocks())
        for block in sorted(built - staged):  # built here before an interruption, not staged yet
            writer.stage(block)
        mine = [b for b in range(self.n_blocks) if b % count == index]
        todo = [b for b in mine if b not in staged | built]
        if max_blocks is not None:
            todo = todo[:max_blocks]
        written, seconds = run(writer, todo)
        outcome = Outcome(written, seconds)
        staged = self.staged_blocks()
        if not set(mine) <= staged:  # stopped early: the rest of this shard's blocks is left for a rerun
            outcome.pending_elsewhere = self.n_blocks - len(staged)
            return outcome
        self.put_json(f"{self.staging}/{DONE}/{index}-of-{count}.json",
                      {"shard": [index, count], "blocks": mine, "host": socket.gethostname(), "pid": os.getpid()})
        shutil.rmtree(local.parent, ignore_errors=True)  # every block of this shard is in the bucket
        left = self.n_blocks - len(self.covered())
        if left:
            done = published_bytes(self.url, self.split, self.identity_fp)  # a racing publisher may have finished
            outcome.complete, outcome.bytes = done is not None, done or 0
            outcome.pending_elsewhere = 0 if done is not None else left
            return outcome
        claim = _try_lock(f"{self.url}.{self.split}.publish")
        if claim is None:
            outcome.notes.append(f"another shard holds {self.url}.{self.split}.publish{LOCK_SUFFIX}: it publishes")
            return outcome
        try:
            if force or published_bytes(self.url, self.split, self.identity_fp) is None:
                self.publish()
            outcome.complete = True
            outcome.bytes = published_bytes(self.url, self.split, self.identity_fp) or 0
        finally:
            claim.close()
        return outcome

    # -- the publish ---------------------------------------------------------------

    def publish(self) -> None:
        """Publish the staged split (every block staged) to ``<url>/<split>/``, manifest last; then remove the staging
        prefix. Everything it writes itself it makes from the staged records, so it repeats from any host."""
        local = self.local("publish")
        shutil.rmtree(local.parent, ignore_errors=True)
        try:
            self._publish(local)
        finally:
            shutil.rmtree(local.parent, ignore_errors=True)

    def _publish(self, local: Path) -> None:
        builder = StoreBuilder(local, STAGING_KIND, self.identity_fp, block_size=self.block_size, exclusive=False)
        writer = builder.split(self.spec)
        split_dir = builder.partial / self.split
        progress = builder.partial / PROGRESS_DIR / self.split
        staged = self.sizes(f"{self.staging}/{self.split}")
        blocks: dict[str, dict[str, int]] = {}  # the staged shard files: key in the split -> size, crc32c
        for b in range(self.n_blocks):
            try:
                record = self.get_json(f"{self.staging}/{BLOCKS}/{b}.json")
            except FileNotFoundError:
                raise LeveError(f"{self.url}/{self.split}: block {b} is not staged (no {BLOCKS}/{b}.json under "
                                f"{self.staging_all}/); rerun `leve teacher-cache`") from None
            (progress / f"{b}.json").write_text(json.dumps(record["record"]))
            blocks.update(record["objects"])
        for rel, want in blocks.items():
            if staged.get(rel) != int(want["size"]):
                raise LeveError(f"{self.url}/{self.split}: staged object {rel} is missing or of another size; "
                                "rerun `leve teacher-cache`")
            placeholder = split_dir / rel  # for written_files: the chunk file is staged
            placeholder.parent.mkdir(parents=True, exist_ok=True)
            placeholder.touch()
        # what a local build's SplitWriter.finish(mark_complete=True) writes, from the staged records
        writer.write_meta()
        paths = [*self.spec.arrays, *meta_paths(describe_spec(self.spec)).values()]
        writer.group.attrs[WRITTEN] = written_files(split_dir, paths)
        writer.group.attrs.update({"completed_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")})
        writer.group.attrs["complete"] = True
        made = {p.relative_to(split_dir).as_posix(): p for p in sorted(split_dir.rglob("*"))
                if p.is_file() and p.relative_to(split_dir).as_posix() not in blocks}
        objects = {**blocks, **{rel: {"size": p.stat().st_size, "crc32c": crc32c(p.read_bytes())}
                                for rel, p in made.items()}}
        root_dir = local.parent / "root"
        root_json = self._cache_root(root_dir)
        final = f"{self.root}/{self.split}"
        fs = self.fs

        def publish() -> None:
            if fs.exists(f"{final}/{MANIFEST}"):
                fs.rm_file(f"{final}/{MANIFEST}")  # readers refuse the split from here on
            old = self.sizes(final)
            for rel in sorted(blocks):
                fs.copy(f"{self.staging}/{self.split}/{rel}", f"{final}/{rel}")
            for rel in sorted(made, key=lambda r: (r == "zarr.json", r.endswith("zarr.json"), r)):  # split's last
                fs.put_file(str(made[rel]), f"{final}/{rel}")
            fs.put_file(str(root_json), f"{self.root}/zarr.json")
            for rel in sorted(set(old) - set(objects) - {MANIFEST}):
                fs.rm_file(f"{final}/{rel}")
            manifest = {"format": 1, "kind": "teacher-cache", "split": self.split, "fingerprint": self.identity_fp,
                        "published_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "objects": objects}
            fs.pipe_file(f"{final}/{MANIFEST}", json.dumps(manifest, sort_keys=True).encode())
            fs.rm(self.staging_all, recursive=True)
            fs.invalidate_cache()

        self._call(publish)

    def _cache_root(self, folder: Path) -> Path:
        """The cache's root ``zarr.json`` as a local build leaves it (the bucket's, if any, updated the same way)."""
        folder.mkdir(parents=True, exist_ok=True)
        try:
            blob = self._call(lambda: self.fs.cat_file(f"{self.root}/zarr.json"))
            (folder / "zarr.json").write_bytes(blob)
        except FileNotFoundError:
            pass
        root = zarr.open_group(str(folder), mode="a")
        root.attrs.update({"kind": "teacher-cache", "dataset": self.spec.attrs.get("dataset", {}).get("name"),
                           "leve_version": __version__, "complete": True})
        return folder / "zarr.json"


class StagingWriter(SplitWriter):
    """A :class:`~leve.store.builder.SplitWriter` whose every block, once written locally, is staged in the bucket."""

    def __init__(self, builder: StoreBuilder, spec: SplitSpec, cache: BucketSplit) -> None:
        super().__init__(builder, spec)
        self.cache = cache

    def write_block(self, block: int, arrays: dict[str, Any], meta: dict[str, list[Any]]) -> None:
        super().write_block(block, arrays, meta)
        self.stage(block)

    def stage(self, block: int) -> None:
        """Upload the block's shard files, then its record (statistics, objects' sizes and crc32c)."""
        split_dir = self.builder.partial / self.spec.name
        objects: dict[str, dict[str, int]] = {}
        for name in self.spec.arrays:
            meta = json.loads((split_dir / name / "zarr.json").read_text())
            rel = f"{name}/{chunk_keys(meta, block + 1)[block]}"
            data = (split_dir / rel).read_bytes()
            objects[rel] = {"size": len(data), "crc32c": crc32c(data)}
            self.cache.put_file(split_dir / rel, f"{self.cache.staging}/{self.spec.name}/{rel}")
        record = json.loads((self._progress_dir / f"{block}.json").read_text())
        self.cache.put_json(f"{self.cache.staging}/{BLOCKS}/{block}.json", {"record": record, "objects": objects})


def _try_lock(url: str) -> RemoteLock | None:
    """:class:`~leve.store.remote.RemoteLock` of ``url``, or None when another writer holds it."""
    try:
        return RemoteLock(url)
    except LeveError as exc:
        if f"another writer holds {url}{LOCK_SUFFIX}" in str(exc):
            return None
        raise
