"""``leve bench train``: what a training step costs with and without the teacher, and whether
the data loader keeps up.

1. Seconds per step (fetch the batch in the main process + the real training step of
   ``leve train``), side by side in one process, interleaved in rotating order:
   ``plain`` (eps = 0, no cache read), ``kd_cache`` (eps = 0.25, teacher maps read from the
   cache) and ``kd_online`` (eps = 0.25, the thesis's way: the teacher, real-size
   Depth-Anything Small with random weights, runs on every batch). Goal: kd_cache / plain <= 1.05.
2. Loader throughput with the default workers (in all and per worker) against the model's
   training rate on batches already in memory: the model never waits when the loader is faster.
   As ``leve train`` loads (batches written into shared memory allocated once; depth and teacher
   maps resized on the device), beside the same loader with torch's collation and with the maps
   resized in the workers, and where a worker's time goes (ms per sample, part by part).
3. The same loader per worker from an ``rgb_codec: jpeg`` store, decoding in full and at
   libjpeg's reduced DCT scale (``decode: draft``), side by side.
4. What checking every chunk's crc32c costs on the training read path (store format 2): a loader
   worker's CPU time per sample with the checks and without, side by side in one process.
   Goal: checked / unchecked <= 1.05.
Store: NYU-sized 480x640 samples, resized to the training resolution as in ``leve train``.

With ``--source s3://.../x.zarr`` (:func:`bucket_bench`) it measures instead the training loader on a bucket
store, through the read-through cache, against the same loader on its local copy in the same run, epoch by
epoch (goal: >= 0.9x from the second epoch on; the first epoch reported too).
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from leve.bench import report_header
from leve.bench.bucket_io import bucket_twin, compare, epoch_order, take_turns
from leve.bench.teacher import NYU_SIZE, make_nyu_like_store, make_store
from leve.datasets.nyu import MAX_DEPTH
from leve.device import resolve_device
from leve.errors import LeveError
from leve.models.registry import create_model
from leve.processes import DiesWithParent
from leve.store.reader import open_split
from leve.teacher.cache.build import build_teacher_cache
from leve.teacher.infer import TeacherRunner
from leve.teacher.loading import load_teacher
from leve.train.batches import PREFETCH, SharedBatchLoader
from leve.train.config import AugmentConfig
from leve.train.data import DepthDataset, collate
from leve.train.losses import LossOptions
from leve.train.step import Batch, StepRunner

KD_EPS = 0.25


def _runner(device: torch.device, eps: float) -> StepRunner:
    torch.manual_seed(0)
    model = create_model("leve", max_depth=MAX_DEPTH).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    amp = "bfloat16" if device.type == "cuda" else "float32"
    return StepRunner(model, optimizer, None, device, MAX_DEPTH, eps=eps, kd_loss="l1", accumulate=1, amp=amp,
                      channels_last=True, options=LossOptions(ssim="leve", invalid="mask", kd_norm="image"))


def _fetch(dataset: DepthDataset, indices: list[int]) -> Batch:
    return collate([dataset[(0, i)] for i in indices])


class OnlineTeacher:
    """The teacher run on the batch at step time (preprocess the stored image, predict, resize)."""

    def __init__(self, runner: TeacherRunner, store: Path, size: tuple[int, int]) -> None:
        self.runner, self.split, self.size = runner, open_split(store, "train"), size

    def __call__(self, indices: list[int]) -> torch.Tensor:
        prep = self.runner.teacher.preprocessing
        on_device = self.runner.preprocess == "device"
        images = torch.from_numpy(np.stack([prep.host_input(self.split.rgb(i), on_device) for i in indices]))
        maps = torch.from_numpy(self.runner.predict(images, self.split.size(indices[0])).disparity).float()[:, None]
        return F.interpolate(maps, size=self.size, mode="bilinear", align_corners=False)


def step_times(variants: dict[str, Callable[[int], None]], steps: int) -> dict[str, list[float]]:
    """Run each variant ``steps + 1`` times in rotating order; the first round is warm-up."""
    times: dict[str, list[float]] = {k: [] for k in variants}
    order = list(variants)
    for k in range(steps + 1):
        for name in order[k % len(order):] + order[: k % len(order)]:
            t0 = time.perf_counter()
            variants[name](k)
            if k:
                times[name].append(time.perf_counter() - t0)
    return times


def _variants(store: Path, cache: Path, online: OnlineTeacher, batch_size: int, size: tuple[int, int],
              device: torch.device) -> dict[str, Callable[[int], None]]:
    n = len(open_split(store, "train"))
    plain_data = DepthDataset(store, "train", size, augment=AugmentConfig(), seed=0, decode="full", rgb_uint8=True,
                              targets="device")
    kd_data = DepthDataset(store, "train", size, teacher=cache, augment=AugmentConfig(), seed=0, decode="full",
                           rgb_uint8=True, targets="device")
    runners = {"plain": _runner(device, 0.0), "kd_cache": _runner(device, KD_EPS), "kd_online": _runner(device, KD_EPS)}

    def indices(k: int) -> list[int]:
        return [(k * batch_size + j) % n for j in range(batch_size)]

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def plain(k: int) -> None:
        runners["plain"].step(_fetch(plain_data, indices(k)))
        sync()

    def kd_cache(k: int) -> None:
        runners["kd_cache"].step(_fetch(kd_data, indices(k)))
        sync()

    def kd_online(k: int) -> None:
        batch = _fetch(plain_data, indices(k))
        batch["teacher"] = online(indices(k))
        runners["kd_online"].step(batch)
        sync()

    return {"plain": plain, "kd_cache": kd_cache, "kd_online": kd_online}


def _children_cpu() -> float:
    t = os.times()
    return t.children_user + t.children_system


def _loader_pass(data: DepthDataset, batch_size: int, workers: int, batches: int, pin_memory: bool,
                 transfer: str) -> tuple[float, float, float]:
    """One pass of ``batches`` batches (workers started and joined): the CPU seconds of the loading
    processes (the workers, counted once they have exited; the main process without workers), and the
    main process's CPU and wall seconds after the first batch (receiving the others)."""
    n = len(data)
    sampler = [[(0, (b * batch_size + j) % n) for j in range(batch_size)] for b in range(batches)]
    cpu0, main0 = _children_cpu(), time.process_time()
    loader: Any
    if transfer == "shared":  # not persistent: the workers exit with the pass, so their CPU time is counted
        loader = SharedBatchLoader(data, sampler, batch_size, workers, persistent_workers=False,
                                   worker_init_fn=DiesWithParent())
    else:
        loader = torch.utils.data.DataLoader(data, batch_sampler=sampler, num_workers=workers, collate_fn=collate,
                                             pin_memory=pin_memory, prefetch_factor=PREFETCH if workers else None,
                                             worker_init_fn=DiesWithParent())
    it = iter(loader)
    next(it)  # start the workers
    t0, receive0 = time.perf_counter(), time.process_time()
    for _ in it:
        pass
    wall, receive = time.perf_counter() - t0, time.process_time() - receive0
    del it, loader  # the exhausted iterator has joined its workers
    return (_children_cpu() - cpu0 if workers else time.process_time() - main0), receive, wall


