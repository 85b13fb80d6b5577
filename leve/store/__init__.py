"""Zarr v3 stores: one group per dataset, one subgroup per split, arrays aligned on samples.

Layout of ``data/zarr/<dataset>.zarr``::

    zarr.json                 root attributes: dataset, units, max_depth, sources, leve
                              version, creation params, fingerprint, ``complete``
    <split>/rgb               (N, H, W, 3) uint8      (``rgb_codec: raw``)
    <split>/rgb_jpeg          (N,) bytes               (``rgb_codec: jpeg``: the source JPEG)
    <split>/depth             (N, H, W) float32, dataset units, 0 = invalid; absent in a split
                              without depth (split attribute ``has_depth: false``)
    <split>/meta/<field>      (N,) per-sample metadata (source, scene, height, width, ...)

Writers build the whole store in ``<path>.partial`` and rename it into place after
the completion attribute is written (last), so the final path only ever holds a
complete store. Work is done in blocks of ``block_size`` samples, one Zarr shard
per block per array: a block is written whole (no read-modify-write) and then
marked done, so an interrupted build resumes at the first unfinished block.

Every byte is checked (store format 2, :mod:`leve.store.integrity`): each chunk and
each shard index carries a crc32c, every sample's chunk is written (also one equal
to the fill value) and each split records at publish what was written (attribute
``written``), so readers refuse damaged, truncated or missing data in one line and
``leve verify PATH`` checks a whole store or teacher cache.
"""

from leve.store.builder import SplitWriter, StoreBuilder, replace_dir
from leve.store.format import (
    PARTIAL_SUFFIX,
    PROGRESS_DIR,
    RGB_CODECS,
    STORE_FORMAT,
    ArraySpec,
    SplitSpec,
    dataset_arrays,
    fingerprint,
)
from leve.store.reader import Sample, Split, Store, disk_usage, is_complete, open_split, open_store

__all__ = [
    "PARTIAL_SUFFIX",
    "PROGRESS_DIR",
    "RGB_CODECS",
    "STORE_FORMAT",
    "ArraySpec",
    "Sample",
    "Split",
    "SplitSpec",
    "SplitWriter",
    "Store",
    "StoreBuilder",
    "dataset_arrays",
    "disk_usage",
    "fingerprint",
    "is_complete",
    "open_split",
    "open_store",
    "replace_dir",
]
