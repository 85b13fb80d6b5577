"""Per-worker read-ahead of a bucket store's shard files (paths.read_prefetch; leve.store.cachedread.read_ahead),
against moto's S3 server on loopback.

The loader's sampler tells each batch's worker which batches it loads next (leve.train.batches.SlottedSampler), and
a background thread in the worker fetches their shard files into the read-through cache before the reads reach
them: at most ``read_prefetch`` files ahead and half the cache's bound over the workers. What is read does not
change: training with read-ahead equals training without it and training on the local twin, bit for bit."""

from __future__ import annotations

import multiprocessing
import threading

import numpy as np
import pytest
import torch

from leve.models.checkpoint import read_checkpoint
from leve.store import cachedread
from leve.store.reader import open_split
from leve.train.batches import SharedBatchLoader, SlottedSampler
from leve.train.data import DepthDataset
from tests.factories import synthetic_store
from tests.store.loopback import endpoint_fixture, prepare, s3_fixture  # noqa: F401 (fixtures)
from tests.store.test_train_s3 import _losses, _params

pytest.importorskip("s3fs")
URL = "s3://bkt/stores/synthetic.zarr"
SIZES = {"height": 32, "width": 32, "train": 16, "val": 2, "test": 2, "block_size": 2}  # 8 shards per array


def _dataset(cache_bytes: int = 10**7) -> DepthDataset:
    return DepthDataset(URL, "train", (32, 32), seed=0, decode="full", rgb_uint8=True, targets="device",
                        cache_bytes=cache_bytes)


def _cached(data: DepthDataset) -> dict[str, int]:
    """The shard files in the store's read-through cache folder: ``array/shard`` -> bytes."""
    folder = data._open()[0].cache[0]
    out = {}
    for f in folder.iterdir() if folder.is_dir() else []:
        parts = f.name.split("%")  # train%rgb%c%<shard>%0%0%0
        if len(parts) > 3 and parts[2] == "c":
            out[f"{parts[1]}/{parts[3]}"] = f.stat().st_size
    return out


def _shard_sizes(s3) -> dict[str, int]:
    """``array/shard`` -> the object's size in the bucket (an independent listing)."""
    out = {}
    for name, info in s3.find("bkt/stores/synthetic.zarr/train", detail=True).items():
        rest = name.split("/train/", 1)[1].split("/")
        if len(rest) > 2 and rest[1] == "c":
            out[f"{rest[0]}/{rest[2]}"] = int(info["size"])
    return out


def _settle() -> None:
    """Wait until this process's read-ahead has fetched what it may (its thread then ends by itself)."""
    for thread in threading.enumerate():
        if thread.name == "leve-read-ahead":
            thread.join()


@pytest.fixture(name="bucket")
def bucket_fixture(s3, tmp_path, monkeypatch):
    monkeypatch.setenv("LEVE_READ_CACHE", str(tmp_path / "reads"))
    monkeypatch.setattr(cachedread, "_STATE", None)  # this process's read-ahead starts afresh
    prepare(URL, **SIZES)
    yield s3
    _settle()


def test_the_sampler_gives_each_batch_its_workers_next_batches():
    batches = [[(0, 2 * b), (0, 2 * b + 1)] for b in range(7)]
    tagged = list(SlottedSampler(batches, count=5, num_workers=2, read_ahead=2))
    assert [list(t) for t in tagged] == batches and [t.slot for t in tagged] == [0, 1, 2, 3, 4, 0, 1]
    # batch t's worker (t % 2) loads t + 2 and t + 4 next
    assert [[k[1] for k in t.ahead.keys] for t in tagged] == [
        [4, 5, 8, 9], [6, 7, 10, 11], [8, 9, 12, 13], [10, 11], [12, 13], [], []]
    assert {(t.ahead.shards, t.ahead.workers) for t in tagged} == {(2, 2)}
    assert all(t.ahead is None for t in SlottedSampler(batches, count=5, num_workers=2))  # read-ahead off
    alone = list(SlottedSampler(batches, count=5, num_workers=0, read_ahead=1))  # no workers: this process, one by one
    assert [[k[1] for k in t.ahead.keys] for t in alone] == [[2 * b + 2, 2 * b + 3] for b in range(6)] + [[]]


