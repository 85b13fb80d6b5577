"""Building the teacher cache: ``data/teacher/<dataset>.zarr/<split>/`` aligned 1:1 with a dataset split.

Layout of one split group::

    disparity   (N, H, W) float16 in [0, 1], padded to the dataset split's array H, W
    raw_min     (N,) float32  minimum of the raw post-processed map (before clipping)
    raw_max     (N,) float32  maximum of the raw map: raw = disparity * raw_max where raw >= 0
    zero        (N,) bool     the raw map had no positive value (stored as zeros)

A metric teacher's cache (``depth_kind: metric`` in its attrs, with ``units`` and the teacher's
``max_depth``) has the same layout: its raw map is the teacher's inverse depth in 1/m, so ``raw_max``
keeps the scale and depth in metres is ``1 / (disparity * raw_max)``
(:meth:`~leve.teacher.cache.read.TeacherCache.depth`). A relative cache's attrs are as before; a cache
without ``depth_kind`` is relative.

With ``teacher.tta: flip`` ``disparity`` (and its statistics) is the flip-averaged map, what
training distils from, and the image's own map is kept beside it, normalised the same way:
``disparity_plain`` with ``plain_raw_min``, ``plain_raw_max``, ``plain_zero``; evaluation scores
the average or the plain map as its protocol treats the student (``eval.flip``).

With ``teacher.crops: K > 0`` the split also holds K local crops per image and the teacher's map of each
(``crops/disparity``, ``crops/boxes``; :mod:`leve.teacher.cache.crops`), checksummed and verified as the
other arrays are; ``K = 0`` writes the cache exactly as before crops.
    attrs       teacher identity, preprocessing, resize mode, normalisation, dtype, leve
                version, dataset identity (name, fingerprint, split, length), ``complete``

A split is built in ``<path>.<split>.partial`` with the block machinery of
:mod:`leve.store` (one shard per block, a progress record per block), by one process
or by several shards that take disjoint blocks. Whoever finds every block done gathers
the per-sample statistics, marks the split complete and moves it into the final store, so
the final store only ever holds complete splits.

A cache at a URL (``s3://bucket/prefix/<dataset>.zarr``) is written by :mod:`leve.teacher.cache.bucket`:
each shard stages its blocks in the bucket, and the last to finish publishes the split with a manifest.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
import warnings
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import zarr

from leve import __version__
from leve.errors import LeveError
from leve.processes import DiesWithParent, exclusive_writer
from leve.progress import console, progress_bar
from leve.store.builder import SplitWriter, StoreBuilder
from leve.store.format import ArraySpec, SplitSpec, fingerprint
from leve.store.reader import Split, Store, disk_usage, open_store
from leve.store.remote import location
from leve.teacher.cache.crops import CROPS_BOXES, CROPS_DISPARITY, crop_boxes, crop_map_size, crops_identity
from leve.teacher.cache.read import CACHE_FORMAT, CACHE_META, METRIC_UNITS, PLAIN, PLAIN_META, dataset_identity
from leve.teacher.infer import METRIC_NORMALISATION, NORMALISATION, RESIZE_MODE, TeacherRunner, normalise
from leve.teacher.loading import Teacher
from leve.teacher.preprocess import Preprocessing

# The maps' codec: byte-shuffled LZ4-HC, level 3. On the embedded teacher's float16 maps of rendered
# 480x640 rooms (one core): 0.33x of the raw bytes, decoded in 0.15 ms and written at 162 maps per CPU
# second; shuffled zstd (before it) kept 0.31x but decoded in 0.41 ms, a training loader worker's largest
# read; plain zstd 0.38x in 0.65 ms.
CODEC = "blosc-lz4hc-shuffle"

# --------------------------------------------------------------------------- sharding


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"I/N"`` -> (I, N); ``None`` -> the torchrun RANK/WORLD_SIZE, else (0, 1)."""
    if text is None:
        rank, world = os.environ.get("RANK"), os.environ.get("WORLD_SIZE")
        if rank is not None and world is not None:
            return _check_shard(int(rank), int(world), f"RANK={rank} WORLD_SIZE={world}")
        return 0, 1
    index, sep, count = str(text).partition("/")
    try:
        return _check_shard(int(index), int(count), text)
    except ValueError:
        raise LeveError(f"--shard expects I/N with 0 <= I < N, got '{text}'") from None


