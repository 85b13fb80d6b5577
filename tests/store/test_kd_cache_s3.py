"""`leve train` (distillation, kd.eps > 0) and `leve eval` (the teacher row) reading the teacher cache from a bucket
(paths.teacher_cache: s3://bucket/prefix), against moto's S3 server on loopback, each beside the same command on
the cache's local twin (the same teacher's cache of the same store, in a local folder).

Training a few steps with the bucket cache (DataLoader workers reading its maps through the bounded read-through
cache) and with the local twin, same seed, gives bit-equal losses (the KD term too) and weights; eval's teacher
row (and the student's) are equal. A bucket cache whose split was never published, or whose upload stopped before
its manifest, is refused in one line by train and by eval: never a silently missing teacher row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from leve.models.checkpoint import read_checkpoint
from leve.store.remote import MANIFEST
from leve.teacher.cache.build import build_teacher_cache
from leve.teacher.loading import load_teacher
from tests.explicit import caching
from tests.factories import synthetic_store
from tests.store.loopback import endpoint_fixture, s3_fixture  # noqa: F401 (fixtures)

pytest.importorskip("moto.server")
pytest.importorskip("s3fs")
SIZES = {"height": 64, "width": 64, "train": 12, "val": 4, "test": 4, "block_size": 4}
SPLITS = ("train", "test")  # distillation's split and the teacher row's
URL = "s3://bkt/teacher"  # paths.teacher_cache: the prefix holding <dataset>.zarr


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One local store, read by every run here (only the teacher cache's place differs)."""
    return synthetic_store(tmp_path_factory.mktemp("stores") / "synthetic.zarr", **SIZES)


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory, store: Path) -> Path:
    """The local twin: tiny-random's cache of the train and test splits, in a local folder (paths.teacher_cache)."""
    folder = tmp_path_factory.mktemp("teacher")
    for split in SPLITS:
        assert build_teacher_cache(store, folder / "synthetic.zarr", split, load_teacher("tiny-random"),
                                   **caching(block_size=4), show_progress=False).complete
    return folder


def _publish(store: Path) -> None:
    """The same caches published to the bucket (`leve teacher-cache --out s3://...`'s writer)."""
    for split in SPLITS:
        assert build_teacher_cache(store, f"{URL}/synthetic.zarr", split, load_teacher("tiny-random"),
                                   **caching(block_size=4), show_progress=False).complete


def _params(path: Path, store: Path, cache: str, out: Path, checkpoint: Path | None = None,
            read_cache_bytes: int = 10**6) -> Path:
    """A params.yaml distilling from the cache at ``cache`` (a folder or a bucket prefix): a few steps, eps 0.5;
    a bucket cache read through a local read-through cache of ``read_cache_bytes`` (0: none, every map through
    Zarr's fsspec store)."""
    path.write_text(
        f"paths:\n  stores: {store.parent}\n  teacher_cache: {cache}\n  read_cache_bytes: {read_cache_bytes}\n"
        "teacher:\n  model: tiny-random\n"
        "train:\n  dataset: synthetic\n  resolution: [64, 64]\n  workers: 1\n  batch_size: 4\n  max_steps: 3\n"
        "  seed: 0\n  log_every: 1\n  val_every: 3\n  lr: 1.0e-3\n"
        f"  out_dir: {out / 'models'}\n  log_dir: {out / 'dvclive'}\n  kd:\n    eps: 0.5\n    loss: ssi\n"
        "  labels:\n    fraction: 1.0\n"
        f"eval:\n  protocol: standard\n  align: none\n  flip: false\n  teacher: true\n  device: cpu\n"
        f"  examples: 2\n  batch_size: 4\n  metrics_dir: {out / 'metrics'}\n  reports_dir: {out / 'reports'}\n"
        + (f"  checkpoint: {checkpoint}\n" if checkpoint is not None else "")
    )
    return path


def _logged(run: Path, term: str) -> list[float]:
    lines = (run / f"dvclive/plots/metrics/train/{term}.tsv").read_text().splitlines()[1:]
    return [float(line.split("\t")[1]) for line in lines]