class _WhoLoads(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 100

    def __getitems__(self, keys: list[int]) -> list[int]:
        return [torch.utils.data.get_worker_info().id] * len(keys)


def test_the_loader_hands_batch_t_to_worker_t_mod_workers_each_epoch():
    """The order SlottedSampler counts on (torch's in-order DataLoader), with persistent workers over epochs of an
    odd number of batches."""
    loader = torch.utils.data.DataLoader(_WhoLoads(), batch_sampler=[[b] for b in range(5)], num_workers=2,
                                         persistent_workers=True, collate_fn=lambda x: x[0])
    for _ in range(2):
        assert list(loader) == [0, 1, 0, 1, 0]
    del loader


def test_read_ahead_fetches_the_next_shards_in_order_within_k_files(bucket):
    data = _dataset()
    data[(0, 0)]  # sample 0 read: its rgb and depth shard files (shard 0) are cached, both arrays in use
    assert set(_cached(data)) == {"rgb/0", "depth/0"}
    data.read_ahead([(0, i) for i in (1, 6, 7, 2, 3, 12)], shards=3, workers=1)
    _settle()
    # shard 0 is open already; then in order of first use, 3 files: rgb and depth of shard 3, rgb of shard 1
    assert set(_cached(data)) == {"rgb/0", "depth/0", "rgb/3", "depth/3", "rgb/1"}
    assert not [t for t in threading.enumerate() if t.name == "leve-read-ahead"]  # the thread ended by itself
    opened = data._open()[0]._reader("rgb")
    for i in (6, 2):  # the reader opens files fetched ahead; each frees a place ahead for the plan's next one
        data[(0, i)]
    _settle()
    assert opened.is_open(3) and opened.is_open(1) and not opened.is_open(6)
    assert set(_cached(data)) == {f"{a}/{s}" for a in ("rgb", "depth") for s in (0, 3, 1, 6)}


def test_read_ahead_keeps_within_half_the_cache_bound(bucket):
    sizes = _shard_sizes(bucket)
    bound = 2 * (sizes["rgb/1"] + sizes["depth/1"] + sizes["rgb/2"]) + 1  # half of it: three shard files ahead
    data = _dataset(cache_bytes=bound)
    data[(0, 0)]
    data.read_ahead([(0, i) for i in range(2, 16)], shards=100, workers=1)
    _settle()
    ahead = {k: v for k, v in _cached(data).items() if not k.endswith("/0")}
    assert ahead and sum(ahead.values()) <= bound // 2
    assert set(ahead) == {"rgb/1", "depth/1", "rgb/2"}
    assert sum(_cached(data).values()) <= bound


def test_a_failed_read_ahead_is_said_and_the_reader_fetches_it_itself(bucket, monkeypatch, capfd, tmp_path):
    data = _dataset()
    data[(0, 0)]
    real = cachedread.keep
    monkeypatch.setattr(cachedread, "keep", lambda *a: threading.current_thread().name != "leve-read-ahead"
                        and real(*a))
    data.read_ahead([(0, i) for i in range(16)], shards=2, workers=1)
    _settle()
    err = capfd.readouterr().err
    assert "warning: reading ahead failed: " in err and "the cache folder" in err and "refused it" in err
    lines = err.splitlines()  # one line per shard file (1 to 7 of both arrays), none tried twice
    assert len(lines) == 14 and all(line.endswith("; the loader reads it itself") for line in lines)
    assert {line.split(": ")[2] for line in lines} == {f"{URL}/train/{a}/c/{k}/{tail}" for a, tail in
                                                       (("rgb", "0/0/0"), ("depth", "0/0")) for k in range(1, 8)}
    data.read_ahead([(0, i) for i in range(16)], shards=2, workers=1)  # the next batch's plan: not tried again
    _settle()
    assert not capfd.readouterr().err
    local = open_split(synthetic_store(tmp_path / "local/synthetic.zarr", **SIZES), "train")
    bucket_split = data._open()[0]
    for i in range(16):  # every sample read, by the reader's own fetches where the read-ahead failed
        assert np.array_equal(bucket_split.rgb(i), local.rgb(i)) and np.array_equal(bucket_split.depth(i), local.depth(i))


def test_a_bad_object_read_ahead_still_fails_its_read_in_one_line(bucket):
    key = "bkt/stores/synthetic.zarr/train/depth/c/3/0/0"
    blob = bytearray(bucket.cat_file(key))
    blob[len(blob) // 3] ^= 0xFF
    bucket.pipe_file(key, bytes(blob))
    data = _dataset()
    data[(0, 0)]
    data.read_ahead([(0, 6)], shards=4, workers=1)
    _settle()
    assert "depth/3" in _cached(data)  # fetched ahead as it is in the bucket; the read checks it
    with pytest.raises(Exception, match=r"checksum mismatch") as caught:
        data[(0, 6)]
    assert URL in str(caught.value) and "train/depth" in str(caught.value) and "\n" not in str(caught.value)


def test_loader_workers_read_ahead_each_shard_once_and_end_with_the_loader(bucket, tmp_path, monkeypatch):
    log = tmp_path / "kept.log"
    real = cachedread.keep

    def keep(folder, max_bytes, path, data):  # every file put in the cache, by any process (forked workers)
        with open(log, "a") as f:
            f.write(f"{path.name}\n")
        return real(folder, max_bytes, path, data)

    monkeypatch.setattr(cachedread, "keep", keep)
    data = _dataset()
    order = [[(0, i), (0, (i + 5) % 16)] for i in range(16)]
    loader = SharedBatchLoader(data, order, 2, num_workers=2, read_ahead=4, persistent_workers=False)
    seen = [batch["index"].tolist() for batch in loader]
    assert seen == [[k[1] for k in b] for b in order]
    assert set(_cached(data)) == set(_shard_sizes(bucket))
    kept = log.read_text().splitlines()
    assert len(kept) == len(set(kept)) == len(_shard_sizes(bucket))  # both workers read all; each fetched once
    del loader
    assert not multiprocessing.active_children()  # the workers (and their threads) are gone
    assert not [t for t in threading.enumerate() if t.name == "leve-read-ahead"]


@pytest.mark.slow
def test_training_with_read_ahead_equals_without_and_the_local_twin(s3, run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEVE_READ_CACHE", str(tmp_path / "reads"))
    monkeypatch.delenv("LEVE_READ_CACHE_BYTES", raising=False)
    sizes = {"height": 64, "width": 64, "train": 12, "val": 4, "test": 4, "block_size": 2}
    prepare("s3://bkt/stores/synthetic.zarr", **sizes)
    synthetic_store(tmp_path / "local/synthetic.zarr", **sizes)
    runs = {}
    for name, stores, ahead in (("on", "s3://bkt/stores", 4), ("off", "s3://bkt/stores", 0),
                                ("local", str(tmp_path / "local"), 4)):
        out = tmp_path / name
        params = _params(tmp_path / f"{name}.yaml", stores, out)
        params.write_text(params.read_text().replace("read_cache_bytes:", f"read_prefetch: {ahead}\n  read_cache_bytes:")
                          .replace("workers: 1", "workers: 2"))
        if name != "local":  # each bucket run starts from an empty read cache
            monkeypatch.setenv("LEVE_READ_CACHE", str(tmp_path / f"reads-{name}"))
        trained = run_cli("train", "--params", params)
        assert trained.code == 0, trained.stderr
        assert "reading ahead failed" not in trained.stderr
        runs[name] = out
    losses = {name: _losses(out) for name, out in runs.items()}
    assert len(losses["on"]) == 3 and losses["on"] == losses["off"] == losses["local"]
    weights = {name: read_checkpoint(out / "models/last.pt")[0] for name, out in runs.items()}
    for name in ("off", "local"):
        assert weights["on"].keys() == weights[name].keys()
        assert all(torch.equal(weights["on"][k], weights[name][k]) for k in weights["on"])
    assert list((tmp_path / "reads-on").iterdir())


def test_a_shard_another_process_fetches_is_waited_for_not_fetched_again(bucket, capfd):
    data = _dataset()
    data[(0, 0)]
    rgb = data._open()[0]._reader("rgb")
    path = rgb.cached(1)
    held = cachedread._lock(path, wait=True)  # as a loader worker fetching rgb shard 1 holds it
    assert held is not None and held >= 0
    data.read_ahead([(0, 2), (0, 4)], shards=4, workers=1)
    _settle()
    assert set(_cached(data)) == {"rgb/0", "depth/0", "depth/1", "rgb/2", "depth/2"}  # rgb/1 left to its holder
    reader = threading.Thread(target=lambda: data[(0, 3)])  # needs rgb shard 1: waits for the holder
    reader.start()
    reader.join(0.5)
    assert reader.is_alive() and not path.exists()
    cachedread.keep(rgb.folder, rgb.max_bytes, path, bucket.cat_file("bkt/stores/synthetic.zarr/train/rgb/c/1/0/0/0"))
    inode = path.stat().st_ino
    cachedread._unlock(path, held)  # the holder's copy is in place
    reader.join()
    assert rgb.is_open(1) and path.stat().st_ino == inode  # the reader opened that copy, fetched nothing
    assert not capfd.readouterr().err
