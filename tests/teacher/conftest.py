"""Fixtures: tiny dataset stores (real store format, mixed image sizes) and a tiny random
Depth-Anything saved with ``save_pretrained`` plus a transformers-written processor config."""

from __future__ import annotations

from pathlib import Path

import pytest

from leve.teacher.dpt import DEPTH_ANYTHING_PREPROCESSING
from tests.factories import make_store


def save_tiny_teacher(folder: Path, size: int = 518) -> Path:
    """``tiny-random`` saved with save_pretrained, with transformers' own DPT processor config."""
    from transformers.models.dpt.image_processing_pil_dpt import DPTImageProcessorPil

    from leve.teacher.loading import load_teacher

    teacher = load_teacher("tiny-random")
    teacher.model.save_pretrained(folder)
    settings = {**DEPTH_ANYTHING_PREPROCESSING, "size": {"height": size, "width": size}}
    DPTImageProcessorPil(**settings).save_pretrained(folder)
    return folder


MIXED_SIZES = [(48, 64), (40, 90), (48, 64), (64, 48), (40, 90), (48, 64), (33, 77)]


@pytest.fixture(scope="session")
def mixed_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("ds") / "tiny.zarr", MIXED_SIZES)


@pytest.fixture(scope="session")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_teacher(tmp_path_factory.mktemp("teacher") / "tiny-da")


@pytest.fixture(scope="session")
def fast_teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same tiny model fed at 70 px (multiple of 14) so block/resume tests run fast."""
    return save_tiny_teacher(tmp_path_factory.mktemp("teacher") / "tiny-da-70", size=70)
