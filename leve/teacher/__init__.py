"""The Depth-Anything teacher: loading (registry, hub, folders, built-in random), batched
inference identical to transformers' processor, and the per-split disparity cache."""

from leve.teacher.cache import (
    CacheResult,
    TeacherCache,
    build_teacher_cache,
    check_cache_matches,
    open_teacher_cache,
    parse_shard,
)
from leve.teacher.loading import Teacher, canonical_model_id, load_teacher
from leve.teacher.preprocess import Preprocessing
from leve.teacher.registry import DEFAULT_TEACHER, REGISTRY, find_entry, list_teachers

__all__ = [
    "DEFAULT_TEACHER",
    "REGISTRY",
    "CacheResult",
    "Preprocessing",
    "Teacher",
    "TeacherCache",
    "build_teacher_cache",
    "canonical_model_id",
    "check_cache_matches",
    "find_entry",
    "list_teachers",
    "load_teacher",
    "open_teacher_cache",
    "parse_shard",
]
