"""`leve eval` reading ahead from a bucket (paths.read_prefetch; leve.store.cachedread.read_ahead), against moto's
S3 server on loopback.

Eval reads its samples in order in the main process; with read-ahead on, a background thread fetches the shard files
of the samples scored next (the store's and a bucket teacher cache's) into the read-through cache while the batches
in hand are scored. What is scored does not change: the same rows and metrics with read-ahead on, off and from the
local twins; the shards after the first of each array are fetched by the read-ahead, each once; no thread is left
when the evaluation returns."""

from __future__ import annotations

import csv
import json
import threading
from pathlib import Path

import pytest
import torch

from leve.errors import LeveError
from leve.evaluation import stage
from leve.evaluation.protocols import get_protocol
from leve.evaluation.runner import evaluate
from leve.models.checkpoint import save_checkpoint
from leve.models.registry import create_model
from leve.store import cachedread
from leve.store.reader import open_store
from leve.teacher.cache.build import build_teacher_cache
from leve.teacher.cache.read import open_teacher_cache
from leve.teacher.loading import load_teacher
from tests.evaluation.conftest import ColumnRampNet
from tests.explicit import caching, evaluation
from tests.factories import synthetic_store
from tests.store.loopback import endpoint_fixture, prepare, s3_fixture  # noqa: F401 (fixtures)

pytest.importorskip("s3fs")
STORES, TEACHER = "s3://bkt/stores", "s3://bkt/teacher"  # paths.stores and paths.teacher_cache in the bucket
SIZES = {"height": 32, "width": 32, "train": 2, "val": 2, "test": 8, "block_size": 2}  # test: 4 shards per array
ARRAYS = ("rgb", "depth", "disparity")  # what eval reads per test sample: the store's two, the teacher cache's one
BOUND = 10**7  # paths.read_cache_bytes


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The local twins (stores/synthetic.zarr, teacher/synthetic.zarr: tiny-random's cache of the test split)
    and a checkpoint to score (student.pt)."""
    root = tmp_path_factory.mktemp("twin")
    store = synthetic_store(root / "stores/synthetic.zarr", **SIZES)
    assert build_teacher_cache(store, root / "teacher/synthetic.zarr", "test", load_teacher("tiny-random"),
                               **caching(block_size=2), show_progress=False).complete
    torch.manual_seed(0)
    save_checkpoint(root / "student.pt", create_model("leve"), "leve", 10.0, resolution=(64, 64))
    return root


@pytest.fixture(scope="module")
def published() -> dict[str, bytes]:
    """The bucket's objects once published (filled by the first test, put back by the next ones)."""
    return {}


@pytest.fixture(name="bucket")
def bucket_fixture(s3, published, tmp_path, monkeypatch):
    """The same store and teacher cache published to the bucket (`leve prepare --out` and `leve teacher-cache
    --out`'s writers); every shard file put in a read-through cache logged as (the thread that fetched it, its name)."""
    if not published:
        prepare(f"{STORES}/synthetic.zarr", **SIZES)
        assert build_teacher_cache(f"{STORES}/synthetic.zarr", f"{TEACHER}/synthetic.zarr", "test",
                                   load_teacher("tiny-random"), **caching(block_size=2), show_progress=False).complete
        published.update({key: s3.cat_file(key) for key in s3.find("bkt")})
    else:
        for key, data in published.items():
            s3.pipe_file(key, data)
        s3.invalidate_cache()
    monkeypatch.delenv("LEVE_READ_CACHE_BYTES", raising=False)
    monkeypatch.setattr(cachedread, "_STATE", None)  # this process's read-ahead starts afresh
    log: list[tuple[str, str]] = []
    real = cachedread.keep

    def keep(folder, max_bytes, path, data):
        log.append((threading.current_thread().name, path.name))
        return real(folder, max_bytes, path, data)

    monkeypatch.setattr(cachedread, "keep", keep)
    yield log
    assert not _read_ahead_threads()


def _read_ahead_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "leve-read-ahead"]


