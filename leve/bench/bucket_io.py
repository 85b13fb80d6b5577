"""``leve bench io --source URL``: loader throughput from a bucket store (through the bounded read-through
cache) over throughput from its local copy on disk, measured in the same run.

The published store at ``URL`` is first copied whole to a local folder (the local twin: the same bytes).
Then the same samples of one split, in the same random order per epoch, are read through a torch
DataLoader with N persistent workers (RGB and depth decoded and checked, as training reads them) from
each side, epoch by epoch. The bucket side starts with an empty cache folder, so its first epoch fetches
every shard from the bucket and later epochs read the cache; the first epoch and the later ones are
reported separately. The two readers take turns epoch by epoch (the local copy's pages are as warm as the
cache's: both were just written). The workers are started (and have imported what they need) before the
first timed epoch, so worker start-up is in neither number.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from leve.errors import LeveError
from leve.processes import DiesWithParent
from leve.store.readcache import CACHE_ENV
from leve.store.reader import disk_usage, open_store
from leve.store.remote import filesystem, remote_error, usage

GOAL = 0.9  # bucket / local samples per second, from the second epoch on (issue 31)


class _Reads:
    """Sample ``i`` of a split (RGB and depth, as training needs them); index -1 reads nothing (a worker's
    warm-up). Picklable: each worker opens the split itself on first use."""

    def __init__(self, split: Any) -> None:
        self.split = split

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> int:
        if i < 0:
            return 0
        rgb, depth = self.split.rgb(i), self.split.depth(i)
        return int(rgb.nbytes + depth.nbytes)


class _Order:
    """The sampler: the indices of the epoch about to run (set before each pass)."""

    def __init__(self) -> None:
        self.indices: list[int] = []

    def __iter__(self) -> Any:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def _loader(split: Any, workers: int) -> tuple[Any, _Order]:
    """A DataLoader over ``split`` with persistent workers, already started, and its sampler."""
    import torch.utils.data as tud

    sampler = _Order()
    loader = tud.DataLoader(_Reads(split), batch_size=8, sampler=sampler, num_workers=workers,
                            persistent_workers=workers > 0, collate_fn=sum,
                            multiprocessing_context="spawn" if workers else None, worker_init_fn=DiesWithParent())
    sampler.indices = [-1] * 8 * max(workers, 1) * 2  # start every worker before the clock runs
    for _ in loader:
        pass
    return loader, sampler


def _epochs(splits: dict[str, Any], order: list[list[int]], workers: int) -> dict[str, list[float]]:
    """Samples per second of each epoch (``order``: one index list per epoch) of each split, through one
    DataLoader each; the readers take turns epoch by epoch (the first to go alternating), so a change in the
    machine's load falls on both."""
    loaders = {name: _loader(split, workers) for name, split in splits.items()}
    rates: dict[str, list[float]] = {name: [] for name in splits}
    for e, indices in enumerate(order):
        names = list(loaders) if e % 2 == 0 else list(reversed(loaders))
        for name in names:
            loader, sampler = loaders[name]
            sampler.indices = indices
            t0 = time.perf_counter()
            for _ in loader:
                pass
            rates[name].append(len(indices) / (time.perf_counter() - t0))
    return rates


def run(source: str, samples: int = 48, workers: int = 2, epochs: int = 3, split: str = "train",
        cache_bytes: int | None = None, workdir: Path | None = None) -> dict[str, Any]:
    """Measure the bucket store at ``source`` against its local copy; returns the JSON-ready result."""
    if epochs < 2:
        raise LeveError(f"bench io --source: --repeats must be >= 2 (the first epoch and later ones), got {epochs}")
    bucket = open_store(source, cache_bytes=0)  # the manifest and the build are checked here
    store_bytes, objects = usage(bucket.path)
    bound = int(cache_bytes) if cache_bytes is not None else 2 * store_bytes
    tmp = tempfile.TemporaryDirectory(prefix="leve-bench-bucket-") if workdir is None else None
    work = Path(tmp.name) if tmp else Path(str(workdir))
    work.mkdir(parents=True, exist_ok=True)
    try:
        local = work / "local" / bucket.path.rstrip("/").rsplit("/", 1)[-1]
        fs, root = filesystem(bucket.path)
        t0 = time.perf_counter()
        try:
            fs.get(root.rstrip("/") + "/", str(local), recursive=True)
        except Exception as exc:
            raise remote_error(bucket.path, exc) from exc
        copy_s = time.perf_counter() - t0
        previous = os.environ.get(CACHE_ENV)
        os.environ[CACHE_ENV] = str(work / "reads")  # an empty cache: the first epoch is cold
        try:
            cached = open_store(bucket.path, cache_bytes=bound)
            if cached.cache is None:
                raise LeveError(f"bench io --source: a read-through cache of {bound} bytes is off; give --cache-bytes > 0")
            remote_split, local_split = cached.split(split), open_store(local).split(split)
            n = min(samples, len(local_split))
            if n < 1:
                raise LeveError(f"{bucket.path}: split '{split}' has no samples")
            rng = np.random.default_rng(0)
            order = [[int(i) for i in rng.permutation(len(local_split))[:n]] for _ in range(epochs)]
            rates = _epochs({"bucket": remote_split, "local": local_split}, order, workers)
        finally:
            if previous is None:
                os.environ.pop(CACHE_ENV, None)
            else:
                os.environ[CACHE_ENV] = previous
        result: dict[str, Any] = {
            "benchmark": "io-bucket",
            "source": bucket.path,
            "split": split,
            "samples_per_epoch": n,
            "epochs": epochs,
            "workers": workers,
            "store_bytes": store_bytes,
            "store_objects": objects,
            "local_copy_bytes": disk_usage(local)[0],
            "local_copy_seconds": copy_s,
            "cache_bytes": bound,
            "readers": {},
        }
        for name, per_epoch in rates.items():
            later = per_epoch[1:]
            result["readers"][name] = {
                "samples_per_s_per_epoch": per_epoch,
                "first_epoch_samples_per_s": per_epoch[0],
                # samples over seconds across the later epochs (each epoch reads the same number of samples)
                "later_epochs_samples_per_s": len(later) / sum(1.0 / r for r in later),
            }
        b, loc = result["readers"]["bucket"], result["readers"]["local"]
        result["ratio_first_epoch"] = b["first_epoch_samples_per_s"] / loc["first_epoch_samples_per_s"]
        result["ratio_later_epochs"] = b["later_epochs_samples_per_s"] / loc["later_epochs_samples_per_s"]
        result["goal"] = f"bucket (with the read-through cache) / local disk >= {GOAL} from the second epoch on"
        result["meets_goal"] = result["ratio_later_epochs"] >= GOAL
        return result
    finally:
        if tmp:
            tmp.cleanup()