@pytest.mark.slow
def test_kd_training_and_the_teacher_row_from_a_bucket_cache_equal_the_local_twin(s3, store, twin, run_cli, tmp_path,
                                                                                   monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEVE_READ_CACHE", str(tmp_path / "reads"))
    monkeypatch.delenv("LEVE_READ_CACHE_BYTES", raising=False)  # the bound comes from paths.read_cache_bytes
    _publish(store)
    runs, kept = {}, {}
    for name, cache, cache_bytes in (("uncached", URL, 0), ("bucket", URL, 10**6), ("local", str(twin), 10**6)):
        out = tmp_path / name
        params = _params(tmp_path / f"{name}.yaml", store, cache, out, read_cache_bytes=cache_bytes)
        trained = run_cli("train", "--params", params)
        assert trained.code == 0, trained.stderr
        said = trained.stdout + trained.stderr  # the cache named as given: a URL keeps its `//`
        assert "distilling from " + ("/" if cache == str(twin) else f"{URL}/synthetic.zarr") in said, said
        scored = run_cli("eval", "--params", params, "--dataset", "synthetic", "--split", "test")
        assert scored.code == 0, scored.stderr
        runs[name] = out
        kept[name] = sum(p.is_file() for p in (tmp_path / "reads").rglob("*"))  # files in the read-through cache
    for term in ("loss", "kd"):  # the KD term is there, and the same step by step
        assert len(_logged(runs["local"], term)) == 3
        assert _logged(runs["bucket"], term) == _logged(runs["uncached"], term) == _logged(runs["local"], term)
    assert any(v > 0 for v in _logged(runs["local"], "kd"))
    weights = {name: read_checkpoint(out / "models/last.pt")[0] for name, out in runs.items()}
    for name in ("bucket", "uncached"):
        a, b = weights[name], weights["local"]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    # best.pt's lineage names where the teacher's maps came from: the bucket cache by its URL, the twin by its path
    lineage = {name: read_checkpoint(out / "models/best.pt")[1].extra["lineage"]["teacher"] for name, out in runs.items()}
    assert lineage["bucket"]["cache"] == f"{URL}/synthetic.zarr" and lineage["local"]["cache"] == str(twin / "synthetic.zarr")
    same = ("model", "revision", "licence", "config_hash", "cache_fingerprint", "eps", "loss")  # not where or when
    assert all(lineage["bucket"][k] == lineage["local"][k] for k in same) and lineage["bucket"]["cache_fingerprint"]
    metrics = {name: json.loads((out / "metrics/synthetic.json").read_text()) for name, out in runs.items()}
    assert metrics["local"]["teacher"]
    for name in ("bucket", "uncached"):
        assert metrics[name]["teacher"] == metrics["local"]["teacher"], name
        assert metrics[name]["student"] == metrics["local"]["student"], name
    assert metrics["bucket"]["teacher_source"]["path"] == f"{URL}/synthetic.zarr"
    assert metrics["local"]["teacher_source"]["path"] == str(twin / "synthetic.zarr")
    # only the teacher cache is in the bucket (the store is local): with the bound its shard files were kept locally
    assert kept["uncached"] == 0 and kept["bucket"] > 0
    assert not any(p.name.startswith("s3:") for p in tmp_path.rglob("*"))  # nothing local named `s3:`


@pytest.fixture(scope="module")
def student(tmp_path_factory: pytest.TempPathFactory, store: Path, twin: Path) -> Path:
    """A checkpoint to evaluate: one distillation step from the local twin."""
    from leve.train import stage

    out = tmp_path_factory.mktemp("student")
    stage.run({"max_steps": 1}, params_file=_params(out / "params.yaml", store, str(twin), out), show_progress=False)
    return out / "models/last.pt"


@pytest.mark.parametrize("state", ["never written", "manifest gone"])
def test_a_bucket_cache_not_published_is_refused_in_one_line_by_train_and_eval(state, s3, store, student, run_cli,
                                                                              tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    if state == "manifest gone":  # every object there but the manifests: what a publish leaves once it has begun
        _publish(store)  # (it deletes the manifest first) or an upload that stopped before its manifest
        for split in SPLITS:
            s3.rm_file(f"bkt/teacher/synthetic.zarr/{split}/{MANIFEST}")
        assert s3.exists("bkt/teacher/synthetic.zarr/train/zarr.json")
    out = tmp_path / "run"
    params = _params(tmp_path / "p.yaml", store, URL, out, checkpoint=student)
    for command, split in ((("train",), "train"), (("eval", "--dataset", "synthetic", "--split", "test"), "test")):
        failed = run_cli(*command, "--params", params)
        assert failed.code == 1, (command, failed.stdout)
        lines = failed.stderr.strip().splitlines()
        assert len(lines) == 1 and f"{URL}/synthetic.zarr/{split}: no {MANIFEST}" in lines[0], failed.stderr
    assert not (out / "models/last.pt").exists() and not (out / "metrics").exists()  # neither wrote anything


@pytest.mark.parametrize("spelling", ["paths.teacher_cache", "deprecated"])
def test_train_and_eval_take_the_teacher_cache_at_a_url_and_other_paths_still_refuse_one(spelling, tmp_path):
    from leve.errors import LeveError
    from leve.evaluation import stage as evaluation
    from leve.params import Override
    from leve.teacher.cache.read import cache_place
    from leve.train import stage as training

    url = "s3://bkt/prefix"
    params = tmp_path / "params.yaml"
    params.write_text(f"paths:\n  teacher_cache: {url}\ntrain:\n  dataset: synthetic\n" if spelling == "paths.teacher_cache"
                      else f"train:\n  dataset: synthetic\n  kd:\n    teacher_dir: {url}\neval:\n  teacher_dir: {url}\n")
    train = training.config(params_file=params)
    assert cache_place(train.teacher_path) == f"{url}/synthetic.zarr"  # a Path folds `//`: read back as the URL
    scored = evaluation.config("synthetic", params_file=params)
    assert cache_place(scored.teacher_dir / "synthetic.zarr") == f"{url}/synthetic.zarr"
    with pytest.raises(LeveError, match=r"train\.log_dir: .*is a URL; this parameter takes a local path"):
        training.config({"log_dir": Override(f"{url}/logs")}, params_file=params)
