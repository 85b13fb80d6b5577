"""``leve bench teacher``: what the teacher cache buys.

1. Cache throughput (images/s, the whole ``build_teacher_cache`` path: decode, resize,
   teacher, post-process, write) for ``tiny-random`` and the real-size Small architecture
   (random weights: the same compute as V1/V2 Small) on NYU-sized 480x640 images.
2. Seconds per student training step, side by side in one process, interleaved:
   (a) no distillation, (b) distillation from the cache, (c) the teacher run online at every
   step as in the thesis (real-size Small). Ratios (b)/(a) and (c)/(a); goal (b)/(a) <= 1.05.
"""

from __future__ import annotations

import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from leve import __version__
from leve.data.prepare import SplitSource, build_store
from leve.data.store import Split, SplitSpec, dataset_arrays, open_split
from leve.teacher.cache import TeacherCache, build_teacher_cache, open_teacher_cache
from leve.teacher.infer import TeacherRunner, resolve_device
from leve.teacher.loading import load_teacher

NYU_SIZE = (480, 640)
KD_EPS = 0.25
MAX_DEPTH = 10.0


class _RandomRGBD:
    """Picklable loader of random NYU-sized samples (content does not change the compute)."""

    def __call__(self, i: int) -> tuple[dict[str, Any], dict[str, Any]]:
        rng = np.random.default_rng(i)
        h, w = NYU_SIZE
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        depth = rng.uniform(0.5, MAX_DEPTH, (h, w)).astype(np.float32)
        return {"rgb": rgb, "depth": depth}, {"height": h, "width": w}


def _make_store(path: Path, n: int) -> Path:
    spec = SplitSpec("train", n, dataset_arrays(*NYU_SIZE), {"height": "int32", "width": "int32"})
    build_store(path, {"dataset": "bench"}, f"bench-{n}", [SplitSource(spec, _RandomRGBD())], show_progress=False)
    return path


def _student() -> tuple[torch.nn.Module, str]:
    try:
        from leve.models import create_model

        return create_model("leve"), "leve (leve.models.create_model, DDRNet-23-slim + LCB decoder)"
    except ImportError:  # pragma: no cover - the models package is part of leve
        return _StandInStudent(), "stand-in conv student (leve.models unavailable)"


