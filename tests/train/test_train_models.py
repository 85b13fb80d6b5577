"""Every architecture trains (with and without distillation from the teacher cache) and evaluates:
the thesis's MobileNetV3 Leve, DenseDepth on MobileNetV2 (half-resolution output, trained against
half-resolution targets) and, marked slow, DenseDepth on DenseNet-169. Plus the target
downsampling itself."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from leve.errors import LeveError
from leve.images import resize_maps
from leve.models.checkpoint import load_checkpoint
from leve.train import KDConfig, TrainConfig, train
from leve.train.step import targets_at
from tests.train.test_train import make_config, write_params

SIZE = (64, 96)  # multiples of 8 (DenseDepth) and 16 (MobileNetV3 Leve); the store is 96x128
MODELS = ["leve-mobilenetv3", "densedepth-mobilenetv2",
          pytest.param("densedepth-densenet169", marks=pytest.mark.slow)]


def _train(data: tuple[Path, Path], out: Path, model: str, eps: float) -> TrainConfig:
    kd = KDConfig(eps=eps, teacher_dir=data[1].parent if eps else out / "no-teacher")
    cfg = make_config(data, out, model=model, resolution=SIZE, max_steps=2, lr=1e-4, kd=kd)
    result = train(cfg, show_progress=False)
    assert result.steps == 2 and math.isfinite(result.best_rmse)
    return cfg


def _evaluate(run_cli, store: Path, checkpoint: Path, protocol: str) -> dict:
    res = run_cli("eval", "--dataset", "synthetic", "--checkpoint", checkpoint, "--protocol", protocol, "--no-teacher",
                  "--set", f"data_dir={store.parent}", "--quiet")
    assert res.code == 0, res.stderr
    return json.loads(Path("metrics/synthetic.json").read_text())


@pytest.mark.parametrize("model", MODELS)
def test_model_trains_with_and_without_kd_then_evaluates(model, synthetic_with_teacher, tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = synthetic_with_teacher[0]
    for eps in (0.0, 0.25):
        cfg = _train(synthetic_with_teacher, tmp_path / f"eps{eps}", model, eps)
        best = cfg.out_dir / "best.pt"
        net, info = load_checkpoint(best)
        assert (info.model, info.resolution) == (model, SIZE)
        assert all(torch.isfinite(p).all() for p in net.parameters())
        # leve2024 scores the flipped image too; standard and densedepth average it with the plain one
        for protocol, samples in (("leve2024", 16), ("standard", 8), ("densedepth", 8)):
            doc = _evaluate(run_cli, store, best, protocol)
            assert doc["protocol"]["name"] == protocol and doc["student"]["count"] == samples
            for key in ("rmse", "abs_rel", "d1"):
                assert math.isfinite(doc["student"][key]), (protocol, key)


def test_cli_train_selects_a_model_and_refuses_a_size_it_cannot_take(run_cli, synthetic_with_teacher, tmp_path):
    params = write_params(tmp_path / "params.yaml", synthetic_with_teacher, tmp_path)
    ok = run_cli("train", "--params", params, "--set", "model=densedepth-mobilenetv2", "--set", "resolution=[64,96]",
                 "--set", "max_steps=1")
    assert ok.code == 0, ok.stderr
    assert load_checkpoint(tmp_path / "models/best.pt")[1].model == "densedepth-mobilenetv2"
    bad = run_cli("train", "--params", params, "--set", "model=leve-mobilenetv3")  # the fixture's 72x96
    assert bad.code == 1 and bad.stderr.strip() == (
        "error: train: resolution [72, 96]: model 'leve-mobilenetv3': "
        "H and W must be multiples of 16 and at least 64, got 72x96")
    with pytest.raises(LeveError, match="train: unknown model 'leve-xl'"):
        TrainConfig(model="leve-xl")


# ------------------------------------------------------------------------ targets at the output size


def test_half_resolution_depth_target_is_the_validity_weighted_filter():
    depth = torch.tensor([[1.0, 2.0, 0.0, 0.0],
                          [3.0, 4.0, 0.0, 5.0],
                          [0.0, 0.0, 0.0, 0.0],
                          [0.0, 6.0, 0.0, 0.0]])[None, None]
    half, _ = targets_at(torch.zeros(1, 1, 2, 2), depth)
    # naive: a 2x shrink with PIL's bilinear filter weighs the 4 source rows/columns around each output
    # pixel by (1, 3, 3, 1) / 8 (edge taps renormalised); valid depths only, kept where weight >= 0.5
    taps = {0: {0: 3, 1: 3, 2: 1}, 1: {1: 1, 2: 3, 3: 3}}
    want = torch.zeros(2, 2)
    for i in range(2):
        for j in range(2):
            wsum = sum(taps[i].values()) * sum(taps[j].values())
            num = den = 0.0
            for y, wy in taps[i].items():
                for x, wx in taps[j].items():
                    if depth[0, 0, y, x] > 0:
                        num += wy * wx * float(depth[0, 0, y, x])
                        den += wy * wx / wsum
            want[i, j] = num / (den * wsum) if den >= 0.5 else 0.0
    torch.testing.assert_close(half[0, 0], want)
    assert want[0, 0] > 0 and want[1, 1] == 0  # a valid block keeps a value, an empty one is invalid


def test_targets_follow_the_output_size():
    g = torch.Generator().manual_seed(0)
    depth = torch.rand(2, 1, 8, 12, generator=g) + 0.5
    teacher = torch.rand(2, 1, 8, 12, generator=g)
    same_depth, same_teacher = targets_at(torch.zeros(2, 1, 8, 12), depth, teacher)
    assert same_depth is depth and same_teacher is teacher
    half_depth, half_teacher = targets_at(torch.zeros(2, 1, 4, 6), depth, teacher)
    assert half_teacher is not None  # all valid: depth and teacher by the same filter as the RGB
    torch.testing.assert_close(half_depth, resize_maps(depth, (4, 6)))
    torch.testing.assert_close(half_teacher, resize_maps(teacher, (4, 6)))
    assert targets_at(torch.zeros(2, 1, 4, 6), depth)[1] is None
