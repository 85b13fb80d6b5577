"""Licences enforced at export (issue 30 item 4): a student distilled from a non-commercial teacher is
exported, in any format and to the Hub, only with ``--accept-noncommercial``; without it one line names
the checkpoint, the teacher and its licence and the flag, and nothing is written. The checkpoint is a
real ``leve train`` run on a teacher cache whose teacher is Depth-Anything V2 Base (CC-BY-NC-4.0) by
identity: a tiny random network under that name, nothing downloaded."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from leve.models.checkpoint import read_checkpoint
from leve.teacher.cache.build import build_teacher_cache
from leve.teacher.loading import load_teacher
from leve.teacher.registry import REGISTRY
from leve.train.loop import train
from leve.train.stage import KDConfig, TrainConfig
from tests.explicit import caching
from tests.factories import synthetic_store

NC_ID = "depth-anything/Depth-Anything-V2-Base-hf"
SIZE = (64, 64)


@pytest.fixture(scope="module")
def nc_student(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """best.pt of one training step distilled from a cache whose teacher is V2 Base's identity."""
    root = tmp_path_factory.mktemp("licence")
    store = synthetic_store(root / "data" / "synthetic.zarr", height=64, width=64, train=4, val=1, test=1,
                            block_size=4)
    teacher = load_teacher("tiny-random")
    teacher.model_id, teacher.revision, teacher.licence = NC_ID, "0" * 40, REGISTRY["v2-base"].licence
    teacher.source = "hub"
    cache = root / "teacher" / "synthetic.zarr"
    build_teacher_cache(store, cache, "train", teacher, **caching(block_size=4), show_progress=False)
    cfg = TrainConfig(dataset="synthetic", data_dir=store.parent, resolution=SIZE, batch_size=4, epochs=1,
                      max_steps=1, workers=0, val_every=0, log_every=1, out_dir=root / "kd" / "models",
                      log_dir=root / "kd" / "dvclive", kd=KDConfig(eps=0.5, teacher_dir=cache.parent))
    train(cfg, show_progress=False)
    path = cfg.out_dir / "best.pt"
    assert read_checkpoint(path)[1].extra["lineage"]["non_commercial"] is True  # the premise
    return path


def _refusal(checkpoint: Path) -> str:
    return (f"error: {checkpoint}: distilled from the teacher {NC_ID} whose licence is {REGISTRY['v2-base'].licence}: "
            "the student is for non-commercial use only; pass --accept-noncommercial to export it under those terms")


@pytest.mark.parametrize("args", [
    ("--format", "onnx"),
    ("--format", "torchscript"),
    ("--format", "openvino"),
    ("--format", "hf"),
    ("--format", "onnx", "--quantize", "int8"),
    ("--format", "hf", "--push", "someone/student", "--dry-run"),
    ("--format", "tflite"),
    ("--format", "coreml"),
], ids=["onnx", "torchscript", "openvino", "hf", "int8", "push", "tflite", "coreml"])
def test_every_export_of_a_non_commercial_student_needs_the_flag(nc_student, tmp_path, run_cli, args):
    before = sorted(p.name for p in nc_student.parent.iterdir())
    out = tmp_path / "out"
    res = run_cli("export", "--checkpoint", nc_student, *args, "--out", out / ("m.xml" if "openvino" in args else "m"))
    assert res.code == 1
    assert res.stderr.strip() == _refusal(nc_student)  # one line: checkpoint, teacher, licence, flag
    assert not out.exists() and sorted(p.name for p in nc_student.parent.iterdir()) == before  # nothing written


def test_the_flag_exports_with_the_licence_in_the_file(nc_student, tmp_path, run_cli):
    out = tmp_path / "s.onnx"
    res = run_cli("export", "--checkpoint", nc_student, "--out", out, "--accept-noncommercial")
    assert res.code == 0, res.stderr
    meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
    assert meta["leve_non_commercial"] == "true" and meta["leve_teacher"] == NC_ID
    res = run_cli("export", "--checkpoint", nc_student, "--format", "hf", "--out", tmp_path / "hf",
                  "--push", "someone/student", "--dry-run", "--accept-noncommercial")
    assert res.code == 0, res.stderr
    assert "would upload to someone/student" in res.stderr and "model.safetensors" in res.stderr
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["extra"]["lineage"]["non_commercial"] is True


def test_an_open_student_needs_no_flag(small_checkpoint, tmp_path, run_cli):
    res = run_cli("export", "--checkpoint", small_checkpoint, "--out", tmp_path / "m.onnx")
    assert res.code == 0, res.stderr
