"""Issue 27, D1 and D3: the thesis code's BatchNorm mode after a mid-epoch validation
(``train.bn_after_validation: eval``) and its KD shift by the raw teacher map's minimum
(``train.kd.batch_max_shift: raw_min``), each against a computation written here: the thesis
code's loop simulated by hand, and the thesis formula on plain Python lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import zarr

from leve.errors import LeveError
from leve.train.data import collate
from leve.train.loop import Trainer
from leve.train.losses import LossOptions, distillation_loss, kd_l1_batch
from leve.train.stage import AugmentConfig, KDConfig, TrainConfig
from leve.train.step import StepRunner
from tests.explicit import distilling
from tests.train.conftest import TRAIN_SIZE
from tests.train.oracle import oracle_disparity, write_cache

# ---------------------------------------------------------------------------------------------- D1


def thesis_loop_modes(batches_per_epoch: int, epochs: int, val_every: int) -> list[bool]:
    """The mode of every training batch in the thesis code's loop: ``training_loop`` calls
    ``model.train()`` once at the start of an epoch; after batch ``i`` (0-based) with
    ``i % val_every == 0 and i > 0`` it runs ``validation_loop``, which calls ``model.eval()`` and
    nothing sets train mode again before the next epoch."""
    modes = []
    for _ in range(epochs):
        training = True  # model.train()
        for i in range(batches_per_epoch):
            modes.append(training)
            if i % val_every == 0 and i > 0:
                training = False  # validation_loop: model.eval()
    return modes


def test_the_naive_loop_counts_the_issue_figure():
    """NYU's 50,688 images at batch 8 (6,336 batches), validation every 1000: 5,335 batches in eval mode."""
    assert thesis_loop_modes(6336, 1, 1000).count(False) == 5335


class _Record:
    """Forward pre-hook: the model's mode and its first BN layer's running mean at every training forward
    (validation runs under inference mode and is left out)."""

    def __init__(self) -> None:
        self.modes: list[bool] = []
        self.means: list[torch.Tensor] = []

    def attach(self, model: torch.nn.Module) -> None:
        bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))

        def hook(module: torch.nn.Module, args: object) -> None:
            if not torch.is_inference_mode_enabled():
                self.modes.append(module.training)
                self.means.append(bn.running_mean.detach().clone())

        model.register_forward_pre_hook(hook)


def _cfg(store: Path, out: Path, **kw) -> TrainConfig:
    base = dict(dataset="synthetic", data_dir=store.parent, resolution=TRAIN_SIZE, batch_size=8, epochs=2, lr=1e-3,
                workers=0, log_every=6, val_every=2, val_schedule="thesis-code", kd=KDConfig(eps=0.0),
                out_dir=out / "models", log_dir=out / "dvclive")
    return TrainConfig(**{**base, **kw})


def _run(cfg: TrainConfig, record: _Record, stop_after: int | None = None) -> None:
    trainer = Trainer(cfg, show_progress=False)
    record.attach(trainer.model)
    trainer.run(stop_after=stop_after)


@pytest.mark.slow
def test_bn_after_validation_eval_trains_as_the_thesis_loop_also_across_a_resume(synthetic_store, tmp_path):
    """48 samples at batch 8: 6 batches an epoch, validated (logged) after batches 3 and 5 and at the epoch
    end; 8 steps in all. Stopped after step 4 (mid-epoch, after the first validation) and resumed: every
    step's mode is the thesis loop's, and BN's running statistics do not move over the eval-mode steps."""
    record = _Record()
    cfg = _cfg(synthetic_store, tmp_path, bn_after_validation="eval", max_steps=8, val_limit=4)
    _run(cfg, record, stop_after=4)
    _run(cfg, record)
    expected = thesis_loop_modes(6, 2, 2)
    assert expected == [True, True, True, False, False, False] * 2
    assert record.modes == expected[:8]
    m = record.means  # the running mean before steps 1..8
    assert not torch.equal(m[1], m[2]) and not torch.equal(m[2], m[3])  # train steps 2 and 3 update it
    assert all(torch.equal(m[3], m[k]) for k in (4, 5, 6))  # steps 4, 5, 6 in eval mode: frozen up to step 7
    assert not torch.equal(m[6], m[7])  # step 7 opens epoch 2 in train mode


