"""Fixtures: a small synthetic store (real format, exact metric depth) and its tiny-random teacher cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from leve.teacher.cache.build import build_teacher_cache
from leve.teacher.loading import load_teacher
from tests.explicit import caching
from tests.factories import synthetic_store as build_synthetic

TRAIN_SIZE = (72, 96)  # training resolution in these tests (the store is 96x128)


@pytest.fixture(scope="session")
def synthetic_store(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train_data") / "synthetic.zarr"
    return build_synthetic(out, height=96, width=128, train=48, val=8, test=8, block_size=16)


@pytest.fixture(scope="session")
def synthetic_with_teacher(synthetic_store) -> tuple[Path, Path]:
    cache = synthetic_store.parent / "teacher" / "synthetic.zarr"
    build_teacher_cache(synthetic_store, cache, "train", load_teacher("tiny-random"), **caching(block_size=16),
                        show_progress=False)
    return synthetic_store, cache
