"""Training batches that cross from the loader workers to the training process without being
allocated, pickled or mapped again for each batch.

torch's DataLoader collates each batch of a worker into a *new* shared-memory block: a file
created, grown and mapped, its pages faulted in as the worker writes them, one file descriptor
per tensor passed through a socket, the block mapped again (and faulted again) in the main
process. For a 240x320 batch of 8 with depth and teacher maps at 480x640 (16.5 MB) that costs
a worker 2.9 ms of CPU per sample against 0.32 ms for building the same batch in one process
(measured on this project's 2-core CPU); it was the largest single cost of a loader worker.

Here the training process allocates ``count`` batches in shared memory once
(:class:`SharedBatches`); every worker writes its batch into the slot its keys name
(:class:`SlotKeys`) and sends back only the slot number (:class:`SlotRef`). Slots are handed out
in turn, batch ``t`` of an iteration in slot ``t % count``: the DataLoader keeps at most
``workers * prefetch_factor`` batches in flight, so with ``count`` above that no slot is written
while the batch in it is still in use. The price is a contract: **a batch from
:class:`SharedBatchLoader` is valid until the next one is drawn** (``leve train`` steps on each
batch before drawing the next, and ``to_device`` copies it to a GPU before the step returns).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from leve.errors import LeveError

Item = dict[str, torch.Tensor]
PREFETCH = 4  # batches in flight per loader worker
SHM = "/dev/shm"  # where torch's shared memory lives on Linux


@dataclass(frozen=True)
class ReadAhead:
    """What the worker that loads a batch reads after it: the sample keys of its next batches, in order, and the
    most shard files a bucket store's reader may fetch ahead for them (:func:`leve.store.cachedread.read_ahead`)."""

    keys: list[Any]
    shards: int
    workers: int


class SlotKeys(list[Any]):
    """A batch's sample keys, the slot of :class:`SharedBatches` it is written to and, with read-ahead on, what
    the same worker reads next (:class:`ReadAhead`)."""

    def __init__(self, keys: Iterable[Any], slot: int, ahead: ReadAhead | None = None) -> None:
        super().__init__(keys)
        self.slot = slot
        self.ahead = ahead


@dataclass(frozen=True)
class SlotRef:
    """What a worker sends back for a batch written into shared memory: where, and how many samples."""

    slot: int
    size: int


class SharedBatches:
    """``count`` batches of up to ``batch_size`` samples shaped like ``example`` (one item: a dict of
    tensors), allocated in shared memory once, before the workers start."""

    def __init__(self, example: Item, batch_size: int, count: int) -> None:
        self.shapes = {k: (tuple(v.shape), v.dtype) for k, v in example.items()}
        self.batch_size = batch_size
        check_shared_memory(count * batch_size * sum(v.numel() * v.element_size() for v in example.values()), count)
        self.slots = [{k: torch.empty((batch_size, *shape), dtype=dtype).share_memory_()
                       for k, (shape, dtype) in self.shapes.items()} for _ in range(count)]

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for slot in self.slots for t in slot.values())

    def write(self, slot: int, items: list[Item]) -> SlotRef:
        """Copy ``items`` into slot ``slot``; a ValueError names the first item that does not fit."""
        if len(items) > self.batch_size:
            raise ValueError(f"a batch of {len(items)} samples does not fit the shared batches of {self.batch_size}")
        out = self.slots[slot]
        for j, item in enumerate(items):
            got = {k: (tuple(v.shape), v.dtype) for k, v in item.items()}
            if got != self.shapes:
                where = f"sample {int(item['index'])}" if "index" in item else f"item {j}"
                raise ValueError(f"{where} has tensors {got}, not the batch's {self.shapes}")
            for k, v in item.items():
                out[k][j].copy_(v)
        return SlotRef(slot, len(items))

    def views(self, slot: int, size: int) -> list[Item]:
        """The first ``size`` samples' places in slot ``slot``, one dict of views each, to be written in place."""
        out = self.slots[slot]
        return [{k: v[j] for k, v in out.items()} for j in range(size)]

    def read(self, ref: SlotRef) -> Item:
        """The batch in ``ref``'s slot: views of the shared memory, valid until the slot is written again."""
        return {k: v[: ref.size] for k, v in self.slots[ref.slot].items()}


