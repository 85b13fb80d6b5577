"""The teacher cache's local crops (cross-context distillation, issue 30 item 3): boxes inside the image and
the same on every build, each crop's map equal to the teacher run here on the cropped image, checksummed
like every other array (``leve verify`` finds a damaged crops chunk), refused by training at another count."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import zarr
from typer.testing import CliRunner

from leve.cli import app
from leve.errors import LeveError
from leve.store.info import store_info
from leve.store.integrity import verify_store
from leve.store.reader import open_split
from leve.teacher.cache.build import build_teacher_cache
from leve.teacher.cache.crops import CROP_SIDE, check_crops, crop_boxes
from leve.teacher.cache.read import open_teacher_cache
from leve.teacher.loading import load_teacher
from tests.explicit import caching
from tests.factories import make_store

SIZES = [(30, 40), (20, 50), (30, 40), (25, 33), (30, 40)]
K = 2


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("ds") / "tiny.zarr", SIZES)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, store: Path, fast_teacher_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("crops") / "teacher.zarr"
    result = build_teacher_cache(store, out, "train", load_teacher(str(fast_teacher_dir)),
                                 **caching(crops=K, block_size=2), show_progress=False)
    assert result.complete
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "zarr.json"}


def test_boxes_lie_inside_each_image_and_are_drawn_by_the_rule(built: Path, store: Path) -> None:
    cache = open_teacher_cache(built, "train", store)
    assert cache.crops == K and cache.crop_size == (30 // 2, 50 // 2)  # half the split's array shape (30 x 50)
    stored = np.asarray(zarr.open_group(str(built), mode="r")["train/crops/boxes"][:])
    assert stored.dtype == np.int32 and stored.shape == (len(SIZES), K, 4)
    for i, (h, w) in enumerate(SIZES):
        boxes = cache.crop_boxes(i)
        x0, y0, x1, y1 = boxes.T
        assert (x0 >= 0).all() and (y0 >= 0).all() and (x1 <= w).all() and (y1 <= h).all()
        assert ((x1 - x0) >= round(CROP_SIDE[0] * w)).all() and ((x1 - x0) <= round(CROP_SIDE[1] * w)).all()
        assert ((y1 - y0) >= round(CROP_SIDE[0] * h)).all() and ((y1 - y0) <= round(CROP_SIDE[1] * h)).all()
        np.testing.assert_array_equal(boxes, crop_boxes(i, h, w, K))
    assert not np.array_equal(stored[0], stored[2])  # same size, another index: other boxes


def test_a_rebuild_writes_equal_bytes(built: Path, store: Path, fast_teacher_dir: Path, tmp_path: Path) -> None:
    again = tmp_path / "teacher.zarr"
    build_teacher_cache(store, again, "train", load_teacher(str(fast_teacher_dir)), **caching(crops=K, block_size=2),
                        show_progress=False)
    a, b = _files(built / "train"), _files(again / "train")
    assert any(k.startswith("crops/disparity/") for k in a) and any(k.startswith("crops/boxes/") for k in a)
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a)


def test_each_crop_map_is_the_teacher_run_on_the_cropped_image(built: Path, store: Path, fast_teacher_dir: Path) -> None:
    """Independently: crop the stored RGB, resize it as the processor does, normalise with its mean/std, run
    the model, bicubic to the crop map's size, clip at 0 and divide by the maximum."""
    teacher = load_teacher(str(fast_teacher_dir))
    prep = teacher.preprocessing
    mean, std = np.asarray(prep.image_mean, np.float32), np.asarray(prep.image_std, np.float32)
    cache = open_teacher_cache(built, "train", store)
    split = open_split(store, "train")
    model = teacher.model.eval()
    for i, (h, w) in enumerate(SIZES):
        rgb = split.rgb(i)[:h, :w]
        maps = cache.crop_maps(i).astype(np.float32)
        assert maps.shape == (K, *cache.crop_size)
        for k, (x0, y0, x1, y1) in enumerate(crop_boxes(i, h, w, K)):
            resized = prep.resize(np.ascontiguousarray(rgb[y0:y1, x0:x1])).astype(np.float32)  # (3, h', w')
            pixels = (resized / 255.0 - mean[:, None, None]) / std[:, None, None]
            with torch.no_grad():
                depth = model(pixel_values=torch.from_numpy(pixels)[None]).predicted_depth
            raw = F.interpolate(depth[:, None], size=cache.crop_size, mode="bicubic", align_corners=False)[0, 0].numpy()
            want = np.clip(raw, 0, None) / raw.max()
            np.testing.assert_allclose(maps[k], want, atol=2e-3, rtol=0)
            assert maps[k].max() == 1.0


def test_no_crops_leaves_the_cache_as_before(store: Path, fast_teacher_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "teacher.zarr"
    build_teacher_cache(store, out, "train", load_teacher(str(fast_teacher_dir)), **caching(crops=0, block_size=2),
                        show_progress=False)
    group = zarr.open_group(str(out), mode="r")["train"]
    assert "crops" not in dict(group.attrs) and "crops" not in list(group.group_keys())
    assert open_teacher_cache(out, "train", store).crops == 0


def test_leve_verify_finds_a_damaged_crops_chunk(built: Path, store: Path, tmp_path: Path) -> None:
    bad, counts = verify_store(built)
    assert bad == [] and counts["arrays"] == 6  # disparity, raw_min, raw_max, zero, crops/disparity, crops/boxes
    arrays = store_info(str(built))["splits"]["train"]["arrays"]  # `leve info` lists them too
    assert arrays["crops/disparity"] == {"shape": [len(SIZES), K, 15, 25], "dtype": "float16"}
    assert arrays["crops/boxes"] == {"shape": [len(SIZES), K, 4], "dtype": "int32"}
    import shutil

    copy = tmp_path / "teacher.zarr"
    shutil.copytree(built, copy)
    shard = copy / "train/crops/disparity/c/1/0/0/0"
    blob = bytearray(shard.read_bytes())
    blob[10] ^= 0xFF  # inside the first chunk of the shard (samples 2-3)
    shard.write_bytes(bytes(blob))
    bad, _ = verify_store(copy)
    assert [b.array for b in bad] == ["train/crops/disparity"]
    result = CliRunner().invoke(app, ["verify", str(copy)])
    assert result.exit_code != 0 and "train/crops/disparity" in result.output
    cache = open_teacher_cache(copy, "train", store)  # training's read stops there in one line
    cache.crop_maps(0)
    with pytest.raises(LeveError, match=r"teacher.zarr: train/crops/disparity sample 2 \(file c/1/0/0/0\)"):
        cache.crop_maps(2)


def test_training_refuses_a_cache_of_another_crop_count(built: Path) -> None:
    attrs = dict(zarr.open_group(str(built), mode="r")["train"].attrs)
    assert check_crops(attrs, K, 0.5, "c/train") == K
    with pytest.raises(LeveError, match=r"^c/train: teacher cache built with teacher.crops 2, the params say 3;"):
        check_crops(attrs, 3, 0.5, "c/train")
    with pytest.raises(LeveError, match=r"^c/train: kd.crops_weight 0.5 needs local crops in the teacher cache"):
        check_crops({}, None, 0.5, "c/train")
    assert check_crops({}, 0, 0.0, "c/train") == 0
