"""Core ML (issue 29 item 3): ``leve export --format coreml`` converts the student with coremltools to an
ML Program package (``.mlpackage``, fp32) with the ONNX export's metadata.

Core ML itself runs only on macOS, so here the saved package is checked as far as Linux allows: its input
and output names, shapes and types, its metadata, and its program. The program is read from the package
(its protobuf and its weight blob) and evaluated by :func:`_run_program`, a reading of the MIL operations
the leve student converts to (conv, batch_norm, relu, add, sub, mul, upsample_bilinear, avg_pool,
reduce_mean, concat) written here with torch.nn.functional; its output is compared with ``leve predict``.
That checks the converted graph and its weights, not Core ML's runtime (its kernels, fp16 on the Neural
Engine): that needs a Mac."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

if importlib.util.find_spec("coremltools") is None:
    pytest.skip("coremltools is not installed (the export extra)", allow_module_level=True)

from leve.export_mobile import coreml_spec  # noqa: E402

MIL_OPS = {"const", "conv", "batch_norm", "relu", "add", "sub", "mul", "upsample_bilinear", "avg_pool", "reduce_mean",
           "concat"}


def _image(h: int = 64, w: int = 96) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), (xx + yy) % 256], -1)
    return np.clip(base + rng.integers(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def _operations(spec) -> list:
    main = spec.mlProgram.functions["main"]
    return list(main.block_specializations[main.opset].operations)


def _value(value, package: Path):
    """A MIL value: an immediate tensor, or float32 weights in the package's blob file."""
    from coremltools.libmilstoragepython import _BlobStorageReader

    shape = tuple(d.constant.size for d in value.type.tensorType.dimensions)
    if value.WhichOneof("value") == "blobFileValue":
        blob = value.blobFileValue
        path = package / "Data" / "com.apple.CoreML" / blob.fileName.replace("@model_path/", "")
        return torch.tensor(np.array(_BlobStorageReader(str(path)).read_float_data(blob.offset), np.float32)
                            ).reshape(shape)
    tensor = value.immediateValue.tensor
    items = list(getattr(tensor, tensor.WhichOneof("value")).values)
    if isinstance(items[0], str):
        return items[0]
    out = torch.tensor(items).reshape(shape)
    return out.item() if out.ndim == 0 else out


def _run_program(package: Path, x: torch.Tensor) -> torch.Tensor:
    """Evaluate the package's MIL program on ``x`` (the input ``rgb``), op by op in program order."""
    spec = coreml_spec(package)
    env: dict[str, object] = {"rgb": x}
    for op in _operations(spec):
        if op.type == "const":
            env[op.outputs[0].name] = _value(op.attributes["val"], package)
            continue
        args = {k: [env[a.name] if a.name else _value(a.value, package) for a in v.arguments]
                for k, v in op.inputs.items()}
        a = {k: v[0] for k, v in args.items()}
        env[op.outputs[0].name] = _apply(op.type, a, args, tuple(d.constant.size for d in
                                                                 op.outputs[0].type.tensorType.dimensions))
    (out,) = spec.description.output
    return env[out.name]


def _padding(a: dict) -> tuple[int, int, int, int]:
    """MIL ``pad`` (top, bottom, left, right) as F.pad's (left, right, top, bottom)."""
    if a["pad_type"] == "valid":
        return (0, 0, 0, 0)
    assert a["pad_type"] == "custom", a["pad_type"]
    top, bottom, left, right = (int(v) for v in a["pad"])
    return (left, right, top, bottom)


def _apply(kind: str, a: dict, args: dict, shape: tuple[int, ...]) -> torch.Tensor:
    if kind == "conv":
        x = F.pad(a["x"], _padding(a))
        return F.conv2d(x, a["weight"], a.get("bias"), tuple(a["strides"].tolist()), 0,
                        tuple(a["dilations"].tolist()), int(a["groups"]))
    if kind == "batch_norm":
        return F.batch_norm(a["x"], a["mean"], a["variance"], a.get("gamma"), a.get("beta"), False, 0.0,
                            float(a["epsilon"]))
    if kind == "relu":
        return F.relu(a["x"])
    if kind in ("add", "sub", "mul"):
        return {"add": torch.add, "sub": torch.sub, "mul": torch.mul}[kind](a["x"], a["y"])
    if kind == "upsample_bilinear":
        assert not a["align_corners"] and a.get("half_pixel_centers", True)
        return F.interpolate(a["x"], size=shape[-2:], mode="bilinear", align_corners=False)
    if kind == "avg_pool":
        assert not a["ceil_mode"]
        kernel, strides, (left, right, top, bottom) = tuple(a["kernel_sizes"].tolist()), tuple(a["strides"].tolist()), \
            _padding(a)
        if a["exclude_padding_from_average"]:  # the padded cells out of each average: symmetric padding only
            assert (left, top) == (right, bottom)
            return F.avg_pool2d(a["x"], kernel, strides, (top, left), count_include_pad=False)
        return F.avg_pool2d(F.pad(a["x"], (left, right, top, bottom)), kernel, strides)  # zeros counted
    if kind == "reduce_mean":
        return a["x"].mean(dim=tuple(a["axes"].tolist()), keepdim=bool(a["keep_dims"]))
    if kind == "concat":
        assert not a.get("interleave", False)
        return torch.cat(args["values"], dim=int(a["axis"]))
    raise AssertionError(f"no reading of the MIL op {kind}")


