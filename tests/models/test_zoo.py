"""The encoder comparisons in the registry: seed 002's DenseDepth models and the thesis's MobileNetV3
Leve (Table 9.1). Parameter counts derived here from the layer lists and the published encoder
layouts, DenseDepth-169's published 42.6 M, reference forwards, ImageNet weights through
``create_model``, the input-size contract and the registry's published figures."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from leve.errors import LeveError
from leve.models.base import InputSizeError
from leve.models.encoders.catalogue import ENCODERS
from leve.models.encoders.create import create_encoder
from leve.models.registry import SEED_002, THESIS, create_model, list_models, model_spec
from tests.models.encoders_ref.layouts import is_classifier, published_layout, random_state_dict, trunk_params

DENSEDEPTH = {  # model -> (encoder, its channels at strides 2, 4, 8, 16, 32)
    "densedepth-densenet169": ("densenet169", [64, 64, 128, 256, 1664]),
    "densedepth-densenet161": ("densenet161", [96, 96, 192, 384, 2208]),
    "densedepth-resnet50": ("resnet50", [64, 256, 512, 1024, 2048]),
    "densedepth-resnet101": ("resnet101", [64, 256, 512, 1024, 2048]),
    "densedepth-mobilenetv2": ("mobilenet_v2", [16, 24, 32, 96, 320]),
}
SLOW = {"densedepth-densenet169", "densedepth-densenet161", "densedepth-resnet50", "densedepth-resnet101"}
# Seed 002, Table I (NYU): each model's row label, written out from the paper (its numbers are
# leve/models/published.csv's, checked in tests/models/test_published.py).
SEED_TABLE_I = {
    "densedepth-densenet169": "DenseNet-169",
    "densedepth-densenet161": "DenseNet-161",
    "densedepth-resnet50": "ResNet-50",
    "densedepth-mobilenetv2": "MobileNetV2",
    "densedepth-resnet101": "ResNet-101",
}


def _param(name: str):
    return pytest.param(name, marks=[pytest.mark.slow] if name in SLOW else [])


def conv(cin: int, cout: int, k: int, bias: bool = True, groups: int = 1) -> int:
    return cin // groups * cout * k * k + (cout if bias else 0)


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def densedepth_decoder_params(channels: list[int]) -> int:
    """1x1 conv F->F; blocks (F + skip16 -> F/2), (F/2 + skip8 -> F/4), ...: two 3x3 convs each; 3x3 to 1."""
    f = channels[-1]
    total = conv(f, f, 1)
    cin = f
    for i, skip in enumerate(channels[-2::-1]):
        cout = f // 2 ** (i + 1)
        total += conv(cin + skip, cout, 3) + conv(cout, cout, 3)
        cin = cout
    return total + conv(cin, 1, 3)


def layout_params(encoder: str, keep=lambda key: True) -> int:
    """Parameters of the published file's trunk (no classifier), only the tensors ``keep`` accepts."""
    return trunk_params({k: s for k, s in published_layout(encoder).items() if keep(k)})


def leve_mobilenet_decoder_params() -> int:
    """Leve up-blocks 48 -> 24 -> 16 -> 1, LCB 3x3+3x3 (conv without bias + BN), skips 24, 16, 3 via 1x1 convs."""
    total = 0
    for cin, cout, skip in ((48, 24, 24), (24, 16, 16), (16, 1, 3)):
        total += 2 * (conv(cin, cin, 3, bias=False) + 2 * cin) + conv(skip, cin, 1) + conv(cin, cout, 1)
    return total


def _first_nine_blocks(key: str) -> bool:
    return key.startswith("features.") and int(key.split(".")[1]) <= 8


# --------------------------------------------------------------------------------- parameter counts


def test_densedepth_densenet169_has_the_published_42_6_million():
    model = create_model("densedepth-densenet169")
    assert count(model) == 42_657_689  # DenseDepth's paper: 42.6 M
    assert count(model.encoder) == 12_484_480 and count(model.decoder) == 30_173_209


@pytest.mark.parametrize("name", [_param(n) for n in DENSEDEPTH])
def test_densedepth_parameter_counts(name):
    encoder, channels = DENSEDEPTH[name]
    model = create_model(name)
    assert model.encoder.channels == channels and model.encoder.reductions == [2, 4, 8, 16, 32]
    # MobileNetV2's final 1x1 conv to 1280 (features.18) is not run, so it is not part of the model
    expected_encoder = layout_params(encoder, lambda k: not k.startswith("features.18."))
    assert count(model.encoder) == expected_encoder
    if encoder != "mobilenet_v2":
        assert expected_encoder == ENCODERS[encoder].params  # the whole published trunk
    assert count(model.decoder) == densedepth_decoder_params(channels)


