"""The training loader of two leve checkouts side by side, each on stores it builds itself.

    git worktree add /tmp/leve-before 271d170
    PYTHONPATH=/tmp/leve-before python docs/loader_side_by_side.py build /tmp/ls/before
    python docs/loader_side_by_side.py build /tmp/ls/now
    for round in 1 2 3; do for kind in random rooms nyu8; do
        PYTHONPATH=/tmp/leve-before python docs/loader_side_by_side.py rate /tmp/ls/before $kind
        python docs/loader_side_by_side.py rate /tmp/ls/now $kind
    done; done

``build``: three 480x640 stores of 32 training samples: random pixels and depth (``leve bench
train``'s step store), rendered rooms (continuous depth) and rendered rooms with the depth quantised
to 8 bits (NYU's training PNGs), each with a tiny-random teacher cache. ``rate``: one JSON line, the
loader as that checkout's ``leve train`` builds it (2 workers, 81 batches of 8 at 240x320, KD from the
cache, augmentation on): samples per CPU second of the worker processes (counted once they exit, so
other load on the machine does not inflate it), wall samples/s, and the main process's CPU per sample.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

import leve


class Nyu8:
    """Rendered rooms with the depth quantised to 8 bits over 0-10 m, as NYU's training PNGs."""

    def __call__(self, i: int) -> tuple[dict[str, Any], dict[str, Any]]:
        from leve.datasets.synthetic import render_sample

        rgb, depth = render_sample(0, "train", i, 480, 640)
        depth = (np.round(np.clip(depth, 0, 10) / 10 * 255) / 255 * 10).astype(np.float32)
        return {"rgb": rgb, "depth": depth}, {"height": 480, "width": 640}


def build(out: Path) -> None:
    from leve.bench.teacher import make_store
    from leve.datasets.build import SplitSource, build_store
    from leve.datasets.synthetic import Config, prepare
    from leve.store.format import SplitSpec, dataset_arrays
    from leve.teacher.cache.build import build_teacher_cache
    from leve.teacher.loading import load_teacher

    out.mkdir(parents=True, exist_ok=True)
    make_store(out / "random.zarr", 32)
    prepare(Config(out=out / "rooms.zarr", height=480, width=640, train=32, val=2, test=2, workers=1),
            show_progress=False)
    spec = SplitSpec("train", 32, dataset_arrays(480, 640), {"height": "int32", "width": "int32"})
    build_store(out / "nyu8.zarr", {"dataset": "nyu8", "max_depth": 10.0}, "nyu8", [SplitSource(spec, Nyu8())],
                show_progress=False)
    for kind in ("random", "rooms", "nyu8"):
        build_teacher_cache(out / f"{kind}.zarr", out / f"{kind}_teacher.zarr", "train", load_teacher("tiny-random"),
                            batch_size=4, device="cpu", amp="float32", tta="none", workers=0, block_size=64,
                            show_progress=False)


def rate(out: Path, kind: str, batches: int = 80, batch_size: int = 8, workers: int = 2) -> None:
    from leve.processes import DiesWithParent
    from leve.train.data import DepthDataset, collate
    from leve.train.stage import AugmentConfig

    store, cache = out / f"{kind}.zarr", out / f"{kind}_teacher.zarr"
    sampler = [[(0, (b * batch_size + j) % 32) for j in range(batch_size)] for b in range(batches + 1)]
    loader: Any
    try:  # a checkout with shared batches: as its leve train builds the loader
        from leve.train.batches import SharedBatchLoader

        data = DepthDataset(store, "train", (240, 320), cache, AugmentConfig(), seed=0, decode="full", rgb_uint8=True,
                            targets="device")
        loader = SharedBatchLoader(data, sampler, batch_size, workers, persistent_workers=False,
                                   worker_init_fn=DiesWithParent())
    except ImportError:  # before: as commit 271d170's leve train built it
        data = DepthDataset(store, "train", (240, 320), cache, AugmentConfig(), seed=0)  # no decode option yet
        loader = torch.utils.data.DataLoader(data, batch_sampler=sampler, num_workers=workers, collate_fn=collate,
                                             prefetch_factor=4, worker_init_fn=DiesWithParent())
    t = os.times()
    cpu0, main0 = t.children_user + t.children_system, time.process_time()
    it = iter(loader)
    next(it)
    t0 = time.perf_counter()
    seen = sum(b["rgb"].shape[0] for b in it)
    wall = time.perf_counter() - t0
    del it, loader
    t = os.times()
    cpu = t.children_user + t.children_system - cpu0
    total = (batches + 1) * batch_size
    print(json.dumps({"leve": str(Path(leve.__file__).parent), "kind": kind,
                      "samples_per_cpu_s": round(total / cpu, 2), "samples_per_s": round(seen / wall, 2),
                      "main_cpu_ms_per_sample": round((time.process_time() - main0) * 1000 / total, 3)}))


if __name__ == "__main__":
    command, folder = sys.argv[1], Path(sys.argv[2])
    build(folder) if command == "build" else rate(folder, sys.argv[3])
