"""Teacher caches at s3:// URLs, against moto's S3 server on 127.0.0.1 (the fixtures of tests/store/loopback.py).

A bucket cache equals its local twin byte for byte and is read back to the same maps; two shards publish one
manifest equal to a single writer's; a writer killed (SIGKILL) in the middle of its upload leaves nothing a reader
takes, and a rerun finishes it equal to an uninterrupted run; a second writer of a shard is refused; a split whose
upload or publish did not finish is refused by the reader in one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from leve.errors import LeveError
from leve.store.integrity import verify_store
from leve.store.remote import LOCK_SUFFIX, MANIFEST, RemoteLock
from leve.teacher.cache.build import build_teacher_cache
from leve.teacher.cache.read import open_teacher_cache
from leve.teacher.loading import load_teacher
from tests.explicit import caching
from tests.factories import make_store
from tests.store.loopback import endpoint_fixture, s3_fixture  # noqa: F401 (fixtures)

pytest.importorskip("moto.server")
s3fs = pytest.importorskip("s3fs")

SIZES = [(30, 40), (20, 50), (30, 40), (30, 40), (20, 50), (30, 40), (25, 33)]  # 4 blocks of 2
RUN = caching(block_size=2)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("ds") / "tiny.zarr", SIZES)


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory, store: Path, fast_teacher_dir: Path) -> Path:
    """The local twin: the same teacher's cache of the same split in a local folder."""
    out = tmp_path_factory.mktemp("local") / "tiny.zarr"
    assert build_teacher_cache(store, out, "train", load_teacher(str(fast_teacher_dir)), **RUN,
                               show_progress=False).complete
    return out


def _build(store: Path, teacher_dir: Path, url: str, **over: object):
    return build_teacher_cache(store, url, "train", load_teacher(str(teacher_dir)), **{**RUN, **over},
                               show_progress=False)


def _objects(fs, root: str) -> dict[str, bytes]:
    fs.invalidate_cache()
    return {k[len(root) + 1:]: fs.cat_file(k) for k in fs.find(root)}


def _untimed(key: str, blob: bytes) -> object:
    """A zarr.json or manifest without its times (and the manifest's entry for the split's zarr.json, whose crc32c
    covers its completion time); other objects as they are."""
    if not key.endswith(".json"):
        return blob
    doc = json.loads(blob)
    for times in (doc, doc.get("attributes", {})):
        times.pop("completed_at", None), times.pop("published_at", None)
    if key.endswith(MANIFEST):
        doc["objects"]["zarr.json"] = None
    return doc


def _published(fs, root: str) -> dict[str, object]:
    return {k: _untimed(k, v) for k, v in _objects(fs, root).items()}


def _leftovers(fs, root: str) -> list[str]:
    """Staging prefixes and lock objects beside the cache."""
    fs.invalidate_cache()
    parent, name = root.rsplit("/", 1)
    return sorted(p for p in fs.ls(parent) if p.rsplit("/", 1)[-1].startswith(name + ".train"))


# --------------------------------------------------------------------------- a bucket cache and its local twin


