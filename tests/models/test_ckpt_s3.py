"""Checkpoints at s3:// URLs, against moto's S3 server on loopback: ``leve predict``, ``leve export`` (and,
through the same reader, ``leve eval`` and ``leve serve``) take ``--checkpoint s3://bucket/key``. The object is
fetched whole into a local cache and read as the local file is: the same prediction, the same sha256 recorded
by an export, the same header checks; a damaged or missing object is one line naming the URL."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from leve.errors import LeveError
from leve.models.checkpoint import load_checkpoint, local_checkpoint, read_checkpoint, save_checkpoint
from leve.models.registry import create_model
from leve.models.runtime import DIGEST_KEY
from tests.store.loopback import endpoint_fixture, s3_fixture  # noqa: F401 (fixtures)

pytest.importorskip("s3fs")


@pytest.fixture
def bucket(s3, tmp_path, monkeypatch):
    """The loopback bucket with its object cache under tmp_path."""
    monkeypatch.setenv("LEVE_READ_CACHE", str(tmp_path / "reads"))
    return s3


def _checkpoint(path: Path, bias: float) -> Path:
    torch.manual_seed(0)
    model = create_model("leve", max_depth=10.0)
    with torch.no_grad():  # a positive, image-dependent output, as a trained model's
        model.decoder.blocks[-1].out.bias.fill_(bias)
    return save_checkpoint(path, model, "leve", 10.0, extra={"epoch": 3}, resolution=(64, 96))


def _image(folder: Path) -> Path:
    yy, xx = np.mgrid[0:48, 0:80]
    rgb = np.stack([xx * 255 // 79, yy * 255 // 47, (xx + yy) % 256], -1).astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(folder / "room.png")
    return folder / "room.png"


def _one_line(exc: pytest.ExceptionInfo[LeveError]) -> str:
    text = str(exc.value)
    assert "\n" not in text and "testing" not in text  # one line, no credentials
    return text


def test_predict_from_the_bucket_equals_the_local_file(bucket, run_cli, tmp_path):
    local = _checkpoint(tmp_path / "run" / "best.pt", 5.0)
    bucket.put_file(str(local), "bkt/runs/a/best.pt")
    image = _image(tmp_path / "images")
    outputs = {}
    for name, checkpoint in (("local", str(local)), ("bucket", "s3://bkt/runs/a/best.pt")):
        done = run_cli("predict", image, "--checkpoint", checkpoint, "--out", tmp_path / name, "--runtime", "eager")
        assert done.code == 0, done.stderr
        outputs[name] = {p.name: p.read_bytes() for p in sorted((tmp_path / name).iterdir())}
        if name == "bucket":
            assert "s3://bkt/runs/a/best.pt: " in done.stderr  # the lineage line names the URL, not a cache path
    assert sorted(outputs["local"]) == ["room_depth.png", "room_depth16.png"]
    assert outputs["bucket"] == outputs["local"]
    copy = local_checkpoint("s3://bkt/runs/a/best.pt")
    assert copy.name == "best.pt" and copy.read_bytes() == local.read_bytes()
    _, info = read_checkpoint("s3://bkt/runs/a/best.pt")
    assert info.path == "s3://bkt/runs/a/best.pt" and info.resolution == (64, 96) and info.extra["epoch"] == 3


def test_a_replaced_object_is_fetched_again(bucket, tmp_path):
    url = "s3://bkt/runs/a/best.pt"
    first, second = _checkpoint(tmp_path / "1" / "best.pt", 5.0), _checkpoint(tmp_path / "2" / "best.pt", 3.0)
    bucket.put_file(str(first), "bkt/runs/a/best.pt")
    bias = next(k for k in read_checkpoint(first)[0] if k.endswith("out.bias") and "blocks" in k)
    assert torch.equal(read_checkpoint(url)[0][bias], read_checkpoint(first)[0][bias])
    bucket.put_file(str(second), "bkt/runs/a/best.pt")  # a newer best.pt at the same URL
    assert torch.equal(read_checkpoint(url)[0][bias], read_checkpoint(second)[0][bias])
    assert local_checkpoint(url).read_bytes() == second.read_bytes()
    versions = list((tmp_path / "reads" / "objects").glob("*/*/best.pt"))
    assert len(versions) == 1  # the older version's copy is gone


def test_export_from_the_bucket_records_the_local_files_digest(bucket, run_cli, tmp_path, monkeypatch):
    local = _checkpoint(tmp_path / "run" / "best.pt", 5.0)
    bucket.put_file(str(local), "bkt/runs/a/best.pt")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    done = run_cli("export", "--checkpoint", "s3://bkt/runs/a/best.pt", "--format", "onnx")
    assert done.code == 0, done.stderr
    assert sorted(p.name for p in work.iterdir()) == ["best.onnx"]  # by default in the working folder
    meta = {p.key: p.value for p in onnx.load(str(work / "best.onnx")).metadata_props}
    assert meta[DIGEST_KEY] == hashlib.sha256(local.read_bytes()).hexdigest()
    assert meta["leve_checkpoint"] == "best.pt"


def test_a_damaged_or_missing_object_is_one_line_naming_the_url(bucket, run_cli, tmp_path):
    local = _checkpoint(tmp_path / "run" / "best.pt", 5.0)
    blob = local.read_bytes()
    bucket.pipe_file("bkt/runs/a/cut.pt", blob[: len(blob) // 2])  # truncated
    with pytest.raises(LeveError) as cut:
        load_checkpoint("s3://bkt/runs/a/cut.pt")
    assert _one_line(cut).startswith("s3://bkt/runs/a/cut.pt: cannot read checkpoint safely")
    assert not list((tmp_path / "reads" / "objects").glob("*/*/cut.pt"))  # the bad copy is not kept
    header = torch.load(local, weights_only=True)
    header["format"] = "something-else"
    torch.save(header, tmp_path / "other.pt")
    bucket.put_file(str(tmp_path / "other.pt"), "bkt/runs/a/other.pt")
    with pytest.raises(LeveError) as other:
        read_checkpoint("s3://bkt/runs/a/other.pt")
    assert _one_line(other).startswith("s3://bkt/runs/a/other.pt: not a leve checkpoint")
    with pytest.raises(LeveError) as missing:
        read_checkpoint("s3://bkt/runs/a/nope.pt")
    assert _one_line(missing) == "s3://bkt/runs/a/nope.pt: checkpoint not found"
    with pytest.raises(LeveError) as nobucket:
        read_checkpoint("s3://nobkt/runs/a/best.pt")
    assert "bucket 'nobkt' does not exist" in _one_line(nobucket)
    image = _image(tmp_path / "images")
    failed = run_cli("predict", image, "--checkpoint", "s3://bkt/runs/a/cut.pt", "--out", tmp_path / "o")
    assert failed.code == 1 and failed.stderr.strip().startswith("error: s3://bkt/runs/a/cut.pt: cannot read checkpoint")
    assert len(failed.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_eval_and_serve_take_a_checkpoint_url(bucket, run_cli, tmp_path, monkeypatch):
    from leve.params import Override
    from leve.serve.config import load_config
    from leve.serve.model import load_model
    from tests.factories import synthetic_store

    monkeypatch.chdir(tmp_path)
    local = _checkpoint(tmp_path / "run" / "best.pt", 5.0)
    bucket.put_file(str(local), "bkt/runs/a/best.pt")
    synthetic_store(tmp_path / "stores" / "synthetic.zarr", height=24, width=32, train=2, val=2, test=3, block_size=2)
    params = tmp_path / "params.yaml"
    params.write_text(f"paths:\n  stores: {tmp_path / 'stores'}\n"
                      "eval:\n  protocol: standard\n  align: none\n  flip: false\n  teacher: false\n  device: cpu\n"
                      "  examples: 1\n  batch_size: 2\n")
    scores = {}
    for name, checkpoint in (("local", str(local)), ("bucket", "s3://bkt/runs/a/best.pt")):
        done = run_cli("eval", "--params", params, "--dataset", "synthetic", "--split", "test", "--checkpoint",
                       checkpoint, "--out", tmp_path / name, "--quiet")
        assert done.code == 0, done.stderr
        scores[name] = json.loads((tmp_path / name / "metrics" / "synthetic.json").read_text())
    assert scores["bucket"]["student"] == scores["local"]["student"]
    assert scores["bucket"]["checkpoint"]["path"] == "s3://bkt/runs/a/best.pt" and not (tmp_path / "s3:").exists()
    served = load_model(load_config({"checkpoint": Override("s3://bkt/runs/a/best.pt"), "device": "cpu",
                                     "runtime": "eager"}, params))
    assert served.checkpoint == "s3://bkt/runs/a/best.pt" and served.resolution == (64, 96)
    with pytest.raises(LeveError, match=r"^s3://bkt/runs/a/best.pt: --runtime onnx-int8 needs a local checkpoint"):
        load_model(load_config({"checkpoint": Override("s3://bkt/runs/a/best.pt"), "device": "cpu",
                                "runtime": "onnx-int8"}, params))
