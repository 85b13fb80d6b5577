"""`leve train` with train.out_dir at an s3:// URL, against moto's S3 server on loopback: checkpoints are written
to a local staging folder as for a local out_dir, and each saved file is uploaded whole; the objects are
byte-equal to the local files. A run stopped half-way continues on a fresh machine (no local folder) from the
bucket's last.pt and ends with the weights of an uninterrupted run."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from leve.models.checkpoint import read_checkpoint
from leve.store.remote import staging_dir
from tests.factories import synthetic_store
from tests.store.loopback import endpoint_fixture, s3_fixture  # noqa: F401 (fixtures)

pytest.importorskip("s3fs")
URL = "s3://bkt/runs/student"


def _params(path: Path, stores: Path, out: str, logs: Path) -> Path:
    path.write_text(
        f"paths:\n  stores: {stores}\n  teacher_cache: {logs / 'teacher'}\n"
        "train:\n  dataset: synthetic\n  resolution: [64, 64]\n  workers: 0\n  batch_size: 4\n  max_steps: 4\n"
        "  seed: 0\n  log_every: 1\n  val_every: 2\n  lr: 1.0e-3\n"
        f"  out_dir: {out}\n  log_dir: {logs / 'dvclive'}\n  kd:\n    eps: 0.0\n  labels:\n    fraction: 1.0\n")
    return path


def _objects(s3) -> dict[str, bytes]:
    s3.invalidate_cache()
    return {key.rsplit("/", 1)[-1]: s3.cat_file(key) for key in s3.find("bkt/runs/student")}


@pytest.mark.slow
def test_train_writes_its_checkpoints_to_the_bucket_and_resumes_from_it(s3, run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LEVE_READ_CACHE", str(tmp_path / "reads"))
    synthetic_store(tmp_path / "stores" / "synthetic.zarr", height=64, width=64, train=8, val=4, test=4, block_size=4)
    bucket = _params(tmp_path / "bucket.yaml", tmp_path / "stores", URL, tmp_path / "b")
    local = _params(tmp_path / "local.yaml", tmp_path / "stores", str(tmp_path / "whole"), tmp_path / "w")
    staging = staging_dir(URL)

    first = run_cli("train", "--params", bucket, "--stop-after", "2")
    assert first.code == 0, first.stderr
    objects = _objects(s3)
    assert sorted(objects) == ["MODEL_CARD.md", "best.pt", "last.pt"]  # the lock is gone once the run ends
    for name, blob in objects.items():
        assert blob == (staging / name).read_bytes(), name  # each object is the local file, whole
    assert read_checkpoint(staging / "last.pt")[1].extra["train_state"]["position"]["step"] == 2
    assert not (tmp_path / "s3:").exists()

    shutil.rmtree(staging)  # a fresh machine: nothing local, the bucket holds step 2
    second = run_cli("train", "--params", bucket)
    assert second.code == 0, second.stderr
    assert f"{URL}/last.pt: step 2 in the bucket; continuing from it" in second.stderr
    objects = _objects(s3)
    for name, blob in objects.items():
        assert blob == (staging / name).read_bytes(), name
    whole = run_cli("train", "--params", local)
    assert whole.code == 0, whole.stderr
    resumed = read_checkpoint(staging / "last.pt")
    ref = read_checkpoint(tmp_path / "whole" / "last.pt")
    assert resumed[1].extra["train_state"]["position"] == ref[1].extra["train_state"]["position"]
    assert resumed[0].keys() == ref[0].keys() and all(torch.equal(resumed[0][k], ref[0][k]) for k in ref[0])
    # eval.checkpoint null: <train.out_dir>/best.pt, read from the bucket
    scored = run_cli("eval", "--params", bucket, "--dataset", "synthetic", "--split", "test", "--set", "device=cpu",
                     "--set", "teacher=false", "--set", "examples=1", "--out", tmp_path / "scores", "--quiet")
    assert scored.code == 0, scored.stderr
