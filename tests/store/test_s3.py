"""Stores at s3:// URLs, against a real S3 protocol on loopback: moto's server (``ThreadedMotoServer``) on
127.0.0.1, reached by s3fs through ``AWS_ENDPOINT_URL_S3`` with fake credentials.

A URL is never a local path; a bucket store equals its local twin byte for byte and in evaluation metrics;
readers refuse a store whose publish did not finish; a second writer is refused; a missing bucket, a
wrong endpoint and denied access are each one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from leve.datasets import stage
from leve.datasets.build import store_path
from leve.errors import LeveError
from leve.params import Override, build_config
from leve.store.remote import LOCK_SUFFIX, MANIFEST, STAGING_SUFFIX, RemoteLock, location, url_of
from tests.factories import synthetic_store
from tests.store.loopback import SIZES, endpoint_fixture, prepare, s3_fixture  # noqa: F401 (fixtures)

pytest.importorskip("moto.server")
s3fs = pytest.importorskip("s3fs")


def _prepare(url: str, **over: int) -> Any:
    return prepare(url, **over)


@pytest.fixture
def twin(tmp_path):
    """The local twin: the same synthetic store at a local path."""
    return synthetic_store(tmp_path / "local/synthetic.zarr", **SIZES)


# --------------------------------------------------------------------------- a URL is never a local path


def test_a_url_given_as_a_path_is_read_back_as_the_url():
    assert url_of(Path("s3://bkt/p/x.zarr")) == "s3://bkt/p/x.zarr"  # pathlib folds `//`: s3:/bkt/p/x.zarr
    assert location(Path("s3://bkt/p/x.zarr")) == "s3://bkt/p/x.zarr"
    assert location("file:///tmp/x.zarr") == Path("/tmp/x.zarr")
    assert location("data/zarr/x.zarr") == Path("data/zarr/x.zarr")
    assert store_path(Path("s3://bkt/x.zarr"), "synthetic") == "s3://bkt/x.zarr"
    # prepare's `out` (params.yaml or --out/--set): a URL carried to the builder, a file:// URL its local path
    assert url_of(stage.config("synthetic", {"out": Override("s3://bkt/x.zarr")}).out) == "s3://bkt/x.zarr"
    assert stage.config("synthetic", {"out": Override("file:///tmp/x.zarr")}).out == Path("/tmp/x.zarr")
    assert stage.config("synthetic", {"out": Override("data/x.zarr")}).out == Path("data/x.zarr")


def test_an_unknown_scheme_is_one_line_and_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(LeveError) as info:
        _prepare("nosuch://bkt/synthetic.zarr")
    assert "nosuch://bkt/synthetic.zarr" in str(info.value) and "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []  # no folder named `nosuch:`


def test_a_path_parameter_refuses_a_url():
    from leve.datasets.synthetic import Config

    with pytest.raises(LeveError, match=r"s3://bkt/x.zarr.* is a URL; this parameter takes a local path"):
        build_config(Config, {"out": "s3://bkt/x.zarr"}, "prepare.synthetic")


# --------------------------------------------------------------------------- a bucket store and its local twin


def _objects(fs, root: str) -> dict[str, bytes]:
    fs.invalidate_cache()
    return {k[len(root) + 1:]: fs.cat_file(k) for k in fs.find(root)}


def test_prepare_writes_the_bucket_and_it_equals_the_local_twin(s3, twin, tmp_path, monkeypatch):
    from leve.store.reader import open_store

    monkeypatch.chdir(tmp_path)
    url = "s3://bkt/prefix/synthetic.zarr"
    result = _prepare(url)
    assert result.path == url and not result.up_to_date
    assert not any(p.name.startswith("s3:") for p in tmp_path.rglob("*"))  # nothing local named `s3:`
    remote = _objects(s3, "bkt/prefix/synthetic.zarr")
    local = {p.relative_to(twin).as_posix(): p.read_bytes() for p in twin.rglob("*") if p.is_file()}
    manifest = json.loads(remote.pop(MANIFEST))
    assert set(remote) == set(local) == set(manifest["objects"])
    for key, blob in local.items():  # every chunk byte-equal; a zarr.json differs only by its completion time
        if key.endswith("zarr.json"):
            a, b = json.loads(blob), json.loads(remote[key])
            a.get("attributes", {}).pop("completed_at", None), b.get("attributes", {}).pop("completed_at", None)
            assert a == b, key
        else:
            assert remote[key] == blob, key
            assert manifest["objects"][key]["size"] == len(blob)
    assert not s3.exists("bkt/prefix/synthetic.zarr" + STAGING_SUFFIX)
    assert not s3.exists("bkt/prefix/synthetic.zarr" + LOCK_SUFFIX)
    # read through the same reader as eval and train: every sample and its metadata equal
    bucket, here = open_store(url), open_store(twin)
    assert bucket.splits == here.splits
    for name in here.splits:
        a, b = bucket.split(name), here.split(name)
        assert len(a) == len(b) and a.meta.equals(b.meta)
        for i in range(len(b)):
            assert np.array_equal(a.rgb(i), b.rgb(i)) and np.array_equal(a.depth(i), b.depth(i))
    assert _prepare(url).up_to_date  # a rerun finds the published store up to date


class _RampNet(torch.nn.Module):
    """A closed-form predictor (no weights): output 10 / (1 + 4·red + 3·column/(w−1))."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cols = torch.arange(x.shape[-1], dtype=x.dtype) / (x.shape[-1] - 1)
        return 10.0 / (1.0 + 4.0 * x[:, :1] + 3.0 * cols)