class _StandInStudent(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 32, 3, padding=1), torch.nn.ReLU(), torch.nn.Conv2d(32, 1, 3, padding=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# --------------------------------------------------------------------------- throughput


def cache_throughput(store: Path, model: str, device: str, amp: str, batch_size: int) -> dict[str, Any]:
    teacher = load_teacher(model)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = build_teacher_cache(
            store, Path(tmp) / "cache.zarr", "train", teacher,
            batch_size=batch_size, device=device, amp=amp, workers=0, show_progress=False,
        )
        seconds = time.perf_counter() - t0
    return {
        "images": result.samples,
        "seconds": round(seconds, 3),
        "images_per_s": round(result.samples / seconds, 3),
        "teacher_input": list(teacher.preprocessing.output_size(*NYU_SIZE)),
        "batch_size": batch_size,
        "amp": amp if resolve_device(device).type == "cuda" else "float32",
        "parameters": sum(p.numel() for p in teacher.model.parameters()),
    }


# --------------------------------------------------------------------------- student steps


def _batch(split: Split, indices: list[int], size: tuple[int, int], dev: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    rgb = torch.from_numpy(np.stack([split.rgb(i) for i in indices])).permute(0, 3, 1, 2).float() / 255
    depth = torch.from_numpy(np.stack([split.depth(i) for i in indices]))[:, None]
    rgb = F.interpolate(rgb, size=size, mode="bilinear", align_corners=False)
    depth = F.interpolate(depth, size=size, mode="nearest")
    return rgb.to(dev), (MAX_DEPTH / depth.clamp(min=0.1)).to(dev)


def _kd_term(out: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Per-image L1 between max-normalised student output and teacher map."""
    o = out / out.flatten(1).amax(1).clamp(min=1e-6)[:, None, None, None]
    t = teacher / teacher.flatten(1).amax(1).clamp(min=1e-6)[:, None, None, None]
    return (o - t).abs().mean()


def _online_maps(runner: TeacherRunner, split: Split, indices: list[int], size: tuple[int, int]) -> torch.Tensor:
    """The thesis's way: preprocess and run the teacher on this batch now."""
    prep = runner.teacher.preprocessing
    images = torch.from_numpy(np.stack([prep.resize(split.rgb(i)) for i in indices]))
    maps = torch.from_numpy(runner.predict(images, split.size(indices[0])).disparity).float()[:, None]
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False).to(runner.device)


def _cached_maps(cache: TeacherCache, indices: list[int], size: tuple[int, int], dev: torch.device) -> torch.Tensor:
    maps = torch.from_numpy(np.stack([cache.disparity(i) for i in indices]))[:, None]
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False).to(dev)


def step_times(
    split: Split, cache: TeacherCache, runner: TeacherRunner, steps: int, batch_size: int, size: tuple[int, int]
) -> tuple[dict[str, float], dict[str, list[float]], str]:
    """Median seconds per step of each variant (and every timing), interleaved in rotating order."""
    dev = runner.device
    model, name = _student()
    model = model.to(dev).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    n = len(split)

    def step(kd: Callable[[list[int]], torch.Tensor] | None, k: int) -> float:
        t0 = time.perf_counter()
        idx = [(k * batch_size + j) % n for j in range(batch_size)]
        rgb, target = _batch(split, idx, size, dev)
        out = model(rgb)
        loss = F.l1_loss(out, target)
        if kd is not None:
            loss = (1 - KD_EPS) * loss + KD_EPS * _kd_term(out, kd(idx))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        return time.perf_counter() - t0

    variants: dict[str, Callable[[list[int]], torch.Tensor] | None] = {
        "no_kd": None,
        "kd_cache": lambda idx: _cached_maps(cache, idx, size, dev),
        "kd_online": lambda idx: _online_maps(runner, split, idx, size),
    }
    times: dict[str, list[float]] = {k: [] for k in variants}
    order = list(variants)
    for k in range(steps + 1):  # the first round warms up; the order rotates every round
        for key in order[k % 3 :] + order[: k % 3]:
            t = step(variants[key], k)
            if k:
                times[key].append(t)
    return {k: statistics.median(v) for k, v in times.items()}, {k: [round(t, 3) for t in v] for k, v in times.items()}, name


# --------------------------------------------------------------------------- entry


def run_bench(
    images: int = 4, steps: int = 3, batch_size: int = 2, size: tuple[int, int] = (240, 320), device: str = "auto"
) -> dict[str, Any]:
    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    with tempfile.TemporaryDirectory() as tmp:
        store = _make_store(Path(tmp) / "bench.zarr", max(images, batch_size))
        throughput = {
            "tiny-random": cache_throughput(store, "tiny-random", str(dev), "float32", batch_size),
            "small-random": cache_throughput(store, "small-random", str(dev), "float32", batch_size),
        }
        if cuda:
            throughput["small-random-fp16"] = cache_throughput(store, "small-random", str(dev), "float16", batch_size)
        small = load_teacher("small-random")
        cache_path = Path(tmp) / "cache.zarr"
        build_teacher_cache(store, cache_path, "train", small, batch_size=batch_size, device=str(dev), show_progress=False)
        cache = open_teacher_cache(cache_path, "train", store)
        runner = TeacherRunner(small, device=str(dev), amp="float16" if cuda else "float32")
        seconds, raw_times, student = step_times(open_split(store, "train"), cache, runner, steps, batch_size, size)
    return {
        "bench": "teacher",
        "leve_version": __version__,
        "device": torch.cuda.get_device_name(dev) if cuda else f"cpu ({platform.processor() or platform.machine()})",
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "note": "CPU timings on 2 cores shared with other jobs: noisy, compare ratios measured side by side",
        "cache_throughput": throughput,
        "student": student,
        "student_step": {
            "loss": f"minimal step: L1 on max_depth/depth (+ eps={KD_EPS} per-image max-normalised L1 KD), Adam",
            "input": list(size),
            "batch_size": batch_size,
            "steps_timed": steps,
            "online_teacher": "small-random (V1/V2 Small architecture, random weights), fed at 518x686",
            "seconds_per_step": {k: round(v, 4) for k, v in seconds.items()},
            "all_step_seconds": raw_times,
            "ratio_kd_cache_over_no_kd": round(seconds["kd_cache"] / seconds["no_kd"], 3),
            "ratio_kd_online_over_no_kd": round(seconds["kd_online"] / seconds["no_kd"], 3),
            "goal": "kd_cache / no_kd <= 1.05",
        },
    }