def _check_shard(index: int, count: int, text: str) -> tuple[int, int]:
    if count < 1 or not 0 <= index < count:
        raise LeveError(f"--shard expects I/N with 0 <= I < N, got '{text}'")
    return index, count


# --------------------------------------------------------------------------- identity


def cache_identity(teacher: Teacher, dataset: dict[str, Any], amp: str, tta: str,
                   preprocess_on_device: bool = False, *, crops: int) -> dict[str, Any]:
    """What identifies a cached split: teacher, preprocessing, normalisation, dataset; ``crops`` (K > 0)
    adds the local crops' entry (:func:`~leve.teacher.cache.crops.crops_identity`), K = 0 nothing."""
    local = {"crops": crops_identity(crops, dataset["array_shape"])} if crops > 0 else {}
    plain = {"plain": f"{PLAIN}: the image's own map beside the flip average"} if tta == "flip" else {}
    metric = teacher.depth_kind == "metric"
    kind = {"depth_kind": "metric", "units": METRIC_UNITS, "max_depth": teacher.max_depth} if metric else {}
    return {
        "format": CACHE_FORMAT,
        "teacher": teacher.identity(),
        **kind,
        "preprocessing": teacher.preprocessing.describe(on_device=preprocess_on_device),
        "resize_mode": RESIZE_MODE,
        "normalisation": METRIC_NORMALISATION if metric else NORMALISATION,
        "dtype": "float16",
        "compute_dtype": amp,
        "tta": tta,
        **plain,
        **local,
        "dataset": dataset,
    }


def _identity_fingerprint(identity: dict[str, Any]) -> str:
    stable = {**identity, "dataset": {k: v for k, v in identity["dataset"].items() if k != "path"}}
    return fingerprint(stable)


# --------------------------------------------------------------------------- building


@dataclass
class CacheResult:
    path: Path | str  # a local cache's folder, or its URL
    split: str
    samples: int
    written: int
    seconds: float
    bytes: int = 0
    complete: bool = False
    up_to_date: bool = False
    shard: tuple[int, int] = (0, 1)
    pending_elsewhere: int = 0
    licence: str = ""
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        where = f"{self.path}/{self.split}"
        if self.up_to_date:
            return f"{where}: up to date ({self.samples} images)"
        rate = self.written / self.seconds if self.seconds > 0 else float("nan")
        shard = f" [shard {self.shard[0]}/{self.shard[1]}]" if self.shard[1] > 1 else ""
        head = f"{where}{shard}: {self.written} images in {self.seconds:.1f} s ({rate:.2f} images/s)"
        if self.complete:
            return f"{head}; complete, {self.samples} images, {self.bytes / 1e6:.1f} MB"
        if self.notes:
            return f"{head}; {'; '.join(self.notes)}"
        return f"{head}; {self.pending_elsewhere} block(s) left to other shards (the last one completes it)"


Crops = list[tuple[np.ndarray, np.ndarray]]  # per local crop: its box, its image resized by the processor


class _Images(torch.utils.data.Dataset):
    """Sample i -> (i, (3, h, w) uint8 resized as the teacher's processor does; with ``resize`` False
    at its stored size, for the runner to resize on its device; its ``crops`` local crops: per crop the
    box (:func:`~leve.teacher.cache.crops.crop_boxes`) and the cropped image resized by the processor)."""

    def __init__(self, split: Split, preprocessing: Preprocessing, resize: bool, crops: int) -> None:
        self.split = split
        self.preprocessing = preprocessing
        self.resize = resize
        self.crops = crops

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> tuple[int, torch.Tensor, Crops]:
        rgb = self.split.rgb(i)
        local: Crops = []
        if self.crops > 0:
            h, w = self.split.size(i)
            for x0, y0, x1, y1 in crop_boxes(i, h, w, self.crops):
                box = np.array([x0, y0, x1, y1], np.int32)
                local.append((box, self.preprocessing.resize(np.ascontiguousarray(rgb[y0:y1, x0:x1]))))
        return i, torch.from_numpy(self.preprocessing.host_input(rgb, on_device=not self.resize)), local