def test_bn_after_validation_train_is_every_step_in_train_mode(synthetic_store, tmp_path):
    record = _Record()
    _run(_cfg(synthetic_store, tmp_path, epochs=1, val_limit=4), record)
    assert record.modes == [True] * 6
    assert all(not torch.equal(a, b) for a, b in zip(record.means, record.means[1:]))


# ---------------------------------------------------------------------------------------------- D2


@pytest.mark.filterwarnings("ignore:CUDA is not available or torch_xla is imported")
def test_thesis_code_amp_float32_is_no_autocast_on_cuda():
    """The profile's ``train.amp: float32`` (tests/pipeline/test_profiles.py reads it back) reaches the step
    runner as no autocast on a CUDA device; the default bfloat16 autocasts. (Built for a CUDA device without
    running on it: this machine has none.)"""
    model = torch.nn.Conv2d(3, 1, 1)
    runners = {amp: StepRunner(model, torch.optim.SGD(model.parameters(), lr=0.0), None, torch.device("cuda"), 10.0,
                               eps=0.0, kd_loss="l1", accumulate=1, amp=amp, channels_last=False,
                               options=LossOptions(ssim="leve", invalid="mask", kd_norm="image"))
               for amp in ("float32", "bfloat16")}
    assert runners["float32"].amp_dtype is None and runners["bfloat16"].amp_dtype is torch.bfloat16
    assert not isinstance(runners["float32"].autocast(), torch.autocast)
    assert isinstance(runners["bfloat16"].autocast(), torch.autocast)


# ---------------------------------------------------------------------------------------------- D3


def _kd_shifted(out: list[list[float]], maps: list[list[float]], lows: list[float]) -> float:
    """The thesis code's KD on a batch given as flat lists: each teacher map shifted by ``|low| + 1e-6``,
    student and teacher divided by their batch maxima, mean absolute difference."""
    shifted = [[t + abs(low) + 1e-6 for t in img] for img, low in zip(maps, lows)]
    mo, mt = max(max(o) for o in out), max(max(t) for t in shifted)
    diffs = [abs(o / mo - t / mt) for oi, ti in zip(out, shifted) for o, t in zip(oi, ti)]
    return sum(diffs) / len(diffs)


def _thesis_kd(out: list[list[float]], raw: list[list[float]]) -> float:
    """The thesis formula on raw teacher maps: each shifted by |its own minimum|."""
    return _kd_shifted(out, raw, [min(img) for img in raw])


