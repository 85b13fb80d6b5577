"""Inference runtimes (leve.models.runtime): batch-norm folding against its closed form and against
the unfolded model, which convolutions fold, and every runtime of every model family against eager."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from leve.errors import LeveError
from leve.models.registry import create_model
from leve.models.runtime import (
    InferenceModel,
    check_runtime,
    conv_bn_pairs,
    fold_conv_bn,
    fuse_batchnorm,
    prepare_for_inference,
    verify,
)


def randomise_batchnorm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial running statistics and affine parameters, so that folding really changes weights."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) * 0.4 - 0.2)
    return model.eval()


def test_fold_matches_closed_form():
    conv, bn = nn.Conv2d(2, 3, 1, bias=True), randomise_batchnorm(nn.BatchNorm2d(3))
    x = torch.rand(1, 2, 4, 5)
    with torch.no_grad():
        want = bn(conv(x))
        # by hand: y = gamma * (w.x + b - mean) / sqrt(var + eps) + beta, per output channel
        scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
        w = conv.weight[:, :, 0, 0] * scale[:, None]
        b = (conv.bias - bn.running_mean) * scale + bn.bias
        fold_conv_bn(conv, bn)
        assert torch.allclose(conv.weight[:, :, 0, 0], w, atol=1e-6) and torch.allclose(conv.bias, b, atol=1e-6)
        assert torch.allclose(conv(x), want, atol=1e-5)


class Toy(nn.Module):
    """Conv->BN (foldable, twice, one grouped without bias), conv->BN whose conv output is also
    added back (not foldable), BN->ReLU->conv (pre-activation: not foldable), a conv called twice."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4))
        self.b_conv, self.b_bn = nn.Conv2d(4, 4, 3, padding=1, groups=2, bias=False), nn.BatchNorm2d(4)
        self.c_conv, self.c_bn = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)
        self.pre = nn.Sequential(nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 1))
        self.twice, self.twice_bn = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.a(x))
        x = F.relu(self.b_bn(self.b_conv(x)))
        y = self.c_conv(x)
        x = self.c_bn(y) + y  # y has a second reader
        x = self.pre(x)
        return self.twice_bn(self.twice(self.twice(x)))


def test_only_convolutions_read_by_their_batchnorm_alone_fold():
    model = randomise_batchnorm(Toy())
    x = torch.rand(2, 3, 8, 10)
    assert conv_bn_pairs(model, x) == [("a.0", "a.1"), ("b_conv", "b_bn")]
    fused = fuse_batchnorm(model, x)
    assert isinstance(fused.a[1], nn.Identity) and isinstance(fused.b_bn, nn.Identity)
    assert isinstance(fused.c_bn, nn.BatchNorm2d) and isinstance(fused.pre[0], nn.BatchNorm2d)
    assert isinstance(model.a[1], nn.BatchNorm2d)  # the original is left as it was
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), atol=1e-5, rtol=1e-5)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / (b.max() - b.min()))


# one model per family: DDRNet Leve, the thesis's MobileNetV3 Leve, DenseDepth on three encoder kinds
FAMILIES = ["leve", "leve-mobilenetv3", "densedepth-mobilenetv2",
            pytest.param("densedepth-resnet50", marks=pytest.mark.slow),
            pytest.param("densedepth-densenet169", marks=pytest.mark.slow)]


@pytest.mark.parametrize("name", FAMILIES)
def test_runtimes_match_eager_for_every_family(name):
    torch.manual_seed(0)
    model = randomise_batchnorm(create_model(name))
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        want = model(x)
    bns = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    for runtime in ("torch", "onnx"):
        prepared = prepare_for_inference(model, runtime, (64, 96))
        assert prepared.check is not None and prepared.check.relative < 1e-4
        left = sum(isinstance(m, nn.BatchNorm2d) for m in prepared.model.modules())
        assert left < bns  # something was folded
        assert prepared.max_depth == model.max_depth and prepared.output_stride == model.output_stride
        assert prepared.source_parameters == sum(p.numel() for p in model.parameters())
        with torch.inference_mode():
            got = prepared(x)
        assert got.shape == want.shape and relative_error(got, want) < 1e-4
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == bns  # model untouched
    if name == "leve":
        # only DDRNet's pre-activation BNs stay: DAPPM's 11 (scale0-4, process1-4, compression,
        # shortcut) and the head's first
        assert left == 12


@pytest.mark.slow
def test_compiled_runtime_matches_eager():
    model = randomise_batchnorm(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                              nn.Conv2d(8, 1, 1)))
    prepared = prepare_for_inference(model, "compiled", (16, 24))
    x = torch.rand(1, 3, 16, 24)
    with torch.inference_mode():
        assert relative_error(prepared(x), model(x)) < 1e-4


def test_a_runtime_that_differs_from_eager_is_refused():
    model = nn.Conv2d(3, 1, 1).eval()
    wrong = InferenceModel(model, "torch", lambda x: model(x) * 1.01, channels_last=False)
    with pytest.raises(LeveError, match="runtime torch: output differs from eager"):
        verify(wrong, model, torch.rand(1, 3, 8, 8))


def test_auto_runs_onnx_on_the_cpu_and_falls_back_to_torch(monkeypatch):
    import leve.models.runtime as runtime

    model = randomise_batchnorm(nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()))
    assert runtime.auto_runtime("cpu") == "onnx" and runtime.auto_runtime("cuda:0") == "torch"
    assert prepare_for_inference(model, "auto", (16, 16)).runtime == "onnx"

    def broken(model: nn.Module, example: torch.Tensor):
        raise RuntimeError("Exporting the operator 'aten::foo' is not supported")

    monkeypatch.setattr(runtime, "_onnx_fn", broken)
    prepared = prepare_for_inference(model, "auto", (16, 16))
    assert prepared.runtime == "torch" and prepared.check is not None and prepared.check.relative < 1e-4
    assert prepared.fallback == "onnx: RuntimeError: Exporting the operator 'aten::foo' is not supported"
    with pytest.raises(RuntimeError, match="aten::foo"):  # asked for explicitly: no fallback
        prepare_for_inference(model, "onnx", (16, 16))


def test_runtime_choice_is_checked():
    with pytest.raises(LeveError, match="unknown runtime 'fast'"):
        check_runtime("fast", "cpu")
    with pytest.raises(LeveError, match="runtime onnx runs on the CPU"):
        check_runtime("onnx", "cuda:0")
    check_runtime("compiled", "cuda")


def test_predict_runtimes_agree(tmp_path, small_checkpoint, run_cli):
    import numpy as np
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 80, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    depths = {}
    for runtime in ("eager", "torch", "onnx"):
        out = tmp_path / runtime
        res = run_cli("predict", tmp_path / "a.png", "--checkpoint", small_checkpoint, "--out", out,
                      "--depth-format", "npy", "--runtime", runtime)
        assert res.code == 0, res.stderr
        depths[runtime] = np.load(out / "a_depth.npy")
    assert np.abs(depths["torch"] - depths["eager"]).max() < 1e-3  # metres
    assert np.abs(depths["onnx"] - depths["eager"]).max() < 1e-3  # metres
    res = run_cli("predict", tmp_path / "a.png", "--checkpoint", small_checkpoint, "--runtime", "fast")
    assert res.code == 1 and res.stderr.strip() == ("error: unknown runtime 'fast'; choose from auto, eager, torch, "
                                                    "compiled, onnx, onnx-int8, openvino")
