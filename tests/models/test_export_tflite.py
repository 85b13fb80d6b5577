"""LiteRT/TFLite (issue 29 item 3): ``leve export --format tflite`` converts the student with litert-torch
and writes a ``.tflite`` with the ONNX export's metadata. The file is run here by LiteRT's own interpreter
(``ai_edge_litert``) and compared with ``leve predict`` (tolerances as for ONNX and OpenVINO: 1e-4 of the
output range against PyTorch, 1e-3 m in depth). litert-torch is the ``tflite`` extra, not in ``dev`` (about
830 MB installed with jax, and its xdsl pins typing-extensions below what selenium needs): without it the
conversion tests skip and the one-line refusal is tested instead."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import onnx
import pytest
from PIL import Image

HAVE_LITERT = importlib.util.find_spec("litert_torch") is not None
needs_litert = pytest.mark.skipif(not HAVE_LITERT, reason="litert-torch is not installed (the tflite extra; not in dev)")


def _image(h: int = 64, w: int = 96) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), (xx + yy) % 256], -1)
    return np.clip(base + rng.integers(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def _metadata(path) -> dict[str, bytes]:
    """Every metadata entry of a .tflite, read with the flatbuffer schema's plain accessors."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAs(bytearray(path.read_bytes()), 0)
    entries = (model.Metadata(i) for i in range(model.MetadataLength()))
    return {m.Name().decode(): model.Buffers(m.Buffer()).DataAsNumpy().tobytes() for m in entries}


@needs_litert
@pytest.mark.slow  # about 40 s: litert-torch's conversion, the interpreter and two predictions
def test_tflite_matches_leve_predict_and_carries_the_onnx_metadata(tmp_path, small_checkpoint, run_cli):
    from ai_edge_litert.interpreter import Interpreter

    out = tmp_path / "lite" / "leve.tflite"
    res = run_cli("export", "--checkpoint", small_checkpoint, "--format", "tflite", "--out", out)
    assert res.code == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["format"] == "tflite" and len(report["checks"]) == 2
    assert all(c["shape"] == [1, 1, 64, 96] and c["relative"] < 1e-4 for c in report["checks"])
    assert [p.name for p in out.parent.iterdir()] == ["leve.tflite"]  # no temporary left

    # the same description as the ONNX export of the same checkpoint
    res = run_cli("export", "--checkpoint", small_checkpoint, "--out", tmp_path / "leve.onnx")
    assert res.code == 0, res.stderr
    onnx_meta = {p.key: p.value for p in onnx.load(str(tmp_path / "leve.onnx")).metadata_props}
    meta = json.loads(_metadata(out)["leve"])
    assert meta == onnx_meta
    assert meta["leve_input_multiple"] == "8" and meta["leve_depth_kind"] == "metric" and meta["resolution"] == "64x96"

    interpreter = Interpreter(model_path=str(out))
    assert interpreter.get_signature_list() == {"serving_default": {"inputs": ["rgb"], "outputs": ["out"]}}
    (inp,) = interpreter.get_input_details()
    assert list(inp["shape"]) == [1, 3, 64, 96] and inp["dtype"] == np.float32
    runner = interpreter.get_signature_runner()

    # the file against `leve predict`, on an image at the checkpoint's size (64x96: no resize)
    rgb = _image()
    Image.fromarray(rgb).save(tmp_path / "a.png")
    res = run_cli("predict", tmp_path / "a.png", "--checkpoint", small_checkpoint, "--out", tmp_path / "eager",
                  "--depth-format", "npy", "--runtime", "eager")
    assert res.code == 0, res.stderr
    predicted = np.load(tmp_path / "eager" / "a_depth.npy")
    x = rgb.transpose(2, 0, 1)[None].astype(np.float32) / 255
    direct = 10.0 / runner(rgb=x)["out"][0, 0]  # metric: max_depth / output
    assert direct.shape == predicted.shape and np.abs(direct - predicted).max() < 1e-3  # metres


@pytest.mark.skipif(HAVE_LITERT, reason="litert-torch is installed: the refusal is for its absence")
def test_tflite_without_litert_torch_is_one_line_and_writes_nothing(tmp_path, small_checkpoint, run_cli):
    res = run_cli("export", "--checkpoint", small_checkpoint, "--format", "tflite", "--out", tmp_path / "m.tflite")
    assert res.code == 1
    assert res.stderr.strip() == ("error: --format tflite needs litert-torch (litert_torch missing): "
                                  "pip install 'leve[tflite]'")
    assert list(tmp_path.iterdir()) == []