def test_raw_min_shift_is_the_thesis_formula_on_the_raw_maps():
    """Raw maps with a negative pixel: the cache keeps them clipped at 0 plus the raw minimum. Shifted by
    that minimum, the clipped map gives the thesis formula on the raw map at every pixel where the raw map
    is not negative (all of image A, all but one of image B); shifted by the clipped map's own minimum
    (``clipped``: 0 for B) it does not."""
    out = [[1.0, 2.0, 3.0, 4.0], [2.0, 4.0, 6.0, 8.0]]
    raw = [[0.5, 1.0, 1.5, 2.0], [-1.0, 0.5, 1.0, 3.0]]
    clipped = [[max(v, 0.0) for v in img] for img in raw]
    lows = [min(img) for img in raw]
    # by hand (without the 1e-6): A shifted by 0.5 -> [1, 1.5, 2, 2.5]; clipped B by 1 -> [1, 1.5, 2, 4];
    # batch maxima 8 and 4
    hand = (abs(1 / 8 - 1 / 4) + abs(2 / 8 - 1.5 / 4) + abs(3 / 8 - 2 / 4) + abs(4 / 8 - 2.5 / 4)
            + abs(2 / 8 - 1 / 4) + abs(4 / 8 - 1.5 / 4) + abs(6 / 8 - 2 / 4) + abs(8 / 8 - 4 / 4)) / 8
    o = torch.tensor(out, dtype=torch.float64).view(2, 1, 2, 2)
    c = torch.tensor(clipped, dtype=torch.float64).view(2, 1, 2, 2)
    got = float(kd_l1_batch(o, c, torch.tensor(lows)))
    assert got == pytest.approx(hand, abs=1e-6)
    assert got == pytest.approx(_kd_shifted(out, clipped, lows), rel=1e-12)
    # the thesis on the raw maps: the same but at B's negative pixel, raw -1 + 1 (not clipped 0 + 1)
    mt = 4 + 1e-6
    at_that_pixel = abs(2 / 8 - (1 + 1e-6) / mt) - abs(2 / 8 - 1e-6 / mt)
    assert _thesis_kd(out, raw) == pytest.approx(got - at_that_pixel / 8, rel=1e-12)
    # on maps that were never negative the shift by raw_min is the thesis formula itself
    positive = [[0.5, 1.0, 1.5, 2.0], [0.25, 0.5, 1.0, 3.0]]
    p = torch.tensor(positive, dtype=torch.float64).view(2, 1, 2, 2)
    assert float(kd_l1_batch(o, p, torch.tensor([0.5, 0.25]))) == pytest.approx(_thesis_kd(out, positive), rel=1e-12)
    # clipped: B shifted by its clipped minimum 0, a different number
    assert float(kd_l1_batch(o, c)) == pytest.approx(_kd_shifted(out, clipped, [0.5, 0.0]), rel=1e-12)
    assert float(kd_l1_batch(o, c)) != pytest.approx(got, rel=1e-3)
    terms = distillation_loss(o, o, None, c, eps=0.25, kd="l1", has_depth=torch.tensor([False, False]),
                              **distilling(kd_norm="batch"), teacher_low=torch.tensor(lows))
    assert float(terms["kd"]) == pytest.approx(got, rel=1e-12)


