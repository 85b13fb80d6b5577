"""Few labels, many images: which samples keep their depth, losses over labelled samples only, and
distillation without depth (a relative student from the teacher alone, checked with an oracle cache)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from leve.errors import LeveError
from leve.evaluation.protocols import get_protocol
from leve.evaluation.runner import evaluate
from leve.models.checkpoint import load_checkpoint, save_checkpoint
from leve.models.registry import create_model
from leve.store.reader import open_split
from leve.train.data import DepthDataset, labelled_samples
from leve.train.loop import train
from leve.train.losses import distillation_loss, kd_ssi, student_loss
from leve.train.stage import KDConfig, LabelsConfig, ScheduleConfig, TrainConfig
from tests.explicit import distilling, evaluation, loading, supervising
from tests.factories import synthetic_store
from tests.train.oracle import images_only_train, oracle_disparity, write_cache

SIZE = (64, 96)


def test_labelled_samples_are_fixed_nested_and_counted():
    small, large = labelled_samples(160, 0.1, 0), labelled_samples(160, 0.25, 0)
    assert small.sum() == 16 and large.sum() == 40
    assert np.array_equal(small, labelled_samples(160, 0.1, 0))  # a pure function of (n, fraction, seed)
    assert not (small & ~large).any()  # the samples of a smaller fraction are among a larger one's
    assert not np.array_equal(small, labelled_samples(160, 0.1, 1))
    assert labelled_samples(10, 0.01, 0).sum() == 1  # a positive fraction keeps at least one sample
    assert labelled_samples(10, 0.0, 0).sum() == 0 and labelled_samples(10, 1.0, 0).all()


def _batch(seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    out = 1 + 9 * torch.rand(4, 1, 24, 32, generator=g)
    target = 1 + 9 * torch.rand(4, 1, 24, 32, generator=g)
    teacher = torch.rand(4, 1, 24, 32, generator=g)
    return out, target, target > 2, teacher


def test_student_terms_average_over_labelled_samples_only():
    out, target, mask, noise = _batch()
    teacher = out / 10 + 0.1 * noise  # follows the output (a positive fit), so a flipped map is a change it sees
    has = torch.tensor([True, False, True, False])
    terms = distillation_loss(out, target, mask, teacher, **distilling(), eps=0.25, kd="ssi", has_depth=has)
    alone = student_loss(out[[0, 2]], target[[0, 2]], mask[[0, 2]], **supervising())  # the two labelled samples by themselves
    for name in ("depth_l1", "gradient", "ssim", "student"):
        assert float(terms[name]) == pytest.approx(float(alone[name]), rel=1e-6)
    # the KD term is the mean of the per-image aligned L1 over all four samples
    per_image = [float(kd_ssi(out[i : i + 1], teacher[i : i + 1])) for i in range(4)]
    assert float(terms["kd"]) == pytest.approx(np.mean(per_image), rel=1e-5)
    assert float(terms["loss"]) == pytest.approx(0.75 * float(alone["student"]) + 0.25 * np.mean(per_image), rel=1e-5)
    # an unlabelled sample's depth cannot matter; its teacher map does
    target2, teacher2 = target.clone(), teacher.clone()
    target2[1] = 50.0
    teacher2[3] = teacher2[3].flip(-1)
    assert float(distillation_loss(out, target2, mask, teacher, 0.25, "ssi", has, **distilling())["loss"]) == float(terms["loss"])
    assert float(distillation_loss(out, target, mask, teacher2, 0.25, "ssi", has, **distilling())["loss"]) != float(terms["loss"])


def test_a_batch_without_labels_learns_from_the_teacher_alone():
    out, target, mask, teacher = _batch(1)
    out.requires_grad_(True)
    terms = distillation_loss(out, target, mask, teacher, eps=1.0, kd="ssi", has_depth=torch.zeros(4, dtype=torch.bool),
                              **distilling())
    assert float(terms["student"].detach()) == 0.0
    assert float(terms["loss"].detach()) == pytest.approx(float(kd_ssi(out, teacher).detach()), rel=1e-6)
    terms["loss"].backward()
    assert out.grad is not None and out.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> dict[str, Path]:
    """The synthetic rooms (exact depth), the same store with an images-only train split, and two
    teacher caches of that split: the oracle (ground-truth disparity under a random per-image scale
    and shift) and the oracle shuffled across images."""
    root = tmp_path_factory.mktemp("labels")
    full = synthetic_store(root / "full" / "synthetic.zarr", 96, 128, train=48, val=8, test=24, block_size=16)
    rgb = images_only_train(full, root / "rgb" / "synthetic.zarr")
    maps = oracle_disparity(full, "train")
    write_cache(rgb, root / "oracle" / "synthetic.zarr", "train", maps)
    write_cache(rgb, root / "shuffled" / "synthetic.zarr", "train", maps[np.random.default_rng(1).permutation(len(maps))])
    return {"full": full, "rgb": rgb, "oracle": root / "oracle", "shuffled": root / "shuffled", "root": root}


def test_dataset_hides_the_depth_of_unlabelled_samples(stores):
    keep = labelled_samples(48, 0.25, 0)
    data = DepthDataset(stores["full"], "train", (96, 128), **loading(), labelled=keep)
    split = open_split(stores["full"], "train")
    for i in (int(np.flatnonzero(keep)[0]), int(np.flatnonzero(~keep)[0])):
        item = data[i]
        assert bool(item["has_depth"]) == keep[i]
        expected = split.depth(i) if keep[i] else np.zeros((96, 128), np.float32)
        assert np.array_equal(item["depth"][0].numpy(), expected)
    images_only = DepthDataset(stores["rgb"], "train", (96, 128), **loading())
    assert not bool(images_only[0]["has_depth"]) and float(images_only[0]["depth"].abs().sum()) == 0.0


def _config(data_dir: Path, out: Path, **kw) -> TrainConfig:
    base = dict(dataset="synthetic", data_dir=data_dir, resolution=SIZE, batch_size=8, epochs=10, max_steps=30,
                lr=2e-3, schedule=ScheduleConfig(name="cosine"), workers=0, log_every=100, val_every=0,
                out_dir=out / "models", log_dir=out / "dvclive", kd=KDConfig(eps=0.0))
    return TrainConfig(**{**base, **kw})


def test_training_without_depth_needs_the_ssi_teacher(stores, tmp_path):
    for kd in (KDConfig(eps=0.0), KDConfig(eps=0.5, loss="l1", teacher_dir=stores["oracle"])):
        with pytest.raises(LeveError, match="has no depth.*kd.loss: ssi"):
            train(_config(stores["rgb"].parent, tmp_path, kd=kd), show_progress=False)
    with pytest.raises(LeveError, match="keeps no depth at labels.fraction 0"):
        train(_config(stores["full"].parent, tmp_path, labels=LabelsConfig(fraction=0.0)), show_progress=False)


def test_relative_checkpoint_is_refused_by_unaligned_protocols(stores, tmp_path, monkeypatch):
    from leve.evaluation import stage

    ckpt = save_checkpoint(tmp_path / "rel.pt", create_model("leve", max_depth=10.0), "leve", 10.0,
                           {"depth_kind": "relative", "relative_affine": [1.0, 0.0]}, SIZE)
    monkeypatch.chdir(tmp_path)
    common = {"checkpoint": str(ckpt), "data_dir": str(stores["full"].parent), "teacher": False, "examples": 0}
    for protocol, align in (("leve2024", "none"), ("standard", "none"), ("densedepth", "none")):
        with pytest.raises(LeveError, match="relative depth"):
            stage.run("synthetic", {**common, "protocol": protocol, "align": align}, show_progress=False)
    doc = stage.run("synthetic", {**common, "protocol": "standard", "align": "median"}, show_progress=False)
    assert doc["checkpoint"]["depth_kind"] == "relative" and doc["student"]["count"] == 24


def _aligned_rmse(checkpoint: Path, split) -> tuple[float, float]:
    model, info = load_checkpoint(checkpoint)
    protocol = get_protocol("standard", "synthetic", 10.0, align="lstsq", flip=False)
    result = evaluate(model, split, protocol, info.resolution, info.max_depth, **evaluation(), show_progress=False).aggregate()
    return result.means["rmse"], result.means["d1"]


def _constant_rmse(split) -> float:
    """The best constant per image under the same alignment: a constant disparity fitted to 1/gt by least
    squares is mean(1/gt), i.e. depth 1 / mean(1/gt) on every valid pixel (0.001 < gt < 10)."""
    errors = []
    for i in range(len(split)):
        gt = split.depth(i).astype(np.float64)
        gt = gt[(gt > 1e-3) & (gt < 10.0)]
        errors.append(np.sqrt(np.mean((1.0 / np.mean(1.0 / gt) - gt) ** 2)))
    return float(np.mean(errors))


@pytest.mark.slow
def test_oracle_cache_teaches_relative_depth_from_rgb_alone(stores, tmp_path):
    root = stores["root"]
    runs = {
        "supervised": _config(stores["full"].parent, tmp_path / "sup", kd=KDConfig(eps=0.0)),
        "oracle": _config(stores["rgb"].parent, tmp_path / "oracle", kd=KDConfig(eps=1.0, loss="ssi",
                                                                                teacher_dir=root / "oracle")),
        "shuffled": _config(stores["rgb"].parent, tmp_path / "shuffled", kd=KDConfig(eps=1.0, loss="ssi",
                                                                                   teacher_dir=root / "shuffled")),
    }
    test = open_split(stores["full"], "test")
    scores = {}
    for name, cfg in runs.items():
        train(cfg, show_progress=False)
        info = load_checkpoint(cfg.out_dir / "best.pt")[1]
        assert info.depth_kind == ("metric" if name == "supervised" else "relative")
        scores[name] = _aligned_rmse(cfg.out_dir / "best.pt", test)
    constant = _constant_rmse(test)
    print({k: (round(r, 3), round(d, 3)) for k, (r, d) in scores.items()}, "constant", round(constant, 3))
    (sup, sup_d1), (oracle, oracle_d1), (shuffled, shuffled_d1) = scores["supervised"], scores["oracle"], scores["shuffled"]
    assert oracle < 1.15 * sup and oracle_d1 > sup_d1 - 0.05  # close to training on the depth itself
    assert oracle < 0.8 * constant  # far above predicting a constant
    assert shuffled > 1.1 * oracle and shuffled_d1 < oracle_d1 - 0.05  # the images' own maps are what teaches


@pytest.mark.parametrize("sampling", ["split", "mixed"])
def test_without_kd_split_sampling_trains_on_labelled_samples_only(stores, tmp_path, monkeypatch, sampling):
    seen: list[tuple[str, bool]] = []
    original = DepthDataset._fill  # every sample leve train loads is written by it (into its batch)

    def spy(self, epoch, i, out):
        original(self, epoch, i, out)
        seen.append((self.split_name, bool(out["has_depth"])))

    monkeypatch.setattr(DepthDataset, "_fill", spy)
    cfg = _config(stores["full"].parent, tmp_path, max_steps=4, labels=LabelsConfig(fraction=0.25, sampling=sampling))
    train(cfg, show_progress=False)
    train_items = [has for split, has in seen if split == "train"]
    assert len(train_items) == 4 * cfg.batch_size
    if sampling == "split":  # 12 labelled of 48: every batch drawn from them
        assert all(train_items)
    else:  # drawn from all 48: about three in four without depth
        assert 0 < sum(train_items) < 24
