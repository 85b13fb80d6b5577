"""Training runs on the synthetic fixture: learning, resume, stale caches, DVCLive output, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from leve.errors import LeveError
from leve.metrics import aggregate_metrics, compute_metrics
from leve.models.checkpoint import load_checkpoint, read_checkpoint
from leve.store.reader import open_split
from leve.train.data import resize_sample
from leve.train.loop import train
from leve.train.stage import KDConfig, LabelsConfig, ScheduleConfig, TrainConfig
from tests.train.conftest import TRAIN_SIZE


def make_config(data: tuple[Path, Path], out: Path, **kw) -> TrainConfig:
    store, cache = data
    kd = kw.pop("kd", KDConfig(eps=0.25, loss="l1", teacher_dir=cache.parent))  # as write_params
    base = dict(dataset="synthetic", data_dir=store.parent, resolution=TRAIN_SIZE, batch_size=8, epochs=1,
                workers=0, log_every=1, val_every=0, out_dir=out / "models", log_dir=out / "dvclive", kd=kd,
                labels=LabelsConfig(fraction=1.0))
    return TrainConfig(**{**base, **kw})


def write_params(path: Path, data: tuple[Path, Path], out: Path, extra: str = "") -> Path:
    """A params.yaml whose train section points at the fixture (``extra``: more train lines)."""
    store, cache = data
    path.write_text(
        f"paths:\n  stores: {store.parent}\n  teacher_cache: {cache.parent}\n"
        f"train:\n  dataset: synthetic\n  resolution: [72, 96]\n  workers: 0\n{extra}"
        f"  out_dir: {out / 'models'}\n  log_dir: {out / 'dvclive'}\n  kd:\n    eps: 0.25\n    loss: l1\n"
        "  labels:\n    fraction: 1.0\n"
        "teacher:\n  datasets:\n    synthetic:\n      model: tiny-random\n"
    )
    return path


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(path)[0]


@pytest.mark.slow
def test_resume_equals_uninterrupted_run(synthetic_with_teacher, tmp_path):
    # 48 samples / batch 8 = 6 steps per epoch; 8 steps cross an epoch boundary
    whole = make_config(synthetic_with_teacher, tmp_path / "whole", epochs=2, max_steps=8, lr=1e-3)
    parts = make_config(synthetic_with_teacher, tmp_path / "parts", epochs=2, max_steps=8, lr=1e-3)
    ref = train(whole, show_progress=False)
    first = train(parts, stop_after=3, show_progress=False)
    assert first.steps == 3 and not (tmp_path / "parts/models/best.pt").exists()
    second = train(parts, show_progress=False)
    assert second.resumed_from == 3 and second.steps == ref.steps == 8
    a, b = _weights(whole.out_dir / "last.pt"), _weights(parts.out_dir / "last.pt")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    sa = read_checkpoint(whole.out_dir / "last.pt")[1].extra["train_state"]
    sb = read_checkpoint(parts.out_dir / "last.pt")[1].extra["train_state"]
    assert sa["scheduler"] == sb["scheduler"] and sa["position"] == sb["position"]
    assert train(parts, show_progress=False).up_to_date


def _constant_rmse(store: Path, size: tuple[int, int]) -> tuple[float, float]:
    """Mean per-image RMSE of the best single depth (the val mean) on the val split."""
    split = open_split(store, "val")
    depths = [resize_sample(split.rgb(i), split.depth(i), None, size)["depth"][0].numpy() for i in range(len(split))]
    c = float(np.mean(np.concatenate([d[d > 0] for d in depths])))
    return c, aggregate_metrics(compute_metrics(np.full_like(d, c), d) for d in depths).means["rmse"]


@pytest.mark.slow
def test_short_run_learns_far_below_constant_predictor(synthetic_with_teacher, tmp_path):
    cfg = make_config(synthetic_with_teacher, tmp_path, epochs=15, lr=1e-3, val_every=30, log_every=6,
                      schedule=ScheduleConfig(name="cosine"), kd=KDConfig(eps=0.0, teacher_dir=tmp_path / "none"))
    result = train(cfg, show_progress=False)
    constant, constant_rmse = _constant_rmse(synthetic_with_teacher[0], TRAIN_SIZE)
    print(f"val RMSE after {result.steps} steps: {result.best_rmse:.4f}; constant {constant:.3f} m: {constant_rmse:.4f}")
    assert result.best_rmse < 0.6 * constant_rmse
    model, info = load_checkpoint(cfg.out_dir / "best.pt")
    assert info.extra["val"]["rmse"] == pytest.approx(result.best_rmse)
    assert info.resolution == TRAIN_SIZE and info.max_depth == 10.0
    # DVCLive wrote the curves and the summary
    summary = json.loads((cfg.log_dir / "metrics.json").read_text())
    assert summary["step"] == result.steps and math.isfinite(summary["val"]["rmse"])
    loss_rows = (cfg.log_dir / "plots/metrics/train/loss.tsv").read_text().splitlines()
    assert loss_rows[0].split("\t") == ["step", "loss"] and len(loss_rows) == 1 + result.steps // 6
    assert (cfg.log_dir / "plots/metrics/val/rmse.tsv").exists()


def test_eps_zero_never_opens_the_cache(synthetic_with_teacher, tmp_path):
    cfg = make_config(synthetic_with_teacher, tmp_path, max_steps=1, kd=KDConfig(eps=0.0, teacher_dir=tmp_path / "missing"))
    assert train(cfg, show_progress=False).steps == 1


def test_missing_or_stale_cache_is_refused(synthetic_with_teacher, tmp_path):
    missing = make_config(synthetic_with_teacher, tmp_path, max_steps=1, kd=KDConfig(eps=0.1, teacher_dir=tmp_path / "x"))
    with pytest.raises(LeveError, match="teacher"):
        train(missing, show_progress=False)
    cfg = make_config(synthetic_with_teacher, tmp_path, max_steps=1)
    with pytest.raises(LeveError, match="expected"):
        train(cfg, expected_teacher="v1-small", show_progress=False)


def test_changed_params_start_over(synthetic_with_teacher, tmp_path):
    cfg = make_config(synthetic_with_teacher, tmp_path, max_steps=2)
    assert train(cfg, stop_after=1, show_progress=False).steps == 1
    other = make_config(synthetic_with_teacher, tmp_path, max_steps=2, lr=3e-4)
    result = train(other, show_progress=False)
    assert result.resumed_from == 0 and result.steps == 2


def test_cli_train_with_overrides_and_bad_values(run_cli, synthetic_with_teacher, tmp_path):
    params = write_params(tmp_path / "params.yaml", synthetic_with_teacher, tmp_path)
    ok = run_cli("train", "--params", params, "--set", "max_steps=1", "--set", "kd.loss=ssi", "--set", "lr=1e-3")
    assert ok.code == 0, ok.stderr
    assert "trained to step 1" in ok.stderr and (tmp_path / "models/best.pt").exists()
    bad = run_cli("train", "--params", params, "--set", "kd.eps=2")
    assert bad.code == 1 and bad.stderr.strip() == "error: train: kd.eps must be in [0, 1], got 2.0"
    typo = run_cli("train", "--params", params, "--set", "kd.epsilon=0.1")
    assert typo.code == 1 and "unknown parameter(s) epsilon" in typo.stderr


def _tsv(path: Path) -> list[float]:
    return [float(line.split("\t")[1]) for line in path.read_text().splitlines()[1:]]


@pytest.mark.slow
def test_torchrun_two_processes_match_one_process(synthetic_with_teacher, tmp_path):
    """2 gloo processes with 4 samples each vs one process with the same global batch of 8 in
    2 micro-batches (BatchNorm statistics are per process on CPU, as per micro-batch here).
    Both use one thread: Adam's first steps amplify rounding differences (2 threads vs 1
    already move some weights by ~lr), so the comparison holds the rounding fixed."""
    import os
    import subprocess
    import sys

    extra = "  batch_size: 8\n  max_steps: 4\n  lr: 1.0e-4\n  log_every: 1\n  val_every: 0\n"
    params = write_params(tmp_path / "params.yaml", synthetic_with_teacher, tmp_path / "ddp", extra)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "leve", "train", "--params", str(params)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    single = make_config(synthetic_with_teacher, tmp_path / "single", max_steps=4, lr=1e-4, accumulate=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each torchrun worker (OMP_NUM_THREADS=1): the same float rounding
    try:
        train(single, show_progress=False)
    finally:
        torch.set_num_threads(threads)
    ddp_loss = _tsv(tmp_path / "ddp/dvclive/plots/metrics/train/loss.tsv")
    one_loss = _tsv(single.log_dir / "plots/metrics/train/loss.tsv")
    assert len(ddp_loss) == len(one_loss) == 4
    assert ddp_loss == pytest.approx(one_loss, rel=1e-5)
    a, b = _weights(tmp_path / "ddp/models/last.pt"), _weights(single.out_dir / "last.pt")
    for key in a:
        if a[key].is_floating_point() and "running" not in key:  # running stats: rank 0's in DDP
            assert torch.allclose(a[key], b[key], rtol=1e-4, atol=1e-7), key


def test_finished_run_is_redone_when_training_code_changes(synthetic_with_teacher, tmp_path, monkeypatch):
    cfg = make_config(synthetic_with_teacher, tmp_path, max_steps=1, kd=KDConfig(eps=0.0, teacher_dir=tmp_path))
    assert train(cfg, show_progress=False).steps == 1
    assert train(cfg, show_progress=False).up_to_date
    import leve.train.loop as loop

    monkeypatch.setattr(loop, "code_digest", lambda: "edited")  # what DVC reruns the stage for
    again = train(cfg, show_progress=False)
    assert not again.up_to_date and again.resumed_from == 0 and again.steps == 1