def loader_rate(data: DepthDataset, batch_size: int, workers: int, batches: int, pin_memory: bool = False,
                transfer: str = "shared") -> dict[str, float]:
    """The training loader's steady rate: a pass of ``batches + 1`` batches minus a pass of one (the
    workers' start-up, the loader's set-up). ``transfer``: ``shared``, as ``leve train`` builds it
    (:class:`leve.train.batches.SharedBatchLoader`: batches written into shared memory allocated once), or
    ``collate``, torch's own way (each batch collated into new shared memory, prefetch 4, pinned memory on
    CUDA). ``samples_per_s``: wall clock after the first batch; ``samples_per_cpu_s``: samples per CPU
    second of the loading processes, the rate of one worker given a whole core whatever else shares the
    machine; ``main_cpu_ms_per_sample``: what the training process spends receiving them (with workers)."""
    one = _loader_pass(data, batch_size, workers, 1, pin_memory, transfer)
    full = _loader_pass(data, batch_size, workers, batches + 1, pin_memory, transfer)
    samples = batches * batch_size
    return {"samples_per_s": samples / max(full[2], 1e-9),
            "samples_per_cpu_s": samples / max(full[0] - one[0], 1e-9),
            "main_cpu_ms_per_sample": full[1] * 1000 / samples}


