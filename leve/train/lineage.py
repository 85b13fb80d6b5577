"""The lineage of a ``leve train`` run (:mod:`leve.models.lineage` describes the record): the teacher
cache's own record, the dataset splits, the encoder file and the licence that follows. Written here,
in the training layer, because it reads the teacher registry, a layer above the students'
(:mod:`leve.models` only reads the record back)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from leve.models.lineage import is_non_commercial, student_licence


def teacher_record(attrs: dict[str, Any], cache: str | Path) -> dict[str, Any]:
    """The teacher of a cached split, from the cache split's attributes; the registry is consulted too,
    so a cache that recorded no licence is still caught as non-commercial by its model id."""
    from leve.teacher.registry import find_entry

    t = dict(attrs.get("teacher") or {})
    model = str(t.get("model") or "unknown")
    entry = find_entry(model)
    licence = str(t.get("licence") or (entry.licence if entry else "unknown"))
    non_commercial = is_non_commercial(licence) or bool(entry and is_non_commercial(entry.licence))
    return {"model": model, "name": entry.name if entry else None, "revision": t.get("revision"),
            "licence": licence, "non_commercial": non_commercial, "source": t.get("source"),
            "config_hash": t.get("config_hash"), "cache": str(cache),
            "cache_fingerprint": attrs.get("identity_fingerprint"), "cache_completed_at": attrs.get("completed_at")}


def dataset_record(store: Any, split: str, role: str) -> dict[str, Any]:
    """One dataset split a student saw: its store's path and identity (fingerprint, completion time)."""
    from leve.store.format import fingerprint

    data = store.split(split)
    attrs = store.attrs
    return {"role": role, "name": attrs.get("dataset"), "path": str(store.path), "split": split,
            "samples": len(data), "has_depth": bool(data.has_depth), "units": attrs.get("units"),
            "fingerprint": attrs.get("fingerprint") or fingerprint(attrs), "completed_at": attrs.get("completed_at")}


def training_lineage(cfg: Any, store: Any) -> dict[str, Any]:
    """The lineage of a ``leve train`` run (a :class:`~leve.train.config.TrainConfig`) on ``store``: its
    train and val splits and, when it distils (``kd.eps > 0``), the teacher its cache records."""
    from leve.store.integrity import open_group
    from leve.teacher.cache.read import cache_place

    teacher = None
    if cfg.kd.eps > 0:
        cache = cache_place(cfg.teacher_path)  # a local path as it is; a bucket cache's URL (s3://...)
        attrs = dict(open_group(cache)[cfg.train_split].attrs)
        teacher = {**teacher_record(attrs, cache), "eps": float(cfg.kd.eps), "loss": cfg.kd.loss}
    datasets = [dataset_record(store, cfg.train_split, "train"), dataset_record(store, cfg.val_split, "val")]
    datasets[0]["labels_fraction"] = float(cfg.labels.fraction) if datasets[0]["has_depth"] else 0.0
    encoder = None
    if cfg.encoder_weights:
        from leve.models.registry import model_spec

        spec = model_spec(cfg.model).encoder_weights
        encoder = {"file": Path(cfg.encoder_weights).name, "licence": spec.licence if spec else "unknown"}
    licence, licence_id = student_licence(teacher)
    return {"teacher": teacher, "datasets": datasets, "encoder_weights": encoder, "licence": licence,
            "licence_id": licence_id, "non_commercial": bool(teacher and teacher["non_commercial"])}
