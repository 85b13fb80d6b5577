"""The Depth-Anything teacher: loading (registry, hub, folders, built-in random), batched
inference identical to transformers' processor, and the per-split disparity cache."""

from __future__ import annotations

from leve import moved_names

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

__getattr__ = moved_names(__name__, _MOVED)
