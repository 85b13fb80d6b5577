"""Shared batches (leve/train/batches.py): the training loader's batches, written by the workers into
shared memory allocated once, against torch's own collation of the same items."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from leve.errors import LeveError
from leve.processes import DiesWithParent
from leve.teacher.cache.read import TeacherCache
from leve.train.batches import PREFETCH, SharedBatches, SharedBatchLoader, SlotKeys
from leve.train.config import AugmentConfig
from leve.train.data import DepthDataset, EpochBatchSampler, collate
from tests.explicit import loading
from tests.processes import wait_until

SIZE = (40, 56)


def _dataset(store: Path, cache: Path | None, targets: str = "device", labelled: np.ndarray | None = None) -> DepthDataset:
    return DepthDataset(store, "train", SIZE, cache, AugmentConfig(flip=0.5, channel_swap=0.5), **loading(seed=3),
                        labelled=labelled, rgb_uint8=True, targets=targets)


def _same(batch: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert set(batch) == set(want)
    for key in want:
        assert batch[key].dtype == want[key].dtype and torch.equal(batch[key], want[key]), key


@pytest.mark.parametrize("workers", [0, 2])
@pytest.mark.parametrize("targets", ["device", "worker"])
def test_shared_batches_equal_torch_collation(synthetic_with_teacher, workers, targets):
    """Two epochs (persistent workers), a resumed epoch and labelled + unlabelled extras per batch: every
    batch equals torch's collation of the same items in one process, bit for bit."""
    store, cache = synthetic_with_teacher
    labelled = np.arange(48) % 4 == 0
    sampler = EpochBatchSampler(48, 4, seed=1, pool=np.flatnonzero(labelled), extra_pool=np.flatnonzero(~labelled),
                                extra=2)
    data = _dataset(store, cache, targets, labelled)
    loader = SharedBatchLoader(data, sampler, sampler.rank_batch_size, workers, worker_init_fn=DiesWithParent())
    reference = _dataset(store, cache, targets, labelled)
    seen = 0
    for epoch, start in ((0, 0), (1, 0), (2, 7)):
        sampler.set_position(epoch, start)
        keys = list(sampler)
        for batch, batch_keys in zip(loader, keys, strict=True):  # as many batches as the sampler's
            _same(batch, collate([reference[key] for key in batch_keys]))
            assert batch["rgb"].shape[0] == 6 and int(batch["has_depth"].sum()) == 4
            seen += 1
    assert seen == 12 + 12 + 5


class _CountingDataset(DepthDataset):
    """Counts, across its worker processes, the batches written into the shared slots."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.written = multiprocessing.Value("i", 0)

    def __getitems__(self, keys):
        ref = super().__getitems__(keys)
        with self.written.get_lock():
            self.written.value += 1
        return ref


def test_a_batch_stays_intact_until_the_next_is_drawn(synthetic_with_teacher):
    """Workers run ahead while the training process holds a batch: with the slots the loader allocates, no
    worker writes into the held one (``slots = workers * prefetch``, one too few, lets one do it)."""
    store, cache = synthetic_with_teacher
    sampler = [[(0, (4 * b + j) % 48) for j in range(4)] for b in range(3 * 2 * PREFETCH)]
    reference = _dataset(store, cache)
    want = [collate([reference[key] for key in keys]) for keys in sampler]

    def held_batches(slots: int | None) -> list[bool]:
        data = _CountingDataset(store, "train", SIZE, cache, AugmentConfig(flip=0.5, channel_swap=0.5), **loading(seed=3),
                                rgb_uint8=True, targets="device")
        loader = SharedBatchLoader(data, sampler, 4, 2, slots=slots, persistent_workers=False,
                                   worker_init_fn=DiesWithParent())
        intact = []
        for k, batch in enumerate(loader):
            # Holding batch k, the DataLoader has handed out 2 * PREFETCH + k + 1 batches: wait until the workers
            # have written every one of them (a count, not a pause), then look at the held batch.
            dispatched = min(len(sampler), 2 * PREFETCH + k + 1)
            wait_until(lambda n=dispatched: data.written.value >= n, 120, f"{dispatched} batches written")
            intact.append(all(torch.equal(batch[key], want[k][key]) for key in batch))
        return intact

    assert all(held_batches(None))
    assert not all(held_batches(2 * PREFETCH))


def test_shared_memory_is_allocated_once(synthetic_with_teacher):
    store, cache = synthetic_with_teacher
    sampler = [[(0, 4 * b + j) for j in range(4)] for b in range(12)]
    loader = SharedBatchLoader(_dataset(store, cache), sampler, 4, 1, persistent_workers=False)
    pointers = {batch["depth"].data_ptr() for batch in loader}
    assert pointers == {slot["depth"].data_ptr() for slot in loader.batches.slots}
    assert len(pointers) == len(loader.batches.slots) == PREFETCH + 2
    # 4 samples of 96x128 float32 depth + float16 teacher + 40x56x3 uint8 RGB + flags, per slot
    per_slot = 4 * (96 * 128 * 4 + 96 * 128 * 2 + 3 * 40 * 56 + 1 + 8 + 1)
    assert loader.batches.nbytes == len(pointers) * per_slot


def test_an_item_that_does_not_fit_is_named(synthetic_with_teacher):
    store, cache = synthetic_with_teacher
    data = _dataset(store, cache, "worker")
    batches = SharedBatches(data.empty_item(), 2, 1)
    bad = data[(0, 5)]
    bad["depth"] = bad["depth"][:, :-1]
    with pytest.raises(ValueError, match=r"sample 5 has tensors .*depth.* not the batch's"):
        batches.write(0, [data[(0, 4)], bad])
    with pytest.raises(ValueError, match="3 samples does not fit"):
        batches.write(0, [data[(0, i)] for i in range(3)])
    assert SlotKeys([(0, 1)], 4).slot == 4 and SlotKeys([(0, 1)], 4) == [(0, 1)]


def test_reads_into_a_buffer_equal_plain_reads(synthetic_with_teacher):
    """Depth and teacher maps decoded straight into a batch's memory equal the plain reads."""
    store, cache = synthetic_with_teacher
    data = _dataset(store, cache)
    split, teacher = data._open()
    assert isinstance(teacher, TeacherCache)
    meta = json.loads((cache / "train" / "disparity" / "zarr.json").read_text())["codecs"][0]["configuration"]
    assert meta["codecs"][1]["configuration"]["cname"] == "lz4hc"  # the cache's codec: fast to decode
    depth, maps = np.empty((96, 128), np.float32), np.empty((96, 128), np.float16)
    for i in (0, 17, 47):
        assert split.depth(i, out=depth) is depth
        np.testing.assert_array_equal(depth, split.depth(i))
        assert teacher.disparity(i, np.float16, out=maps) is maps
        np.testing.assert_array_equal(maps, teacher.disparity(i, np.float16))