@pytest.fixture(scope="module")
def negative_cache(synthetic_store, tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """A teacher cache (the real format) of raw maps that dip below zero: the ground truth's disparity
    under a per-image scale and shift, minus each map's mean. Stored as the cache builder stores
    them: clipped at 0, divided by the maximum, with the raw minimum beside them."""
    raw = oracle_disparity(synthetic_store, "train")
    raw = raw - raw.reshape(len(raw), -1).mean(1)[:, None, None]
    lows = raw.reshape(len(raw), -1).min(1)
    assert (lows < 0).all()
    out = tmp_path_factory.mktemp("negative") / "synthetic.zarr"
    write_cache(synthetic_store, out, "train", np.clip(raw, 0, None), raw_min=lows)
    return out, raw, lows


def test_trainer_shifts_by_the_cache_raw_min(synthetic_store, negative_cache, tmp_path):
    """End to end on a real cache: the KD term of a training batch (at the stored size, no augmentation)
    equals the formula computed here from the stored maps and the raw minima computed from the raw maps."""
    cache, raw, lows = negative_cache
    base = dict(dataset="synthetic", data_dir=synthetic_store.parent, resolution=(96, 128), batch_size=4, epochs=1,
                workers=0, augment=AugmentConfig(flip=0.0, channel_swap=0.0), out_dir=tmp_path / "m",
                log_dir=tmp_path / "d")
    kd = dict(eps=1.0, loss="l1", norm="batch", teacher_dir=cache.parent)
    trainer = Trainer(TrainConfig(**base, kd=KDConfig(**kd, batch_max_shift="raw_min")), show_progress=False)
    stored = zarr.open_group(str(cache), mode="r")["train"]
    assert trainer.runner.teacher_low is not None
    assert np.array_equal(trainer.runner.teacher_low.numpy(), np.asarray(stored["raw_min"][:]))
    idx = [3, 17, 30, 41]
    batch = trainer.runner.to_device(collate([trainer.train_set[i] for i in idx]))
    trainer.model.train()
    with torch.no_grad():
        out = trainer.model(batch["rgb"]).double()
        kd_raw_min = float(trainer.runner.losses(batch)["kd"])
    maps = np.asarray(stored["disparity"][idx]).astype(np.float64) * np.asarray(stored["raw_max"][idx])[:, None, None]
    want = _kd_shifted(out.flatten(1).tolist(), [m.ravel().tolist() for m in maps], [float(lows[i]) for i in idx])
    assert kd_raw_min == pytest.approx(want, rel=1e-5)
    clipped = Trainer(TrainConfig(**base, kd=KDConfig(**kd)), show_progress=False)
    assert clipped.runner.teacher_low is None
    clipped.model.load_state_dict(trainer.model.state_dict())
    clipped.model.train()
    with torch.no_grad():
        assert float(clipped.runner.losses(batch)["kd"]) != pytest.approx(kd_raw_min, rel=1e-3)


def test_step_runner_takes_each_sample_s_raw_min_by_index():
    """Two cached maps of train samples 2 and 0 (raw_max 3 and 7, raw_min -0.5 and 0.25): the KD term is
    the formula on the clipped raw maps each shifted by |its own sample's raw_min|."""
    g = torch.Generator().manual_seed(5)
    rgb, depth = torch.rand(2, 3, 16, 16, generator=g), 1 + torch.rand(2, 1, 16, 16, generator=g)
    teacher = torch.rand(2, 1, 16, 16, generator=g)
    batch = {"rgb": rgb, "depth": depth, "teacher": teacher, "index": torch.tensor([2, 0])}
    model = torch.nn.Conv2d(3, 1, 1)
    runner = StepRunner(model, torch.optim.SGD(model.parameters(), lr=0.0), None, torch.device("cpu"), 10.0,
                        eps=1.0, kd_loss="l1", accumulate=1, amp="float32", channels_last=False,
                        options=LossOptions(ssim="leve", invalid="mask", kd_norm="batch"),
                        teacher_scale=torch.tensor([7.0, 0.5, 3.0]), teacher_low=torch.tensor([0.25, 9.0, -0.5]))
    with torch.no_grad():
        kd = float(runner.losses(batch)["kd"])
        out = model(rgb).double()
    maps = (teacher.double() * torch.tensor([3.0, 7.0], dtype=torch.float64).view(2, 1, 1, 1)).flatten(1).tolist()
    assert kd == pytest.approx(_kd_shifted(out.flatten(1).tolist(), maps, [-0.5, 0.25]), rel=1e-6)


def test_config_refuses_the_raw_min_shift_without_batch_norm_and_unknown_shifts():
    with pytest.raises(LeveError, match="kd.batch_max_shift raw_min applies to kd.norm batch"):
        TrainConfig(kd=KDConfig(eps=0.25, loss="l1", batch_max_shift="raw_min"))
    with pytest.raises(LeveError, match="kd.batch_max_shift must be one of clipped, raw_min, got 'max'"):
        TrainConfig(kd=KDConfig(eps=0.25, loss="l1", norm="batch", batch_max_shift="max"))


def test_cli_refuses_bad_choices_in_one_line(run_cli, tmp_path):
    from tests.train.test_train import write_params

    params = write_params(tmp_path / "params.yaml", (tmp_path / "synthetic.zarr", tmp_path / "teacher" / "x.zarr"), tmp_path)
    for sets, message in ((["bn_after_validation=frozen"], "error: train: bn_after_validation must be one of train, eval, "
                           "got 'frozen'"),
                          (["kd.batch_max_shift=raw_min"], "error: train: kd.batch_max_shift raw_min applies to kd.norm "
                           "batch (got kd.norm image)")):
        res = run_cli("train", "--params", params, *[a for s in sets for a in ("--set", s)])
        assert res.code == 1 and res.stderr.strip() == message
    assert not (tmp_path / "models").exists()