def loader_vs_model(store: Path, cache: Path, batch_size: int, size: tuple[int, int], workers: int,
                    device: torch.device, batches: int, decode: str = "full", loader_batches: int = 40) -> dict[str, Any]:
    """Samples/s of the DataLoader alone (KD from the cache, ``workers`` processes; per worker too)
    as ``leve train`` builds it (shared batches; depth and teacher maps resized on the device), beside
    the same loader with torch's collation (``collate``), with the maps resized in the workers
    (``worker``) and as it was before this work (``before``: all three, and float RGB; today's readers
    and codecs), two interleaved rounds each, the best kept; and of the training step alone on a batch already in
    memory, the device-side resize included (``batches`` steps; ``loader_batches`` batches: two dozen
    or more, or the workers' start-up weighs on their CPU time)."""
    def dataset(targets: str, rgb_uint8: bool = True) -> DepthDataset:
        return DepthDataset(store, "train", size, teacher=cache, augment=AugmentConfig(), seed=0, decode=decode,
                            rgb_uint8=rgb_uint8, targets=targets)

    # name: (targets, transfer, uint8 RGB); "before": the loader before this work (commit 271d170)
    ways = {"train": ("device", "shared", True), "collate": ("device", "collate", True),
            "worker": ("worker", "shared", True), "before": ("worker", "collate", False)}
    rounds: dict[str, list[dict[str, float]]] = {name: [] for name in ways}
    for _ in range(2):
        for name, (targets, transfer, uint8) in ways.items():
            rounds[name].append(loader_rate(dataset(targets, uint8), batch_size, workers, loader_batches,
                                            pin_memory=device.type == "cuda", transfer=transfer))
    best = {k: max(v, key=lambda r: r["samples_per_cpu_s"]) for k, v in rounds.items()}
    rate, data = best["train"], dataset("device")
    runner, batch = _runner(device, KD_EPS), _fetch(data, list(range(batch_size)))
    runner.step(batch)
    t0 = time.perf_counter()
    for _ in range(batches):
        runner.step(batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    model_rate = batches * batch_size / (time.perf_counter() - t0)
    return {"workers": workers, "batches": batches, "loader_batches": loader_batches, "decode": decode,
            "targets": "resized on the training device", "transfer": "shared batches (leve.train.batches)",
            "loader_samples_per_s": round(rate["samples_per_s"], 2),
            "loader_samples_per_s_per_worker": round(rate["samples_per_s"] / max(workers, 1), 2),
            "loader_samples_per_cpu_s": round(rate["samples_per_cpu_s"], 2),
            "main_cpu_ms_per_sample": round(rate["main_cpu_ms_per_sample"], 3),
            "collate_samples_per_cpu_s": round(best["collate"]["samples_per_cpu_s"], 2),
            "collate_main_cpu_ms_per_sample": round(best["collate"]["main_cpu_ms_per_sample"], 3),
            "shared_over_collate": round(rate["samples_per_cpu_s"] / best["collate"]["samples_per_cpu_s"], 3),
            "worker_targets_samples_per_cpu_s": round(best["worker"]["samples_per_cpu_s"], 2),
            "before_samples_per_cpu_s": round(best["before"]["samples_per_cpu_s"], 2),
            "before": "float RGB, depth and teacher maps resized in the workers, torch's collation, as at commit "
                      "271d170 (with today's readers and codecs)",
            "train_over_before": round(rate["samples_per_cpu_s"] / best["before"]["samples_per_cpu_s"], 3),
            "goal": "5x the per-worker rate of commit 271d170's loader, measured checkout against checkout by "
                    "docs/loader_side_by_side.py; train_over_before here is a lower bound: its before "
                    "configuration already has today's readers and teacher-cache codec",
            "device_over_worker_targets": round(rate["samples_per_cpu_s"] / best["worker"]["samples_per_cpu_s"], 3),
            "model_samples_per_s": round(model_rate, 2), "model_waits_for_data": rate["samples_per_s"] < model_rate,
            "worker_ms_per_sample": worker_profile(data, batch_size),
            "checksums": checksum_cost(dataset("device"), batch_size)}


def checksum_cost(data: DepthDataset, batch_size: int, rounds: int = 9) -> dict[str, Any]:
    """What checking every chunk's crc32c costs a loader worker of ``leve train``, per sample: the whole
    sample written into a shared batch (RGB read, decoded and resized; depth and teacher map decoded into
    the batch) and the three reads alone, with the direct shard readers checking each chunk's crc32c (what
    leve does) and not (``verify`` off; the shard indexes are checked either way, once per shard), side by
    side: sample by sample, the two ways in alternating order, one thread as in a worker, ``rounds`` rounds
    (the median of the rounds' ratios is kept); and the crc32c alone, each chunk's right after its read."""
    from leve.store.integrity import crc32c
    from leve.train.batches import SharedBatches, SlotKeys

    split, cache = data._open()
    n = min(len(data), 2 * batch_size)
    data.share_batches(SharedBatches(data.empty_item(), 1, 1))
    empty = data.empty_item()
    depth, teacher = empty["depth"][0].numpy(), empty["teacher"][0].numpy() if "teacher" in empty else None
    name = "rgb_jpeg" if split.rgb_codec == "jpeg" else "rgb"
    parts: dict[str, Callable[[int], Any]] = {
        "sample_into_batch": lambda i: data.__getitems__(SlotKeys([(0, i)], 0)),
        "reads": lambda i: (split.rgb_bytes(i) if name == "rgb_jpeg" else split._array("rgb", i), split.depth(i, out=depth),
                            cache.disparity(i, np.float16, out=teacher) if cache is not None else None),
    }
    readers = [r for r in (split._reader(name), split._reader("depth") if split.has_depth else None,
                           cache._fast if cache is not None else None) if r is not None]
    totals = {k: {True: [0.0] * rounds, False: [0.0] * rounds} for k in parts}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for part in parts.values():  # warm: shard indexes read, pages cached
            for i in range(n):
                part(i)
        for r in range(rounds):
            for i in range(n):
                for checked in ((True, False) if (r + i) % 2 == 0 else (False, True)):
                    for reader in readers:
                        reader.verify = checked
                    for key, part in parts.items():
                        t0 = time.process_time()
                        part(i)
                        totals[key][checked][r] += time.process_time() - t0
        crc, checked_bytes = [], 0
        for reader in readers:
            reader.verify = False
        for _ in range(rounds):  # each chunk's crc32c alone, right after its read (its bytes in cache, as in a read)
            spent = 0.0
            for reader in readers:
                for i in range(n):
                    payload = reader._chunk(i)[1]
                    t0 = time.process_time()
                    crc32c(payload)
                    spent += time.process_time() - t0
                    checked_bytes += payload.nbytes
            crc.append(spent)
    finally:
        torch.set_num_threads(threads)
        for reader in readers:
            reader.verify = True

    def ms(values: list[float]) -> float:
        return round(statistics.median(values) * 1000 / n, 3)

    def ratio(key: str) -> float:
        return round(statistics.median(c / max(u, 1e-12) for c, u in zip(totals[key][True], totals[key][False])), 3)

    crc_ms = statistics.median(crc) * 1000 / n
    sample_ms = statistics.median(totals["sample_into_batch"][False]) * 1000 / n
    return {"checked_arrays": [r.array for r in readers], "samples": n, "rounds": rounds,
            "ms_per_sample_checked": {k: ms(v[True]) for k, v in totals.items()},
            "ms_per_sample_unchecked": {k: ms(v[False]) for k, v in totals.items()},
            "sample_checked_over_unchecked": ratio("sample_into_batch"),
            "reads_checked_over_unchecked": ratio("reads"),
            "crc32c_ms_per_sample": round(crc_ms, 4),
            "crc32c_share_of_sample": round(crc_ms / max(sample_ms, 1e-9), 4),
            "bytes_checked_per_sample": checked_bytes // (rounds * n),
            "goal": "sample_checked_over_unchecked <= 1.05 (at most 5 % of a loader worker's time per sample)"}


def worker_profile(data: DepthDataset, batch_size: int, repeats: int = 3) -> dict[str, float]:
    """Where a loader worker's CPU time goes, in ms per sample, one thread as in a worker: each part of
    a sample alone (maps decoded into a buffer, as into a batch), the whole sample written into a shared
    batch (``sample_into_batch``, what a worker of ``leve train`` does per sample), torch's collation
    that the shared batches replace (``torch_collate``), and (``finish_on_device``) the targets' resize
    that ``to_device`` does on the training device, here on this CPU."""
    from leve.images import resize_rgb_uint8
    from leve.train.batches import SharedBatches, SlotKeys
    from leve.train.data import finish_targets

    split, cache = data._open()
    n, threads = min(len(data), 2 * batch_size), torch.get_num_threads()
    rgbs = [split.rgb(i) for i in range(n)]
    items = [data[(0, i)] for i in range(batch_size)]
    batch = collate(items)
    empty = data.empty_item()
    depth, teacher = empty["depth"][0].numpy(), empty["teacher"][0].numpy() if "teacher" in empty else None
    data.share_batches(SharedBatches(empty, 1, 1))
    parts: dict[str, Callable[[int], Any]] = {
        "read_rgb": lambda i: split.rgb(i) if data.decode == "full" else split.rgb_draft(i, data.size),
        "resize_rgb_uint8": lambda i: resize_rgb_uint8(rgbs[i], data.size),
        "read_depth": lambda i: split.depth(i, out=depth),
        **({"read_teacher_float16": lambda i: cache.disparity(i, np.float16, out=teacher)} if cache is not None else {}),
        "sample_into_batch": lambda i: data.__getitems__(SlotKeys([(0, i)], 0)),
        "torch_collate": lambda i: collate(items) if i % batch_size == 0 else None,
        "finish_on_device": lambda i: finish_targets(batch) if i % batch_size == 0 else None,
    }
    out = {}
    torch.set_num_threads(1)
    try:
        for name, part in parts.items():
            part(0)
            t0 = time.process_time()
            for _ in range(repeats):
                for i in range(n):
                    part(i)
            out[name] = round((time.process_time() - t0) * 1000 / (repeats * n), 3)
    finally:
        torch.set_num_threads(threads)
    return out


class SmoothJpegRGBD:
    """Picklable loader of NYU-sized samples: smooth random RGB with sensor-like noise as JPEG bytes
    (quality 90, as NYU's), positive depth."""

    def __call__(self, i: int) -> tuple[dict[str, Any], dict[str, Any]]:
        from leve.store.images import encode_jpeg

        h, w = NYU_SIZE
        rng = np.random.default_rng(i)
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        rgb = np.stack([np.sin(rng.uniform(2, 9) * xx + rng.uniform(1, 7) * yy + c) for c in range(3)], -1)
        rgb = np.clip(rgb * 100 + 128 + rng.normal(0, 4, (h, w, 3)), 0, 255).astype(np.uint8)
        depth = (1 + 8 * yy + rng.uniform(0, 0.2, (h, w))).astype(np.float32)
        return {"rgb_jpeg": encode_jpeg(rgb, 90), "depth": depth}, {"height": h, "width": w}


def jpeg_loader(tmp: Path, images: int, batch_size: int, size: tuple[int, int], workers: int,
                batches: int) -> dict[str, Any]:
    """Per-worker loader rate from an ``rgb_codec: jpeg`` store (the NYU source's own JPEG bytes),
    decoding in full (bit-equal to evaluation) and at libjpeg's reduced DCT scale (``decode: draft``),
    interleaved: two rounds each, the best kept."""
    from leve.datasets.build import SplitSource, build_store
    from leve.store.format import SplitSpec, dataset_arrays

    store = tmp / "nyu_jpeg.zarr"
    spec = SplitSpec("train", images, dataset_arrays(*NYU_SIZE, rgb_codec="jpeg"), {"height": "int32", "width": "int32"})
    build_store(store, {"dataset": "bench-jpeg"}, f"bench-jpeg-{images}", [SplitSource(spec, SmoothJpegRGBD())],
                show_progress=False)
    cache = tmp / "nyu_teacher.zarr"
    build_teacher_cache(store, cache, "train", load_teacher("tiny-random"), batch_size=4, device="cpu",
                        amp="float32", tta="none", crops=0, workers=0, block_size=64, show_progress=False)
    rates: dict[str, list[float]] = {"full": [], "draft": []}
    for _ in range(2):
        for decode in rates:
            data = DepthDataset(store, "train", size, teacher=cache, augment=AugmentConfig(), seed=0, decode=decode,
                                rgb_uint8=True, targets="device")
            rates[decode].append(loader_rate(data, batch_size, workers, batches)["samples_per_cpu_s"])
    best = {k: max(v) for k, v in rates.items()}
    return {"store": "rgb_codec: jpeg (smooth synthetic RGB, JPEG quality 90), 480x640", "workers": workers,
            "samples_per_cpu_s": {k: round(v, 2) for k, v in best.items()},
            "draft_over_full": round(best["draft"] / best["full"], 3),
            "note": "decode: draft is not bit-equal to evaluation's full decode + resize"}


def run_bench(steps: int = 3, batch_size: int = 8, size: tuple[int, int] = (240, 320), workers: int = 2,
              device: str = "auto", images: int = 32) -> dict[str, Any]:
    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    with tempfile.TemporaryDirectory() as tmp:
        store = make_store(Path(tmp) / "bench.zarr", max(images, 2 * batch_size))
        cache = Path(tmp) / "teacher.zarr"  # the cached format does not depend on which teacher filled it
        build_teacher_cache(store, cache, "train", load_teacher("tiny-random"), batch_size=4, device=str(dev),
                            amp="float16", tta="none", crops=0, workers=0, block_size=64, show_progress=False)
        online = OnlineTeacher(TeacherRunner(load_teacher("small-random"), device=str(dev),
                                             amp="float16" if cuda else "float32", tta="none"), store, size)
        times = step_times(_variants(store, cache, online, batch_size, size, dev), steps)
        nyu = make_nyu_like_store(Path(tmp) / "nyu_like.zarr", 2 * batch_size)
        nyu_cache = Path(tmp) / "nyu_like_teacher.zarr"
        build_teacher_cache(nyu, nyu_cache, "train", load_teacher("tiny-random"), batch_size=4, device=str(dev),
                            amp="float16", tta="none", crops=0, workers=0, block_size=64, show_progress=False)
        loader = loader_vs_model(nyu, nyu_cache, batch_size, size, workers, dev, batches=max(steps, 3))
        jpeg = jpeg_loader(Path(tmp), 2 * batch_size, batch_size, size, workers, batches=24)
    median = {k: statistics.median(v) for k, v in times.items()}
    return {
        **report_header("train", dev),
        "student": "leve (DDRNet-23-slim + LCB 3x3+3x3 decoder), Adam, the loss of leve train",
        "input": list(size),
        "store_images": "480x640 (NYU-sized), resized in the loader",
        "batch_size": batch_size,
        "steps_timed": steps,
        "online_teacher": "small-random (Depth-Anything Small architecture, random weights)",
        "seconds_per_step": {k: round(v, 4) for k, v in median.items()},
        "samples_per_s": {k: round(batch_size / v, 2) for k, v in median.items()},
        "all_step_seconds": {k: [round(t, 3) for t in v] for k, v in times.items()},
        "ratio_kd_cache_over_plain": round(median["kd_cache"] / median["plain"], 3),
        "ratio_kd_online_over_plain": round(median["kd_online"] / median["plain"], 3),
        "goal": "kd_cache / plain <= 1.05",
        "loader_store": "rendered rooms at 480x640, depth quantised to 8 bits as NYU's training PNGs",
        "loader": loader,
        "checksums_checked_over_unchecked": loader["checksums"]["sample_checked_over_unchecked"],
        "checksums_goal": "<= 1.05: checking every chunk's crc32c costs at most 5 % of a loader worker's time per sample",
        "loader_jpeg_store": jpeg,
    }


class _Batches:
    """A batch sampler whose batches (lists of ``(epoch, index)`` keys) are set before each pass."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[int, int]]] = []

    def __iter__(self) -> Any:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def _train_pass(data: DepthDataset, batch_size: int, workers: int, read_ahead: int = 0) -> Callable[[int, list[int]], None]:
    """One epoch of the training loader as ``leve train`` builds it (shared batches, persistent workers, each
    worker fetching up to ``read_ahead`` shard files of a bucket store ahead): a function that loads the given
    samples of an epoch, in order, ``batch_size`` at a time. Its workers are started (an empty pass) before it is
    returned, so their start-up is in no timed epoch."""
    sampler = _Batches()
    loader = SharedBatchLoader(data, sampler, batch_size, workers, read_ahead=read_ahead, worker_init_fn=DiesWithParent())
    for _ in loader:
        pass

    def run(epoch: int, indices: list[int]) -> None:
        sampler.batches = [[(epoch, i) for i in indices[b:b + batch_size]] for b in range(0, len(indices), batch_size)]
        for _ in loader:
            pass
    return run


def bucket_bench(source: str, samples: int = 64, workers: int = 2, epochs: int = 3, batch_size: int = 8,
                 size: tuple[int, int] = (240, 320), cache_bytes: int | None = None, split: str = "train",
                 workdir: Path | None = None, read_ahead: int | None = None) -> dict[str, Any]:
    """``leve bench train --source URL``: samples/s of the training loader (:class:`DepthDataset` into shared
    batches, as ``leve train`` loads: RGB read, checked, decoded and resized in the workers, depth read at the
    stored size) from the bucket store at ``source`` through the read-through cache (empty at the start) over
    the same loader from its local copy, epoch by epoch, taking turns, on the same samples in the same order
    (:mod:`leve.bench.bucket_io`); the first epoch apart from the later ones. Each worker fetches up to
    ``read_ahead`` shard files ahead, as ``leve train`` does (None: ``paths.read_prefetch`` of the params)."""
    if epochs < 2:
        raise LeveError(f"bench train --source: --epochs must be >= 2 (the first epoch and later ones), got {epochs}")
    if read_ahead is None:
        from leve.params import resolved

        read_ahead = int(resolved("paths.read_prefetch"))
    with bucket_twin(source, cache_bytes, workdir, "bench train --source") as twin:
        sets = {name: DepthDataset(store, split, size, augment=AugmentConfig(), seed=0, decode="full", rgb_uint8=True,
                                   targets="device", cache_bytes=twin.cache_bytes)
                for name, store in (("bucket", twin.url), ("local", twin.local))}
        n = min(samples, len(sets["local"]))
        if n < 1:
            raise LeveError(f"{twin.url}: split '{split}' has no samples")
        passes = {name: _train_pass(data, batch_size, workers, read_ahead) for name, data in sets.items()}
        rates = take_turns(passes, epoch_order(len(sets["local"]), n, epochs))
        return {**report_header("train-bucket", torch.device("cpu")),
                "loader": "leve train's: DepthDataset (RGB decoded and resized, depth at the stored size) into shared "
                          "batches, persistent workers",
                "source": twin.url, "split": split, "input": list(size), "batch_size": batch_size,
                "samples_per_epoch": n, "epochs": epochs, "workers": workers, "read_prefetch": read_ahead,
                **twin.fields(), **compare(rates)}
