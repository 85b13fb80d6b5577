"""Reading the teacher cache: :func:`open_teacher_cache` checks that a cached split belongs to
the dataset split (and teacher) it is used with, then serves its maps."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import numpy as np

from leve.errors import LeveError
from leve.store.fastread import shard_reader
from leve.store.format import fingerprint
from leve.store.integrity import WRITTEN, damaged, open_group, read_error, reading
from leve.store.reader import Split, Store, open_store, read_cache
from leve.store.remote import MANIFEST, location, read_manifest, url_of
from leve.teacher.loading import canonical_model_id

# 2: store format 2 (every chunk checksummed and written, what was written recorded); 1: no checksums
CACHE_FORMAT = 2
CACHE_META = {"raw_min": "float32", "raw_max": "float32", "zero": "bool"}
PLAIN = "disparity_plain"  # tta flip: the image's own map beside the flip-averaged ``disparity``
PLAIN_META = {f"plain_{k}": v for k, v in CACHE_META.items()}
METRIC_UNITS = "1/m (inverse depth: depth in metres = 1 / (disparity * raw_max))"


def cache_depth_kind(attrs: dict[str, Any]) -> str:
    """``metric`` for a metric teacher's cache, else ``relative`` (every cache written before metric teachers)."""
    return "metric" if attrs.get("depth_kind") == "metric" else "relative"


def check_kd_loss(attrs: dict[str, Any], loss: str, where: str) -> None:
    """Refuse ``kd.loss: metric`` on a relative teacher's cache (its maps have no metres); ``l1`` and ``ssi``
    read either kind (a metric cache's inverse depth is a disparity)."""
    if loss == "metric" and cache_depth_kind(attrs) != "metric":
        model = attrs.get("teacher", {}).get("model")
        raise LeveError(f"{where}: kd.loss metric needs a metric teacher's cache; this one is relative ({model}): "
                        f"use kd.loss ssi or l1, or cache a metric teacher (e.g. v2-metric-indoor-small)")


def dataset_identity(store: Store, split: Split) -> dict[str, Any]:
    """What identifies the dataset split a cache belongs to (paths may move; this may not)."""
    attrs = store.attrs
    shape = list(split.array_shape)
    return {
        "name": attrs.get("dataset"),
        "fingerprint": attrs.get("fingerprint") or fingerprint(attrs),
        "split": split.name,
        "length": len(split),
        "array_shape": shape,
        "path": store.path,
    }


def cache_place(path: str | Path) -> str:
    """Where a cache is, as text: a local path as given, a URL as the URL (also one a ``Path`` folded: ``s3:/b/k``)."""
    return str(location(path)) if url_of(path) is not None else str(path)


