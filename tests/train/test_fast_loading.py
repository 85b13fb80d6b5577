"""The loader's fast paths: uint8 RGB at training size, the dense/empty depth shortcuts, the direct
read of a store's source JPEGs, and libjpeg's reduced-scale decode (``decode: draft``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from leve.datasets.build import SplitSource, build_store
from leve.images import resize_depth, resize_maps, resize_rgb, rgb_to_float
from leve.store.format import SplitSpec, dataset_arrays
from leve.store.images import decode_rgb, decode_rgb_draft, encode_jpeg
from leve.store.reader import open_split
from leve.train.config import AugmentConfig
from leve.train.data import DepthDataset, collate
from tests.explicit import loading

H, W = 64, 96


def _smooth(i: int, h: int = H, w: int = W) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    rng = np.random.default_rng(i)
    rgb = np.stack([np.sin(rng.uniform(2, 9) * xx + rng.uniform(1, 7) * yy + c) for c in range(3)], -1)
    return np.clip(rgb * 100 + 128, 0, 255).astype(np.uint8)


class JpegRGBD:
    """Smooth RGB as JPEG bytes (one with a NUL-terminated tail after its end marker) and positive depth."""

    def __call__(self, i: int) -> tuple[dict[str, Any], dict[str, Any]]:
        data = encode_jpeg(_smooth(i), 90) + (b"\0\0" if i == 1 else b"")
        depth = np.full((H, W), 1.0 + i, np.float32)
        return {"rgb_jpeg": data, "depth": depth}, {"height": H, "width": W}


@pytest.fixture(scope="module")
def jpeg_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("jpeg") / "jpeg.zarr"
    spec = SplitSpec("train", 5, dataset_arrays(H, W, rgb_codec="jpeg"), {"height": "int32", "width": "int32"})
    build_store(path, {"dataset": "jpeg-test", "max_depth": 10.0}, "jpeg-test", [SplitSource(spec, JpegRGBD())],
                block_size=2, show_progress=False)
    return path


def test_direct_jpeg_bytes_read_equals_zarr(jpeg_store):
    import zarr

    split = open_split(jpeg_store, "train")
    group = zarr.open_group(str(jpeg_store), mode="r")["train"]
    for i in range(5):
        assert split.rgb_bytes(i) == bytes(group["rgb_jpeg"][i : i + 1][0])
    assert split._fast["rgb_jpeg"] is not None  # the direct path was taken
    assert split.rgb_bytes(1).endswith(b"\0\0")  # trailing NULs kept


def test_draft_decode_is_a_reduced_scale_of_the_full_decode(jpeg_store):
    split = open_split(jpeg_store, "train")
    data = split.rgb_bytes(0)
    full = decode_rgb(data, "x")
    for size, scale in (((32, 48), 2), ((16, 24), 4), ((20, 30), 2), ((40, 60), 1)):
        draft = decode_rgb_draft(data, "x", size)
        assert draft.shape == (H // scale, W // scale, 3)  # the smallest DCT scale still >= size
        # a naive reduction of the full decode: the mean of each scale x scale block
        naive = full.reshape(H // scale, scale, W // scale, scale, 3).mean((1, 3))
        assert np.abs(draft - naive).mean() < 2.0 and np.abs(draft.astype(float) - naive).max() < 24
    png = np.asarray(Image.fromarray(full))  # not a JPEG: the full decode
    import io

    buf = io.BytesIO()
    Image.fromarray(png).save(buf, format="PNG")
    assert np.array_equal(decode_rgb_draft(buf.getvalue(), "x", (16, 24)), png)


def test_dataset_draft_decode_then_the_shared_resize(jpeg_store):
    size = (24, 40)  # not an exact scale: 1/2 draft (32x48), then the shared resize
    full = DepthDataset(jpeg_store, "train", size, **loading())
    draft = DepthDataset(jpeg_store, "train", size, **loading(decode="draft"))
    split = open_split(jpeg_store, "train")
    for i in range(3):
        a, b = full[i], draft[i]
        want = resize_rgb(decode_rgb_draft(split.rgb_bytes(i), "x", size), size)
        assert torch.equal(b["rgb"], want) and torch.equal(a["depth"], b["depth"])
        assert not torch.equal(a["rgb"], b["rgb"])  # a declared difference from evaluation's input ...
        assert (a["rgb"] - b["rgb"]).abs().mean() < 2.0 / 255  # ... a small one
    with pytest.raises(ValueError, match="decode"):
        DepthDataset(jpeg_store, "train", size, **loading(decode="fast"))


def test_uint8_items_make_the_same_input_on_the_device(jpeg_store):
    from leve.train.step import StepRunner

    aug = AugmentConfig(flip=0.5, channel_swap=0.5)
    floats = DepthDataset(jpeg_store, "train", (40, 60), augment=aug, **loading(seed=3))
    bytes_ = DepthDataset(jpeg_store, "train", (40, 60), augment=aug, **loading(seed=3), rgb_uint8=True)
    a, b = collate([floats[(1, i)] for i in range(4)]), collate([bytes_[(1, i)] for i in range(4)])
    assert b["rgb"].dtype == torch.uint8 and a["rgb"].dtype == torch.float32
    runner = StepRunner.__new__(StepRunner)  # to_device alone
    runner.device, runner.channels_last = torch.device("cpu"), False
    moved = runner.to_device(b)
    assert torch.equal(moved["rgb"], a["rgb"]) and torch.equal(rgb_to_float(b["rgb"]), a["rgb"])
    assert torch.equal(moved["depth"], a["depth"])


def test_resize_rgb_is_8_bit_pil_on_a_2x_shrink():
    rgb = np.random.default_rng(2).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    pil = np.asarray(Image.fromarray(rgb).resize((32, 24), Image.BILINEAR))
    out = resize_rgb(rgb, (24, 32)).permute(1, 2, 0).numpy() * 255
    np.testing.assert_allclose(out, pil, atol=1e-3)


def test_depth_shortcuts_equal_the_general_filter():
    """Dense depth (every pixel valid) and empty depth (none) against the normalised convolution
    written out with the generic pieces."""
    rng = np.random.default_rng(0)
    dense = torch.from_numpy(rng.uniform(0.5, 9.0, (2, 1, 30, 45)).astype(np.float32))
    for size in ((12, 20), (45, 50)):
        num = resize_maps(dense, size)
        den = resize_maps(torch.ones_like(dense), size)
        want = torch.where(den >= 0.5, num / den, torch.zeros_like(num))
        assert torch.equal(resize_depth(dense, size), want)
        empty = resize_depth(torch.zeros_like(dense), size)
        assert empty.shape == (2, 1, *size) and not empty.any()
    nan = dense.clone()
    nan[0, 0, 0, 0] = float("nan")
    nan[1, 0, 0, 1] = float("inf")
    out = resize_depth(nan, (12, 20))
    assert torch.isfinite(out).all()  # non-finite depth is invalid, never blended
