"""Training data: augmentation alignment, the dataset over a store and cache, the batch sampler."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from leve.train.config import AugmentConfig
from leve.train.data import DepthDataset, EpochBatchSampler, augment, resize_sample
from tests.explicit import loading


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


def _filter_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of PIL's BILINEAR resize along one axis, written out: a triangle of
    radius max(scale, 1) input pixels around each output centre (i + 0.5)·scale, renormalised."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    centres = (np.arange(n_out) + 0.5) * scale
    u = ((np.arange(n_in) + 0.5)[None, :] - centres[:, None]) / support
    m = np.maximum(0.0, 1.0 - np.abs(u))
    return m / m.sum(1, keepdims=True)


def _naive_resize(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    return _filter_matrix(x.shape[0], size[0]) @ x @ _filter_matrix(x.shape[1], size[1]).T


def test_depth_target_is_the_validity_weighted_rgb_filter():
    rng = np.random.default_rng(0)
    depth = rng.uniform(1.0, 9.0, (30, 45)).astype(np.float32)
    depth[5:14, 7:20] = 0.0          # a hole, a ragged edge, scattered misses
    depth[20:, 30:] *= rng.random((10, 15)) > 0.4
    depth[0, :] = 0.0
    rgb = rng.integers(0, 256, (30, 45, 3), dtype=np.uint8)
    for size in ((12, 20), (45, 50)):  # shrinking (antialiased) and enlarging
        out = resize_sample(rgb, depth, None, size)
        valid = (depth > 0).astype(np.float64)
        num, den = _naive_resize(depth * valid, size), _naive_resize(valid, size)
        want = np.where(den >= 0.5, num / np.maximum(den, 1e-12), 0.0)
        assert out["depth"].shape == (1, *size) and out["rgb"].shape == (3, *size)
        np.testing.assert_allclose(out["depth"][0].numpy(), want, rtol=1e-5, atol=1e-5)
        assert ((want == 0) == (out["depth"][0].numpy() == 0)).all() and (want == 0).any()
        # the RGB went through the same filter (the depth is sampled at the same pixel centres), in 8 bits
        want_rgb = np.stack([_naive_resize(rgb[..., c] / 255.0, size) for c in range(3)])
        np.testing.assert_allclose(out["rgb"].numpy(), want_rgb, atol=1.0 / 255 + 1e-6)
        levels = out["rgb"].numpy() * 255
        np.testing.assert_allclose(levels, np.round(levels), atol=1e-4)


def test_rgb_resize_is_pils_bilinear():
    from PIL import Image

    rgb = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    out = resize_sample(rgb, np.ones((48, 64), np.float32), None, (20, 30))["rgb"].permute(1, 2, 0).numpy()
    pil = np.asarray(Image.fromarray(rgb).resize((30, 20), Image.BILINEAR), dtype=np.float64) / 255.0
    assert np.abs(out - pil).max() <= 1.0 / 255 + 1e-6   # PIL rounds to 8 bits


def test_train_eval_and_predict_inputs_are_identical(synthetic_store):
    from leve.evaluation.runner import batch_input
    from leve.predict import predict_depth
    from leve.store.reader import open_split

    split = open_split(synthetic_store, "val")
    size = (40, 56)   # from 96x128: a non-integer shrink
    seen: list[torch.Tensor] = []

    class Recorder(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            seen.append(x.clone())
            return torch.ones_like(x[:, :1])

    for i in (0, 3):
        train = DepthDataset(synthetic_store, "val", size, **loading())[i]["rgb"]
        predict_depth(Recorder(), split.rgb(i), size, 10.0)
        assert torch.equal(train, batch_input([split.rgb(i)], size, "cpu")[0])
        assert torch.equal(train, seen[-1][0])


def test_dataset_reads_store_and_teacher(synthetic_with_teacher):
    store, cache = synthetic_with_teacher
    from leve.store.reader import open_split
    from leve.teacher.cache.read import open_teacher_cache

    split = open_split(store, "train")
    ds = DepthDataset(store, "train", (64, 80), **loading(), teacher=cache)
    item = ds[3]
    assert item["rgb"].shape == (3, 64, 80) and item["depth"].shape == (1, 64, 80)
    assert item["teacher"].shape == (1, 64, 80)
    ref = resize_sample(split.rgb(3), split.depth(3), open_teacher_cache(cache, "train", store).disparity(3), (64, 80))
    for key in ("rgb", "depth", "teacher"):
        assert torch.equal(item[key], ref[key])
    assert "teacher" not in DepthDataset(store, "train", (64, 80), **loading())[3]


def test_dataset_augmentation_is_a_function_of_seed_epoch_index(synthetic_with_teacher):
    store, cache = synthetic_with_teacher
    ds = DepthDataset(store, "train", (64, 80), teacher=cache, augment=AugmentConfig(0.5, 0.5), **loading(seed=7))
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


def test_sampler_draws_labelled_batches_plus_unlabelled_extras():
    n, batch, extra = 40, 4, 4
    labelled = np.zeros(n, bool)
    labelled[[3, 7, 11, 20, 31, 38]] = True
    pool, rest = np.flatnonzero(labelled), np.flatnonzero(~labelled)
    s = EpochBatchSampler(n, batch, seed=5, pool=pool, extra_pool=rest, extra=extra)
    s.set_position(1)
    batches = list(s)
    assert len(batches) == n // batch  # an epoch keeps the batches of all n samples
    assert all(len(b) == batch + extra and all(e == 1 for e, _ in b) for b in batches)
    assert all(labelled[[i for _, i in b[:batch]]].all() and not labelled[[i for _, i in b[batch:]]].any()
               for b in batches)
    # cycling whole permutations: every labelled sample is drawn 40 // 6 or one more times
    counts = np.bincount([i for b in batches for _, i in b[:batch]], minlength=n)[pool]
    assert counts.sum() == n and counts.max() - counts.min() <= 1
    extra_counts = np.bincount([i for b in batches for _, i in b[batch:]], minlength=n)[rest]
    assert extra_counts.sum() == n and set(extra_counts) <= {1, 2}
    # without extras the labelled stream is the same: a KD run sees the baseline's labelled batches
    plain = EpochBatchSampler(n, batch, seed=5, pool=pool)
    plain.set_position(1)
    assert [b for b in plain] == [b[:batch] for b in batches]
    s.set_position(1, start=4)
    assert list(s) == batches[4:]
    # two processes: each takes its half of the labelled part and of the extras
    ranks = [EpochBatchSampler(n, batch, r, 2, seed=5, pool=pool, extra_pool=rest, extra=extra) for r in range(2)]
    for r in ranks:
        r.set_position(1)
    for b, (p0, p1) in zip(batches, zip(*[list(r) for r in ranks])):
        assert p0[:2] + p1[:2] == b[:batch] and p0[2:] + p1[2:] == b[batch:]
