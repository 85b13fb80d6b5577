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

A store may live at an fsspec URL (``s3://bucket/prefix/nyu.zarr``; :mod:`leve.store.remote`). Object
stores have no rename, so the folder swap becomes: build locally, upload to the staging prefix
``<url>.partial/``, then publish by server-side copies into ``<url>/`` with ``leve-manifest.json``
(fingerprint, every object's size and crc32c) written last. Readers require the manifest and its
fingerprint to match the root ``zarr.json``: a half-written or half-replaced store is refused in one
line. One writer: the lock object ``<url>.lock``, created with a conditional PUT (If-None-Match).
"""

from __future__ import annotations

from leve import moved_names

# No re-exports: each name is imported from the module that defines it, so that importing one module
# of this package runs only that module's code (dvc.yaml's derived deps, the training run identity).
# The old spellings (``from leve.store import ArraySpec``) still work, with a deprecation warning.
_MOVED = {
    "ArraySpec": "leve.store.format",
    "PARTIAL_SUFFIX": "leve.store.format",
    "PROGRESS_DIR": "leve.store.format",
    "RGB_CODECS": "leve.store.format",
    "STORE_FORMAT": "leve.store.format",
    "Sample": "leve.store.reader",
    "Split": "leve.store.reader",
    "SplitSpec": "leve.store.format",
    "SplitWriter": "leve.store.builder",
    "Store": "leve.store.reader",
    "StoreBuilder": "leve.store.builder",
    "dataset_arrays": "leve.store.format",
    "disk_usage": "leve.store.reader",
    "fingerprint": "leve.store.format",
    "is_complete": "leve.store.reader",
    "open_split": "leve.store.reader",
    "open_store": "leve.store.reader",
    "replace_dir": "leve.store.builder",
}

__getattr__ = moved_names(__name__, _MOVED)