class _SmallerThanArrays:
    """Samples all of one size (10x11) in arrays padded to 12x12."""

    def __call__(self, i: int) -> tuple[dict[str, np.ndarray], dict[str, int]]:
        rng = np.random.default_rng(i)
        return ({"rgb": rng.integers(0, 256, (10, 11, 3), dtype=np.uint8),
                 "depth": rng.uniform(0.5, 9, (10, 11)).astype(np.float32)}, {"height": 10, "width": 11})


def test_one_size_below_the_padded_arrays(tmp_path):
    """Device targets come at the samples' true size, also when the arrays are padded beyond it."""
    from leve.datasets.build import SplitSource, build_store
    from leve.store.format import SplitSpec, dataset_arrays
    from leve.store.reader import open_split

    store = tmp_path / "padded.zarr"
    spec = SplitSpec("train", 4, dataset_arrays(12, 12), {"height": "int32", "width": "int32"})
    build_store(store, {"dataset": "padded", "max_depth": 10.0}, "padded", [SplitSource(spec, _SmallerThanArrays())],
                show_progress=False)
    data = DepthDataset(store, "train", (8, 8), **loading(), rgb_uint8=True, targets="device")
    assert data.targets == "device"
    loader = SharedBatchLoader(data, [[(0, 0), (0, 3)]], 2, 0)
    batch = next(iter(loader))
    split = open_split(store, "train")
    assert batch["depth"].shape == (2, 1, 10, 11)
    assert np.array_equal(batch["depth"][1, 0].numpy(), split.depth(3))


def test_too_little_shared_memory_is_refused_in_one_line(synthetic_with_teacher, monkeypatch):
    """Writing past the end of /dev/shm kills a process with SIGBUS: the loader checks the room first."""
    store, cache = synthetic_with_teacher
    data = _dataset(store, cache)
    real = os.statvfs("/dev/shm")

    class Tiny:
        f_bavail, f_frsize = 10, real.f_frsize

    monkeypatch.setattr("leve.train.batches.os.statvfs", lambda folder: Tiny())
    need = 10 * 8 * (96 * 128 * 4 + 96 * 128 * 2 + 3 * 40 * 56 + 1 + 8 + 1) / 2**20  # 10 slots of 8 samples
    with pytest.raises(LeveError, match=rf"/dev/shm: 0 MiB of shared memory free, the training loader needs "
                                        rf"{need:.0f} MiB \(10 batches: train.workers x 4 \+ 2\)"):
        SharedBatchLoader(data, [[(0, 0)] * 8], 8, 2)