def test_measured_totals():
    totals = {"densedepth-mobilenetv2": 3_006_013, "leve-mobilenetv3": 250_585}
    assert {n: count(create_model(n)) for n in totals} == totals
    assert count(create_model("densedepth-mobilenetv2").encoder) == 2_223_872 - conv(320, 1280, 1, bias=False) - 2 * 1280


def test_leve_mobilenetv3_parameter_count():
    model = create_model("leve-mobilenetv3")
    assert count(model.encoder) == layout_params("mobilenet_v3_small", _first_nine_blocks) == 190_520
    assert count(model.decoder) == leve_mobilenet_decoder_params() == 60_065


# --------------------------------------------------------------------------------- forward


def _weights_file(encoder: str, path: Path, seed: int = 0) -> dict[str, torch.Tensor]:
    sd = random_state_dict(published_layout(encoder), seed)
    torch.save(sd, path)
    return sd


def test_densedepth_decoder_matches_a_functional_reference(tmp_path):
    torch.manual_seed(0)
    _weights_file("mobilenet_v2", tmp_path / "w.pth")
    model = create_model("densedepth-mobilenetv2", encoder_weights=tmp_path / "w.pth").eval()
    x = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    sd = model.decoder.state_dict()
    with torch.inference_mode():
        maps = model.encoder(x)
        assert [tuple(m.shape[-2:]) for m in maps] == [(32, 48), (16, 24), (8, 12), (4, 6), (2, 3)]
        y = F.conv2d(maps[4], sd["conv.weight"], sd["conv.bias"])
        for i, skip in enumerate([maps[3], maps[2], maps[1], maps[0]]):
            up = F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=True)
            y = torch.cat([up, skip], 1)  # the upsampled tensor first, then the skip
            for conv_name in ("conv_a", "conv_b"):
                y = F.conv2d(y, sd[f"blocks.{i}.{conv_name}.weight"], sd[f"blocks.{i}.{conv_name}.bias"], padding=1)
                y = torch.where(y > 0, y, 0.2 * y)
        want = F.conv2d(y, sd["out.weight"], sd["out.bias"], padding=1)
        got = model(x)
    assert got.shape == (2, 1, 32, 48)  # half the input resolution
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_leve_mobilenetv3_uses_features_0_to_8_and_an_extra_upsampling(tmp_path):
    _weights_file("mobilenet_v3_small", tmp_path / "w.pth", seed=2)
    model = create_model("leve-mobilenetv3", encoder_weights=tmp_path / "w.pth").eval()
    full = create_encoder("mobilenet_v3_small", weights=tmp_path / "w.pth").eval()
    assert len(model.encoder.features) == 9 and model.encoder.channels == [16, 24, 48]
    assert model.encoder.reductions == [2, 8, 16]
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(3))
    seen = []
    for block in model.decoder.blocks:
        block.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape[1:])))
    with torch.inference_mode():
        maps, ref = model.encoder(x), full(x)
        for got, want in zip(maps, [ref[0], ref[2], ref[3]]):  # features 0, 3, 8 of the whole trunk
            torch.testing.assert_close(got, want)
        out = model(x)
    # 48 @ 1/16 -> 24 @ 1/8, extra x2 to 1/4, -> 16 @ 1/2 -> 1 @ 1/1
    assert seen == [(24, 8, 12), (16, 32, 48), (1, 64, 96)] and out.shape == (1, 1, 64, 96)


@pytest.mark.parametrize("name, encoder", [("densedepth-mobilenetv2", "mobilenet_v2"),
                                           ("leve-mobilenetv3", "mobilenet_v3_small"),
                                           pytest.param("densedepth-densenet169", "densenet169", marks=pytest.mark.slow)])
def test_create_model_loads_the_imagenet_encoder(name, encoder, tmp_path):
    sd = _weights_file(encoder, tmp_path / "w.pth", seed=5)
    model = create_model(name, encoder_weights=tmp_path / "w.pth", max_depth=80.0)
    assert model.max_depth == 80.0
    state = model.encoder.state_dict()
    compared = 0
    for key, value in sd.items():
        if ".denselayer" in key:  # the DenseNet files' old layer keys
            key = key.replace("norm.1", "norm1").replace("norm.2", "norm2").replace("conv.1", "conv1").replace("conv.2", "conv2")
        if is_classifier(key) or key not in state:  # trimmed blocks (features.9+, features.18) are dropped
            continue
        assert torch.equal(state[key], value), key
        compared += 1
    assert compared == len([k for k in state if not k.endswith("num_batches_tracked")])
    with pytest.raises(LeveError, match="not a .* weights file|missing|unexpected"):
        other = "densenet169" if encoder != "densenet169" else "mobilenet_v2"
        _weights_file(other, tmp_path / "other.pth")
        create_model(name, encoder_weights=tmp_path / "other.pth")


# --------------------------------------------------------------------------------- input sizes


