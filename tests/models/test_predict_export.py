"""``leve predict`` writes the expected files; exports round-trip through onnxruntime / TorchScript."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from leve.models import load_checkpoint
from leve.models.depth import output_to_depth


def gradient_image(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), (xx + yy) % 256], -1).astype(np.uint8)


def test_predict_writes_depth_files(tmp_path, small_checkpoint, run_cli):
    img = gradient_image(50, 70)  # not the model's 64x96: resized there and back
    Image.fromarray(img).save(tmp_path / "room.jpg", quality=95)
    Image.fromarray(img[::-1].copy()).save(tmp_path / "hall.png")
    out = tmp_path / "pred"
    res = run_cli("predict", tmp_path, "--checkpoint", small_checkpoint, "--out", out)
    assert res.code == 0, res.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "hall_depth.png", "hall_depth16.png", "room_depth.png", "room_depth16.png"]
    color = np.asarray(Image.open(out / "room_depth.png"))
    assert color.shape == (50, 70, 3) and color.dtype == np.uint8
    mm = np.asarray(Image.open(out / "room_depth16.png"))
    assert mm.shape == (50, 70) and mm.dtype == np.uint16

    # independent computation of the same prediction
    model, info = load_checkpoint(small_checkpoint)
    rgb = np.asarray(Image.open(tmp_path / "room.jpg").convert("RGB"))
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        y = model(F.interpolate(x, size=info.resolution, mode="bilinear", align_corners=False))
        depth = F.interpolate(output_to_depth(y, 10.0), size=(50, 70), mode="bilinear", align_corners=False,
                              antialias=True)  # leve.images: antialiased when shrinking
    expected_mm = np.rint(depth[0, 0].numpy() * 1000)
    assert np.abs(mm.astype(np.float64) - expected_mm).max() <= 1
    assert 100 <= mm.min() and mm.max() <= 10000


def test_predict_npy_and_flip(tmp_path, small_checkpoint, run_cli):
    img = gradient_image(64, 96)
    Image.fromarray(img).save(tmp_path / "a.png")
    res = run_cli("predict", tmp_path / "a.png", "--checkpoint", small_checkpoint, "--out", tmp_path / "o",
                   "--depth-format", "npy", "--flip")
    assert res.code == 0, res.stderr
    depth = np.load(tmp_path / "o" / "a_depth.npy")
    model, _ = load_checkpoint(small_checkpoint)
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        a = output_to_depth(model(x), 10.0)
        b = output_to_depth(model(x.flip(-1)), 10.0).flip(-1)
    np.testing.assert_allclose(depth, (0.5 * (a + b))[0, 0].numpy(), rtol=1e-5, atol=1e-6)


def test_predict_bad_inputs(tmp_path, small_checkpoint, run_cli):
    (tmp_path / "broken.jpg").write_bytes(b"no jpeg here")
    res = run_cli("predict", tmp_path / "broken.jpg", "--checkpoint", small_checkpoint, "--out", tmp_path / "o")
    assert res.code == 1 and "broken.jpg: cannot decode image" in res.stderr
    res = run_cli("predict", tmp_path / "missing.png", "--checkpoint", small_checkpoint)
    assert res.code == 1 and "missing.png: no such file or folder" in res.stderr
    res = run_cli("predict", tmp_path / "broken.jpg", "--checkpoint", tmp_path / "nope.pt")
    assert res.code == 1 and "nope.pt: checkpoint not found" in res.stderr


def test_onnx_export_round_trips(tmp_path, small_checkpoint, run_cli):
    out = tmp_path / "leve.onnx"
    res = run_cli("export", "--checkpoint", small_checkpoint, "--format", "onnx", "--out", out)
    assert res.code == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["path"] == str(out) and len(report["checks"]) == 2
    assert all(c["relative"] < 1e-4 for c in report["checks"])
    # independent check: dynamic batch and spatial size, compared with PyTorch here
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    assert meta["leve_model"] == "leve" and meta["resolution"] == "64x96" and float(meta["max_depth"]) == 10.0
    model, _ = load_checkpoint(small_checkpoint)
    x = torch.rand(3, 3, 80, 104)
    with torch.inference_mode():
        ref = model(x).numpy()
    got = session.run(None, {"rgb": x.numpy()})[0]
    assert got.shape == (3, 1, 80, 104)
    assert np.abs(got - ref).max() < 1e-4 * (ref.max() - ref.min())


def test_torchscript_export(tmp_path, small_checkpoint, run_cli):
    res = run_cli("export", "--checkpoint", small_checkpoint, "--format", "torchscript")
    assert res.code == 0, res.stderr
    path = small_checkpoint.with_suffix(".torchscript.pt")
    assert json.loads(res.stdout)["path"] == str(path)
    scripted = torch.jit.load(str(path))
    model, _ = load_checkpoint(small_checkpoint)
    x = torch.rand(1, 3, 72, 72)
    with torch.inference_mode():
        assert torch.allclose(scripted(x), model(x), atol=1e-6)
    path.unlink()


def test_export_refuses_unknown_format(tmp_path, small_checkpoint, run_cli):
    res = run_cli("export", "--checkpoint", small_checkpoint, "--format", "tflite", "--out", tmp_path / "x")
    assert res.code == 1 and "unknown export format 'tflite'" in res.stderr
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------ other architectures


def _checkpoint(tmp_path_factory: pytest.TempPathFactory, name: str) -> object:
    from leve.models import create_model, save_checkpoint

    torch.manual_seed(0)
    model = create_model(name, max_depth=10.0)
    convs = [m for m in model.decoder.modules() if isinstance(m, torch.nn.Conv2d)]
    with torch.no_grad():  # a positive, image-dependent output, like a trained model's
        if model.output_stride == 2:  # DenseDepth's default init shrinks the signal block by block
            for conv in convs:
                torch.nn.init.kaiming_normal_(conv.weight, a=0.2)
        convs[-1].bias.fill_(5.0)
    path = tmp_path_factory.mktemp("ckpt") / f"{name}.safetensors"
    return save_checkpoint(path, model, name, 10.0, resolution=(64, 96))


@pytest.fixture(scope="module")
def half_res_checkpoint(tmp_path_factory):
    """DenseDepth on MobileNetV2: its output has half the input resolution."""
    return _checkpoint(tmp_path_factory, "densedepth-mobilenetv2")


def test_predict_upsamples_a_half_resolution_output_before_reading_depth(tmp_path, half_res_checkpoint, run_cli):
    img = gradient_image(50, 70)
    Image.fromarray(img).save(tmp_path / "room.png")
    res = run_cli("predict", tmp_path / "room.png", "--checkpoint", half_res_checkpoint, "--out", tmp_path / "o",
                  "--depth-format", "npy", "--flip")
    assert res.code == 0, res.stderr
    depth = np.load(tmp_path / "o" / "room_depth.npy")
    assert depth.shape == (50, 70)
    model, info = load_checkpoint(half_res_checkpoint)
    # the input as leve.images makes it: PIL's bilinear in 8 bits, then / 255
    small = np.asarray(Image.fromarray(img).resize((96, 64), Image.Resampling.BILINEAR))
    x = torch.from_numpy(small.copy()).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        def at_input(t: torch.Tensor) -> torch.Tensor:
            out = model(t)
            assert out.shape[-2:] == (32, 48)
            return output_to_depth(F.interpolate(out, size=(64, 96), mode="bilinear", align_corners=False), 10.0)

        both = 0.5 * (at_input(x) + at_input(x.flip(-1)).flip(-1))
        want = F.interpolate(both, size=(50, 70), mode="bilinear", align_corners=False,
                             antialias=True)[0, 0].numpy()  # leve.images: antialiased when shrinking
    np.testing.assert_allclose(depth, want, rtol=1e-5, atol=1e-6)


def test_serve_predicts_at_the_image_size(half_res_checkpoint):
    from leve.serve.config import Config
    from leve.serve.model import load_model

    loaded = load_model(Config(checkpoint=half_res_checkpoint, device="cpu"))
    try:
        depth, seconds = loaded.predict(gradient_image(40, 60), flip=False)
        assert depth.shape == (40, 60) and np.isfinite(depth).all() and seconds > 0
        assert loaded.name == "densedepth-mobilenetv2" and loaded.resolution == (64, 96)
    finally:
        loaded.worker.shutdown()


@pytest.mark.parametrize("name", ["densedepth-mobilenetv2", "leve-mobilenetv3",
                                  pytest.param("densedepth-densenet169", marks=pytest.mark.slow)])
def test_onnx_export_of_other_architectures(tmp_path_factory, tmp_path, name, run_cli):
    ckpt = _checkpoint(tmp_path_factory, name)
    out = tmp_path / f"{name}.onnx"
    res = run_cli("export", "--checkpoint", ckpt, "--format", "onnx", "--out", out)
    assert res.code == 0, res.stderr
    report = json.loads(res.stdout)
    assert len(report["checks"]) == 2 and all(c["relative"] < 1e-4 for c in report["checks"])
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    model, _ = load_checkpoint(ckpt)
    stride = model.output_stride
    assert session.get_modelmeta().custom_metadata_map["output_stride"] == str(stride)
    x = torch.rand(2, 3, 96, 128)  # another size: the graph's spatial axes are dynamic
    with torch.inference_mode():
        ref = model(x).numpy()
    got = session.run(None, {"rgb": x.numpy()})[0]
    assert got.shape == (2, 1, 96 // stride, 128 // stride)
    assert np.abs(got - ref).max() < 1e-4 * (ref.max() - ref.min())


def test_export_refuses_a_size_the_model_cannot_take(tmp_path, half_res_checkpoint, run_cli):
    res = run_cli("export", "--checkpoint", half_res_checkpoint, "--format", "onnx", "--out", tmp_path / "x.onnx",
                  "--resolution", "68x96")
    assert res.code == 1 and len(res.stderr.strip().splitlines()) == 1
    assert "resolution 68x96: height and width must be multiples of 8" in res.stderr
    assert not list(tmp_path.iterdir())
