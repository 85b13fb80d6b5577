"""The Depth-Anything teacher: loading (registry, hub, folders, built-in random), batched
inference identical to transformers' processor, and the per-split disparity cache."""

from __future__ import annotations

from typing import Any

# No re-exports: each name is imported from the module that defines it, so that importing one module
# of this package runs only that module's code (dvc.yaml's derived deps, the training run identity).
# The old spellings (``from leve.teacher import CacheResult``) still work, with a deprecation warning.
_MOVED = {
    "CacheResult": "leve.teacher.cache.build",
    "DEFAULT_TEACHER": "leve.teacher.registry",
    "Preprocessing": "leve.teacher.preprocess",
    "REGISTRY": "leve.teacher.registry",
    "Teacher": "leve.teacher.loading",
    "TeacherCache": "leve.teacher.cache.read",
    "build_teacher_cache": "leve.teacher.cache.build",
    "canonical_model_id": "leve.teacher.loading",
    "check_cache_matches": "leve.teacher.cache.read",
    "find_entry": "leve.teacher.registry",
    "list_teachers": "leve.teacher.registry",
    "load_teacher": "leve.teacher.loading",
    "open_teacher_cache": "leve.teacher.cache.read",
    "parse_shard": "leve.teacher.cache.build",
}


def __getattr__(name: str) -> Any:
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib
    import warnings

    warnings.warn(f"`from {__name__} import {name}` is deprecated: import it from {module}", DeprecationWarning,
                  stacklevel=2)
    return getattr(importlib.import_module(module), name)
