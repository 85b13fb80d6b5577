"""Training data: a store split (+ its teacher cache) as a torch Dataset, and a resumable,
rank-aware batch sampler.

Items are addressed as ``(epoch, index)`` so that augmentation is a pure function of
``(seed, epoch, index)``: the same sample gets the same flip and channel order whatever the
number of workers or processes, and after a resume.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from leve.store import Split, open_split
from leve.train.stage import AugmentConfig

Item = dict[str, torch.Tensor]


def resize_sample(rgb: np.ndarray, depth: np.ndarray, teacher: np.ndarray | None,
                  size: tuple[int, int]) -> Item:
    """RGB (H, W, 3) uint8 -> (3, h, w) float in [0, 1] (bilinear, antialiased); depth (H, W)
    -> (1, h, w) by nearest neighbour, so invalid zeros never blend into valid depth; the
    teacher map bilinear. Nothing is resized when the sizes already agree."""
    img = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1).float().div_(255)[None]
    dep = torch.from_numpy(np.array(depth, dtype=np.float32))[None, None]
    out = {"rgb": img, "depth": dep}
    if teacher is not None:
        out["teacher"] = torch.from_numpy(np.array(teacher, dtype=np.float32))[None, None]
    if tuple(img.shape[-2:]) != tuple(size):
        out["rgb"] = F.interpolate(img, size=size, mode="bilinear", align_corners=False, antialias=True).clamp_(0, 1)
        out["depth"] = F.interpolate(dep, size=size, mode="nearest")
        if teacher is not None:
            out["teacher"] = F.interpolate(out["teacher"], size=size, mode="bilinear", align_corners=False)
    return {k: v[0] for k, v in out.items()}


def augment(item: Item, rng: np.random.Generator, cfg: AugmentConfig) -> Item:
    """The thesis's augmentation: with probability ``flip`` mirror RGB, depth and teacher
    together (the thesis code forgot the teacher); with probability ``channel_swap`` permute
    the RGB channels. Two draws per sample, always made, so the stream stays aligned."""
    flip = rng.random() < cfg.flip
    swap = rng.random() < cfg.channel_swap
    order = rng.permutation(3)
    out = dict(item)
    if flip:
        out = {k: v.flip(-1) for k, v in out.items()}
    if swap:
        out["rgb"] = out["rgb"][torch.from_numpy(order)]
    return out


class DepthDataset(torch.utils.data.Dataset):
    """Samples of one store split, resized to ``size``, with the teacher map when a cache path
    is given. Store and cache are opened lazily in each process (safe with fork and spawn)."""

    def __init__(self, store: str | Path, split: str, size: tuple[int, int], teacher: str | Path | None = None,
                 augment: AugmentConfig | None = None, seed: int = 0) -> None:
        self.store, self.split_name, self.size = str(store), split, (int(size[0]), int(size[1]))
        self.teacher_path = None if teacher is None else str(teacher)
        self.augment, self.seed = augment, seed
        self._split: Split | None = None
        self._cache: Any = None
        self._len = len(open_split(self.store, split))

    def __len__(self) -> int:
        return self._len

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_split": None, "_cache": None}

    def _open(self) -> tuple[Split, Any]:
        if self._split is None:
            self._split = open_split(self.store, self.split_name)
            if self.teacher_path is not None:
                from leve.teacher.cache.read import TeacherCache

                self._cache = TeacherCache(self.teacher_path, self.split_name, self._split)
        return self._split, self._cache

    def __getitem__(self, key: int | tuple[int, int]) -> Item:
        epoch, i = key if isinstance(key, tuple) else (0, key)
        split, cache = self._open()
        h, w = split.size(i)
        teacher = cache.disparity(i) if cache is not None else None
        item = resize_sample(split.rgb(i)[:h, :w], split.depth(i)[:h, :w], teacher, self.size)
        if self.augment is not None:
            item = augment(item, np.random.default_rng([self.seed, epoch, i]), self.augment)
        item["index"] = torch.tensor(i)
        return item


class EpochBatchSampler(torch.utils.data.Sampler[list[tuple[int, int]]]):
    """Per epoch a seeded permutation cut into global batches of ``global_batch`` samples
    (the last partial batch dropped); process ``rank`` of ``world`` takes the ``rank``-th
    contiguous slice of each. ``start`` skips already-trained batches (resume)."""

    def __init__(self, n: int, global_batch: int, rank: int = 0, world: int = 1, seed: int = 0) -> None:
        if global_batch % world:
            raise ValueError(f"global batch {global_batch} does not split over {world} processes")
        self.n, self.global_batch, self.rank, self.world, self.seed = n, global_batch, rank, world, seed
        self.epoch, self.start = 0, 0

    def set_position(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def batches_per_epoch(self) -> int:
        return self.n // self.global_batch

    def __len__(self) -> int:
        return self.batches_per_epoch() - self.start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.n, generator=g).tolist()
        per_rank = self.global_batch // self.world
        for b in range(self.start, self.batches_per_epoch()):
            first = b * self.global_batch + self.rank * per_rank
            yield [(self.epoch, i) for i in order[first : first + per_rank]]


def collate(items: list[Item]) -> Item:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}
