"""Training data: augmentation alignment, the dataset over a store and cache, the batch sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from leve.train.data import DepthDataset, EpochBatchSampler, augment, resize_sample
from leve.train.stage import AugmentConfig


def _item(h: int = 6, w: int = 8) -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(0)
    rgb = torch.tensor(rng.random((3, h, w)), dtype=torch.float32)
    # depth and teacher are functions of the column so alignment is checkable pixel by pixel
    cols = torch.arange(w, dtype=torch.float32).expand(h, w)
    return {"rgb": rgb, "depth": (1 + cols)[None], "teacher": (1 / (1 + cols))[None]}


def test_flip_keeps_rgb_depth_and_teacher_aligned():
    item = _item()
    out = augment(item, np.random.default_rng(0), AugmentConfig(flip=1.0, channel_swap=0.0))
    for key in ("rgb", "depth", "teacher"):
        assert torch.equal(out[key], item[key].flip(-1)), key
    # pixel (r, c) of the output came from column w-1-c of every input alike
    assert torch.allclose(out["teacher"], 1 / out["depth"])
    assert torch.equal(out["rgb"][:, 2, 0], item["rgb"][:, 2, -1])


def test_channel_swap_permutes_rgb_only():
    item = _item()
    seen = set()
    for seed in range(20):
        out = augment(item, np.random.default_rng(seed), AugmentConfig(flip=0.0, channel_swap=1.0))
        assert torch.equal(out["depth"], item["depth"]) and torch.equal(out["teacher"], item["teacher"])
        order = tuple(int(torch.nonzero((item["rgb"] == out["rgb"][c]).all(-1).all(-1))[0]) for c in range(3))
        assert sorted(order) == [0, 1, 2]
        seen.add(order)
    assert len(seen) > 1


def test_augmentation_probabilities():
    item = _item()
    flips = sum(
        torch.equal(augment(item, np.random.default_rng(s), AugmentConfig(0.5, 0.0))["depth"], item["depth"].flip(-1))
        for s in range(400)
    )
    assert 160 < flips < 240
    never = AugmentConfig(flip=0.0, channel_swap=0.0)
    assert all(torch.equal(augment(item, np.random.default_rng(s), never)["rgb"], item["rgb"]) for s in range(10))


def test_resize_nearest_keeps_invalid_depth_unblended():
    depth = np.zeros((40, 60), np.float32)
    depth[:, 30:] = 5.0
    rgb = np.zeros((40, 60, 3), np.uint8)
    out = resize_sample(rgb, depth, None, (20, 30))
    assert set(out["depth"].unique().tolist()) <= {0.0, 5.0}
    assert out["rgb"].shape == (3, 20, 30) and out["depth"].shape == (1, 20, 30)


def test_dataset_reads_store_and_teacher(synthetic_with_teacher):
    store, cache = synthetic_with_teacher
    from leve.store import open_split
    from leve.teacher.cache import open_teacher_cache

    split = open_split(store, "train")
    ds = DepthDataset(store, "train", (64, 80), teacher=cache)
    item = ds[3]
    assert item["rgb"].shape == (3, 64, 80) and item["depth"].shape == (1, 64, 80)
    assert item["teacher"].shape == (1, 64, 80)
    ref = resize_sample(split.rgb(3), split.depth(3), open_teacher_cache(cache, "train", store).disparity(3), (64, 80))
    for key in ("rgb", "depth", "teacher"):
        assert torch.equal(item[key], ref[key])
    assert "teacher" not in DepthDataset(store, "train", (64, 80))[3]


def test_dataset_augmentation_is_a_function_of_seed_epoch_index(synthetic_with_teacher):
    store, cache = synthetic_with_teacher
    ds = DepthDataset(store, "train", (64, 80), teacher=cache, augment=AugmentConfig(0.5, 0.5), seed=7)
    a, b = ds[(2, 5)], ds[(2, 5)]
    assert all(torch.equal(a[k], b[k]) for k in a)
    differs = [not torch.equal(ds[(e, 5)]["rgb"], a["rgb"]) for e in range(8)]
    assert any(differs)
    # workers get a pickled copy that reopens the store lazily and produces the same items
    loader = torch.utils.data.DataLoader(ds, batch_size=None, sampler=[(2, 5)], num_workers=1)
    (c,) = list(loader)
    assert all(torch.equal(a[k], c[k]) for k in a)


@pytest.mark.parametrize("world", [1, 2, 4])
def test_sampler_splits_global_batches_over_ranks(world):
    n, batch = 37, 8
    per_rank = [EpochBatchSampler(n, batch, rank=r, world=world, seed=3) for r in range(world)]
    single = EpochBatchSampler(n, batch, seed=3)
    for s in per_rank + [single]:
        s.set_position(epoch=2)
    joined = [sum(parts, []) for parts in zip(*[list(s) for s in per_rank])]
    assert joined == list(single)
    assert len(single) == n // batch
    flat = [i for b in single for _, i in b]
    assert len(set(flat)) == len(flat) == (n // batch) * batch
    assert all(e == 2 for b in single for e, _ in b)


def test_sampler_resume_position_and_epochs_differ():
    s = EpochBatchSampler(40, 4, seed=0)
    s.set_position(1)
    full = list(s)
    s.set_position(1, start=3)
    assert list(s) == full[3:] and len(s) == len(full) - 3
    s.set_position(2)
    assert list(s) != full
