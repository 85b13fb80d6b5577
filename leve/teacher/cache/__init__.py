"""The teacher cache: ``data/teacher/<dataset>.zarr/<split>/`` aligned 1:1 with a dataset split,
built once by :mod:`.build` (sharded, resumable) and read by :mod:`.read`."""

from leve.teacher.cache.build import CacheResult, build_teacher_cache, cache_identity, parse_shard, plan_batches
from leve.teacher.cache.read import TeacherCache, check_cache_matches, dataset_identity, open_teacher_cache

__all__ = [
    "CacheResult",
    "TeacherCache",
    "build_teacher_cache",
    "cache_identity",
    "check_cache_matches",
    "dataset_identity",
    "open_teacher_cache",
    "parse_shard",
    "plan_batches",
]
