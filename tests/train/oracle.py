"""Test data for distillation without depth: a copy of a store whose train split keeps only its images,
and teacher caches in the real cache format (built with the cache's own builder and publish step) whose
maps come from the ground truth instead of a network."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from leve.datasets.build import SplitSource, build_store
from leve.store.builder import StoreBuilder
from leve.store.format import ArraySpec, SplitSpec, dataset_arrays, fingerprint
from leve.store.reader import open_split, open_store
from leve.teacher.cache.build import CODEC, _finalize_split
from leve.teacher.cache.read import CACHE_FORMAT, CACHE_META, dataset_identity


class CopySplit:
    """Picklable loader: sample i of ``split`` of the store at ``path``, with or without its depth."""

    def __init__(self, path: Path, split: str, depth: bool) -> None:
        self.path, self.split, self.depth = path, split, depth

    def __call__(self, i: int) -> tuple[dict, dict]:
        s = open_split(self.path, self.split)
        arrays = {"rgb": s.rgb(i), **({"depth": s.depth(i)} if self.depth else {})}
        return arrays, {"source": f"{self.split}/{i}"}


def images_only_train(src: Path, out: Path) -> Path:
    """A store named like ``src`` (same dataset) whose ``train`` split has no depth array; val and
    test keep theirs."""
    store = open_store(src)
    sources = []
    for name in ("train", "val", "test"):
        split = store.split(name)
        h, w = split.array_shape
        spec = SplitSpec(name, len(split), dataset_arrays(h, w, depth=name != "train"), {"source": "str"})
        sources.append(SplitSource(spec, CopySplit(src, name, depth=name != "train")))
    attrs = {k: store.attrs[k] for k in ("dataset", "units", "max_depth")}
    build_store(out, attrs, fingerprint(["images-only", str(src)]), sources, block_size=64, show_progress=False)
    return out


def write_cache(store_path: Path, out: Path, split: str, maps: np.ndarray, model: str = "oracle",
                raw_min: np.ndarray | None = None, teacher: dict | None = None, attrs: dict | None = None) -> Path:
    """Publish ``maps`` (N, H, W) non-negative disparities as the teacher cache of ``split`` at ``out``,
    normalised per image by its maximum as the cache stores them; ``raw_min`` (N,): the minima recorded
    (a raw map's before it was clipped at 0; None: the minima of ``maps``). ``teacher``: the identity's
    teacher entry (default ``{"model": model}``); ``attrs``: more identity attributes (a metric cache's
    ``depth_kind``, ``units``, ``max_depth``)."""
    store = open_store(store_path)
    data = store.split(split)
    identity = {"format": CACHE_FORMAT, "teacher": teacher or {"model": model}, **(attrs or {}),
                "dataset": dataset_identity(store, data)}
    fp = fingerprint(identity)
    raw_max = maps.reshape(len(maps), -1).max(1)
    spec = SplitSpec(split, len(data), {"disparity": ArraySpec(tuple(maps.shape[1:]), "float16", CODEC)},
                     dict(CACHE_META), attrs={**identity, "identity_fingerprint": fp}, meta_group="")
    builder = StoreBuilder(out.with_name(f"{out.name}.{split}"), {"kind": "teacher-cache-staging"}, fp,
                           block_size=len(data), exclusive=False)
    writer = builder.split(spec)
    lows = maps.reshape(len(maps), -1).min(1) if raw_min is None else np.asarray(raw_min, np.float32)
    meta = {"raw_min": lows.tolist(), "raw_max": raw_max.tolist(),
            "zero": [False] * len(maps)}
    writer.write_block(0, {"disparity": (maps / raw_max[:, None, None]).astype(np.float16)}, meta)
    _finalize_split(builder, writer, out, store)
    return out


def oracle_disparity(store_path: Path, split: str, seed: int = 0) -> np.ndarray:
    """The ground truth's disparity ``1/depth`` under a random per-image scale in [0.5, 2] and shift in
    [0, 0.5] (what a perfect relative-depth teacher could give), (N, H, W) float32."""
    data = open_split(store_path, split)
    rng = np.random.default_rng(seed)
    maps = []
    for i in range(len(data)):
        depth = data.depth(i)
        scale, shift = rng.uniform(0.5, 2.0), rng.uniform(0.0, 0.5)
        maps.append(np.where(depth > 0, scale / np.maximum(depth, 1e-6), 0.0) + shift)
    return np.stack(maps).astype(np.float32)
