"""Every registered architecture trains from the teacher cache and evaluates: Leve on DDRNet-23-slim, the
thesis's MobileNetV3 Leve and DenseDepth's decoder on MobileNetV2 train with and without distillation and
are scored under the three protocols; the four large DenseDepth encoders share one slow test (distilled,
DenseDepth's protocol). DenseDepth's output is half-resolution, trained against half-resolution targets.
Plus the target downsampling itself."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from leve.errors import LeveError
from leve.images import resize_maps
from leve.models.checkpoint import load_checkpoint, read_checkpoint
from leve.models.registry import list_models, model_spec
from leve.teacher.cache.build import build_teacher_cache
from leve.teacher.loading import load_teacher
from leve.train.loop import train
from leve.train.stage import KDConfig, TrainConfig
from leve.train.step import targets_at
from tests.explicit import caching
from tests.factories import synthetic_store
from tests.train.test_train import make_config, write_params

SIZE = (64, 64)  # the smallest input every model takes: multiples of 16 (MobileNetV3 Leve) and 8, at least 64
STORE = (64, 96)  # store images: resized to SIZE for training and evaluation
TEST = 2  # test images; val is validated on one image
FAST = ["leve", "leve-mobilenetv3", "densedepth-mobilenetv2"]
LARGE = ["densedepth-resnet50", "densedepth-resnet101", "densedepth-densenet169", "densedepth-densenet161"]
# leve2024 scores the flipped image as a sample of its own; standard and densedepth average the two
PROTOCOLS = (("leve2024", 2 * TEST), ("standard", TEST), ("densedepth", TEST))


@pytest.fixture(scope="module")
def tiny_with_teacher(tmp_path_factory) -> tuple[Path, Path]:
    """A 4/2/2-sample synthetic store and its tiny-random teacher cache: one step per run, cheap evaluations."""
    store = synthetic_store(tmp_path_factory.mktemp("models_data") / "synthetic.zarr", height=STORE[0],
                            width=STORE[1], train=4, val=2, test=TEST, block_size=4)
    cache = store.parent / "teacher" / "synthetic.zarr"
    build_teacher_cache(store, cache, "train", load_teacher("tiny-random"), **caching(block_size=4), show_progress=False)
    return store, cache


def _train(data: tuple[Path, Path], out: Path, model: str, eps: float) -> TrainConfig:
    """One optimiser step at batch 2 (BatchNorm needs two values per channel at DDRNet's 1x1 stride 64)."""
    kd = KDConfig(eps=eps, teacher_dir=data[1].parent if eps else out / "no-teacher")
    cfg = make_config(data, out, model=model, resolution=SIZE, batch_size=2, max_steps=1, val_limit=1, lr=1e-4, kd=kd)
    result = train(cfg, show_progress=False)
    assert result.steps == 1 and math.isfinite(result.best_rmse)
    return cfg


def _evaluate(run_cli, store: Path, checkpoint: Path, protocol: str) -> dict:
    out = Path("evals") / f"{checkpoint.parent.name}-{protocol}"  # another checkpoint than the params': its own folder
    res = run_cli("eval", "--dataset", "synthetic", "--checkpoint", checkpoint, "--protocol", protocol, "--no-teacher",
                  "--set", f"data_dir={store.parent}", "--set", "examples=1", "--out", out, "--quiet")
    assert res.code == 0, res.stderr
    return json.loads((out / "metrics/synthetic.json").read_text())


def _trains_then_evaluates(model: str, data: tuple[Path, Path], out: Path, run_cli,
                           runs: tuple[tuple[float, tuple[tuple[str, int], ...]], ...]) -> list[dict]:
    """Each run (``kd.eps``, protocols) writes a best.pt of ``model`` at SIZE; ``leve eval`` scores it
    under its protocols, on the whole ground truth (the half-resolution outputs upsampled to it).
    Returns each run's weights."""
    weights = []
    for eps, protocols in runs:
        cfg = _train(data, out / f"{model}-eps{eps}", model, eps)
        best = cfg.out_dir / "best.pt"
        state, info = read_checkpoint(best)
        assert (info.model, info.resolution) == (model, SIZE)  # finite weights: _train's finite val RMSE
        weights.append(state)
        for protocol, samples in protocols:
            doc = _evaluate(run_cli, data[0], best, protocol)
            assert doc["protocol"]["name"] == protocol and doc["student"]["count"] == samples
            assert doc["checkpoint"]["model"] == model
            for key in ("rmse", "abs_rel", "d1"):
                assert math.isfinite(doc["student"][key]), (protocol, key)
            if protocol == "densedepth":  # pooled over every pixel of the store's dense depth
                assert doc["student"]["pixels"] == TEST * STORE[0] * STORE[1]
        shutil.rmtree(cfg.out_dir)  # a large model's last.pt (weights and Adam moments) reaches 1.2 GB
    return weights


@pytest.fixture
def scratch(tmp_path) -> Iterator[Path]:
    """Where the large models' runs write: memory-backed /dev/shm when it has room (a 1.2 GB last.pt is
    written there in about a third of the time), else ``tmp_path``; removed afterwards."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK) and shutil.disk_usage(shm).free > 4e9):
        yield tmp_path
        return
    out = Path(tempfile.mkdtemp(prefix="leve-test-", dir=shm))
    try:
        yield out
    finally:
        shutil.rmtree(out, ignore_errors=True)


@pytest.mark.parametrize("model", FAST)
def test_model_trains_with_and_without_kd_then_evaluates(model, tiny_with_teacher, tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plain, distilled = _trains_then_evaluates(model, tiny_with_teacher, tmp_path, run_cli,
                                              ((0.0, PROTOCOLS), (0.25, PROTOCOLS)))
    assert plain.keys() == distilled.keys()
    assert any(not torch.equal(plain[k], distilled[k]) for k in plain), "the KD term did not reach the gradient"


@pytest.mark.slow
def test_large_densedepth_models_distil_then_evaluate(tiny_with_teacher, scratch, tmp_path, run_cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    # One distilled run each, scored under DenseDepth's protocol only. What differs per large model is its
    # encoder, which one distilled step and one evaluation run through as fully as the rest would: the plain
    # run (eps 0) takes the same DenseDepth decoder and loss code minus the KD term, and the other two
    # protocols the same half-resolution output, which densedepth-mobilenetv2 (FAST) checks, with the KD
    # term's effect on the weights. Each large run writes a last.pt of up to 1.2 GB: a second run per
    # model doubled this test's time (47.5 s, one run 22.2 s: pytest --durations here).
    for model in LARGE:
        _trains_then_evaluates(model, tiny_with_teacher, scratch, run_cli, ((0.25, (("densedepth", TEST),)),))


def test_every_registered_architecture_and_encoder_is_trained_here():
    covered = {(model_spec(m).architecture, model_spec(m).encoder) for m in FAST + LARGE}
    assert covered == {(model_spec(m).architecture, model_spec(m).encoder) for m in list_models()}


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


class _Payload:
    """Pickling an instance makes a file that weights-only loading must refuse (and never run)."""

    def __reduce__(self):
        return (print, ("code from a pickle ran",))


def _bad_weights(kind: str, folder: Path) -> Path:
    """A bad ``encoder_weights`` file for densedepth-mobilenetv2 (torchvision's MobileNetV2 layout)."""
    from tests.models.encoders_ref.layouts import published_layout, random_state_dict

    path = folder / f"{kind}.pth"
    if kind == "other-encoder":
        torch.save(random_state_dict(published_layout("resnet50")), path)
    elif kind == "truncated":
        torch.save(random_state_dict(published_layout("mobilenet_v2")), path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    else:  # a pickle that is not weights-only
        torch.save({"features.0.0.weight": torch.zeros(32, 3, 3, 3), "x": _Payload()}, path)
    return path


@pytest.mark.parametrize("sets, expect", [
    (["model=leve-xl"], r"train: unknown model 'leve-xl'"),
    (["model=leve-mobilenetv3", "resolution=[64,72]"], r"resolution \[64, 72\]: model 'leve-mobilenetv3': .*16"),
    (["model=densedepth-mobilenetv2", "encoder_weights=other-encoder"], r"other-encoder\.pth: .*not a mobilenet_v2"),
    (["model=densedepth-mobilenetv2", "encoder_weights=truncated"], r"truncated\.pth: "),
    (["model=densedepth-mobilenetv2", "encoder_weights=pickle"], r"pickle\.pth: .*weights-only"),
], ids=["unknown-model", "size", "other-encoder", "truncated", "pickle"])
def test_cli_train_refuses_bad_models_sizes_and_weights_writing_nothing(sets, expect, run_cli, tiny_with_teacher,
                                                                       tmp_path):
    import re

    params = write_params(tmp_path / "params.yaml", tiny_with_teacher, tmp_path)
    args = [f"encoder_weights={_bad_weights(s.split('=')[1], tmp_path)}" if s.startswith("encoder_weights") else s
            for s in sets]
    before = sorted(tmp_path.rglob("*"))
    res = run_cli("train", "--params", params, *[a for s in args for a in ("--set", s)], "--set", "max_steps=1",
                  "--set", "batch_size=2", "--set", "kd.eps=0")
    assert res.code == 1 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert res.stderr.startswith("error: ") and re.search(expect, res.stderr), res.stderr
    # no checkpoint, log or model card: only the released write lock <out_dir>.lock may remain (kept by design)
    assert sorted(p for p in tmp_path.rglob("*") if p.suffix != ".lock") == before
    assert "code from a pickle ran" not in res.stdout + res.stderr


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
