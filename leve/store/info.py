"""What a store holds: splits, arrays, metadata fields, attributes and size on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from leve.store.reader import disk_usage, open_store


def store_info(path: str) -> dict[str, Any]:
    """Splits with their arrays (shape, dtype), metadata fields, attributes and size on disk."""
    store = open_store(path, require_complete=False)
    splits = {}
    for name in store.splits:
        group = store.root[name]
        arrays = {k: {"shape": list(a.shape), "dtype": str(a.dtype)} for k, a in group.arrays()}
        for sub, inner in group.groups():  # a teacher cache's crops/ (its local crops), not the metadata
            if sub != "meta":
                arrays.update({f"{sub}/{k}": {"shape": list(a.shape), "dtype": str(a.dtype)} for k, a in inner.arrays()})
        meta = sorted(group["meta"].array_keys()) if "meta" in group else []
        splits[name] = {"length": group.attrs.get("length"), "arrays": arrays, "meta": meta}
    info = {"path": path, "complete": bool(store.attrs.get("complete")), "attrs": store.attrs, "splits": splits}
    if Path(path).is_dir():
        info["bytes"], info["files"] = disk_usage(path)
    return info
