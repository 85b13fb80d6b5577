"""``leve bench teacher``: what the teacher cache buys.

1. Cache throughput (images/s, the whole ``build_teacher_cache`` path: decode, resize,
   teacher, post-process, write) for ``tiny-random`` and the real-size Small architecture
   (random weights: the same compute as V1/V2 Small) on NYU-sized 480x640 images.
The cost of a training step with the cache against the online teacher is ``leve bench train``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from leve.bench import report_header
from leve.datasets.build import SplitSource, build_store
from leve.datasets.nyu import MAX_DEPTH
from leve.device import resolve_device
from leve.store.format import SplitSpec, dataset_arrays
from leve.teacher.cache.build import build_teacher_cache
from leve.teacher.loading import load_teacher

NYU_SIZE = (480, 640)
KD_EPS = 0.25


class _RandomRGBD:
    """Picklable loader of random NYU-sized samples (content does not change the compute)."""

    def __call__(self, i: int) -> tuple[dict[str, Any], dict[str, Any]]:
        rng = np.random.default_rng(i)
        h, w = NYU_SIZE
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        depth = rng.uniform(0.5, MAX_DEPTH, (h, w)).astype(np.float32)
        return {"rgb": rgb, "depth": depth}, {"height": h, "width": w}


class _RenderedNyuRGBD:
    """Picklable loader of NYU-like samples: rendered rooms (leve's synthetic dataset) at NYU's size,
    with the depth quantised to 8 bits over 0-10 m as NYU's training PNGs store it."""

    def __call__(self, i: int) -> tuple[dict[str, Any], dict[str, Any]]:
        from leve.datasets.synthetic import render_sample

        h, w = NYU_SIZE
        rgb, depth = render_sample(0, "train", i, h, w)
        depth = (np.round(np.clip(depth, 0, MAX_DEPTH) / MAX_DEPTH * 255) / 255 * MAX_DEPTH).astype(np.float32)
        return {"rgb": rgb, "depth": depth}, {"height": h, "width": w}


def make_nyu_like_store(path: Path, n: int) -> Path:
    """``n`` rendered NYU-like samples (:class:`_RenderedNyuRGBD`): what a loader reads from NYU's store."""
    spec = SplitSpec("train", n, dataset_arrays(*NYU_SIZE), {"height": "int32", "width": "int32"})
    build_store(path, {"dataset": "bench-nyu-like"}, f"bench-nyu-like-{n}", [SplitSource(spec, _RenderedNyuRGBD())],
                show_progress=False)
    return path


def make_store(path: Path, n: int) -> Path:
    spec = SplitSpec("train", n, dataset_arrays(*NYU_SIZE), {"height": "int32", "width": "int32"})
    build_store(path, {"dataset": "bench"}, f"bench-{n}", [SplitSource(spec, _RandomRGBD())], show_progress=False)
    return path


# --------------------------------------------------------------------------- throughput


def cache_throughput(store: Path, model: str, device: str, amp: str, batch_size: int) -> dict[str, Any]:
    teacher = load_teacher(model)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = build_teacher_cache(
            store, Path(tmp) / "cache.zarr", "train", teacher,
            batch_size=batch_size, device=device, amp=amp, tta="none", crops=0, workers=0, block_size=64,
            show_progress=False,
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


# --------------------------------------------------------------------------- entry


def run_bench(images: int = 4, batch_size: int = 2, device: str = "auto") -> dict[str, Any]:
    dev = resolve_device(device)
    cuda = dev.type == "cuda"
    with tempfile.TemporaryDirectory() as tmp:
        store = make_store(Path(tmp) / "bench.zarr", max(images, batch_size))
        throughput = {
            "tiny-random": cache_throughput(store, "tiny-random", str(dev), "float32", batch_size),
            "small-random": cache_throughput(store, "small-random", str(dev), "float32", batch_size),
        }
        if cuda:
            throughput["small-random-fp16"] = cache_throughput(store, "small-random", str(dev), "float16", batch_size)
    return {
        **report_header("teacher", dev),
        "note": "images/s of the whole caching path; the step-time comparison is `leve bench train`",
        "cache_throughput": throughput,
    }
