"""One tiny-store factory for every test package: real store format, seconds to build."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from leve.datasets import synthetic
from leve.datasets.build import SplitSource, build_store
from leve.store.format import SplitSpec, dataset_arrays, fingerprint


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


def endoslam_store(path: Path, frames: dict[str, int], height: int = 12, width: int = 16, seed: int = 0,
                   zero_share: float = 0.1) -> tuple[Path, dict[str, list[tuple[np.ndarray, np.ndarray]]]]:
    """A complete EndoSLAM store built by ``leve prepare endoslam`` from a UnityCam tree written beside
    it (``<path>.src/UnityCam/<organ>/{Frames,Pixelwise Depths}``): ``frames[organ]`` random frames per
    organ, depth R channel with about ``zero_share`` zero (unmeasured) pixels. Returns the store and,
    per organ in store order, each frame's ``(rgb uint8 (H, W, 3), depth R / 255 float32 (H, W))``."""
    from leve.datasets import endoslam
    from leve.store.images import encode_png

    src = path.with_name(path.name + ".src")
    rng = np.random.default_rng(seed)
    truth: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for organ, count in frames.items():
        base = src / "UnityCam" / organ
        (base / "Frames").mkdir(parents=True, exist_ok=True)
        (base / "Pixelwise Depths").mkdir(parents=True, exist_ok=True)
        truth[organ] = []
        for n in range(1, count + 1):
            rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
            rgba = rng.integers(1, 256, (height, width, 4), dtype=np.uint8)
            rgba[..., 0][rng.random((height, width)) < zero_share] = 0
            (base / "Frames" / f"image_{n:04d}.png").write_bytes(encode_png(rgb))
            (base / "Pixelwise Depths" / f"aov_image_{n:04d}.png").write_bytes(encode_png(rgba))
            truth[organ].append((rgb, (rgba[..., 0] / np.float32(255.0)).astype(np.float32)))
    cfg = endoslam.Config(out=path, raw=path.with_name(path.name + ".raw"), source=src, organs=tuple(frames),
                          per_organ=max(frames.values()), block_size=4)
    endoslam.prepare(cfg, show_progress=False)
    return path, truth
