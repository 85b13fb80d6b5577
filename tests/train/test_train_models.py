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
from leve.models.checkpoint import load_checkpoint
from leve.train import KDConfig, TrainConfig, train
from leve.train.step import downsample_depth, targets_at
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


def test_depth_is_downsampled_by_nearest_valid():
    depth = torch.tensor([[1.0, 2.0, 0.0, 0.0],
                          [3.0, 4.0, 0.0, 5.0],
                          [0.0, 0.0, 0.0, 0.0],
                          [0.0, 6.0, 0.0, 0.0]])[None, None]
    # each 2x2 block: its top-left pixel when valid, else the first valid one (row-major), else 0
    assert downsample_depth(depth, (2, 2))[0, 0].tolist() == [[1.0, 5.0], [6.0, 0.0]]
    assert downsample_depth(depth, (4, 4)) is depth
    assert downsample_depth(depth, (3, 3)).shape == (1, 1, 3, 3)  # not an integer fraction: nearest


def test_targets_follow_the_output_size():
    g = torch.Generator().manual_seed(0)
    depth = torch.rand(2, 1, 8, 12, generator=g) + 0.5
    teacher = torch.rand(2, 1, 8, 12, generator=g)
    same_depth, same_teacher = targets_at(torch.zeros(2, 1, 8, 12), depth, teacher)
    assert same_depth is depth and same_teacher is teacher
    half_depth, half_teacher = targets_at(torch.zeros(2, 1, 4, 6), depth, teacher)
    assert torch.equal(half_depth, depth[..., ::2, ::2])  # all valid: the top-left pixel of each block
    assert half_teacher is not None
    torch.testing.assert_close(half_teacher, torch.nn.functional.avg_pool2d(teacher, 2))  # area: the 2x2 mean
    assert targets_at(torch.zeros(2, 1, 4, 6), depth)[1] is None
