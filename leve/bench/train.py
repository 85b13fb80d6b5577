"""``leve bench train``: what a training step costs with and without the teacher, and whether
the data loader keeps up.

1. Seconds per step (fetch the batch in the main process + the real training step of
   ``leve train``), side by side in one process, interleaved in rotating order:
   ``plain`` (eps = 0, no cache read), ``kd_cache`` (eps = 0.25, teacher maps read from the
   cache) and ``kd_online`` (eps = 0.25, the thesis's way: the teacher, real-size
   Depth-Anything Small with random weights, runs on every batch). Goal: kd_cache / plain <= 1.05.
2. Loader throughput with the default workers against the model's training rate on batches
   already in memory: the model never waits when the loader is faster.
Store: NYU-sized 480x640 samples, resized to the training resolution as in ``leve train``.
"""

from __future__ import annotations

import itertools
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
from leve.bench.teacher import make_store
from leve.device import resolve_device
from leve.models import create_model
from leve.processes import DiesWithParent
from leve.store import open_split
from leve.teacher.cache.build import build_teacher_cache
from leve.teacher.infer import TeacherRunner
from leve.teacher.loading import load_teacher
from leve.train.data import DepthDataset, collate
from leve.train.stage import AugmentConfig
from leve.train.step import Batch, StepRunner

KD_EPS = 0.25
MAX_DEPTH = 10.0


def _runner(device: torch.device, eps: float) -> StepRunner:
    torch.manual_seed(0)
    model = create_model("leve", max_depth=MAX_DEPTH).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    amp = "bfloat16" if device.type == "cuda" else "float32"
    return StepRunner(model, optimizer, None, device, MAX_DEPTH, eps=eps, amp=amp, channels_last=True)


def _fetch(dataset: DepthDataset, indices: list[int]) -> Batch:
    return collate([dataset[(0, i)] for i in indices])


class OnlineTeacher:
    """The teacher run on the batch at step time (preprocess the stored image, predict, resize)."""

    def __init__(self, runner: TeacherRunner, store: Path, size: tuple[int, int]) -> None:
        self.runner, self.split, self.size = runner, open_split(store, "train"), size

    def __call__(self, indices: list[int]) -> torch.Tensor:
        prep = self.runner.teacher.preprocessing
        images = torch.from_numpy(np.stack([prep.resize(self.split.rgb(i)) for i in indices]))
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
    plain_data = DepthDataset(store, "train", size, augment=AugmentConfig())
    kd_data = DepthDataset(store, "train", size, teacher=cache, augment=AugmentConfig())
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


def loader_vs_model(store: Path, cache: Path, batch_size: int, size: tuple[int, int], workers: int,
                    device: torch.device, batches: int) -> dict[str, Any]:
    """Samples/s of the DataLoader alone (KD from the cache, ``workers`` processes) and of the
    training step alone on a batch already in memory."""
    data = DepthDataset(store, "train", size, teacher=cache, augment=AugmentConfig())
    sampler = [[(0, i) for i in range(b * batch_size, (b + 1) * batch_size)] for b in range(len(data) // batch_size)]
    loader = torch.utils.data.DataLoader(data, batch_sampler=sampler, num_workers=workers, collate_fn=collate,
                                         persistent_workers=workers > 0, prefetch_factor=4 if workers else None,
                                         worker_init_fn=DiesWithParent())
    next(iter(loader))  # start the workers
    t0 = time.perf_counter()
    seen = sum(b["rgb"].shape[0] for b in itertools.islice(itertools.cycle(loader), batches))
    loader_rate = seen / (time.perf_counter() - t0)
    runner, batch = _runner(device, KD_EPS), _fetch(data, list(range(batch_size)))
    runner.step(batch)
    t0 = time.perf_counter()
    for _ in range(batches):
        runner.step(batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    model_rate = batches * batch_size / (time.perf_counter() - t0)
    return {"workers": workers, "batches": batches, "loader_samples_per_s": round(loader_rate, 2),
            "model_samples_per_s": round(model_rate, 2), "model_waits_for_data": loader_rate < model_rate}


def run_bench(steps: int = 3, batch_size: int = 8, size: tuple[int, int] = (240, 320), workers: int = 2,
              device: str = "auto", images: int = 32) -> dict[str, Any]:
    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    with tempfile.TemporaryDirectory() as tmp:
        store = make_store(Path(tmp) / "bench.zarr", max(images, 2 * batch_size))
        cache = Path(tmp) / "teacher.zarr"  # the cached format does not depend on which teacher filled it
        build_teacher_cache(store, cache, "train", load_teacher("tiny-random"), batch_size=4, device=str(dev),
                            show_progress=False)
        online = OnlineTeacher(TeacherRunner(load_teacher("small-random"), device=str(dev),
                                             amp="float16" if cuda else "float32"), store, size)
        times = step_times(_variants(store, cache, online, batch_size, size, dev), steps)
        loader = loader_vs_model(store, cache, batch_size, size, workers, dev, batches=max(steps, 3))
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
        "loader": loader,
    }
