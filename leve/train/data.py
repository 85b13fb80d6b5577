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
from leve.store.reader import Split, open_split
from leve.teacher.cache.crops import flip_boxes, normalised_boxes
from leve.train.batches import SharedBatches, SlotRef
from leve.train.config import AugmentConfig

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
    the RGB channels. Two draws per sample, always made, so the stream stays aligned. An item whose
    targets are left for the device (a ``flip`` entry, see :func:`finish_targets`) has only its RGB
    mirrored here and the flip recorded: its depth and teacher are mirrored after their resize. Local
    crops' maps are mirrored with the image and their boxes (``boxes``, fractions of the sides) moved to the
    mirrored region (:func:`~leve.teacher.cache.crops.flip_boxes`)."""
    flip = rng.random() < cfg.flip
    swap = rng.random() < cfg.channel_swap
    order = rng.permutation(3)
    out = dict(item)
    if "flip" in out:
        out["flip"] = torch.tensor(flip)
        if flip:
            out["rgb"] = out["rgb"].flip(-1)
    elif flip:
        out = {k: flip_boxes(v) if k == "boxes" else v.flip(-1) for k, v in out.items()}
    if swap:
        out["rgb"] = out["rgb"][torch.from_numpy(order)]
    return out


def finish_targets(batch: Item) -> Item:
    """Depth and teacher maps sent at the stored size (:class:`DepthDataset` with ``targets:
    device``) brought to the RGB's size by :func:`leve.images.resize_depth` and
    :func:`~leve.images.resize_maps`, then mirrored where the item's ``flip`` says: the worker's
    resize-then-flip, done on the batch wherever it lies (the GPU when training on one). A batch
    without a ``flip`` entry is returned as it is."""
    if "flip" not in batch:
        return batch
    out = dict(batch)
    flip = out.pop("flip").to(torch.bool)
    size = out["rgb"].shape[-2:]
    for key in ("depth", "teacher"):
        if key in out:
            x = out[key].float()
            # on a GPU without the dense/empty shortcuts, whose checks would wait for it (same values)
            x = resize_depth(x, size, shortcuts=x.device.type == "cpu") if key == "depth" else resize_maps(x, size)
            out[key] = torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)
    if "crops" in out:  # local crops: mirrored at their cached size (the step resizes them), boxes moved
        out["crops"] = torch.where(flip.view(-1, 1, 1, 1), out["crops"].flip(-1), out["crops"])
        out["boxes"] = torch.where(flip.view(-1, 1, 1), flip_boxes(out["boxes"]), out["boxes"])
    return out


DECODES = ("full", "draft")  # how a JPEG-bytes store's RGB is decoded (see DepthDataset)
TARGETS = ("worker", "device")  # where depth and teacher maps are resized (see DepthDataset)


def draft_refusal(split: Split, size: tuple[int, int]) -> str | None:
    """Why ``decode: draft`` cannot decode ``split`` at a reduced scale for training at ``size``
    (None when it can): the store keeps raw pixels, or ``size`` is more than half the stored one."""
    if split.rgb_codec != "jpeg":
        return f"{split.path}/{split.name} stores raw RGB (rgb_codec: raw), not JPEG bytes"
    h, w = split.array_shape
    if 2 * size[0] > h or 2 * size[1] > w:
        return f"the resolution {list(size)} is more than half of the stored {[h, w]}"
    return None


class DepthDataset(torch.utils.data.Dataset):
    """Samples of one store split, resized to ``size``, with the teacher map when a cache path
    is given. Store and cache are opened lazily in each process (safe with fork and spawn).

    Each item says whether its depth may be used (``has_depth``): only where the split has depth and
    ``labelled`` (one bool per sample; None: all) keeps it. Elsewhere its depth is all zeros (no
    measurement), so the sample's ground truth never reaches training.

    ``decode``: ``full`` (bit-equal to evaluation's input) or ``draft``: an
    ``rgb_codec: jpeg`` store's RGB is decoded at libjpeg's reduced DCT scale when ``size`` is half
    the stored size or less (:meth:`leve.store.Split.rgb_draft`), then brought to ``size`` by the
    shared resize. Several times faster, but not bit-equal to the full decode + resize that
    evaluation and prediction use (a declared choice; a raw store is unaffected).

    ``rgb_uint8``: items carry the RGB as uint8 at ``size`` (a quarter of float's bytes between
    processes); :meth:`leve.train.step.StepRunner.to_device` makes the same float input of it.

    ``targets``: ``worker`` (the default) resizes depth and teacher map in the loader; ``device`` sends
    them at the stored size (the teacher map as cached, float16) with a ``flip`` flag, and
    :func:`finish_targets` (called by ``to_device``) resizes and mirrors them on the training device:
    the same function on the same values, so on a CPU the batch is bit-equal to ``worker``'s. A split
    whose samples differ in size cannot be stacked at the stored size and keeps ``worker``.

    ``local_crops``: items also carry the cache's local crops (cross-context distillation): ``crops`` (K, h, w),
    the teacher's map of each crop at its cached size, and ``boxes`` (K, 4), each crop's region as fractions
    of the image's sides (``x0, y0, x1, y1``), mirrored with the image."""

    def __init__(self, store: str | Path, split: str, size: tuple[int, int], teacher: str | Path | None = None,
                 augment: AugmentConfig | None = None, *, seed: int, labelled: np.ndarray | None = None,
                 decode: str, rgb_uint8: bool = False, targets: str = "worker", local_crops: bool = False,
                 cache_bytes: int | None = None) -> None:
        if decode not in DECODES:
            raise ValueError(f"decode must be one of {DECODES}, got {decode!r}")
        if targets not in TARGETS:
            raise ValueError(f"targets must be one of {TARGETS}, got {targets!r}")
        self.store, self.split_name, self.size = str(store), split, (int(size[0]), int(size[1]))
        # the read-through cache of a bucket store and of a bucket teacher cache (None: $LEVE_READ_CACHE_BYTES)
        self.cache_bytes = cache_bytes
        self.decode, self.rgb_uint8 = decode, rgb_uint8
        self.local_crops = local_crops and teacher is not None
        self.teacher_path = None if teacher is None else str(teacher)
        self.augment, self.seed = augment, seed
        self.labelled = None if labelled is None else np.asarray(labelled, dtype=bool)
        self._split: Split | None = None
        self._cache: Any = None
        self.shared: SharedBatches | None = None
        opened = open_split(self.store, split, self.cache_bytes)
        self._len = len(opened)
        self.targets = targets if targets == "worker" or _one_size(opened) else "worker"

    def __len__(self) -> int:
        return self._len

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_split": None, "_cache": None}

    def _open(self) -> tuple[Split, Any]:
        if self._split is None:
            self._split = open_split(self.store, self.split_name, self.cache_bytes)
            if self.teacher_path is not None:
                from leve.teacher.cache.read import TeacherCache

                self._cache = TeacherCache(self.teacher_path, self.split_name, self._split, self.cache_bytes)
        return self._split, self._cache

    def __getitem__(self, key: int | tuple[int, int]) -> Item:
        epoch, i = key if isinstance(key, tuple) else (0, key)
        if self.targets == "device":
            item = self.empty_item()
            self._fill(epoch, i, item)
            return item
        split, cache = self._open()
        h, w = split.size(i)
        has_depth = self._has_depth(split, i)
        teacher = cache.disparity(i) if cache is not None else None
        depth = split.depth(i)[:h, :w] if has_depth else np.zeros((h, w), np.float32)
        item = resize_sample(self._rgb(split, i), depth, teacher, self.size, self.rgb_uint8)
        if self.local_crops:
            item["crops"] = torch.from_numpy(cache.crop_maps(i).astype(np.float32))
            item["boxes"] = normalised_boxes(cache.crop_boxes(i), h, w)
        if self.augment is not None:
            item = augment(item, np.random.default_rng([self.seed, epoch, i]), self.augment)
        item["index"] = torch.tensor(i)
        item["has_depth"] = torch.tensor(has_depth)
        return item

    def share_batches(self, batches: SharedBatches) -> None:
        """Write batches whose keys name a slot (:class:`leve.train.batches.SlotKeys`) into ``batches``."""
        self.shared = batches

    def __getitems__(self, keys: list[Any]) -> list[Item] | SlotRef:
        """A batch's items (the DataLoader collates them), or, for keys that name a slot of the shared
        batches, the batch written there (:mod:`leve.train.batches`): with ``targets: device`` each
        sample is decoded straight into its place in the slot."""
        ahead = getattr(keys, "ahead", None)
        if ahead is not None:
            self.read_ahead([*keys, *ahead.keys], ahead.shards, ahead.workers)
        slot = getattr(keys, "slot", None)
        if slot is None or self.shared is None:
            return [self[k] for k in keys]
        if self.targets != "device":
            return self.shared.write(slot, [self[k] for k in keys])
        for out, key in zip(self.shared.views(slot, len(keys)), keys, strict=True):
            epoch, i = key if isinstance(key, tuple) else (0, key)
            self._fill(epoch, i, out)
        return SlotRef(slot, len(keys))

    def read_ahead(self, keys: list[Any], shards: int, workers: int) -> None:
        """A bucket store's (and teacher cache's) shard files for samples ``keys``, read next in this order, fetched
        ahead in a background thread, at most ``shards`` files (:func:`leve.store.cachedread.read_ahead`);
        nothing for local files."""
        split, cache = self._open()
        sources = [(s.path, s.name) for s in (split, cache) if s is not None and "://" in s.path]
        if sources:
            from leve.store.cachedread import read_ahead

            read_ahead(sources, [k[1] if isinstance(k, tuple) else int(k) for k in keys], shards, workers)

    def _has_depth(self, split: Split, i: int) -> bool:
        return split.has_depth and (self.labelled is None or bool(self.labelled[i]))

    def _rgb(self, split: Split, i: int) -> np.ndarray:
        if self.decode == "draft":
            return split.rgb_draft(i, self.size)
        h, w = split.size(i)
        return split.rgb(i)[:h, :w]

    def empty_item(self) -> Item:
        """Uninitialised tensors shaped like every item (nothing is read): the RGB at ``size``; depth
        (float32) and teacher map at ``size`` (float32) or, with ``targets: device``, at the stored size
        (the teacher's float16, as cached) with the ``flip`` flag; the index and ``has_depth``."""
        split, cache = self._open()
        device = self.targets == "device"
        maps = split.size(0) if device else self.size  # device: every sample has one size (see __init__)
        item = {"rgb": torch.empty((3, *self.size), dtype=torch.uint8 if self.rgb_uint8 else torch.float32),
                "depth": torch.empty((1, *maps), dtype=torch.float32)}
        if cache is not None:
            item["teacher"] = torch.empty((1, *maps), dtype=torch.float16 if device else torch.float32)
        if self.local_crops:
            h, w = cache.crop_size
            item["crops"] = torch.empty((cache.crops, h, w), dtype=torch.float16 if device else torch.float32)
            item["boxes"] = torch.empty((cache.crops, 4), dtype=torch.float32)
        if device:
            item["flip"] = torch.empty((), dtype=torch.bool)
        return {**item, "index": torch.empty((), dtype=torch.int64), "has_depth": torch.empty((), dtype=torch.bool)}

    def _fill(self, epoch: int, i: int, out: Item) -> None:
        """Sample ``i`` with ``targets: device`` written into ``out``: the RGB at ``size`` (augmented),
        depth (float32) and teacher map (float16, as cached) at the stored size, unflipped, decoded
        straight into ``out``'s memory, the flip drawn for them, the index and ``has_depth``."""
        split, cache = self._open()
        has_depth = self._has_depth(split, i)
        head = {"rgb": (resize_rgb_uint8 if self.rgb_uint8 else resize_rgb)(self._rgb(split, i), self.size),
                "flip": torch.tensor(False)}
        if self.augment is not None:
            head = augment(head, np.random.default_rng([self.seed, epoch, i]), self.augment)
        out["rgb"].copy_(head["rgb"])
        out["flip"].fill_(bool(head["flip"]))
        if has_depth:
            split.depth(i, out=out["depth"][0].numpy())
        else:
            out["depth"].zero_()
        if cache is not None:
            cache.disparity(i, np.float16, out=out["teacher"][0].numpy())
        if self.local_crops:
            cache.crop_maps(i, out=out["crops"].numpy())
            out["boxes"].copy_(normalised_boxes(cache.crop_boxes(i), *split.size(i)))
        out["index"].fill_(i)
        out["has_depth"].fill_(has_depth)


def _one_size(split: Split) -> bool:
    """Whether every sample of ``split`` has the same (height, width)."""
    meta = split.meta
    return not {"height", "width"} <= set(meta.columns) or bool(meta["height"].nunique() <= 1
                                                                and meta["width"].nunique() <= 1)


def labelled_samples(n: int, fraction: float, seed: int) -> np.ndarray:
    """Which of ``n`` samples keep their depth: the first ``round(fraction * n)`` indices (at least
    one when ``fraction > 0``) of a permutation drawn from ``seed`` alone; one bool per sample. A
    smaller fraction keeps a subset of a larger one's samples."""
    k = min(n, max(round(fraction * n), 1 if fraction > 0 else 0))
    keep = np.zeros(n, dtype=bool)
    keep[np.random.default_rng(seed).permutation(n)[:k]] = True
    return keep


class EpochBatchSampler(torch.utils.data.Sampler[list[tuple[int, int]]]):
    """Per epoch seeded permutations cut into global batches of ``global_batch`` samples
    (``n // global_batch`` batches, the last partial one dropped); process ``rank`` of ``world``
    takes the ``rank``-th contiguous slice of each. ``start`` skips already-trained batches (resume).

    Few labels (``train.labels``): ``pool`` (indices; None: all ``n``) is where the batches are
    drawn from, cycled through as many permutations as an epoch needs, so an epoch keeps its
    ``n // global_batch`` batches; ``extra`` more samples per global batch come from ``extra_pool``
    the same way (the unlabelled samples, for the KD term alone)."""

    def __init__(self, n: int, global_batch: int, rank: int = 0, world: int = 1, *, seed: int,
                 pool: np.ndarray | None = None, extra_pool: np.ndarray | None = None, extra: int = 0) -> None:
        if global_batch % world or extra % world:
            raise ValueError(f"global batch {global_batch} (+{extra}) does not split over {world} processes")
        if extra and (extra_pool is None or not len(extra_pool)):
            raise ValueError("extra samples per batch need a non-empty extra_pool")
        self.n, self.global_batch, self.rank, self.world, self.seed = n, global_batch, rank, world, seed
        self.pool = None if pool is None else np.asarray(pool, dtype=np.int64)
        self.extra_pool = None if extra_pool is None else np.asarray(extra_pool, dtype=np.int64)
        self.extra = extra
        self.epoch, self.start = 0, 0

    def set_position(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def batches_per_epoch(self) -> int:
        return self.n // self.global_batch

    @property
    def rank_batch_size(self) -> int:
        """Samples in each batch of this process: its share of the global batch and of the extras."""
        return (self.global_batch + self.extra) // self.world

    def __len__(self) -> int:
        return self.batches_per_epoch() - self.start

    @staticmethod
    def _cycle(pool: np.ndarray | None, n: int, count: int, g: torch.Generator) -> list[int]:
        """``count`` indices: permutations of ``pool`` (of ``range(n)`` when None) one after another."""
        size = n if pool is None else len(pool)
        order: list[int] = []
        while len(order) < count:
            perm = torch.randperm(size, generator=g).tolist()
            order += perm if pool is None else pool[perm].tolist()
        return order

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        batches = self.batches_per_epoch()
        order = self._cycle(self.pool, self.n, batches * self.global_batch, g)
        more = self._cycle(self.extra_pool, self.n, batches * self.extra, g) if self.extra else []
        per_rank, extra_per_rank = self.global_batch // self.world, self.extra // self.world
        for b in range(self.start, batches):
            first = b * self.global_batch + self.rank * per_rank
            first_extra = b * self.extra + self.rank * extra_per_rank
            picked = order[first : first + per_rank] + more[first_extra : first_extra + extra_per_rank]
            yield [(self.epoch, i) for i in picked]


def collate(items: list[Item]) -> Item:
    """Stack the items' tensors key by key; in a DataLoader worker straight into shared memory
    (torch's ``default_collate``), so the batch crosses to the main process without another copy."""
    return {k: torch.utils.data.default_collate([it[k] for it in items]) for k in items[0]}