def test_a_bucket_cache_equals_its_local_twin_and_reads_back_the_same_maps(s3, store, twin, fast_teacher_dir, tmp_path,
                                                                           monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = "s3://bkt/teacher/tiny.zarr"
    result = _build(store, fast_teacher_dir, url)
    assert result.complete and not result.up_to_date and result.written == len(SIZES) and result.path == url
    assert not any(p.name.startswith("s3:") for p in tmp_path.rglob("*"))  # nothing local named `s3:`
    remote = _objects(s3, "bkt/teacher/tiny.zarr")
    local = {p.relative_to(twin).as_posix(): p.read_bytes() for p in twin.rglob("*") if p.is_file()}
    manifest = json.loads(remote.pop(f"train/{MANIFEST}"))
    assert set(remote) == set(local) and set(manifest["objects"]) == {k[len("train/"):] for k in local if k != "zarr.json"}
    for key, blob in local.items():  # every byte equal; the split's zarr.json differs only by its completion time
        assert _untimed(key, remote[key]) == _untimed(key, blob), key
        if key != "train/zarr.json":
            assert remote[key] == blob, key
        if key != "zarr.json":
            assert manifest["objects"][key[len("train/"):]]["size"] == len(remote[key])
    assert manifest["fingerprint"] == json.loads(remote["train/zarr.json"])["attributes"]["identity_fingerprint"]
    assert result.bytes == sum(o["size"] for o in manifest["objects"].values())
    assert _leftovers(s3, "bkt/teacher/tiny.zarr") == []  # no staging prefix, no lock left
    bad, counts = verify_store(url)  # `leve verify`: the split's manifest and every chunk's crc32c
    assert bad == [] and counts["chunk_files"] == 7 and counts["arrays"] == 4
    # read through the reader train and eval use, from Zarr and through the read-through cache's fast path
    here = open_teacher_cache(twin, "train", store)
    monkeypatch.setenv("LEVE_READ_CACHE", str(tmp_path / "reads"))
    for cache_bytes in (0, 10**7):
        bucket = open_teacher_cache(url, "train", store, cache_bytes=cache_bytes)
        assert (bucket._fast is not None) == bool(cache_bytes)
        assert np.array_equal(bucket.raw_scale(), here.raw_scale()) and len(bucket) == len(SIZES)
        for i in range(len(SIZES)):
            assert np.array_equal(bucket.disparity(i), here.disparity(i))
    assert any((tmp_path / "reads").rglob("*"))  # the shard files were kept locally
    # a URL that went through a Path (a typer option, train's teacher_dir / name) is read as the URL
    assert open_teacher_cache(Path(url), "train", store).path == url
    again = _build(store, fast_teacher_dir, url)
    assert again.up_to_date and again.written == 0 and again.complete
    forced = _build(store, fast_teacher_dir, url, force=True)  # --force: computed and published again, the same
    assert forced.complete and not forced.up_to_date and forced.written == len(SIZES)
    assert {k: _untimed(k, v) for k, v in remote.items()} == {k: _untimed(k, v) for k, v in
                                                               _objects(s3, "bkt/teacher/tiny.zarr").items()
                                                               if k != f"train/{MANIFEST}"}
    assert _leftovers(s3, "bkt/teacher/tiny.zarr") == []


# --------------------------------------------------------------------------- shards


def test_two_shards_publish_one_manifest_equal_to_a_single_writers(s3, store, fast_teacher_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    whole, sharded = "s3://bkt/whole/tiny.zarr", "s3://bkt/sharded/tiny.zarr"
    assert _build(store, fast_teacher_dir, whole).complete
    first = _build(store, fast_teacher_dir, sharded, shard=(1, 2))  # blocks 1 and 3 (rows 2-3, 6)
    assert not first.complete and first.written == 3 and first.pending_elsewhere == 2
    staging = s3.find("bkt/sharded/tiny.zarr.train.partial")
    assert sorted(k.split("/", 4)[-1] for k in staging if "/_" in k) == ["_blocks/1.json", "_blocks/3.json",
                                                                        "_done/1-of-2.json"]
    with pytest.raises(LeveError) as info:  # nothing published yet: the reader refuses the split in one line
        open_teacher_cache(sharded, "train", store)
    assert f"tiny.zarr/train: no {MANIFEST}: the teacher cache's upload did not finish" in str(info.value)
    assert "\n" not in str(info.value)
    second = _build(store, fast_teacher_dir, sharded, shard=(0, 2))  # the last shard to finish publishes
    assert second.complete and second.written == 4
    assert _published(s3, "bkt/sharded/tiny.zarr") == _published(s3, "bkt/whole/tiny.zarr")
    assert _leftovers(s3, "bkt/sharded/tiny.zarr") == []
    # a shard rerun after the publish finds the split up to date
    assert _build(store, fast_teacher_dir, sharded, shard=(1, 2)).up_to_date


def test_a_shard_that_loses_the_publish_race_leaves_it_to_the_holder(s3, store, fast_teacher_dir, tmp_path,
                                                                      monkeypatch):
    """Two shards that finish together both see every block staged; the publish lock lets one publish."""
    monkeypatch.chdir(tmp_path)
    url = "s3://bkt/race/tiny.zarr"
    assert not _build(store, fast_teacher_dir, url, shard=(1, 2)).complete
    held = RemoteLock(f"{url}.train.publish")  # the other shard is publishing
    try:
        last = _build(store, fast_teacher_dir, url, shard=(0, 2))
    finally:
        held.close()
    assert not last.complete and f"another shard holds {url}.train.publish{LOCK_SUFFIX}" in last.summary()
    with pytest.raises(LeveError, match=f"no {MANIFEST}"):
        open_teacher_cache(url, "train", store)
    rerun = _build(store, fast_teacher_dir, url, shard=(0, 2))  # the holder died: a rerun publishes
    assert rerun.complete and rerun.written == 0
    assert len(open_teacher_cache(url, "train", store)) == len(SIZES)


# --------------------------------------------------------------------------- all or nothing


def test_an_interrupted_publish_is_refused_and_a_rerun_publishes(s3, store, fast_teacher_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = "s3://bkt/cut/tiny.zarr"
    calls = {"n": 0}
    copy = s3fs.S3FileSystem._cp_file

    async def failing_copy(self, *args, **kwargs):  # the publish dies half-way through its server-side copies
        calls["n"] += 1
        if calls["n"] == 3:
            raise ConnectionError("connection lost")
        return await copy(self, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_cp_file", failing_copy)
    with pytest.raises(LeveError, match="tiny.zarr: "):
        _build(store, fast_teacher_dir, url)
    monkeypatch.setattr(s3fs.S3FileSystem, "_cp_file", copy)
    with pytest.raises(LeveError, match=f"no {MANIFEST}: the teacher cache's upload did not finish"):
        open_teacher_cache(url, "train", store)
    rerun = _build(store, fast_teacher_dir, url)  # every block is staged: nothing computed, published again
    assert rerun.complete and rerun.written == 0
    assert len(open_teacher_cache(url, "train", store)) == len(SIZES)
    # a manifest of another build (a publish interrupted over an older split) is refused too
    key = f"bkt/cut/tiny.zarr/train/{MANIFEST}"
    s3.pipe_file(key, json.dumps({**json.loads(s3.cat_file(key)), "fingerprint": "other"}).encode())
    with pytest.raises(LeveError, match=f"its {MANIFEST} and zarr.json are of different builds"):
        open_teacher_cache(url, "train", store)
    bad, _ = verify_store(url)  # `leve verify` says so too
    assert [b.line() for b in bad] == [f"train (file {MANIFEST}): no manifest, or another build's: the split's publish did "
                                       "not finish"]


_DIES_MID_UPLOAD = """
import os, signal, sys
import s3fs
from leve.teacher.cache.build import build_teacher_cache
from leve.teacher.loading import load_teacher
from tests.explicit import caching

put, count = s3fs.S3FileSystem._put_file, [0]

async def put_then_die(self, *args, **kwargs):  # SIGKILL itself before its Nth upload
    count[0] += 1
    if count[0] == int(os.environ["DIE_AT"]):
        os.kill(os.getpid(), signal.SIGKILL)
    return await put(self, *args, **kwargs)

s3fs.S3FileSystem._put_file = put_then_die
build_teacher_cache(sys.argv[1], sys.argv[2], "train", load_teacher(sys.argv[3]), **caching(block_size=2),
                    show_progress=False)
"""


@pytest.mark.slow  # a second Python process that imports torch
def test_sigkill_mid_upload_then_a_rerun_equals_an_uninterrupted_run(s3, store, twin, fast_teacher_dir, tmp_path,
                                                                      monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = "s3://bkt/killed/tiny.zarr"
    env = {**os.environ, "DIE_AT": "3", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run([sys.executable, "-c", _DIES_MID_UPLOAD, str(store), url, str(fast_teacher_dir)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == -9, done.stderr[-2000:]
    s3.invalidate_cache()
    staged = sorted(k.split("/", 3)[-1] for k in s3.find("bkt/killed/tiny.zarr.train.partial"))
    # blocks 0 and 1 staged (shard file, then record); killed as it uploaded block 2, built locally
    assert [k.split("/", 1)[-1] for k in staged] == ["_blocks/0.json", "_blocks/1.json", "train/disparity/c/0/0/0",
                                                     "train/disparity/c/1/0/0"]
    assert s3.exists(f"bkt/killed/tiny.zarr.train.0-of-1{LOCK_SUFFIX}")  # the killed writer's lock is left
    with pytest.raises(LeveError, match=f"no {MANIFEST}: the teacher cache's upload did not finish"):
        open_teacher_cache(url, "train", store)
    rerun = _build(store, fast_teacher_dir, url)  # takes the dead writer's lock over, stages the rest, publishes
    assert rerun.complete and rerun.written == 1  # block 2, built before the kill, is staged, not recomputed
    assert _build(store, fast_teacher_dir, "s3://bkt/whole2/tiny.zarr").complete  # an uninterrupted run
    assert _published(s3, "bkt/killed/tiny.zarr") == _published(s3, "bkt/whole2/tiny.zarr")
    assert _leftovers(s3, "bkt/killed/tiny.zarr") == []
    here = open_teacher_cache(twin, "train", store)
    there = open_teacher_cache(url, "train", store)
    assert all(np.array_equal(there.disparity(i), here.disparity(i)) for i in range(len(SIZES)))


# --------------------------------------------------------------------------- one writer per shard


def test_a_second_writer_of_a_shard_is_refused_in_one_line(s3, store, fast_teacher_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = "s3://bkt/two/tiny.zarr"
    held = RemoteLock(f"{url}.train.0-of-1")  # a writer of this shard holds its lock object
    try:
        with pytest.raises(LeveError) as info:
            _build(store, fast_teacher_dir, url)
        assert f"another writer holds {url}.train.0-of-1{LOCK_SUFFIX}" in str(info.value)
        assert "\n" not in str(info.value)
    finally:
        held.close()
    s3.invalidate_cache()
    assert not s3.exists("bkt/two/tiny.zarr.train.partial")  # the refused writer staged nothing
    assert _build(store, fast_teacher_dir, url).complete  # once the holder is gone


def test_the_cli_writes_a_bucket_cache(s3, store, fast_teacher_dir, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from leve.cli import app

    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text(f"teacher:\n  model: {fast_teacher_dir}\n  workers: 0\n  block_size: 2\n")
    url = "s3://bkt/cli/tiny.zarr"
    args = ["teacher-cache", "--dataset", "tiny", "--split", "train", "--device", "cpu", "--out", url,
            "-S", f"data_dir={store.parent}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"{url}/train: {len(SIZES)} images" in " ".join(result.output.split())
    assert len(open_teacher_cache(url, "train", store)) == len(SIZES)
    assert not (tmp_path / "data").exists()  # nothing written to the local default place