class TeacherCache:
    """Read access to one cached split, aligned with its dataset split. At a URL, ``cache_bytes`` bounds a local
    read-through cache of its shard files as for a store (:func:`leve.store.reader.read_cache`; None:
    ``$LEVE_READ_CACHE_BYTES``)."""

    def __init__(self, path: str | Path, split: str, data: Split, cache_bytes: int | None = None) -> None:
        self.path = cache_place(path)
        self.name = split
        self.data = data
        self._pid = os.getpid()
        with self._reading("zarr.json"):
            self._group = open_group(self.path)[split]
            self.attrs: dict[str, Any] = dict(self._group.attrs)
        check_format(self.path, split, self.attrs)
        remote = "://" in self.path
        # a bucket cache's shard files through the stores' read-through cache, named by the build's fingerprint
        self.cache = (read_cache(self.path, {"fingerprint": self.attrs.get("identity_fingerprint")}, cache_bytes)
                      if remote else None)
        if self.cache is not None:
            with self._reading("zarr.json"):
                self._group = open_group(self.path, self.cache)[split]
        self.written: dict[str, int] = self.attrs[WRITTEN]
        with self._reading("raw_min"):
            self.raw_min = np.asarray(self.group["raw_min"][:])
        with self._reading("raw_max"):
            self.raw_max = np.asarray(self.group["raw_max"][:])
        with self._reading("zero"):
            self.zero = np.asarray(self.group["zero"][:])
        if not len(self.raw_min) == len(self.raw_max) == len(self.zero) == len(data):
            raise damaged(self.path, f"{split}/raw_max", f"holds {len(self.raw_max)} values, the split {len(data)} samples")
        # one pread + one decompression per map where the layout allows (Zarr's generic read costs ~1 ms)
        local = not remote and Path(self.path).is_dir()
        self._fast = self._shard_reader("disparity", local)
        self.has_plain = PLAIN in self.written
        self.depth_kind = cache_depth_kind(self.attrs)
        self._fast_plain = self._shard_reader(PLAIN, local) if self.has_plain else None
        from leve.teacher.cache.crops import CROPS_BOXES, CROPS_DISPARITY, cached_crops

        self.crops = cached_crops(self.attrs)  # local crops per image (cross-context distillation; 0: none)
        self._fast_crops = self._shard_reader(CROPS_DISPARITY, local) if self.crops else None
        if self._fast_crops is not None:  # its error lines name the array from the split down
            self._fast_crops.array = f"{split}/{CROPS_DISPARITY}"
        self._crop_names = (CROPS_DISPARITY, CROPS_BOXES)
        crop_size = self.attrs.get("crops", {}).get("map_size", [0, 0]) if self.crops else [0, 0]
        self.crop_size = (int(crop_size[0]), int(crop_size[1]))  # (h, w) of each crop's map

    @property
    def group(self) -> Any:
        """The split's Zarr group. A bucket cache's is opened again in a forked process (a DataLoader worker of a
        reader its parent opened): its object-store client belongs to the process that made it."""
        if self._pid != os.getpid() and "://" in self.path:
            with self._reading("zarr.json"):
                self._group = open_group(self.path, self.cache)[self.name]
            self._pid = os.getpid()
        return self._group

    def _reading(self, array: str, sample: int | None = None) -> contextlib.AbstractContextManager[None]:
        """Errors while reading ``array`` of this split become one line naming it (:func:`reading`)."""
        return reading(self.path, f"{self.name}/{array}", sample)

    def _shard_reader(self, array: str, local: bool) -> Any:
        """The direct reader of ``array`` (one pread per map): on the local files, on a bucket cache's cached shard
        files (with a read-through cache), else None (Zarr reads it)."""
        if local:
            return shard_reader(Path(self.path) / self.name / array, self.path)
        if self.cache is not None:
            from leve.store.cachedread import cached_shard_reader

            return cached_shard_reader(self.path, self.name, array, self.cache)
        return None

    def _map(self, array: str, i: int) -> np.ndarray:
        """Sample ``i`` of ``disparity`` or ``disparity_plain`` at the stored size, through Zarr."""
        with self._reading(array, i):
            return np.asarray(self.group[array][i])

    def __len__(self) -> int:
        return len(self.raw_max)

    def disparity(self, i: int, dtype: Any = np.float32, out: np.ndarray | None = None) -> np.ndarray:
        """(H, W) map in [0, 1] at the true size of dataset sample ``i``, as ``dtype`` (float32; the
        cache holds float16, which a loader may send as it is); written into ``out`` when given (a
        loader's batch buffer: a full-size float16 map is decoded straight into it)."""
        h, w = self.data.size(i)
        if out is not None and self._fast is not None and out.dtype == np.float16 and out.shape == (h, w) == self._fast.tail:
            return self._fast.read(i, out)
        full = self._fast.read(i) if self._fast is not None else self._map("disparity", i)
        if out is None:
            return full[:h, :w].astype(dtype)
        np.copyto(out, full[:h, :w])
        return out

    def crop_maps(self, i: int, out: np.ndarray | None = None) -> np.ndarray:
        """(K, h, w) float16: the teacher's maps of sample ``i``'s local crops (:mod:`leve.teacher.cache.crops`),
        written into ``out`` when given."""
        full = self._fast_crops.read(i) if self._fast_crops is not None else self._map(self._crop_names[0], i)
        if out is None:
            return full
        np.copyto(out, full)
        return out

    def crop_boxes(self, i: int) -> np.ndarray:
        """(K, 4) int32 boxes ``x0, y0, x1, y1`` (half-open, pixels of the stored image) of sample ``i``'s crops."""
        return self._map(self._crop_names[1], i).astype(np.int32)

    def plain_disparity(self, i: int) -> np.ndarray:
        """(H, W) float32 map of sample ``i`` without flip averaging: ``disparity_plain`` in a flip cache
        that holds it, else :meth:`disparity` (the plain map of a ``tta: none`` cache; an older flip
        cache's average)."""
        if not self.has_plain:
            return self.disparity(i)
        h, w = self.data.size(i)
        full = self._fast_plain.read(i) if self._fast_plain is not None else self._map(PLAIN, i)
        return full[:h, :w].astype(np.float32)

    def raw(self, i: int) -> np.ndarray:
        """The teacher's raw (post-processed, clipped at 0) disparity of sample ``i``."""
        return self.disparity(i) * self.raw_scale()[i]

    def depth(self, i: int) -> np.ndarray:
        """A metric teacher's depth of sample ``i`` in metres (0 where the map is 0: no depth);
        refused on a relative cache."""
        if self.depth_kind != "metric":
            raise LeveError(f"{self.path}/{self.name}: a relative teacher's cache has no metric depth")
        inverse = self.raw(i)
        with np.errstate(divide="ignore"):
            return np.where(inverse > 0, 1.0 / inverse, 0.0).astype(np.float32)

    def raw_scale(self) -> np.ndarray:
        """(N,) float32: the factor from each cached map to the raw one (``raw_max``; 0 for a zero map)."""
        return np.where(self.zero, 0.0, self.raw_max).astype(np.float32)


