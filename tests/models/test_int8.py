"""int8 ONNX (onnxruntime static quantization, QDQ): ``leve export --quantize int8``, the ``onnx-int8``
runtime of ``leve predict`` and ``leve serve`` (which run the checkpoint's exported file) and the
``onnx-int8`` mode of ``leve bench model`` (which quantizes in memory, calibrated on its store).

Tolerances: on these untrained models quantization moves the output by a mean of 3.5-7% of its
(small: near-constant) range (measured: mean_relative 0.035 for leve at 96x128, 0.067 for the
small_checkpoint model at 64x96, both on synthetic rooms; single pixels up to 0.4 of the range), so
the checks hold the mean abs difference to :data:`leve.models.runtime.INT8_TOLERANCE` (0.15). In
depth that is small: the small_checkpoint model's int8 depth differs from eager by a mean 0.11% (max
0.13% per image) over 16 rooms of the demo's test split, so depth is held to 1%. A broken graph (a
wrong scale or zero point) is far outside both.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from PIL import Image
from torch import nn

from leve.errors import LeveError
from leve.models.runtime import (
    INT8_TOLERANCE,
    InferenceModel,
    check_runtime,
    prepare_for_inference,
    profile_operators,
    verify,
)
from tests.factories import synthetic_store

DEPTH_TOLERANCE = 0.01  # mean |int8 - eager| / eager depth (see the module docstring)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthetic_store(tmp_path_factory.mktemp("int8") / "synthetic.zarr", height=64, width=96,
                           train=4, val=1, test=3, block_size=4)


def _room(store: Path, split: str, i: int) -> np.ndarray:
    from leve.store.reader import open_split

    return open_split(store, split).rgb(i)


def _mean_relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.abs(a - b) / np.abs(b)))


def test_int8_export_is_quantized_keeps_dynamic_axes_and_records_its_calibration(tmp_path, small_checkpoint, store,
                                                                                  run_cli):
    out = tmp_path / "leve.int8.onnx"
    res = run_cli("export", "--checkpoint", small_checkpoint, "--quantize", "int8", "--out", out,
                  "--calibration-store", store, "--calibration-split", "train", "--calibration-images", "3")
    assert res.code == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["quantize"] == "int8" and len(report["checks"]) == 2
    assert report["checks"][1]["shape"] != report["checks"][0]["shape"]  # a second size: the axes stayed dynamic
    assert all(0 < c["mean_relative"] < INT8_TOLERANCE for c in report["checks"])  # > 0: really rounded
    proto = onnx.load(str(out))
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert any(i.data_type == onnx.TensorProto.INT8 for i in proto.graph.initializer)  # int8 weights
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["leve_quantization"] == "int8" and meta["leve_calibration_split"] == "train"
    assert meta["leve_calibration_images"] == "3" and meta["leve_calibration_store"] == "synthetic.zarr"
    assert meta["leve_calibration_method"] == "minmax"
    assert meta["leve_depth_kind"] == "metric" and meta["leve_input_multiple"] == "8"

    # the file against `leve predict --runtime eager` on a room it was not calibrated on
    rgb = _room(store, "test", 0)
    Image.fromarray(rgb).save(tmp_path / "room.png")
    pred = run_cli("predict", tmp_path / "room.png", "--checkpoint", small_checkpoint, "--out", tmp_path / "p",
                   "--depth-format", "npy", "--runtime", "eager")
    assert pred.code == 0, pred.stderr
    eager = np.load(tmp_path / "p" / "room_depth.npy")
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float().numpy() / 255  # 64x96: the checkpoint's size
    out_int8 = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"rgb": x})[0]
    depth = 10.0 / out_int8[0, 0]  # metric: max_depth / output
    assert _mean_relative(depth, eager) < DEPTH_TOLERANCE


def test_int8_export_refusals_leave_nothing_behind(tmp_path, small_checkpoint, run_cli):
    res = run_cli("export", "--checkpoint", small_checkpoint, "--format", "torchscript", "--quantize", "int8")
    assert res.code == 1 and "--quantize int8: only int8 with --format onnx" in res.stderr
    out = tmp_path / "x.int8.onnx"
    res = run_cli("export", "--checkpoint", small_checkpoint, "--quantize", "int8", "--out", out,
                  "--calibration-store", tmp_path / "missing.zarr")
    assert res.code == 1 and "missing.zarr not found" in res.stderr
    assert list(tmp_path.iterdir()) == []


def _export_int8(run_cli, checkpoint: Path, store: Path) -> Path:
    """``leve export --format onnx --quantize int8`` to its default path, beside ``checkpoint``."""
    res = run_cli("export", "--checkpoint", checkpoint, "--format", "onnx", "--quantize", "int8",
                  "--calibration-store", store, "--calibration-split", "train", "--calibration-images", "3")
    assert res.code == 0, res.stderr
    path = checkpoint.with_suffix(".int8.onnx")
    assert json.loads(res.stdout)["path"] == str(path)
    return path


def test_predict_runs_the_int8_export_of_its_checkpoint(tmp_path, small_checkpoint, store, run_cli):
    checkpoint = tmp_path / "ckpt" / small_checkpoint.name  # a copy: the export lands beside it
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(small_checkpoint.read_bytes())
    int8 = _export_int8(run_cli, checkpoint, store)
    rooms = [_room(store, "test", i) for i in range(2)]  # 64x96: the checkpoint's size, no resize
    for i, rgb in enumerate(rooms):
        Image.fromarray(rgb).save(tmp_path / f"r{i}.png")
    depths = {}
    for runtime in ("eager", "onnx-int8"):
        res = run_cli("predict", tmp_path / "r0.png", tmp_path / "r1.png", "--checkpoint", checkpoint,
                      "--out", tmp_path / runtime, "--depth-format", "npy", "--runtime", runtime)
        assert res.code == 0, res.stderr
        depths[runtime] = [np.load(tmp_path / runtime / f"r{i}_depth.npy") for i in range(2)]
    # the same file run by onnxruntime here, on the images as the model takes them: metric depth = max_depth / out
    session = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
    for rgb, got, eager in zip(rooms, depths["onnx-int8"], depths["eager"]):
        x = rgb.transpose(2, 0, 1)[None].astype(np.float32) / 255
        direct = 10.0 / session.run(None, {"rgb": x})[0][0, 0]
        np.testing.assert_allclose(got, direct, rtol=1e-4)
        assert 0 < _mean_relative(got, eager) < DEPTH_TOLERANCE  # really int8, and close to eager
    # predicting does not quantize again: the file's calibration (the store's train split) is what ran
    assert {p.key: p.value for p in onnx.load(str(int8)).metadata_props}["leve_calibration_split"] == "train"


def test_predict_onnx_int8_refuses_a_missing_or_foreign_export_in_one_line(tmp_path, small_checkpoint, store,
                                                                          run_cli):
    from leve.models.checkpoint import load_checkpoint, save_checkpoint
    from leve.models.runtime import checkpoint_digest

    Image.fromarray(_room(store, "test", 0)).save(tmp_path / "r.png")
    checkpoint = tmp_path / "a" / "best.safetensors"
    checkpoint.parent.mkdir()
    checkpoint.write_bytes(small_checkpoint.read_bytes())
    res = run_cli("predict", tmp_path / "r.png", "--checkpoint", checkpoint, "--runtime", "onnx-int8",
                  "--out", tmp_path / "o")
    assert res.code == 1 and not (tmp_path / "o").exists()
    assert res.stderr.strip() == (f"error: {checkpoint.with_suffix('.int8.onnx')}: not found; --runtime onnx-int8 "
                                  "runs the checkpoint's int8 export: make it with `leve export --checkpoint "
                                  f"{checkpoint} --format onnx --quantize int8`")

    # another checkpoint's export beside this one (same model, other weights)
    model, info = load_checkpoint(small_checkpoint)
    with torch.no_grad():
        model.decoder.blocks[-1].out.bias.add_(0.5)
    other = save_checkpoint(tmp_path / "b" / "other.safetensors", model, "leve", 10.0, resolution=info.resolution)
    _export_int8(run_cli, other, store).rename(checkpoint.with_suffix(".int8.onnx"))
    res = run_cli("predict", tmp_path / "r.png", "--checkpoint", checkpoint, "--runtime", "onnx-int8",
                  "--out", tmp_path / "o")
    assert res.code == 1 and not (tmp_path / "o").exists()
    assert res.stderr.strip() == (f"error: {checkpoint.with_suffix('.int8.onnx')}: exported from another checkpoint "
                                  f"(other.safetensors, sha256 {checkpoint_digest(other)[:12]}), not {checkpoint} "
                                  f"(sha256 {checkpoint_digest(checkpoint)[:12]}); export it again with `leve export "
                                  f"--checkpoint {checkpoint} --format onnx --quantize int8`")

    # an export without a digest (written before leve recorded one) cannot be matched
    proto = onnx.load(str(checkpoint.with_suffix(".int8.onnx")))
    kept = [(p.key, p.value) for p in proto.metadata_props if p.key != "leve_checkpoint_sha256"]
    del proto.metadata_props[:]
    for key, value in kept:
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(checkpoint.with_suffix(".int8.onnx")))
    res = run_cli("predict", tmp_path / "r.png", "--checkpoint", checkpoint, "--runtime", "onnx-int8",
                  "--out", tmp_path / "o")
    assert res.code == 1 and "records no checkpoint digest" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_serve_runs_the_int8_export_and_refuses_without_a_checkpoint(tmp_path, small_checkpoint, store, run_cli):
    from leve.errors import LeveError
    from leve.serve.config import Config
    from leve.serve.model import load_model

    checkpoint = tmp_path / small_checkpoint.name
    checkpoint.write_bytes(small_checkpoint.read_bytes())
    int8 = _export_int8(run_cli, checkpoint, store)
    loaded = load_model(Config(checkpoint=checkpoint, device="cpu", runtime="onnx-int8", samples=1,
                               sample_height=24, sample_width=32, warmup=False))
    assert loaded.model.runtime == "onnx-int8"
    rgb = _room(store, "test", 1)
    depth, _ = loaded.predict(rgb, flip=False)
    x = rgb.transpose(2, 0, 1)[None].astype(np.float32) / 255
    direct = 10.0 / ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"]).run(None, {"rgb": x})[0][0, 0]
    np.testing.assert_allclose(depth, direct, rtol=1e-4)
    with pytest.raises(LeveError, match="runtime onnx-int8 runs a checkpoint's int8 export: give --checkpoint"):
        load_model(Config(checkpoint=None, device="cpu", runtime="onnx-int8", samples=1, sample_height=24,
                          sample_width=32, warmup=False))


def test_onnx_int8_runtime_is_checked_and_cpu_only():
    from leve.models.registry import create_model

    torch.manual_seed(0)
    model = create_model("leve").eval()
    prepared = prepare_for_inference(model, "onnx-int8", (64, 64))  # default calibration: the synthetic rooms
    assert prepared.runtime == "onnx-int8" and prepared.check is not None
    assert 0 < prepared.check.mean_relative < INT8_TOLERANCE
    assert prepared.onnx_graph is not None
    prof = profile_operators({"int8": prepared.onnx_graph}, torch.rand(1, 3, 64, 64), runs=2)["int8"]
    assert "QLinearConv" in prof["operators"] and prof["total_ms"] > 0  # the int8 convolutions ran
    assert sum(o["ms"] for o in prof["operators"].values()) <= prof["total_ms"] * 1.5  # medians of parts, top 8
    with pytest.raises(LeveError, match="runtime onnx-int8 runs on the CPU"):
        check_runtime("onnx-int8", "cuda:0")
    conv = nn.Conv2d(3, 1, 1).eval()
    wrong = InferenceModel(conv, "onnx-int8", lambda x: conv(x) + 0.5 * (conv(x).max() - conv(x).min()),
                           channels_last=False)
    with pytest.raises(LeveError, match="runtime onnx-int8: output differs from eager PyTorch .*mean abs diff"):
        verify(wrong, conv, torch.rand(1, 3, 8, 8))


@pytest.mark.slow
def test_bench_model_times_int8_against_fp32_onnx_and_scores_both(tmp_path, store, run_cli):
    res = run_cli("bench", "model", "--models", "leve", "--resolution", "64x96", "--repeats", "3", "--warmup", "1",
                  "--modes", "onnx-int8", "--out", "", "--params", tmp_path / "none.yaml",
                  "--set", f"int8_store={store}", "--set", "int8_calibration_images=2", "--set", "int8_eval_images=2")
    assert res.code == 0, res.stderr
    modes = json.loads(res.stdout)["models"]["leve"]["fp32"]
    assert list(modes) == ["eager", "onnx", "onnx-int8"]  # onnx comes with onnx-int8: its baseline
    int8 = modes["onnx-int8"]
    assert int8["runs"] == 3 and int8["latency_ratio_vs_onnx"] > 0
    assert 0 < int8["check"]["mean_relative"] < INT8_TOLERANCE  # checked on a calibration image
    assert int8["calibration"] == {"source": f"{store}/train", "images": 2, "method": "minmax"}
    acc = int8["accuracy"]
    assert acc["source"] == f"{store}/test" and acc["images"] == 2
    for name in ("onnx", "onnx-int8"):
        assert 0 <= acc[name]["d1"] <= 1 and acc[name]["rmse"] > 0
    assert acc["d1_drop"] == pytest.approx(acc["onnx"]["d1"] - acc["onnx-int8"]["d1"], abs=2e-5)
    assert acc["rmse_rise"] == pytest.approx(acc["onnx-int8"]["rmse"] - acc["onnx"]["rmse"], abs=2e-5)
    assert int8["int8_goal"]["met"] == (int8["latency_ratio_vs_onnx"] <= 0.5 and abs(acc["d1_drop"]) <= 0.01)
    row = json.loads(res.stdout)["runtimes"]["models"]["leve"]["onnx-int8"]  # the one table across the modes
    assert (row["d1_drop_vs_onnx"], row["rmse_rise_vs_onnx"]) == (acc["d1_drop"], acc["rmse_rise"])
    assert row["mean_diff_vs_eager"] == int8["check"]["mean_relative"]
    if not int8["int8_goal"]["met"]:  # why, operator by operator
        ops = int8["operators"]
        assert "QLinearConv" in ops["onnx-int8"]["operators"] and "QLinearConv" not in ops["onnx"]["operators"]
        assert ops["conv_speedup"] > 0 and 0 <= ops["int8_overhead_share"] < 1


def test_int8_export_calibrates_as_the_params_say(tmp_path, small_checkpoint, store, run_cli, monkeypatch):
    (tmp_path / "params.yaml").write_text(f"bench:\n  model:\n    int8_store: {store}\n    int8_calibration_images: 2\n")
    monkeypatch.chdir(tmp_path)  # the params file of the working folder, as every command reads it
    res = run_cli("export", "--checkpoint", small_checkpoint, "--quantize", "int8", "--out", tmp_path / "m.onnx")
    assert res.code == 0, res.stderr
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert (meta["leve_calibration_images"], meta["leve_calibration_split"]) == ("2", "train")  # split: as shipped
