"""Parity with transformers' own image processor + model + post_process_depth_estimation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoImageProcessor, DepthAnythingForDepthEstimation
from transformers.models.dpt.image_processing_pil_dpt import (
    get_resize_output_image_size,
)

from leve.store.reader import open_split
from leve.teacher.cache.build import build_teacher_cache
from leve.teacher.cache.read import open_teacher_cache
from leve.teacher.dpt import DEPTH_ANYTHING_PREPROCESSING
from leve.teacher.infer import normalise
from leve.teacher.loading import load_teacher
from leve.teacher.preprocess import Preprocessing, normalize_batch
from tests.explicit import caching

from .conftest import MIXED_SIZES

F16_ATOL = 1e-3  # float16 spacing near 1 is 2**-10


def reference_maps(folder: Path, rgbs: list[np.ndarray], flip: bool = False) -> list[np.ndarray]:
    """transformers, one image at a time, normalised like the cache (clip at 0, divide by max)."""
    processor = AutoImageProcessor.from_pretrained(folder)
    model = DepthAnythingForDepthEstimation.from_pretrained(folder).eval()
    maps = []
    for rgb in rgbs:
        inputs = processor(images=rgb, return_tensors="pt")
        with torch.no_grad():
            out = model(**inputs)
            if flip:
                mirrored = model(pixel_values=inputs["pixel_values"].flip(-1)).predicted_depth.flip(-1)
                out.predicted_depth = 0.5 * (out.predicted_depth + mirrored)
        raw = processor.post_process_depth_estimation(out, target_sizes=[rgb.shape[:2]])[0]["predicted_depth"]
        raw = raw.numpy().astype(np.float32)
        maps.append(np.clip(raw, 0, None) / raw.max())
    return maps


@pytest.mark.parametrize("size", [(480, 640), (375, 1242), (376, 1241), (48, 64), (33, 77), (1000, 300), (518, 518)])
def test_output_size_follows_transformers(size: tuple[int, int]) -> None:
    prep = Preprocessing.from_dict(DEPTH_ANYTHING_PREPROCESSING)
    want = get_resize_output_image_size(np.zeros((3, *size)), (518, 518), keep_aspect_ratio=True, multiple=14)
    assert prep.output_size(*size) == (want.height, want.width)


def test_nyu_size_is_518_by_686() -> None:
    assert Preprocessing().output_size(480, 640) == (518, 686)


def test_pixel_values_equal_processor(mixed_store: Path, teacher_dir: Path) -> None:
    processor = AutoImageProcessor.from_pretrained(teacher_dir)
    prep = load_teacher(str(teacher_dir)).preprocessing
    table = prep.lookup_table()
    split = open_split(mixed_store, "train")
    for i in range(len(split)):
        rgb = split.rgb(i)
        want = processor(images=rgb, return_tensors="np")["pixel_values"][0]
        got = normalize_batch(torch.from_numpy(prep.resize(rgb))[None], table)[0].numpy()
        assert got.shape == want.shape
        np.testing.assert_array_equal(got, want)


@pytest.mark.slow
@pytest.mark.parametrize("tta", ["none", "flip"])
def test_cache_equals_transformers_pipeline(tmp_path: Path, mixed_store: Path, teacher_dir: Path, tta: str) -> None:
    teacher = load_teacher(str(teacher_dir))
    out = tmp_path / "teacher.zarr"
    result = build_teacher_cache(
        mixed_store, out, "train", teacher, **caching(batch_size=2, tta=tta, block_size=4), show_progress=False
    )
    assert result.complete and result.written == len(MIXED_SIZES)
    cache = open_teacher_cache(out, "train", mixed_store, expected_model=str(teacher_dir))
    split = open_split(mixed_store, "train")
    rgbs = [split.rgb(i) for i in range(len(split))]
    refs = reference_maps(teacher_dir, rgbs, flip=tta == "flip")
    for i, ref in enumerate(refs):
        got = cache.disparity(i)
        assert got.shape == MIXED_SIZES[i] == ref.shape
        np.testing.assert_allclose(got, ref, atol=F16_ATOL, rtol=0)
        assert got.max() == 1.0 and not cache.zero[i]
    stored = np.asarray(cache.group["disparity"][:])
    assert stored.dtype == np.float16 and stored.shape == (len(MIXED_SIZES), 64, 90)
    assert not stored[1, 40:, :].any() and not stored[0, :, 64:].any()  # padding stays zero


def test_normalise_zero_and_negative_maps() -> None:
    raw = torch.tensor([[[0.0, 0.0], [0.0, 0.0]], [[-0.5, 1.0], [2.0, 4.0]], [[-1.0, -2.0], [-3.0, -0.5]]])
    out = normalise(raw)
    np.testing.assert_array_equal(out.zero, [True, False, True])
    np.testing.assert_array_equal(out.disparity[0], 0)
    np.testing.assert_array_equal(out.disparity[2], 0)
    np.testing.assert_array_equal(out.disparity[1].astype(np.float32), [[0.0, 0.25], [0.5, 1.0]])
    np.testing.assert_array_equal(out.raw_min, [0.0, -0.5, -3.0])
    np.testing.assert_array_equal(out.raw_max, [0.0, 4.0, -0.5])
    assert out.disparity.dtype == np.float16 and not np.isnan(out.disparity).any()