def check_shared_memory(nbytes: int, count: int, folder: str = SHM) -> None:
    """Refuse, in one line, ``count`` batches of ``nbytes`` in all that ``folder`` (the shared-memory
    filesystem) has no room for: writing past its end would kill the process with SIGBUS instead."""
    try:
        stat = os.statvfs(folder)
    except OSError:  # no such filesystem here (not Linux): nothing to check
        return
    free = stat.f_bavail * stat.f_frsize
    if nbytes > free:
        raise LeveError(f"{folder}: {free / 2**20:.0f} MiB of shared memory free, the training loader needs "
                        f"{nbytes / 2**20:.0f} MiB ({count} batches: train.workers x {PREFETCH} + 2); lower "
                        f"train.workers or train.batch_size, or give it more (docker run --shm-size)")


class SlottedSampler(torch.utils.data.Sampler[SlotKeys]):
    """``sampler``'s batches, each tagged with the slot it goes to: ``t % count`` for the ``t``-th of an iteration.

    With ``read_ahead`` shard files (> 0), batch ``t`` also carries the keys of batches ``t + W``, ``t + 2W``, ...
    ``t + read_ahead * W`` (``W``: ``num_workers``, at least 1): the batches the same worker loads next, as the
    DataLoader hands batches to its workers in turn, starting each iteration at worker 0. Were that order
    different, a worker would fetch some shards it does not read: more requests, never other results."""

    def __init__(self, sampler: Iterable[list[Any]], count: int, num_workers: int = 0, read_ahead: int = 0) -> None:
        self.sampler, self.count = sampler, count
        self.stride, self.read_ahead = max(num_workers, 1), max(read_ahead, 0)

    def __iter__(self) -> Iterator[SlotKeys]:
        if not self.read_ahead:
            for t, keys in enumerate(self.sampler):
                yield SlotKeys(keys, t % self.count)
            return
        span = self.stride * self.read_ahead  # batch t's worker's next read_ahead batches lie within t + span
        window: deque[list[Any]] = deque()
        batches = iter(self.sampler)
        t = 0
        while True:
            while len(window) <= span:
                try:
                    window.append(next(batches))
                except StopIteration:
                    break
            if not window:
                return
            keys = window.popleft()
            later = [k for j in range(self.stride - 1, len(window), self.stride) for k in window[j]]
            yield SlotKeys(keys, t % self.count, ReadAhead(later, self.read_ahead, self.stride))
            t += 1

    def __len__(self) -> int:
        return len(self.sampler)  # type: ignore[arg-type]


class SharedBatchLoader:
    """A DataLoader of ``dataset`` (which has ``empty_item`` and ``share_batches``, like
    :class:`leve.train.data.DepthDataset`) over ``batch_sampler`` whose batches come through
    :class:`SharedBatches`; iterating yields dicts of tensors. ``batch_size``: the most samples a
    batch of the sampler holds; ``slots``: how many batches to allocate (default: the batches in flight
    + the one in use + one spare; fewer lets workers overwrite a batch in use: for tests). The other
    keyword arguments go to the DataLoader. ``read_ahead``: the most shard files of a bucket store each worker
    fetches ahead of its reads (0: none; see :class:`SlottedSampler`), through the dataset's ``read_ahead``."""

    def __init__(self, dataset: Any, batch_sampler: Iterable[list[Any]], batch_size: int, num_workers: int,
                 slots: int | None = None, read_ahead: int = 0, **kwargs: Any) -> None:
        count = slots or (num_workers * PREFETCH + 2 if num_workers else 2)
        self.batches = SharedBatches(dataset.empty_item(), batch_size, count)
        dataset.share_batches(self.batches)
        self.num_workers, self.prefetch_factor = num_workers, PREFETCH if num_workers else None
        kwargs.setdefault("persistent_workers", num_workers > 0)
        self.loader = torch.utils.data.DataLoader(
            dataset, batch_sampler=SlottedSampler(batch_sampler, count, num_workers, read_ahead), num_workers=num_workers,
            collate_fn=_pass_ref, prefetch_factor=self.prefetch_factor, **kwargs)

    def __iter__(self) -> Iterator[Item]:
        for ref in self.loader:
            yield self.batches.read(ref)

    def __len__(self) -> int:
        return len(self.loader)


def _pass_ref(ref: SlotRef) -> SlotRef:
    """The DataLoader's collate_fn: the dataset already wrote the batch (a module function: picklable)."""
    return ref
