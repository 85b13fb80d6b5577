"""Fixtures: tiny dataset stores (real store format, mixed image sizes) and a tiny random
Depth-Anything saved with ``save_pretrained`` plus a transformers-written processor config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from leve.datasets.build import SplitSource, build_store
from leve.store import SplitSpec, dataset_arrays, fingerprint
from leve.teacher.registry import DEPTH_ANYTHING_PREPROCESSING


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
    """A complete dataset store with one split whose arrays are padded to the largest size."""
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


def save_tiny_teacher(folder: Path, size: int = 518) -> Path:
    """``tiny-random`` saved with save_pretrained, with transformers' own DPT processor config."""
    from transformers.models.dpt.image_processing_pil_dpt import DPTImageProcessorPil

    from leve.teacher.loading import load_teacher

    teacher = load_teacher("tiny-random")
    teacher.model.save_pretrained(folder)
    settings = {**DEPTH_ANYTHING_PREPROCESSING, "size": {"height": size, "width": size}}
    DPTImageProcessorPil(**settings).save_pretrained(folder)
    return folder


MIXED_SIZES = [(48, 64), (40, 90), (48, 64), (64, 48), (40, 90), (48, 64), (33, 77)]


@pytest.fixture(scope="session")
def mixed_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("ds") / "tiny.zarr", MIXED_SIZES)


@pytest.fixture(scope="session")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_teacher(tmp_path_factory.mktemp("teacher") / "tiny-da")


@pytest.fixture(scope="session")
def fast_teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tiny model fed at 70 px (multiple of 14) so block/resume tests run fast."""
    return save_tiny_teacher(tmp_path_factory.mktemp("teacher") / "tiny-da-70", size=70)