@pytest.fixture(scope="module")
def package(tmp_path_factory, small_checkpoint) -> Path:
    """The small checkpoint exported with --format coreml (through the CLI's entry point)."""
    import subprocess
    import sys

    out = tmp_path_factory.mktemp("coreml") / "pkg" / "leve.mlpackage"
    res = subprocess.run([sys.executable, "-m", "leve", "export", "--checkpoint", str(small_checkpoint), "--format",
                          "coreml", "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["format"] == "coreml" and report["checks"] == []
    assert report["note"].startswith("Core ML predicts only on macOS")
    assert res.stderr.strip() == f"wrote {out}; {report['note']}"  # the converters' own logs silenced
    return out


@pytest.mark.slow  # the module's export: about 15 s of coremltools conversion in a subprocess
def test_coreml_package_features_and_the_onnx_metadata(package, small_checkpoint, tmp_path, run_cli):
    from coremltools.proto.FeatureTypes_pb2 import ArrayFeatureType

    assert sorted(p.name for p in package.parent.iterdir()) == ["leve.mlpackage"]  # no temporary left
    spec = coreml_spec(package)
    (inp,), (out,) = spec.description.input, spec.description.output
    fp32 = ArrayFeatureType.FLOAT32
    assert (inp.name, list(inp.type.multiArrayType.shape), inp.type.multiArrayType.dataType) == ("rgb", [1, 3, 64, 96],
                                                                                                  fp32)
    assert (out.name, list(out.type.multiArrayType.shape), out.type.multiArrayType.dataType) == ("out", [1, 1, 64, 96],
                                                                                                  fp32)
    res = run_cli("export", "--checkpoint", small_checkpoint, "--out", tmp_path / "leve.onnx")
    assert res.code == 0, res.stderr
    onnx_meta = {p.key: p.value for p in onnx.load(str(tmp_path / "leve.onnx")).metadata_props}
    stored = dict(spec.description.metadata.userDefined)
    assert {k: stored[k] for k in onnx_meta} == onnx_meta  # coremltools adds its own keys (version, source)
    assert stored["leve_input_multiple"] == "8" and stored["leve_depth_kind"] == "metric"
    assert spec.description.metadata.license == onnx_meta["leve_licence"]


@pytest.mark.slow
def test_coreml_program_matches_leve_predict(package, small_checkpoint, tmp_path, run_cli):
    """The saved program, evaluated op by op from its protobuf and weight blob, against `leve predict`;
    one Conv2d of the student per conv of the program, every op one this reading covers."""
    from leve.models.checkpoint import load_checkpoint

    ops = _operations(coreml_spec(package))
    assert {op.type for op in ops} <= MIL_OPS
    model, _ = load_checkpoint(small_checkpoint)
    assert sum(op.type == "conv" for op in ops) == sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())

    rgb = _image()
    Image.fromarray(rgb).save(tmp_path / "a.png")
    res = run_cli("predict", tmp_path / "a.png", "--checkpoint", small_checkpoint, "--out", tmp_path / "eager",
                  "--depth-format", "npy", "--runtime", "eager")
    assert res.code == 0, res.stderr
    predicted = np.load(tmp_path / "eager" / "a_depth.npy")
    x = torch.from_numpy(rgb.transpose(2, 0, 1)[None].astype(np.float32) / 255)
    with torch.no_grad():
        got = _run_program(package, x).numpy()
        ref = model(x).numpy()
    assert got.shape == ref.shape and np.abs(got - ref).max() < 1e-4 * (ref.max() - ref.min())
    direct = 10.0 / got[0, 0]  # metric: max_depth / output
    assert np.abs(direct - predicted).max() < 1e-3  # metres


def test_coreml_export_refuses_a_path_that_is_not_mlpackage(tmp_path, small_checkpoint, run_cli):
    res = run_cli("export", "--checkpoint", small_checkpoint, "--format", "coreml", "--out", tmp_path / "m.mlmodel")
    assert res.code == 1
    assert res.stderr.strip() == f"error: {tmp_path / 'm.mlmodel'}: a Core ML ML Program is saved as a .mlpackage folder"
    assert list(tmp_path.iterdir()) == []
