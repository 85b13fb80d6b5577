"""The store format: array and split specifications, codecs and the fingerprint of what a
store was built from. See :mod:`leve.store` for the layout."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import zarr
import zarr.codecs
from zarr.core.dtype import VariableLengthBytes

from leve.errors import LeveError

# 2: every chunk carries a crc32c (the last inner codec), every chunk is written (also one equal to the
# fill value) and each split records what was written (:mod:`leve.store.integrity`); 1: no checksums
STORE_FORMAT = 2
PARTIAL_SUFFIX = ".partial"
PROGRESS_DIR = "_progress"
RGB_CODECS = ("raw", "jpeg")


@dataclass(frozen=True)
class ArraySpec:
    """One per-sample array: shape after the sample axis, dtype and compression."""

    tail: tuple[int, ...]
    dtype: Any
    compressor: str = "zstd"  # "zstd" | "lz4" | "blosc-lz4hc-shuffle" | "blosc-zstd-shuffle" | "none"

    def compressors(self) -> list[Any]:
        """The bytes-to-bytes codecs of one chunk: the compressor, then the crc32c of its output."""
        return [*self._compressor(), zarr.codecs.Crc32cCodec()]

    def _compressor(self) -> list[Any]:
        if self.compressor == "none":
            return []
        if self.compressor == "zstd":
            return [zarr.codecs.ZstdCodec(level=3)]
        if self.compressor == "lz4":  # decodes ~15x faster than zstd; photos barely compress anyway
            return [zarr.codecs.BloscCodec(cname="lz4", clevel=5, shuffle="noshuffle", typesize=1)]
        if self.compressor == "blosc-lz4hc-shuffle":  # a teacher cache's maps (see leve.teacher.cache.build.CODEC)
            return [zarr.codecs.BloscCodec(cname="lz4hc", clevel=3, shuffle="shuffle")]
        if self.compressor == "blosc-zstd-shuffle":
            return [zarr.codecs.BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")]
        raise ValueError(f"unknown compressor {self.compressor}")


def meta_compressors() -> list[Any]:
    """The codecs of a per-sample metadata array (one chunk): zstd, then the crc32c of its output."""
    return [zarr.codecs.ZstdCodec(), zarr.codecs.Crc32cCodec()]


def dataset_arrays(height: int, width: int, rgb_codec: str = "raw", depth: bool = True) -> dict[str, ArraySpec]:
    """The arrays of a dataset split: RGB (raw or source JPEG bytes) and float32 depth.

    ``depth=False`` makes a split without depth (images only, e.g. for distillation from the
    teacher alone): it has no ``depth`` array and its attribute ``has_depth`` is false."""
    if rgb_codec not in RGB_CODECS:
        raise LeveError(f"rgb_codec must be one of {RGB_CODECS}, got '{rgb_codec}'")
    rgb = (
        ArraySpec((height, width, 3), "uint8", "lz4")
        if rgb_codec == "raw"
        else ArraySpec((), VariableLengthBytes(), "none")
    )
    arrays = {"rgb" if rgb_codec == "raw" else "rgb_jpeg": rgb}
    if depth:
        # zstd: NYU's training depth (8-bit PNGs, 256 levels) to 0.008x of its float32 bytes in 0.15 ms;
        # shuffled LZ4-HC decodes continuous float depth ~3x faster but keeps 0.025x of NYU's (3x the bytes)
        arrays["depth"] = ArraySpec((height, width), "float32", "zstd")
    return arrays


@dataclass
class SplitSpec:
    """What a split holds: its length, arrays, per-sample metadata fields and attributes."""

    name: str
    length: int
    arrays: dict[str, ArraySpec]
    meta: dict[str, str]  # field -> numpy dtype name or "str"
    attrs: dict[str, Any] = field(default_factory=dict)
    meta_group: str = "meta"


def fingerprint(obj: Any) -> str:
    """A stable sha256 of a JSON-serialisable description (params, sources, format)."""
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def meta_paths(description: dict[str, Any]) -> dict[str, str]:
    """Metadata field -> its array path in the split (``meta/<field>``, or ``<field>`` without a meta group)."""
    group = description.get("meta_group") or ""
    return {k: f"{group}/{k}" if group else k for k in description.get("meta", {})}


def describe_spec(spec: SplitSpec) -> dict[str, Any]:
    """A JSON description of a split spec (stored with the split; a changed spec rebuilds it)."""
    return {
        "length": spec.length,
        "arrays": {k: [list(a.tail), str(a.dtype), a.compressor] for k, a in spec.arrays.items()},
        "meta": spec.meta,
        "meta_group": spec.meta_group,
    }


def spec_from_description(name: str, d: dict[str, Any]) -> SplitSpec:
    """The inverse of :func:`describe_spec`."""
    arrays = {
        k: ArraySpec(tuple(tail), VariableLengthBytes() if "VariableLengthBytes" in dt else dt, comp)
        for k, (tail, dt, comp) in d["arrays"].items()
    }
    return SplitSpec(name, d["length"], arrays, d["meta"], meta_group=d["meta_group"])
