"""Every registered model builds, runs forward/backward, has the stated shapes and parameter counts;
its registry entry carries the published facts (the thesis's chapter 9, seed 002's Table I)."""

from __future__ import annotations

import math

import pytest
import torch

from leve.models.registry import create_model, list_models, model_spec
from tests.models.reference import CLASSIFIER_ONLY, reference_entries

# The thesis's variants (§9.1), written out as the independent check of the registry.
VARIANTS = ["leve", "leve-3x3", "leve-3x3-1x1", "leve-5x5-5x5", "leve-dw", "leve-alt-skips", "leve-no-skips"]
# The encoder comparisons: thesis Table 9.1's MobileNetV3 Leve and seed 002's DenseDepth models.
OTHERS = ["leve-mobilenetv3", "densedepth-densenet169", "densedepth-densenet161", "densedepth-resnet50",
          "densedepth-mobilenetv2", "densedepth-resnet101"]
MODELS = list_models()
LEVE_MODELS = [n for n in MODELS if model_spec(n).architecture == "leve"]  # DDRNet-23-slim + Leve decoder
# cheap enough to build and run in every test run; the big DenseDepth encoders are marked slow
SMALL = {"leve-mobilenetv3", "densedepth-mobilenetv2", *VARIANTS}


# --- an independent parameter count from the layer list -----------------------------------------
def conv(cin: int, cout: int, k: int, bias: bool = False, groups: int = 1) -> int:
    return cin // groups * cout * k * k + (cout if bias else 0)


def bn(c: int) -> int:
    return 2 * c


def basic(cin: int, c: int) -> int:
    proj = conv(cin, c, 1) + bn(c) if cin != c else 0
    return conv(cin, c, 3) + bn(c) + conv(c, c, 3) + bn(c) + proj


def bottleneck(cin: int, c: int) -> int:
    return conv(cin, c, 1) + bn(c) + conv(c, c, 3) + bn(c) + conv(c, 2 * c, 1) + bn(2 * c) + conv(cin, 2 * c, 1) + bn(2 * c)


def encoder_params() -> dict[str, int]:
    stem = conv(3, 32, 3, True) + bn(32) + conv(32, 32, 3, True) + bn(32)
    low = sum(basic(a, b) + basic(b, b) for a, b in [(32, 32), (32, 64), (64, 128), (128, 256)]) + bottleneck(256, 256)
    high = 4 * basic(64, 64) + bottleneck(64, 64)
    fusion = conv(128, 64, 1) + bn(64) + conv(256, 64, 1) + bn(64) + conv(64, 128, 3) + bn(128) \
        + conv(64, 128, 3) + bn(128) + conv(128, 256, 3) + bn(256)
    dappm = 6 * (bn(512) + conv(512, 128, 1)) + 4 * (bn(128) + conv(128, 128, 3)) + bn(640) + conv(640, 128, 1)
    head = bn(128) + conv(128, 64, 3) + bn(64) + conv(64, 64, 1, True)
    return {"pretrained": stem + low + high + fusion, "dappm": dappm, "head": head}


LCB_LAYERS = {  # (kernel, groups_is_depthwise) per conv
    "leve": [(3, False), (3, False)], "leve-3x3": [(3, False)], "leve-3x3-1x1": [(3, False), (1, False)],
    "leve-5x5-5x5": [(5, False), (5, False)], "leve-dw": [(3, True), (1, False)],
    "leve-alt-skips": [(3, False), (3, False)], "leve-no-skips": [(3, False), (3, False)],
}
SKIPS = {"leve-alt-skips": (64, 64, 64), "leve-no-skips": (0, 0, 0)}


def decoder_params(name: str) -> int:
    total = 0
    for cin, cout, skip in zip((64, 32, 16), (32, 16, 1), SKIPS.get(name, (64, 32, 3))):
        total += sum(conv(cin, cin, k, groups=cin if dw else 1) + bn(cin) for k, dw in LCB_LAYERS[name])
        total += (conv(skip, cin, 1, True) if skip else 0) + conv(cin, cout, 1, True)
    return total


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_registry_lists_every_model():
    assert list_models() == VARIANTS[:1] + sorted(VARIANTS[1:] + OTHERS)
    assert LEVE_MODELS == VARIANTS[:1] + sorted(VARIANTS[1:])


def test_pretrained_part_equals_reference_checkpoint():
    ref = sum(math.prod(shape) for name, shape, _ in reference_entries()
              if not name.startswith(CLASSIFIER_ONLY) and "running_" not in name and dtype_is_float(name))
    assert encoder_params()["pretrained"] == ref == 4_547_232


