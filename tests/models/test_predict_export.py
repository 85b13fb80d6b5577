"""``leve predict`` writes the expected files; exports round-trip through onnxruntime / TorchScript."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from leve.models.checkpoint import load_checkpoint
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
    res = run_cli("export", "--checkpoint", small_checkpoint, "--format", "caffe", "--out", tmp_path / "x")
    assert res.code == 1 and "unknown export format 'caffe'" in res.stderr
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------ other architectures


def _checkpoint(tmp_path_factory: pytest.TempPathFactory, name: str) -> object:
    from leve.models.checkpoint import save_checkpoint
    from leve.models.registry import create_model

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


# ------------------------------------------------------------------ relative and metric depth in every output

AFFINE = (3.0, -15.4)  # maps this random model's raw output (about 5.16..5.38) to disparities of about 0.09..0.75
TOL = 0.5 / 65535 + 2e-5  # half a step of the 16-bit PNG plus float32 rounding (the affine's gain 3 on ~5)
EAGER = ("--runtime", "eager")  # the model as built (the other runtimes agree with it to about 1e-6 of the raw output)


@pytest.fixture(scope="module")
def relative_checkpoint(tmp_path_factory):
    """A relative-depth checkpoint (distilled without depth) at 64x96, max_depth 10."""
    from leve.models.checkpoint import save_checkpoint
    from leve.models.registry import create_model

    torch.manual_seed(0)
    model = create_model("leve", max_depth=10.0)
    with torch.no_grad():
        model.decoder.blocks[-1].out.bias.fill_(5.0)
    path = tmp_path_factory.mktemp("ckpt") / "relative.safetensors"
    extra = {"depth_kind": "relative", "relative_affine": list(AFFINE)}
    return save_checkpoint(path, model, "leve", 10.0, extra=extra, resolution=(64, 96))


def raw_disparity(checkpoint, rgb: np.ndarray) -> np.ndarray:
    """Independently of leve's reading of the output: the bare network's raw output on an image at the
    model's size, mapped by the recorded affine to the teacher's max-normalised disparity, clipped to [0.01, 1]."""
    from safetensors.torch import load_file

    from leve.models.registry import create_model

    net = create_model("leve", max_depth=10.0).eval()
    net.load_state_dict(load_file(str(checkpoint)))
    x = torch.from_numpy(rgb.copy()).permute(2, 0, 1)[None].float() / 255
    with torch.inference_mode():
        raw = net(x)[0, 0].double().numpy()
    return np.clip(AFFINE[0] * raw + AFFINE[1], 0.01, 1.0)


def test_relative_png16_holds_scaled_inverse_depth_not_mm(tmp_path, relative_checkpoint, run_cli):
    img = gradient_image(64, 96)  # the model's size: no resize, so the raw output is comparable pixel for pixel
    Image.fromarray(img).save(tmp_path / "room.png")
    res = run_cli("predict", tmp_path / "room.png", "--checkpoint", relative_checkpoint, "--out", tmp_path / "o",
                  *EAGER)
    assert res.code == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["room_depth.png", "room_disp16.png"]
    stored = np.asarray(Image.open(tmp_path / "o" / "room_disp16.png"))
    assert stored.dtype == np.uint16 and stored.shape == (64, 96)
    r = raw_disparity(relative_checkpoint, img)
    assert 0.05 < r.min() and r.max() < 0.9  # the test spans the range, away from the clip
    # the documented transform: value = round(65535 r), so r = value / 65535 to half a step, plus float32's
    # rounding in the model (about 1e-5 of r here, the affine's gain 3 on an output near 5)
    np.testing.assert_allclose(stored / 65535.0, r, atol=TOL)
    said = [line for line in (res.stdout + res.stderr).splitlines() if line.startswith("depth files:")]
    assert len(said) == 1 and "relative (inverse depth)" in said[0] and "round(65535 * r)" in said[0]
    assert "mm" not in said[0] and "millimetres" not in said[0]


def test_relative_npy_holds_the_disparity(tmp_path, relative_checkpoint, run_cli):
    img = gradient_image(64, 96)
    Image.fromarray(img).save(tmp_path / "room.png")
    res = run_cli("predict", tmp_path / "room.png", "--checkpoint", relative_checkpoint, "--out", tmp_path / "o",
                  "--depth-format", "npy", *EAGER)
    assert res.code == 0, res.stderr
    r = np.load(tmp_path / "o" / "room_disp.npy")
    assert r.dtype == np.float32
    np.testing.assert_allclose(r, raw_disparity(relative_checkpoint, img), atol=TOL - 0.5 / 65535)


@pytest.mark.parametrize("depth_format", ["png16", "npy"])
def test_scale_makes_every_relative_output_metric(tmp_path, relative_checkpoint, run_cli, depth_format):
    img = gradient_image(64, 96)
    Image.fromarray(img).save(tmp_path / "room.png")
    res = run_cli("predict", tmp_path / "room.png", "--checkpoint", relative_checkpoint, "--out", tmp_path / "o",
                  "--depth-format", depth_format, "--scale", 2.5, *EAGER)
    assert res.code == 0, res.stderr
    # relative depth d = (max_depth / 100) / r = 0.1 / r; --scale 2.5 metres per unit of it
    metres = 2.5 * 0.1 / raw_disparity(relative_checkpoint, img)
    if depth_format == "npy":
        np.testing.assert_allclose(np.load(tmp_path / "o" / "room_depth.npy"), metres, rtol=1e-4)
    else:
        mm = np.asarray(Image.open(tmp_path / "o" / "room_depth16.png")).astype(np.float64)
        np.testing.assert_allclose(mm, metres * 1000, rtol=1e-4, atol=0.5)
    said = [line for line in (res.stdout + res.stderr).splitlines() if line.startswith("depth files:")]
    assert "--scale 2.5 m per unit" in said[0]


def test_metric_output_line_says_millimetres(tmp_path, small_checkpoint, run_cli):
    Image.fromarray(gradient_image(64, 96)).save(tmp_path / "a.png")
    res = run_cli("predict", tmp_path / "a.png", "--checkpoint", small_checkpoint, "--out", tmp_path / "o")
    assert res.code == 0, res.stderr
    said = [line for line in (res.stdout + res.stderr).splitlines() if line.startswith("depth files:")]
    assert said == ["depth files: metric depth: <image>_depth16.png in millimetres"]


def test_relative_video_frames_hold_the_same_inverse_depth(tmp_path, relative_checkpoint, run_cli):
    from tests.outputs.conftest import moving_square, read_video, write_video

    src = write_video(tmp_path / "clip.mp4", moving_square(3, 64, 96), fps=10)
    decoded = read_video(src)  # the frames leve sees, decoded independently
    res = run_cli("predict", src, "--checkpoint", relative_checkpoint, "--out", tmp_path / "o",
                  *EAGER)
    assert res.code == 0, res.stderr
    maps = sorted((tmp_path / "o" / "clip_frames").iterdir())
    assert [p.name for p in maps] == [f"{k:06d}_disp16.png" for k in range(3)]
    for frame, path in zip(decoded, maps):
        stored = np.asarray(Image.open(path)).astype(np.float64)
        np.testing.assert_allclose(stored / 65535, raw_disparity(relative_checkpoint, frame), atol=TOL)
    assert len(read_video(tmp_path / "o" / "clip_depth.mp4")) == 3


def test_onnx_metadata_states_the_depth_kind(tmp_path, small_checkpoint, relative_checkpoint, run_cli):
    img = gradient_image(64, 96)
    x = (torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255).numpy()
    for ckpt, kind in ((small_checkpoint, "metric"), (relative_checkpoint, "relative")):
        out = tmp_path / f"{kind}.onnx"
        res = run_cli("export", "--checkpoint", ckpt, "--format", "onnx", "--out", out)
        assert res.code == 0, res.stderr
        import onnx

        meta = {p.key: p.value for p in onnx.load(str(out)).metadata_props}
        assert meta["leve_depth_kind"] == kind and meta["leve_input_multiple"] == "8"
        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        got = session.run(None, {"rgb": x})[0][0, 0].astype(np.float64)
        if kind == "metric":
            assert meta["leve_depth_units"] == "m" and meta["output"] == "max_depth/depth"
            assert "metric depth in metres = 10 / out" in meta["leve_output"]
        else:  # the output is 100 r: read back as the metadata says, it is the independent disparity
            assert meta["leve_depth_units"].startswith("relative") and "not metres" in meta["leve_output"]
            assert "out = 100 * r" in meta["leve_output"] and "relative" in meta["output"]
            np.testing.assert_allclose(got / 100, raw_disparity(ckpt, img), atol=TOL)


def test_hf_folder_and_card_state_the_depth_kind(tmp_path, small_checkpoint, relative_checkpoint, run_cli):
    for ckpt, kind in ((small_checkpoint, "metric"), (relative_checkpoint, "relative")):
        out = tmp_path / f"{kind}-hf"
        res = run_cli("export", "--checkpoint", ckpt, "--format", "hf", "--out", out)
        assert res.code == 0, res.stderr
        config = json.loads((out / "config.json").read_text())
        assert config["depth_kind"] == kind
        card = (out / "README.md").read_text()
        rows = [line for line in card.splitlines() if line.startswith("| depth kind |")]
        assert len(rows) == 1
        if kind == "metric":
            assert config["depth_units"] == "m" and "metric: metres" in rows[0]
        else:
            assert config["depth_units"].startswith("relative") and "relative: inverse depth without units" in rows[0]
            assert "`<image>_disp16.png`, round(65535 r)" in rows[0]
        assert config["output"] in card  # the card and the config say the same sentence


def test_torchscript_export_carries_the_depth_kind(tmp_path, relative_checkpoint, run_cli):
    out = tmp_path / "relative.torchscript.pt"
    res = run_cli("export", "--checkpoint", relative_checkpoint, "--format", "torchscript", "--out", out)
    assert res.code == 0, res.stderr
    extra = {"leve.json": ""}
    scripted = torch.jit.load(str(out), _extra_files=extra)
    meta = json.loads(extra["leve.json"])
    assert meta["leve_depth_kind"] == "relative" and meta["leve_model"] == "leve" and meta["resolution"] == "64x96"
    img = gradient_image(64, 96)
    with torch.inference_mode():
        got = scripted(torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255)[0, 0].double().numpy()
    np.testing.assert_allclose(got / 100, raw_disparity(relative_checkpoint, img), atol=TOL)  # out = 100 r, as it says


@pytest.mark.parametrize(("kind", "fmt", "scale", "suffix"), [
    ("metric", "png16", None, "_depth16.png"), ("metric", "npy", None, "_depth.npy"),
    ("relative", "png16", None, "_disp16.png"), ("relative", "npy", None, "_disp.npy"),
    ("relative", "png16", 2.5, "_depth16.png"), ("relative", "npy", 2.5, "_depth.npy")])
def test_depth_files_read_back_as_the_depth_they_were_written_from(kind, fmt, scale, suffix):
    """The depth video colours the per-frame files read back (leve.outputs.video): decode inverts encode."""
    from leve.predict import DepthEncoding

    depth = np.random.default_rng(0).uniform(0.1, 10.0, (7, 9)).astype(np.float32)  # a max_depth 10 model's range
    enc = DepthEncoding(kind, fmt, 10.0, scale)
    assert enc.suffix == suffix
    back = enc.decode(enc.encode(depth))
    if fmt == "npy":
        np.testing.assert_allclose(back, depth, rtol=1e-6)
    elif kind == "relative" and scale is None:  # half a step of 65535 r, r = 0.1 / depth
        np.testing.assert_allclose(0.1 / back, 0.1 / depth, atol=0.5 / 65535 + 1e-7)
    else:  # half a millimetre of the (scaled) metres
        np.testing.assert_allclose(back * (scale or 1.0), depth * (scale or 1.0), atol=0.5e-3 + 1e-6)
