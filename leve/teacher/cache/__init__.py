"""The teacher cache: ``data/teacher/<dataset>.zarr/<split>/`` aligned 1:1 with a dataset split,
built once by :mod:`.build` (sharded, resumable) and read by :mod:`.read`."""

from __future__ import annotations

from leve import moved_names

# No re-exports: each name is imported from the module that defines it, so that importing one module
# of this package runs only that module's code (dvc.yaml's derived deps, the training run identity).
# The old spellings (``from leve.teacher.cache import CacheResult``) still work, with a deprecation warning.
_MOVED = {
    "CacheResult": "leve.teacher.cache.build",
    "TeacherCache": "leve.teacher.cache.read",
    "build_teacher_cache": "leve.teacher.cache.build",
    "cache_identity": "leve.teacher.cache.build",
    "check_cache_matches": "leve.teacher.cache.read",
    "dataset_identity": "leve.teacher.cache.read",
    "open_teacher_cache": "leve.teacher.cache.read",
    "parse_shard": "leve.teacher.cache.build",
    "plan_batches": "leve.teacher.cache.build",
}

__getattr__ = moved_names(__name__, _MOVED)