def check_format(path: str, split: str, attrs: dict[str, Any]) -> None:
    """Refuse a cached split of another cache format (an older one has no chunk checksums)."""
    version = attrs.get("format")
    if version != CACHE_FORMAT or not isinstance(attrs.get(WRITTEN), dict):
        age = "an older" if isinstance(version, int) and version < CACHE_FORMAT else "another"
        raise LeveError(f"{path}/{split}: teacher cache format {version} was written by {age} leve (this one reads "
                        f"format {CACHE_FORMAT}, with chunk checksums); rerun `leve teacher-cache --split {split}`")


def _as_store(dataset_store: str | Path | Store | Split) -> Store:
    if isinstance(dataset_store, Store):
        return dataset_store
    if isinstance(dataset_store, Split):
        return open_store(dataset_store.path)
    return open_store(dataset_store)


def check_cache_matches(
    path: str | Path,
    split: str,
    dataset_store: str | Path | Store | Split,
    expected_model: str | None = None,
    expected_revision: str | None = None,
    expected_config_hash: str | None = None,
) -> dict[str, Any]:
    """The cache split's attributes; raises LeveError when it is missing, incomplete, stale
    (built from another dataset store or split) or from another teacher than expected."""
    store = _as_store(dataset_store)
    data = store.split(split)
    path = cache_place(path)
    where = f"{path}/{split}"
    manifest = _published(path, split) if "://" in path else None
    try:
        root = open_group(str(path))
    except FileNotFoundError:
        raise LeveError(f"{path}: no teacher cache here (run `leve teacher-cache --split {split}`)") from None
    except Exception as exc:
        raise read_error(str(path), "", exc) from exc
    try:
        splits = list(root.group_keys())
        attrs = dict(root[split].attrs) if split in splits else {}
    except Exception as exc:  # a split's zarr.json damaged
        raise read_error(str(path), "", exc) from exc
    if split not in splits:
        raise LeveError(f"{where}: split not cached (run `leve teacher-cache --split {split}`)")
    if not attrs.get("complete"):
        raise LeveError(f"{where}: teacher cache is incomplete; rerun `leve teacher-cache --split {split}`")
    check_format(str(path), split, attrs)
    if manifest is not None and manifest.get("fingerprint") != attrs.get("identity_fingerprint"):
        raise LeveError(f"{where}: its {MANIFEST} and zarr.json are of different builds (a publish was interrupted); "
                        f"rerun `leve teacher-cache --split {split} --out {path}`")
    want = dataset_identity(store, data)
    have = attrs.get("dataset", {})
    for key in ("name", "fingerprint", "split", "length"):
        if have.get(key) != want[key]:
            raise LeveError(
                f"{where}: stale teacher cache, built from another dataset store "
                f"({key} {have.get(key)!r} != {want[key]!r} of {store.path}); rerun `leve teacher-cache`"
            )
    teacher = attrs.get("teacher", {})
    if expected_model is not None:
        expected_model = canonical_model_id(expected_model)
    for key, expected in (("model", expected_model), ("revision", expected_revision), ("config_hash", expected_config_hash)):
        if expected is not None and teacher.get(key) != expected:
            raise LeveError(
                f"{where}: built with teacher {key} {teacher.get(key)!r}, expected {expected!r}; "
                f"rerun `leve teacher-cache` with that teacher"
            )
    return attrs


def _published(url: str, split: str) -> dict[str, Any]:
    """The manifest of split ``split`` of the bucket cache at ``url`` (:mod:`leve.teacher.cache.bucket`); a split
    whose upload or publish did not finish (or that is being replaced) is refused in one line."""
    manifest = read_manifest(f"{url.rstrip('/')}/{split}")
    if manifest is None:
        raise LeveError(f"{url}/{split}: no {MANIFEST}: the teacher cache's upload did not finish, it is being "
                        f"replaced or it was never written; run `leve teacher-cache --split {split} --out {url}`")
    return manifest


def open_teacher_cache(
    path: str | Path,
    split: str,
    dataset_store: str | Path | Store | Split,
    expected_model: str | None = None,
    expected_revision: str | None = None,
    expected_config_hash: str | None = None,
    cache_bytes: int | None = None,
) -> TeacherCache:
    """Open a cached split after :func:`check_cache_matches` accepts it (at a URL: ``cache_bytes``, see
    :class:`TeacherCache`)."""
    store = _as_store(dataset_store)  # opened once, shared with the check
    check_cache_matches(path, split, store, expected_model, expected_revision, expected_config_hash)
    return TeacherCache(path, split, store.split(split), cache_bytes)