def _collate(items: list[tuple[int, torch.Tensor, Crops]]) -> tuple[list[int], torch.Tensor, list[Crops]]:
    return [i for i, _, _ in items], torch.stack([t for _, t, _ in items]), [c for _, _, c in items]


def crop_maps(runner: TeacherRunner, crops: list[Crops], size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The teacher's maps of a batch's local crops: (B, K, h, w) float16 at ``size``, each normalised as a
    global map is (:func:`~leve.teacher.infer.normalise`), and their (B, K, 4) int32 boxes. Crops of one
    processor size run as one batch."""
    count = len(crops[0])
    maps = np.zeros((len(crops), count, *size), np.float16)
    boxes = np.zeros((len(crops), count, 4), np.int32)
    groups: dict[tuple[int, ...], list[tuple[int, int]]] = defaultdict(list)
    for b, local in enumerate(crops):
        for k, (box, image) in enumerate(local):
            boxes[b, k] = box
            groups[image.shape].append((b, k))
    for where in groups.values():
        images = torch.from_numpy(np.stack([crops[b][k][1] for b, k in where]))
        out = normalise(runner.raw_views(images, size, resized=True)[0])
        for n, (b, k) in enumerate(where):
            maps[b, k] = out.disparity[n]
    return maps, boxes


def plan_batches(split: Split, blocks: list[range], batch_size: int) -> list[list[int]]:
    """Batches of equal true image size, block by block (so each block completes in turn)."""
    batches: list[list[int]] = []
    for rows in blocks:
        groups: dict[tuple[int, int], list[int]] = defaultdict(list)
        for i in rows:
            groups[split.size(i)].append(i)
        for indices in groups.values():
            batches.extend(indices[k : k + batch_size] for k in range(0, len(indices), batch_size))
    return batches


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An exclusive lock between shard processes (a no-op where fcntl is unavailable)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def split_is_current(out: Path, split: str, identity_fp: str) -> bool:
    try:
        attrs = dict(zarr.open_group(str(out), mode="r")[split].attrs)
    except Exception:
        return False
    return bool(attrs.get("complete")) and attrs.get("identity_fingerprint") == identity_fp


def build_teacher_cache(
    dataset_path: str | Path,
    out_path: str | Path,
    split: str,
    teacher: Teacher,
    *,
    batch_size: int,
    device: str,
    amp: str,
    tta: str,
    workers: int,
    block_size: int,
    shard: tuple[int, int] = (0, 1),
    force: bool = False,
    show_progress: bool = True,
    max_blocks: int | None = None,
    crops: int | None = None,
) -> CacheResult:
    """Cache the teacher's maps for one dataset split (this shard's blocks; completes when all are done).

    ``crops``: local crops per image (``teacher.crops``; 0: none), their maps cached beside the global one.
    Left out (callers written before crops existed), it means 0, with a one-line DeprecationWarning.

    ``max_blocks`` stops after that many blocks of this shard (used to test resumption).
    """
    store = open_store(dataset_path)
    data = store.split(split)
    runner = TeacherRunner(teacher, device=device, amp=amp, tta=tta)
    if crops is None:
        warnings.warn("build_teacher_cache() without crops= is deprecated: pass crops=0 (teacher.crops) for no "
                      "local crops", DeprecationWarning, stacklevel=2)
        crops = 0
    if crops < 0:
        raise LeveError(f"teacher.crops must be >= 0, got {crops}")
    identity = cache_identity(teacher, dataset_identity(store, data), runner.amp, tta, runner.preprocess == "device",
                              crops=crops)
    identity_fp = _identity_fingerprint(identity)
    n = len(data)
    where = location(out_path)  # a URL is never a local path (no folder named `s3:`)
    if isinstance(where, str):  # a bucket: staged blocks, then a manifest (leve.teacher.cache.bucket)
        return _build_in_bucket(where, runner, data, _split_spec(split, n, identity, identity_fp, tta, crops),
                                block_size=block_size, shard=shard, force=force, max_blocks=max_blocks,
                                batch_size=batch_size, workers=workers, show_progress=show_progress, crops=crops)
    out = where
    if not force and split_is_current(out, split, identity_fp):
        return CacheResult(out, split, n, 0, 0.0, disk_usage(out / split)[0], True, True, shard)
    staging = out.with_name(f"{out.name}.{split}")
    lock = out.with_name(f"{out.name}.{split}.lock")
    spec = _split_spec(split, n, identity, identity_fp, tta, crops)
    # one process per shard (two would write the same blocks, or --force would delete the other's work)
    with exclusive_writer(out / split, lock=out.with_name(f"{out.name}.{split}.{shard[0]}-of-{shard[1]}.lock")):
        with _lock(lock):
            if force and shard[1] == 1:
                shutil.rmtree(staging.with_name(staging.name + ".partial"), ignore_errors=True)
            builder = StoreBuilder(staging, {"kind": "teacher-cache-staging"}, identity_fp, block_size=block_size,
                                   exclusive=False)  # shared by the shards; `lock` coordinates them
            writer = builder.split(spec)
        mine = [b for b in writer.pending_blocks() if b % shard[1] == shard[0]]
        if max_blocks is not None:
            mine = mine[:max_blocks]
        done = writer.n_blocks - len(writer.pending_blocks())
        if builder.resumed and done:
            console.print(f"resuming {builder.partial}: {done} of {writer.n_blocks} block(s) already done")
        written, seconds = _run_blocks(runner, data, writer, mine, batch_size, workers, show_progress, crops)
        result = CacheResult(out, split, n, written, seconds, shard=shard, licence=teacher.licence)
        with _lock(lock):
            if not builder.partial.exists():  # another shard finished it meanwhile
                result.complete = split_is_current(out, split, identity_fp)
                return result
            left = writer.pending_blocks()
            if left:
                result.pending_elsewhere = len(left)
                return result
            _finalize_split(builder, writer, out, store)
        result.complete = True
        result.bytes = disk_usage(out / split)[0]
        return result


def _split_spec(split: str, n: int, identity: dict[str, Any], identity_fp: str, tta: str, crops: int) -> SplitSpec:
    """The arrays, statistics and attributes of one cached split."""
    height, width = identity["dataset"]["array_shape"]
    names = ["disparity", PLAIN] if tta == "flip" else ["disparity"]
    arrays = {k: ArraySpec((height, width), "float16", CODEC) for k in names}
    if crops > 0:
        arrays[CROPS_DISPARITY] = ArraySpec((crops, *crop_map_size((height, width))), "float16", CODEC)
        arrays[CROPS_BOXES] = ArraySpec((crops, 4), "int32", "zstd")
    return SplitSpec(
        name=split,
        length=n,
        arrays=arrays,
        meta={**CACHE_META, **(PLAIN_META if tta == "flip" else {})},
        attrs={**identity, "identity_fingerprint": identity_fp, "leve_version": __version__},
        meta_group="",
    )


def _build_in_bucket(url: str, runner: TeacherRunner, data: Split, spec: SplitSpec, *, block_size: int,
                     shard: tuple[int, int], force: bool, max_blocks: int | None, batch_size: int, workers: int,
                     show_progress: bool, crops: int) -> CacheResult:
    """This shard's part of the cache at a URL (:mod:`leve.teacher.cache.bucket`)."""
    from leve.teacher.cache.bucket import build_in_bucket

    def run(writer: SplitWriter, blocks: list[int]) -> tuple[int, float]:
        return _run_blocks(runner, data, writer, blocks, batch_size, workers, show_progress, crops)

    done = build_in_bucket(url, spec, str(spec.attrs["identity_fingerprint"]), block_size=block_size, shard=shard,
                           force=force, max_blocks=max_blocks, run=run)
    return CacheResult(url, spec.name, spec.length, done.written, done.seconds, done.bytes, done.complete,
                       done.up_to_date, shard, done.pending_elsewhere, runner.teacher.licence, done.notes)