def dtype_is_float(name: str) -> bool:
    return not name.endswith("num_batches_tracked")


@pytest.mark.parametrize("name", LEVE_MODELS)
def test_parameter_count_matches_layer_list(name):
    model = create_model(name)
    enc = sum(encoder_params().values())
    assert count(model.encoder) == enc
    assert count(model.decoder) == decoder_params(name)
    assert count(model.encoder.spp) == encoder_params()["dappm"]


def test_headline_counts():
    model = create_model("leve")
    assert count(model.encoder) == 5_698_912  # ~5.70 M as in the thesis
    assert count(model) == 5_804_033  # ~5.80 M


def _forward_backward(name: str, h: int, w: int):
    torch.manual_seed(0)
    model = create_model(name).train()
    stride = model_spec(name).output_stride
    assert model.output_stride == stride and model.max_depth == 10.0 and model.name == name
    x = torch.rand(2, 3, h, w, requires_grad=False)
    y = model(x)
    assert y.shape == (2, 1, h // stride, w // stride)
    assert torch.isfinite(y).all()
    y.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    first = next(model.encoder.parameters())  # the stem convolution: gradients reach the input end
    assert first.grad.abs().sum() > 0


def _cost(name: str) -> list:
    return [] if name in SMALL else [pytest.mark.slow]


@pytest.mark.parametrize("name", [pytest.param(n, marks=_cost(n)) for n in MODELS])
def test_forward_backward_64x96(name):
    _forward_backward(name, 64, 96)


@pytest.mark.slow
@pytest.mark.parametrize("name", LEVE_MODELS + ["leve-mobilenetv3"])
def test_forward_backward_240x320(name):
    _forward_backward(name, 240, 320)


@pytest.mark.slow
def test_forward_backward_256x320_half_resolution_output():  # the big encoders: 30-50 s each here, covered at 64x96
    _forward_backward("densedepth-mobilenetv2", 256, 320)


def test_intermediate_shapes_480x640():
    model = create_model("leve").eval()
    seen: dict[str, torch.Tensor] = {}

    def keep(key: str):
        def hook(module, inputs, output) -> None:
            seen[key] = output
        return hook

    model.encoder.layer5.register_forward_hook(keep("layer5"))
    model.encoder.layer1[-1].register_forward_hook(keep("layer1_block"))
    with torch.inference_mode():
        feats = model.encoder(torch.rand(1, 3, 480, 640))
    assert feats["layer1"].shape == (1, 32, 120, 160)
    assert feats["fusion4"].shape == (1, 64, 60, 80)  # high branch after the second fusion
    assert feats["head"].shape == (1, 64, 60, 80)
    assert seen["layer5"].shape == (1, 512, 8, 10)  # segmentation DDRNet: layer5 at stride 2 (1/64)
    # the layer1 skip is the stage output before any ReLU
    assert torch.equal(feats["layer1"], seen["layer1_block"])
    assert feats["layer1"].min() < 0 and feats["fusion4"].min() < 0


def test_last_block_of_each_stage_has_no_relu():
    enc = create_model("leve").encoder
    for stage in ["layer1", "layer2", "layer3", "layer4", "layer5", "layer3_", "layer4_", "layer5_"]:
        blocks = list(getattr(enc, stage))
        assert blocks[-1].no_relu and not any(b.no_relu for b in blocks[:-1]), stage


def test_output_keeps_input_size_and_refuses_bad_sizes():
    model = create_model("leve-3x3").eval()
    with torch.inference_mode():
        assert model(torch.rand(1, 3, 72, 136)).shape == (1, 1, 72, 136)
        for bad in [(1, 3, 60, 96), (1, 3, 64, 100), (1, 3, 56, 64), (1, 1, 64, 64)]:
            with pytest.raises(ValueError):
                model(torch.rand(*bad))


def test_normalisation_uses_imagenet_statistics():
    model = create_model("leve").eval()
    model.encoder.normalize = False
    x = torch.rand(1, 3, 64, 64)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.inference_mode():
        raw = model.encoder((x - mean) / std)["head"]
        model.encoder.normalize = True
        assert torch.allclose(model.encoder(x)["head"], raw, atol=1e-5)
    assert "encoder.mean" not in model.state_dict()


def test_unknown_model_and_bad_max_depth():
    from leve.errors import LeveError

    with pytest.raises(LeveError, match="unknown model 'leve-xl'"):
        create_model("leve-xl")
    with pytest.raises(LeveError, match="max_depth"):
        create_model("leve", max_depth=0)


# --- the registry's data: the architecture facts of the thesis text (chapter 9) written out here; its
# published numbers are leve/models/published.csv's (tests/models/test_published.py) ---------------
# name: (LCB, skips, label, the NYU table of its ablation)
THESIS = {
    "leve": ("3x3+3x3", "main", "3x3+3x3", "9.2"),
    "leve-3x3": ("3x3", "main", "3x3", "9.2"),
    "leve-3x3-1x1": ("3x3+1x1", "main", "3x3+1x1", "9.2"),
    "leve-5x5-5x5": ("5x5+5x5", "main", "5x5+5x5", "9.2"),
    "leve-dw": ("dw", "main", "3x3-dw-separable", "9.3"),
    "leve-alt-skips": ("3x3+3x3", "alt", "alternative-skip-connections", "9.4"),
    "leve-no-skips": ("3x3+3x3", "none", "no-skip-connections", "9.4"),
}


@pytest.mark.parametrize("name", LEVE_MODELS)
def test_spec_carries_the_thesis_facts(name):
    spec = model_spec(name)
    lcb, skips, label, table = THESIS[name]
    assert (spec.name, spec.lcb, spec.skips, spec.label) == (name, lcb, skips, label)
    row = spec.result(table)
    assert row.row == label and row.fps is not None and spec.fps == row.fps  # every ablation table has FPS
    assert all(r.fps in (None, spec.fps) for r in spec.thesis)  # one speed per model across tables
    assert spec.description and spec.groups and table in spec.tables
    model = create_model(name)
    assert (model.config.lcb, model.config.skips) == (lcb, skips) and model.config == spec.config()
    weights = spec.encoder_weights
    assert weights.file == "DDRNet23s_imagenet.pth" and weights.url is None and weights.sha256 is None
    assert "MIT" in weights.licence and "ydhongHIT/DDRNet" in weights.source and "train.encoder_weights" in weights.note


def test_groups_and_tables_list_the_thesis_rows_in_order():
    assert list_models(group="lcb") == ["leve-3x3", "leve-3x3-1x1", "leve", "leve-5x5-5x5", "leve-dw"]
    assert list_models(group="skips") == ["leve", "leve-alt-skips", "leve-no-skips"]
    assert list_models(group="kd") == ["leve"]
    assert list_models(group="encoders") == ["leve", *OTHERS]  # Table 9.1's order, then Table I's
    assert list_models(table="9.2") == ["leve-3x3", "leve-3x3-1x1", "leve", "leve-5x5-5x5"]
    assert list_models(table="9.3") == ["leve-3x3", "leve-dw"]
    assert [model_spec(n).group("skips").label for n in list_models(table="9.4")] == [
        "main skips", "alternative skips", "no skips"]


def test_default_model_rows_of_the_final_and_distillation_tables():
    spec = model_spec("leve")
    assert [(r.row, r.train_resolution) for r in spec.thesis if r.table == "9.5"] == [
        ("Leve (240x320)", "240x320"), ("Leve (480x640)", "480x640")]
    assert [(r.row, r.kd_eps) for r in spec.thesis if r.table == "9.6"] == [
        ("3x3+3x3", 0.0), ("teacher-student-10", 0.10), ("teacher-student-25", 0.25), ("teacher-student-50", 0.50)]
    kd25 = {r.dataset: r.table for r in spec.thesis if r.kd_eps == 0.25}
    assert kd25 == {"nyu": "9.6", "kitti": "9.7", "endoslam": "9.8"}
    # the rows the thesis repeats across tables (the 240x320 baseline) carry the same figures
    same = {(r.rmse, r.rel, r.d1) for r in spec.thesis if r.dataset == "nyu" and r.kd_eps == 0
            and r.train_resolution == "240x320"}
    assert len(same) == 1


def test_register_model_by_name_keeps_working(monkeypatch):
    from leve.models import registry

    monkeypatch.setattr(registry, "MODELS", dict(registry.MODELS))

    @registry.register_model("leve-custom")
    def custom(encoder_weights=None, max_depth=10.0):
        """A custom factory."""
        return registry.Leve(registry.LeveConfig(lcb="3x3", max_depth=max_depth))

    assert "leve-custom" in list_models() and model_spec("leve-custom").description == "A custom factory."
    assert create_model("leve-custom", max_depth=5.0).max_depth == 5.0
    with pytest.raises(ValueError, match="registered twice"):
        registry.register_model(model_spec("leve"))