@pytest.mark.parametrize("name, good, bad", [
    ("densedepth-mobilenetv2", (72, 96), [(68, 96), (48, 64), (64, 90)]),
    ("leve-mobilenetv3", (80, 112), [(72, 96), (64, 88), (48, 64)]),
])
def test_sizes_the_model_cannot_take_are_one_line_errors(name, good, bad):
    model = create_model(name).eval()
    spec = model_spec(name)
    assert (model.input_multiple, model.min_input_size) == (spec.input_multiple, spec.min_size)
    with torch.inference_mode():
        assert model(torch.rand(1, 3, *good)).shape == (1, 1, good[0] // spec.output_stride, good[1] // spec.output_stride)
        for h, w in bad:
            with pytest.raises(InputSizeError, match=f"{name}: .*multiples of {spec.input_multiple}.*got {h}x{w}") as err:
                model(torch.rand(1, 3, h, w))
            assert isinstance(err.value, LeveError) and isinstance(err.value, ValueError)
            assert len(str(err.value).splitlines()) == 1
            with pytest.raises(LeveError, match=re.escape(f"train: resolution [{h}, {w}]: model '{name}': H and W")):
                spec.check_size(h, w, what=f"train: resolution {[h, w]}")


# --------------------------------------------------------------------------------- registry facts


@pytest.mark.parametrize("name", list(DENSEDEPTH))
def test_densedepth_specs_carry_seed_002_table_i(name):
    spec = model_spec(name)
    label = SEED_TABLE_I[name]
    row = spec.result("I", source=SEED_002)
    assert row.row == label and None not in (row.d2, row.d3, row.log10) and row.protocol == "densedepth"
    assert row.citation == "seed 002 Table I" and row.train_resolution == "480x640" and row.fps is None
    assert spec.thesis == () and spec.tables == () and spec.fps is None  # none of it is the thesis's
    assert (spec.architecture, spec.output_stride, spec.input_multiple, spec.train_resolution) == (
        "densedepth", 2, 8, (480, 640))
    encoder = DENSEDEPTH[name][0]
    assert spec.encoder == encoder and spec.group("encoders").label == f"DenseDepth {label}"
    published = ENCODERS[encoder]
    weights = spec.encoder_weights
    assert (weights.file, weights.url, weights.sha256_prefix, weights.licence) == (
        published.file, published.url, published.sha256_prefix, published.licence)
    assert weights.url.startswith("https://download.pytorch.org/models/") and weights.file.startswith(encoder)


def test_leve_mobilenetv3_spec_carries_thesis_table_9_1():
    spec = model_spec("leve-mobilenetv3")
    row = spec.result("9.1")
    assert row.row == "MobileNetV3" and row.source == THESIS and None not in (row.d2, row.d3, row.latency_s, row.fps)
    assert row.citation == "thesis Table 9.1" and spec.fps == row.fps and spec.tables == ("9.1",)
    assert (spec.architecture, spec.encoder, spec.output_stride, spec.input_multiple) == (
        "leve-mobilenetv3", "mobilenet_v3_small", 1, 16)
    assert spec.encoder_weights.file == ENCODERS["mobilenet_v3_small"].file
    ddrnet = model_spec("leve").result("9.1")
    assert ddrnet.row == "DDRNet-23-Slim" and None not in (ddrnet.d2, ddrnet.d3, ddrnet.latency_s, ddrnet.fps)
    assert ddrnet.fps < row.fps and ddrnet.rmse < row.rmse  # the thesis's finding: MobileNetV3 faster, less accurate
    assert list_models(table="9.1") == ["leve", "leve-mobilenetv3"]


def test_every_model_exposes_the_common_interface():
    for name in list_models():
        spec = model_spec(name)
        if name in SLOW:  # built in the slow tests; the spec alone here
            continue
        model = create_model(name)
        assert isinstance(model.encoder, torch.nn.Module) and isinstance(model.decoder, torch.nn.Module)
        assert model.output_stride == spec.output_stride in (1, 2)
        assert (model.input_multiple, model.min_input_size) == (spec.input_multiple, spec.min_size)
        assert math.isclose(model.max_depth, 10.0)


def test_encoders_grid_trains_each_at_its_published_resolution():
    from leve.experiments import grid as g

    points = {p.name: dict(p.params) for p in g.grid("encoders")}
    assert list(points) == ["encoders-ddrnet23s", "encoders-mobilenetv3", *(f"encoders-{n}" for n in SEED_TABLE_I)]
    assert points["encoders-ddrnet23s"] == {"train.model": "leve", "train.kd.eps": "0"}  # the params' resolution
    assert points["encoders-mobilenetv3"]["train.resolution"] == "[240,320]"
    for name in SEED_TABLE_I:
        assert points[f"encoders-{name}"] == {"train.model": name, "train.kd.eps": "0", "train.resolution": "[480,640]"}