def _test_shards(log: list[tuple[str, str]], who: str) -> list[str]:
    """``array/shard`` of the test split's shard files ``who`` (the read-ahead's thread, else the reader) fetched."""
    out = []
    for thread, name in log:
        parts = name.split("%")  # test%rgb%c%<shard>%0%0%0
        if parts[0] == "test" and len(parts) > 3 and parts[2] == "c" and (thread == "leve-read-ahead") == (who == "ahead"):
            out.append(f"{parts[1]}/{parts[3]}")
    return out


class _Settling(ColumnRampNet):
    """The ramp predictor, which first lets the read-ahead fetch what it may (its thread ends by itself): the
    reads after each prediction find what was fetched ahead, so who fetched what does not depend on timing."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for thread in _read_ahead_threads():
            thread.join()
        return super().forward(x)


def _scored(result) -> tuple[list[dict], dict]:
    return [s.row() for s in result.scored], {k: v.tolist() for k, v in result.bins.sums.items()}


def test_eval_reads_the_next_shards_ahead_and_scores_the_same(bucket, twin, tmp_path, monkeypatch):
    protocol = get_protocol("leve2024", "synthetic", 10.0)
    results, fetched = {}, {}
    for name, ahead in (("on", 16), ("off", 0)):
        monkeypatch.setenv("LEVE_READ_CACHE", str(tmp_path / f"reads-{name}"))  # each run from an empty cache
        store = open_store(f"{STORES}/synthetic.zarr", cache_bytes=BOUND)
        teacher = open_teacher_cache(f"{TEACHER}/synthetic.zarr", "test", store, cache_bytes=BOUND)
        bucket.clear()
        result = evaluate(_Settling(), store.split("test"), protocol, (32, 32), 10.0, teacher=teacher,
                          **evaluation(batch_size=2), show_progress=False, read_prefetch=ahead)
        assert not _read_ahead_threads()  # ended when the evaluation returned
        results[name], fetched[name] = _scored(result), {who: _test_shards(bucket, who) for who in ("reader", "ahead")}
    local_store = open_store(twin / "stores/synthetic.zarr")
    local = evaluate(ColumnRampNet(), local_store.split("test"), protocol, (32, 32), 10.0,
                     teacher=open_teacher_cache(twin / "teacher/synthetic.zarr", "test", local_store),
                     **evaluation(batch_size=2), show_progress=False)
    rows, bins = _scored(local)
    assert len(rows) == 3 * 8 and {r["model"] for r in rows} == {"student", "teacher"}  # leve2024: flipped rows too
    assert results["on"] == results["off"] == (rows, bins)
    every = sorted(f"{a}/{s}" for a in ARRAYS for s in range(4))
    # read-ahead on: the reader fetched shard 0 of each array (none is read ahead before its array is read), the
    # read-ahead every later shard, each once
    assert sorted(fetched["on"]["reader"]) == sorted(f"{a}/0" for a in ARRAYS)
    assert sorted(fetched["on"]["ahead"]) == [s for s in every if not s.endswith("/0")]
    assert sorted(fetched["off"]["reader"]) == every and not fetched["off"]["ahead"]


def test_a_local_or_uncached_eval_starts_no_read_ahead(bucket, twin, tmp_path, monkeypatch):
    monkeypatch.setenv("LEVE_READ_CACHE", str(tmp_path / "reads"))
    protocol = get_protocol("leve2024", "synthetic", 10.0)
    local = open_store(twin / "stores/synthetic.zarr")
    uncached = open_store(f"{STORES}/synthetic.zarr", cache_bytes=0)  # read through Zarr's fsspec store
    for store in (local, uncached):
        evaluate(_Settling(), store.split("test"), protocol, (32, 32), 10.0, **evaluation(batch_size=2),
                 show_progress=False, read_prefetch=8)
    assert not bucket and cachedread._STATE is None  # nothing kept, no read-ahead made


def _params(path: Path, stores: str, teacher: str, ahead: int, out: Path, checkpoint: Path) -> Path:
    path.write_text(
        f"paths:\n  stores: {stores}\n  teacher_cache: {teacher}\n  read_cache_bytes: {BOUND}\n  read_prefetch: {ahead}\n"
        "teacher:\n  model: tiny-random\n"
        f"eval:\n  checkpoint: {checkpoint}\n  protocol: standard\n  align: none\n  flip: false\n  teacher: true\n"
        f"  device: cpu\n  examples: 0\n  batch_size: 2\n  metrics_dir: {out / 'metrics'}\n"
        f"  reports_dir: {out / 'reports'}\n")
    return path


@pytest.mark.slow
def test_leve_eval_with_read_ahead_equals_without_and_the_local_twin(bucket, twin, run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    docs, rows, fetched, planned = {}, {}, {}, []
    real = cachedread.read_ahead
    monkeypatch.setattr(cachedread, "read_ahead", lambda sources, samples, shards, workers=1: (
        planned.append((list(sources), list(samples), shards)), real(sources, samples, shards, workers)))
    for name, stores, teacher, ahead in (("on", STORES, TEACHER, 4), ("off", STORES, TEACHER, 0),
                                         ("local", twin / "stores", twin / "teacher", 4)):
        monkeypatch.setenv("LEVE_READ_CACHE", str(tmp_path / f"reads-{name}"))
        bucket.clear()
        out = tmp_path / name
        params = _params(tmp_path / f"{name}.yaml", str(stores), str(teacher), ahead, out, twin / "student.pt")
        scored = run_cli("eval", "--params", params, "--dataset", "synthetic", "--split", "test")
        assert scored.code == 0, scored.stderr
        assert "reading ahead failed" not in scored.stderr
        assert not _read_ahead_threads()  # no thread outlives `leve eval`
        docs[name] = json.loads((out / "metrics/synthetic.json").read_text())
        with open(out / "reports/synthetic/per_image.csv", newline="") as f:
            rows[name] = list(csv.DictReader(f))
        fetched[name] = {who: _test_shards(bucket, who) for who in ("reader", "ahead")}
        if name == "on":  # paths.read_prefetch reached the evaluation: the store's and the teacher cache's test split
            assert planned == [([(f"{STORES}/synthetic.zarr", "test"), (f"{TEACHER}/synthetic.zarr", "test")],
                                list(range(8)), 4)]
    assert docs["local"]["teacher"] and len(rows["local"]) == 3 * 8  # student, teacher and constant rows
    for key in ("student", "teacher", "constant", "alignment", "protocol"):
        assert docs["on"][key] == docs["off"][key] == docs["local"][key], key
    assert rows["on"] == rows["off"] == rows["local"]
    every = sorted(f"{a}/{s}" for a in ARRAYS for s in range(4))
    assert len(planned) == 1  # read-ahead off, or local files: none planned
    # each shard file fetched once, by the reader or the read-ahead (which fetches only when on; who fetched which
    # depends on timing here: test_eval_reads_the_next_shards_ahead_and_scores_the_same pins it)
    assert sorted(fetched["on"]["reader"] + fetched["on"]["ahead"]) == every
    assert sorted(fetched["off"]["reader"]) == every and not fetched["off"]["ahead"]
    assert fetched["local"] == {"reader": [], "ahead": []}


def test_eval_binds_paths_read_prefetch(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("paths:\n  read_prefetch: 3\n")
    assert stage.config("synthetic", params_file=params).read_prefetch == 3
    params.write_text("paths:\n  read_prefetch: -1\n")
    with pytest.raises(LeveError, match=r"^eval: paths\.read_prefetch must be >= 0, got -1$"):
        stage.config("synthetic", params_file=params)