def _run_blocks(
    runner: TeacherRunner,
    data: Split,
    writer: SplitWriter,
    blocks: list[int],
    batch_size: int,
    workers: int,
    show_progress: bool,
    crops: int,
) -> tuple[int, float]:
    """Run the teacher over ``blocks`` (and each image's ``crops`` local crops) and write each block as soon
    as it is whole."""
    ranges = {b: writer.block_range(b) for b in blocks}
    batches = plan_batches(data, list(ranges.values()), max(int(batch_size), 1))
    total = sum(len(r) for r in ranges.values())
    if not total:
        return 0, 0.0
    loader = torch.utils.data.DataLoader(
        _Images(data, runner.teacher.preprocessing, resize=runner.preprocess == "workers", crops=crops),
        batch_sampler=batches,
        num_workers=max(int(workers), 0),
        collate_fn=_collate,
        pin_memory=runner.cuda,
        prefetch_factor=4 if workers > 0 else None,
        worker_init_fn=DiesWithParent(),  # no worker outlives this process, however it ends
    )
    block_of = {i: b for b, r in ranges.items() for i in r}
    buffers: dict[int, dict[str, Any]] = {}
    start = time.perf_counter()
    with progress_bar(show_progress) as bar:
        task = bar.add_task(f"teacher {data.name}", total=total)
        for indices, images, local in loader:
            out = runner.predict(images, data.size(indices[0]), first_index=indices[0])
            if crops > 0:
                maps, boxes = crop_maps(runner, local, crop_map_size(data.array_shape))
            for k, i in enumerate(indices):
                b = block_of[i]
                buf = buffers.setdefault(b, _new_buffer(ranges[b], writer.spec))
                if crops > 0:
                    buf["arrays"][CROPS_DISPARITY][i - ranges[b].start] = maps[k]
                    buf["arrays"][CROPS_BOXES][i - ranges[b].start] = boxes[k]
                _put(buf, i - ranges[b].start, out, k)
                if buf["left"] == 0:
                    writer.write_block(b, buf["arrays"], buf["meta"])
                    del buffers[b]
            bar.advance(task, len(indices))
    return total, time.perf_counter() - start


