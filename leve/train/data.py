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

from leve.images import resize_depth, resize_maps, resize_rgb, resize_rgb_uint8
from leve.store import Split, open_split
from leve.train.stage import AugmentConfig

Item = dict[str, torch.Tensor]


def resize_sample(rgb: np.ndarray, depth: np.ndarray, teacher: np.ndarray | None,
                  size: tuple[int, int], rgb_uint8: bool = False) -> Item:
    """RGB (H, W, 3) uint8 -> (3, h, w) float in [0, 1], the input evaluation and prediction
    make of the same image; depth (H, W) -> (1, h, w) by the validity-weighted filter at the
    same pixel centres (invalid zeros never blend into depth); the teacher map as the RGB. All
    three by the one resize of :mod:`leve.images`; nothing is resized when the sizes agree. With
    ``rgb_uint8`` the RGB stays (3, h, w) uint8: :func:`leve.images.rgb_to_float` of it is the input."""
    dep = torch.from_numpy(np.array(depth, dtype=np.float32))[None, None]
    out = {"rgb": (resize_rgb_uint8 if rgb_uint8 else resize_rgb)(rgb, size)[None], "depth": resize_depth(dep, size)}
    if teacher is not None:
        out["teacher"] = resize_maps(torch.from_numpy(np.array(teacher, dtype=np.float32))[None, None], size)
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


DECODES = ("full", "draft")  # how a JPEG-bytes store's RGB is decoded (see DepthDataset)


class DepthDataset(torch.utils.data.Dataset):
    """Samples of one store split, resized to ``size``, with the teacher map when a cache path
    is given. Store and cache are opened lazily in each process (safe with fork and spawn).

    Each item says whether its depth may be used (``has_depth``): only where the split has depth and
    ``labelled`` (one bool per sample; None: all) keeps it. Elsewhere its depth is all zeros (no
    measurement), so the sample's ground truth never reaches training.

    ``decode``: ``full`` (the default; bit-equal to evaluation's input) or ``draft``: an
    ``rgb_codec: jpeg`` store's RGB is decoded at libjpeg's reduced DCT scale when ``size`` is half
    the stored size or less (:meth:`leve.store.Split.rgb_draft`), then brought to ``size`` by the
    shared resize. Several times faster, but not bit-equal to the full decode + resize that
    evaluation and prediction use (a declared choice; a raw store is unaffected).

    ``rgb_uint8``: items carry the RGB as uint8 at ``size`` (a quarter of float's bytes between
    processes); :meth:`leve.train.step.StepRunner.to_device` makes the same float input of it."""

    def __init__(self, store: str | Path, split: str, size: tuple[int, int], teacher: str | Path | None = None,
                 augment: AugmentConfig | None = None, seed: int = 0, labelled: np.ndarray | None = None,
                 decode: str = "full", rgb_uint8: bool = False) -> None:
        if decode not in DECODES:
            raise ValueError(f"decode must be one of {DECODES}, got {decode!r}")
        self.store, self.split_name, self.size = str(store), split, (int(size[0]), int(size[1]))
        self.decode, self.rgb_uint8 = decode, rgb_uint8
        self.teacher_path = None if teacher is None else str(teacher)
        self.augment, self.seed = augment, seed
        self.labelled = None if labelled is None else np.asarray(labelled, dtype=bool)
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
        has_depth = split.has_depth and (self.labelled is None or bool(self.labelled[i]))
        depth = split.depth(i)[:h, :w] if has_depth else np.zeros((h, w), np.float32)
        rgb = split.rgb_draft(i, self.size) if self.decode == "draft" else split.rgb(i)[:h, :w]
        item = resize_sample(rgb, depth, teacher, self.size, self.rgb_uint8)
        if self.augment is not None:
            item = augment(item, np.random.default_rng([self.seed, epoch, i]), self.augment)
        item["index"] = torch.tensor(i)
        item["has_depth"] = torch.tensor(has_depth)
        return item


def labelled_samples(n: int, fraction: float, seed: int = 0) -> np.ndarray:
    """Which of ``n`` samples keep their depth: the first ``round(fraction * n)`` indices (at least
    one when ``fraction > 0``) of a permutation drawn from ``seed`` alone; one bool per sample. A
    smaller fraction keeps a subset of a larger one's samples."""
    k = min(n, max(round(fraction * n), 1 if fraction > 0 else 0))
    keep = np.zeros(n, dtype=bool)
    keep[np.random.default_rng(seed).permutation(n)[:k]] = True
    return keep


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
