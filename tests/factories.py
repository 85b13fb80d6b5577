"""One tiny-store factory for every test package: real store format, seconds to build."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from leve.datasets import synthetic
from leve.datasets.build import SplitSource, build_store
from leve.store import SplitSpec, dataset_arrays, fingerprint


class SmoothImages:
    """Picklable loader: sample i is a smooth random RGB image of size ``sizes[i]`` and a depth map."""

    def __init__(self, sizes: list[tuple[int, int]], seed: int) -> None:
        self.sizes = sizes
        self.seed = seed

    def __call__(self, i: int) -> tuple[dict, dict]:
        h, w = self.sizes[i]
        rng = np.random.default_rng(self.seed * 1000 + i)
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        channels = [np.sin(rng.uniform(2, 9) * xx + rng.uniform(1, 7) * yy + rng.uniform(0, 6)) for _ in range(3)]
        rgb = np.stack(channels, -1) * 100 + 128 + rng.normal(0, 12, (h, w, 3))
        depth = (1 + 4 * yy + rng.uniform(0, 0.1, (h, w))).astype(np.float32)
        return {"rgb": np.clip(rgb, 0, 255).astype(np.uint8), "depth": depth}, {"height": h, "width": w, "source": f"s{i}"}


def make_store(
    path: Path, sizes: list[tuple[int, int]], name: str = "tiny", seed: int = 0, split: str = "train", block: int = 3
) -> Path:
    """A complete store with one split of smooth random images of the given (mixed) sizes,
    padded to the largest size as KITTI-like stores are."""
    height = max(h for h, _ in sizes)
    width = max(w for _, w in sizes)
    spec = SplitSpec(split, len(sizes), dataset_arrays(height, width), {"height": "int32", "width": "int32", "source": "str"})
    build_store(
        path,
        {"dataset": name, "units": "m", "max_depth": 10.0},
        fingerprint([name, seed, sizes]),
        [SplitSource(spec, SmoothImages(sizes, seed))],
        block_size=block,
        show_progress=False,
    )
    return path


def synthetic_store(path: Path, height: int, width: int, train: int, val: int, test: int, block_size: int) -> Path:
    """The embedded synthetic rooms (exact metric depth) as a small store, one process."""
    cfg = synthetic.Config(out=path, height=height, width=width, train=train, val=val, test=test, workers=1,
                           block_size=block_size)
    synthetic.prepare(cfg, show_progress=False)
    return path
