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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
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
    DataLoader each, taking turns (:func:`take_turns`)."""
    loaders = {name: _loader(split, workers) for name, split in splits.items()}

    def one_pass(name: str) -> Callable[[int, list[int]], None]:
        loader, sampler = loaders[name]

        def run(epoch: int, indices: list[int]) -> None:
            sampler.indices = indices
            for _ in loader:
                pass
        return run

    return take_turns({name: one_pass(name) for name in loaders}, order)


def take_turns(passes: dict[str, Callable[[int, list[int]], None]], order: list[list[int]]) -> dict[str, list[float]]:
    """Samples per second of each epoch (``order``: one index list per epoch) of each reader: ``passes[name](epoch,
    indices)`` reads the epoch's samples. The readers take turns epoch by epoch (the first to go alternating), so
    a change in the machine's load falls on both."""
    rates: dict[str, list[float]] = {name: [] for name in passes}
    for e, indices in enumerate(order):
        for name in list(passes) if e % 2 == 0 else list(reversed(passes)):
            t0 = time.perf_counter()
            passes[name](e, indices)
            rates[name].append(len(indices) / (time.perf_counter() - t0))
    return rates


@dataclass
class Twin:
    """A published bucket store and its local copy (the same bytes), with the read-through cache's bound and the
    copy's cost; while :func:`bucket_twin` holds it, the read caches live in an empty folder of its own."""

    url: str
    local: Path
    store_bytes: int
    objects: int
    copy_seconds: float
    cache_bytes: int

    def fields(self) -> dict[str, Any]:
        """What a bench report says about the two stores."""
        return {"store_bytes": self.store_bytes, "store_objects": self.objects,
                "local_copy_bytes": disk_usage(self.local)[0], "local_copy_seconds": self.copy_seconds,
                "cache_bytes": self.cache_bytes}


@contextmanager
def bucket_twin(source: str, cache_bytes: int | None, workdir: Path | None, what: str) -> Iterator[Twin]:
    """Copy the published store at ``source`` whole to a local folder (under ``workdir``, or a temporary one),
    and point the read caches (``$LEVE_READ_CACHE``) at an empty folder there, so a bucket reader's first epoch
    is cold; the cache's bound: ``cache_bytes``, default twice the store's size. ``what``: the command, for
    the error lines."""
    bucket = open_store(source, cache_bytes=0)  # the manifest and the build are checked here
    store_bytes, objects = usage(bucket.path)
    bound = int(cache_bytes) if cache_bytes is not None else 2 * store_bytes
    tmp = tempfile.TemporaryDirectory(prefix="leve-bench-bucket-") if workdir is None else None
    work = Path(tmp.name) if tmp else Path(str(workdir))
    work.mkdir(parents=True, exist_ok=True)
    previous = os.environ.get(CACHE_ENV)
    try:
        local = work / "local" / bucket.path.rstrip("/").rsplit("/", 1)[-1]
        fs, root = filesystem(bucket.path)
        t0 = time.perf_counter()
        try:
            fs.get(root.rstrip("/") + "/", str(local), recursive=True)
        except Exception as exc:
            raise remote_error(bucket.path, exc) from exc
        copy_s = time.perf_counter() - t0
        os.environ[CACHE_ENV] = str(work / "reads")  # an empty cache: the first epoch is cold
        if open_store(bucket.path, cache_bytes=bound).cache is None:
            raise LeveError(f"{what}: a read-through cache of {bound} bytes is off; give --cache-bytes > 0")
        yield Twin(bucket.path, local, store_bytes, objects, copy_s, bound)
    finally:
        if previous is None:
            os.environ.pop(CACHE_ENV, None)
        else:
            os.environ[CACHE_ENV] = previous
        if tmp:
            tmp.cleanup()


def epoch_order(size: int, samples: int, epochs: int) -> list[list[int]]:
    """The samples of each epoch: ``samples`` of a split of ``size``, a new random order per epoch (seed 0)."""
    rng = np.random.default_rng(0)
    return [[int(i) for i in rng.permutation(size)[:samples]] for _ in range(epochs)]


def compare(rates: dict[str, list[float]]) -> dict[str, Any]:
    """Per reader its samples/s per epoch, the first epoch's and the later epochs' (samples over seconds
    across them), and the ratios bucket / local of both, against :data:`GOAL`."""
    result: dict[str, Any] = {"readers": {}}
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


def run(source: str, samples: int = 48, workers: int = 2, epochs: int = 3, split: str = "train",
        cache_bytes: int | None = None, workdir: Path | None = None) -> dict[str, Any]:
    """Measure the bucket store at ``source`` against its local copy; returns the JSON-ready result."""
    if epochs < 2:
        raise LeveError(f"bench io --source: --repeats must be >= 2 (the first epoch and later ones), got {epochs}")
    with bucket_twin(source, cache_bytes, workdir, "bench io --source") as twin:
        remote_split = open_store(twin.url, cache_bytes=twin.cache_bytes).split(split)
        local_split = open_store(twin.local).split(split)
        n = min(samples, len(local_split))
        if n < 1:
            raise LeveError(f"{twin.url}: split '{split}' has no samples")
        rates = _epochs({"bucket": remote_split, "local": local_split}, epoch_order(len(local_split), n, epochs), workers)
        return {"benchmark": "io-bucket", "source": twin.url, "split": split, "samples_per_epoch": n, "epochs": epochs,
                "workers": workers, **twin.fields(), **compare(rates)}