def test_eval_metrics_from_the_bucket_equal_the_local_twins(s3, twin, tmp_path, monkeypatch):
    from leve.evaluation.protocols import get_protocol
    from leve.evaluation.runner import evaluate
    from leve.store.reader import open_store
    from tests.explicit import evaluation

    monkeypatch.chdir(tmp_path)
    url = "s3://bkt/synthetic.zarr"
    _prepare(url)
    rows = []
    for where in (url, twin):
        split = open_store(where).split("test")
        protocol = get_protocol("standard", "synthetic", 10.0, align="none", flip=False)
        result = evaluate(_RampNet(), split, protocol, (SIZES["height"], SIZES["width"]), 10.0, **evaluation(),
                          show_progress=False)
        rows.append([s.row() for s in result.scored])
    assert len(rows[0]) == SIZES["test"] and rows[0] == rows[1]


# --------------------------------------------------------------------------- all or nothing


def test_a_store_without_its_manifest_is_refused_and_a_rerun_publishes_it(s3, tmp_path, monkeypatch):
    from leve.store.integrity import verify_store
    from leve.store.reader import open_store

    monkeypatch.chdir(tmp_path)
    url = "s3://bkt/synthetic.zarr"
    calls = {"n": 0}
    copy = s3fs.S3FileSystem._cp_file

    async def failing_copy(self, *args, **kwargs):  # the publish dies half-way through its server-side copies
        calls["n"] += 1
        if calls["n"] == 5:
            raise ConnectionError("connection lost")
        return await copy(self, *args, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_cp_file", failing_copy)
    with pytest.raises(LeveError, match="synthetic.zarr: "):
        _prepare(url)
    assert calls["n"] == 5
    monkeypatch.setattr(s3fs.S3FileSystem, "_cp_file", copy)
    with pytest.raises(LeveError, match=f"no store here, or its upload did not finish \\(no {MANIFEST}\\)"):
        open_store(url)  # the first publish: not even the root zarr.json is there (copied last)
    assert _prepare(url).resumed  # the local build is complete: the upload and publish are redone
    assert open_store(url).split("test").length == SIZES["test"]
    # a rebuild (another test length) whose publish dies over the published store: readers refuse the mix
    calls["n"] = 0
    monkeypatch.setattr(s3fs.S3FileSystem, "_cp_file", failing_copy)
    with pytest.raises(LeveError, match="synthetic.zarr: "):
        _prepare(url, test=SIZES["test"] + 1)
    monkeypatch.setattr(s3fs.S3FileSystem, "_cp_file", copy)
    with pytest.raises(LeveError, match=f"no {MANIFEST}: the store's upload did not finish or it is being replaced"):
        open_store(url)
    bad, _ = verify_store(url)  # `leve verify` says so too
    assert [b.line() for b in bad] == [f"{MANIFEST}: no manifest: the store's upload or publish did not finish"]
    result = _prepare(url, test=SIZES["test"] + 1)
    assert result.resumed and open_store(url).split("test").length == SIZES["test"] + 1
    # a manifest of another build (a publish interrupted over an older store) is refused too
    manifest = json.loads(s3.cat_file(f"bkt/synthetic.zarr/{MANIFEST}"))
    s3.pipe_file(f"bkt/synthetic.zarr/{MANIFEST}", json.dumps({**manifest, "fingerprint": "other"}).encode())
    with pytest.raises(LeveError, match="are of different builds"):
        open_store(url)


_DIES_MID_UPLOAD = """
import os, signal, sys
import s3fs
from leve.datasets import stage
from leve.params import Override

put, count = s3fs.S3FileSystem._put_file, [0]

async def put_then_die(self, *args, **kwargs):  # SIGKILL itself before its Nth upload
    count[0] += 1
    if count[0] == int(os.environ["DIE_AT"]):
        os.kill(os.getpid(), signal.SIGKILL)
    return await put(self, *args, **kwargs)

s3fs.S3FileSystem._put_file = put_then_die
sizes = {k: Override(v) for k, v in (a.split("=") for a in sys.argv[2:])}
stage.run("synthetic", {"out": Override(sys.argv[1]), "workers": Override("1"), **sizes}, show_progress=False)
"""


def _published(fs, root: str) -> dict[str, object]:
    """A bucket store's objects, its zarr.json files and manifest without their times (and the root
    zarr.json's checksum in the manifest, which covers its time)."""
    objects: dict[str, object] = {}
    for key, blob in _objects(fs, root).items():
        if key.endswith(".json"):
            doc = json.loads(blob)
            for times in (doc, doc.get("attributes", {})):
                times.pop("completed_at", None), times.pop("published_at", None)
            if key == MANIFEST:  # the root zarr.json's checksum covers its completion time
                doc["objects"]["zarr.json"] = None
            objects[key] = doc
        else:
            objects[key] = blob
    return objects


def test_sigkill_mid_upload_then_a_rerun_equals_an_uninterrupted_run(s3, tmp_path, monkeypatch):
    import os
    import subprocess
    import sys

    from leve.store.reader import open_store

    monkeypatch.chdir(tmp_path)
    url = "s3://bkt/killed/synthetic.zarr"
    args = [f"{k}={v}" for k, v in SIZES.items()]
    done = subprocess.run([sys.executable, "-c", _DIES_MID_UPLOAD, url, *args], env={**os.environ, "DIE_AT": "7"},
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == -9, done.stderr[-2000:]
    s3.invalidate_cache()
    assert len(s3.find("bkt/killed/synthetic.zarr" + STAGING_SUFFIX)) == 6  # six objects up, then killed
    assert s3.exists("bkt/killed/synthetic.zarr" + LOCK_SUFFIX)  # the killed writer's lock is left behind
    with pytest.raises(LeveError, match="no store here, or its upload did not finish"):
        open_store(url)
    rerun = _prepare(url)  # takes the dead writer's lock over, uploads the rest, publishes
    assert rerun.resumed and rerun.written == 0
    _prepare("s3://bkt/whole/synthetic.zarr")  # an uninterrupted run
    assert _published(s3, "bkt/killed/synthetic.zarr") == _published(s3, "bkt/whole/synthetic.zarr")
    assert not s3.exists("bkt/killed/synthetic.zarr" + LOCK_SUFFIX)


def test_a_damaged_object_fails_its_crc32c(s3, tmp_path, monkeypatch):
    from leve.store.reader import open_store

    monkeypatch.chdir(tmp_path)
    url = "s3://bkt/synthetic.zarr"
    _prepare(url)
    key = "bkt/synthetic.zarr/test/depth/c/0/0/0"
    blob = bytearray(s3.cat_file(key))
    blob[10] ^= 0xFF
    s3.pipe_file(key, bytes(blob))
    with pytest.raises(LeveError, match=r"synthetic.zarr: test/depth sample 0: checksum mismatch"):
        open_store(url).split("test").depth(0)
    monkeypatch.setenv("LEVE_READ_CACHE", str(tmp_path / "reads"))
    cached = open_store(url, cache_bytes=10**7).split("test")  # the fast reader on the cached shard files
    with pytest.raises(LeveError, match=r"^s3://bkt/synthetic.zarr: test/depth sample 0.*checksum mismatch"):
        cached.depth(0)
    with pytest.raises(LeveError, match=r"checksum mismatch"):  # the cached copy is no more trusted than the bucket
        open_store(url, cache_bytes=10**7).split("test").depth(0)


def test_a_bounded_read_through_cache_serves_the_bucket_bytes(s3, twin, tmp_path, monkeypatch):
    """The cache's readers (the fast shard reader on cached files, Zarr for the metadata arrays) fetch each chunk
    file once, whole; a second reader is served from the folder alone; the bound is held, and a shard larger
    than the bound is read through (kept nowhere). Every value equals the local twin's."""
    from leve.store.reader import open_store

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEVE_READ_CACHE", str(tmp_path / "reads"))
    url = "s3://bkt/synthetic.zarr"
    _prepare(url)
    fetched: list[str] = []  # chunk files fetched whole from the bucket
    ranged: list[str] = []  # chunk files read in part (Zarr's reads of a shard without the cache)
    cat = s3fs.S3FileSystem._cat_file

    async def counted(self, path, version_id=None, start=None, end=None, **kwargs):
        if "/c/" in path:
            (fetched if start is None and end is None else ranged).append(path)
        return await cat(self, path, version_id=version_id, start=start, end=end, **kwargs)

    monkeypatch.setattr(s3fs.S3FileSystem, "_cat_file", counted)
    s3fs.S3FileSystem.clear_instance_cache()  # a new instance binds its sync cat_file to the counted one
    local = open_store(twin).split("test")

    def read_all(store) -> None:
        split = store.split("test")
        for i in range(len(split)):
            assert np.array_equal(split.rgb(i), local.rgb(i)) and np.array_equal(split.depth(i), local.depth(i))

    big = open_store(url, cache_bytes=10**7)
    read_all(big)
    first = len(fetched)
    shards = -(-SIZES["test"] // SIZES["block_size"])
    assert len(set(fetched)) == first and not ranged  # each chunk file fetched once, whole (and the metadata's)
    assert sum("test/rgb/" in k for k in fetched) == sum("test/depth/" in k for k in fetched) == shards
    read_all(open_store(url, cache_bytes=10**7))  # a second reader (another worker): all from the cache
    assert len(fetched) == first and not ranged
    folder = big.cache[0]
    bound = max(f.stat().st_size for f in folder.iterdir())  # room for one shard: every other read evicts
    small = open_store(url, cache_bytes=bound + 1)
    assert small.cache[0] == folder
    read_all(small)
    assert sum(f.stat().st_size for f in folder.iterdir()) <= bound + 1
    assert len(fetched) > first
    tiny = open_store(url, cache_bytes=1)  # every shard larger than the bound: read through, nothing kept
    before = len(fetched)
    read_all(tiny)
    assert list(folder.iterdir()) == [] and len(fetched) > before and not ranged


# --------------------------------------------------------------------------- one writer


def test_a_second_writer_is_refused_in_one_line(s3, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = "s3://bkt/synthetic.zarr"
    held = RemoteLock(url)  # a writer holds the lock object (conditional create)
    try:
        with pytest.raises(LeveError) as info:
            _prepare(url)
        assert "another writer holds s3://bkt/synthetic.zarr.lock" in str(info.value) and "\n" not in str(info.value)
    finally:
        held.close()
    assert not s3.exists("bkt/synthetic.zarr.lock")
    # a lock left by a writer of this host that is gone (killed) is taken over
    s3.pipe_file("bkt/synthetic.zarr.lock", json.dumps({"host": __import__("socket").gethostname(), "pid": 2**22 + 7,
                                                          "token": "dead"}).encode())
    assert _prepare(url).path == url


# --------------------------------------------------------------------------- failures in one line


def _one_line(exc: pytest.ExceptionInfo[LeveError]) -> str:
    text = str(exc.value)
    assert "\n" not in text and "testing" not in text  # one line, no credentials
    return text


def test_a_missing_bucket_is_one_line(s3, tmp_path, monkeypatch):
    from leve.store.reader import open_store

    monkeypatch.chdir(tmp_path)
    with pytest.raises(LeveError) as info:
        open_store("s3://nobucket/synthetic.zarr")
    assert _one_line(info) == "s3://nobucket/synthetic.zarr: bucket 'nobucket' does not exist (create it, or check the URL)"
    with pytest.raises(LeveError) as info:
        _prepare("s3://nobucket/synthetic.zarr")
    assert "bucket 'nobucket' does not exist" in _one_line(info)


def test_a_wrong_endpoint_is_one_line(s3, tmp_path, monkeypatch):
    from leve.store.reader import open_store

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "http://127.0.0.1:9")  # the discard port: nothing listens
    s3fs.S3FileSystem.clear_instance_cache()
    monkeypatch.setattr(s3fs.S3FileSystem, "retries", 1)
    with pytest.raises(LeveError) as info:
        open_store("s3://bkt/synthetic.zarr")
    assert "cannot reach the object store" in _one_line(info) and "127.0.0.1:9" in str(info.value)


def test_denied_access_is_one_line(s3, tmp_path, monkeypatch):
    """moto allows every request by default; with its authentication switched on (the setting
    ``INITIAL_NO_AUTH_ACTION_COUNT`` at 0) the fake keys are unknown to its IAM and every request is denied."""
    from moto import settings

    from leve.store.reader import open_store

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    with pytest.raises(LeveError) as info:
        open_store("s3://bkt/synthetic.zarr")
    assert "access denied" in _one_line(info)


def test_leve_verify_checks_a_local_copy_against_the_manifest_it_carries(s3, tmp_path, monkeypatch):
    """A copy of a bucket store taken while it was being republished (dvc import-url, aws s3 sync) can mix two
    builds, each chunk whole and checksummed: `leve verify` checks the copy against its leve-manifest.json."""
    from leve.store.integrity import verify_store

    monkeypatch.chdir(tmp_path)
    url = "s3://bkt/synthetic.zarr"
    _prepare(url)
    copy = tmp_path / "copy/synthetic.zarr"
    s3.get("bkt/synthetic.zarr/", str(copy), recursive=True)
    assert (copy / MANIFEST).is_file() and verify_store(copy)[0] == []
    _prepare(url, test=SIZES["test"] + 1)  # republished: the last test shard (and the root) change
    s3.invalidate_cache()
    newer = {k[len("bkt/synthetic.zarr/"):]: s3.cat_file(k) for k in s3.find("bkt/synthetic.zarr")}
    changed = sorted(k for k, blob in newer.items() if k.startswith("test/depth/c/")
                     and (copy / k).is_file() and (copy / k).read_bytes() != blob)
    assert changed  # a chunk file of the new build, whole: its own crc32c holds
    (copy / changed[0]).write_bytes(newer[changed[0]])
    bad, _ = verify_store(copy)
    assert [b.line() for b in bad] == [f"{changed[0]}: differs from the manifest's (another build, or changed after "
                                       f"the copy)"]
    (copy / "zarr.json").write_bytes(newer["zarr.json"])  # the new build's root: another fingerprint
    lines = [b.line() for b in verify_store(copy)[0]]
    assert f"{MANIFEST}: names another build than zarr.json (copied while the store was being republished)" in lines
