"""`leve train` and `leve eval` reading a store from a bucket (paths.stores: s3://bucket/prefix), against moto's
S3 server on loopback, each run beside the same command on the store's local twin.

Training a few steps from the bucket (DataLoader workers reading through the bounded read-through cache) and
from the local twin with the same seed gives bit-equal losses and weights; eval of the same checkpoint on both
gives equal metrics. Every chunk's crc32c is checked on the bucket path too: a damaged object in the bucket
stops training in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from leve.models.checkpoint import read_checkpoint
from tests.factories import synthetic_store
from tests.store.loopback import endpoint_fixture, prepare, s3_fixture  # noqa: F401 (fixtures)

pytest.importorskip("s3fs")
SIZES = {"height": 64, "width": 64, "train": 12, "val": 4, "test": 4, "block_size": 4}


def _params(path: Path, stores: str, out: Path) -> Path:
    """A params.yaml whose stores live at ``stores`` (a folder or a bucket prefix): a few supervised steps."""
    path.write_text(
        f"paths:\n  stores: {stores}\n  teacher_cache: {out / 'teacher'}\n  read_cache_bytes: {10**6}\n"
        "train:\n  dataset: synthetic\n  resolution: [64, 64]\n  workers: 1\n  batch_size: 4\n  max_steps: 3\n"
        "  seed: 0\n  log_every: 1\n  val_every: 3\n  lr: 1.0e-3\n"
        f"  out_dir: {out / 'models'}\n  log_dir: {out / 'dvclive'}\n  kd:\n    eps: 0.0\n"
        "  labels:\n    fraction: 1.0\n"
        f"eval:\n  protocol: standard\n  align: none\n  flip: false\n  teacher: false\n  device: cpu\n"
        f"  examples: 2\n  batch_size: 4\n  metrics_dir: {out / 'metrics'}\n  reports_dir: {out / 'reports'}\n"
    )
    return path


def _losses(run: Path) -> list[float]:
    return [float(line.split("\t")[1]) for line in (run / "dvclive/plots/metrics/train/loss.tsv").read_text().splitlines()[1:]]


@pytest.mark.slow
def test_train_and_eval_from_the_bucket_equal_the_local_twin(s3, run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEVE_READ_CACHE", str(tmp_path / "reads"))
    monkeypatch.delenv("LEVE_READ_CACHE_BYTES", raising=False)  # the bound comes from paths.read_cache_bytes
    prepare("s3://bkt/stores/synthetic.zarr", **SIZES)
    synthetic_store(tmp_path / "local/synthetic.zarr", **SIZES)
    runs = {}
    for name, stores in (("bucket", "s3://bkt/stores"), ("local", str(tmp_path / "local"))):
        out = tmp_path / name
        params = _params(tmp_path / f"{name}.yaml", stores, out)
        trained = run_cli("train", "--params", params)
        assert trained.code == 0, trained.stderr
        scored = run_cli("eval", "--params", params, "--dataset", "synthetic", "--split", "test")
        assert scored.code == 0, scored.stderr
        runs[name] = out
    assert len(_losses(runs["bucket"])) == 3 and _losses(runs["bucket"]) == _losses(runs["local"])
    a, b = read_checkpoint(runs["bucket"] / "models/last.pt")[0], read_checkpoint(runs["local"] / "models/last.pt")[0]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    metrics = {name: json.loads((out / "metrics/synthetic.json").read_text()) for name, out in runs.items()}
    assert metrics["bucket"]["student"] == metrics["local"]["student"]
    assert list((tmp_path / "reads").iterdir())  # the bucket's chunk files went through the local cache


def test_a_damaged_object_in_the_bucket_stops_training_in_one_line(s3, run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    prepare("s3://bkt/stores/synthetic.zarr", **SIZES)
    key = "bkt/stores/synthetic.zarr/train/depth/c/0/0/0"
    blob = bytearray(s3.cat_file(key))
    blob[len(blob) // 3] ^= 0xFF
    s3.pipe_file(key, bytes(blob))
    params = _params(tmp_path / "p.yaml", "s3://bkt/stores", tmp_path / "run")
    failed = run_cli("train", "--params", params, "--set", "workers=0")
    assert failed.code == 1
    line = failed.stderr.strip().splitlines()[-1]
    assert "s3://bkt/stores/synthetic.zarr" in line and "train/depth" in line and "checksum mismatch" in line, line