def _new_buffer(rows: range, spec: SplitSpec) -> dict[str, Any]:
    n = len(rows)
    return {
        "arrays": {k: np.zeros((n, *a.tail), a.dtype) for k, a in spec.arrays.items()},
        "meta": {k: [False if dtype == "bool" else 0.0] * n for k, dtype in spec.meta.items()},
        "left": n,
    }


def _put(buf: dict[str, Any], row: int, out: Any, k: int) -> None:
    """Sample ``k`` of ``out`` (a :class:`~leve.teacher.infer.Normalised`) into row ``row`` of the block."""
    parts = [("disparity", "", out)] + ([(PLAIN, "plain_", out.plain)] if PLAIN in buf["arrays"] else [])
    for array, prefix, maps in parts:
        h, w = maps.disparity.shape[1:]
        buf["arrays"][array][row, :h, :w] = maps.disparity[k]
        buf["meta"][f"{prefix}raw_min"][row] = float(maps.raw_min[k])
        buf["meta"][f"{prefix}raw_max"][row] = float(maps.raw_max[k])
        buf["meta"][f"{prefix}zero"][row] = bool(maps.zero[k])
    buf["left"] -= 1


def _finalize_split(builder: StoreBuilder, writer: SplitWriter, out: Path, store: Store) -> None:
    """Gather statistics, mark the split complete (last) and move it into the final store."""
    root = zarr.open_group(str(out), mode="a")
    root.attrs.update(
        {"kind": "teacher-cache", "dataset": store.attrs.get("dataset"), "leve_version": __version__, "complete": True}
    )
    builder.publish_split(writer, out / writer.spec.name)


