"""Targets resized on the training device (``targets: device``) and ``train.data.decode`` as a train param."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from leve.datasets.build import SplitSource, build_store
from leve.images import resize_depth, resize_maps
from leve.store.format import SplitSpec, dataset_arrays
from leve.store.reader import open_split
from leve.train.config import AugmentConfig
from leve.train.data import DepthDataset, collate, draft_refusal, finish_targets
from tests.explicit import loading
from tests.factories import make_store

H, W = 48, 64


class HoleyDepth:
    """Smooth RGB and depth with holes and ragged zero edges (sample 2: no valid depth at all)."""

    def __call__(self, i: int) -> tuple[dict[str, Any], dict[str, Any]]:
        rng = np.random.default_rng(i)
        rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        depth = rng.uniform(0.5, 9.0, (H, W)).astype(np.float32)
        depth *= rng.random((H, W)) > 0.3 * (i % 2)  # odd samples: scattered misses
        depth[: 4 * i, : 5 * i] = 0.0
        if i == 2:
            depth[:] = 0.0
        return {"rgb": rgb, "depth": depth}, {"height": H, "width": W}


@pytest.fixture(scope="module")
def holey_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("holey") / "holey.zarr"
    spec = SplitSpec("train", 6, dataset_arrays(H, W), {"height": "int32", "width": "int32"})
    build_store(path, {"dataset": "holey", "max_depth": 10.0}, "holey", [SplitSource(spec, HoleyDepth())],
                block_size=3, show_progress=False)
    return path


def _pair(store: Path, size: tuple[int, int], teacher: Path | None = None, **kw: Any) -> tuple[DepthDataset, DepthDataset]:
    aug = AugmentConfig(flip=0.5, channel_swap=0.5)
    return tuple(DepthDataset(store, "train", size, teacher, aug, **loading(seed=5), rgb_uint8=True, targets=t, **kw)  # type: ignore[return-value]
                 for t in ("worker", "device"))


def test_device_targets_equal_the_workers_bit_for_bit(synthetic_with_teacher):
    store, cache = synthetic_with_teacher
    labelled = np.arange(48) % 3 != 0  # some samples without depth: all-zero maps in the same batch
    worker, device = _pair(store, (40, 56), cache, labelled=labelled)
    assert device.targets == "device"
    flips = 0
    for epoch in (0, 1):
        keys = [(epoch, i) for i in range(8)]
        a, sent = collate([worker[k] for k in keys]), collate([device[k] for k in keys])
        assert sent["depth"].shape == (8, 1, 96, 128) and sent["teacher"].dtype == torch.float16
        flips += int(sent["flip"].sum())
        b = finish_targets(sent)
        assert set(b) == set(a)
        for key in a:
            assert torch.equal(a[key], b[key]), key
    assert 0 < flips < 16  # both branches of the flip ran


def test_device_targets_with_holes_and_empty_maps(holey_store):
    worker, device = _pair(holey_store, (20, 30))
    keys = [(0, i) for i in range(6)]
    a, b = collate([worker[k] for k in keys]), finish_targets(collate([device[k] for k in keys]))
    assert torch.equal(a["depth"], b["depth"]) and torch.equal(a["rgb"], b["rgb"])
    assert not b["depth"][2].any() and (b["depth"][1] == 0).any() and (b["depth"][1] > 0).any()
    # independently: the validity-weighted filter of each stored map, flipped where the flag says
    split = open_split(holey_store, "train")
    for i in range(6):
        want = resize_depth(torch.from_numpy(split.depth(i).copy())[None, None], (20, 30))[0]
        want = want.flip(-1) if bool(collate([device[(0, i)]])["flip"][0]) else want
        assert torch.equal(b["depth"][i], want)


def test_mixed_sizes_keep_worker_targets(tmp_path):
    store = make_store(tmp_path / "mixed.zarr", [(40, 56), (32, 48), (40, 56)])
    data = DepthDataset(store, "train", (16, 24), **loading(), targets="device")
    assert data.targets == "worker" and "flip" not in data[1]
    with pytest.raises(ValueError, match="targets"):
        DepthDataset(store, "train", (16, 24), **loading(), targets="gpu")


def test_step_runner_finishes_targets_on_its_device(synthetic_with_teacher):
    from leve.train.step import StepRunner

    store, cache = synthetic_with_teacher
    _, device = _pair(store, (40, 56), cache)
    sent = collate([device[(0, i)] for i in range(4)])
    runner = StepRunner.__new__(StepRunner)  # to_device alone
    runner.device, runner.channels_last = torch.device("cpu"), False
    moved = runner.to_device(sent)
    assert "flip" not in moved and moved["rgb"].dtype == torch.float32
    teacher = resize_maps(sent["teacher"].float(), (40, 56))
    flip = sent["flip"].view(-1, 1, 1, 1)
    assert torch.equal(moved["teacher"], torch.where(flip, teacher.flip(-1), teacher))


def test_depth_resize_without_shortcuts_is_the_same(holey_store):
    """The GPU's sync-free resize (no dense/empty checks) against the CPU's shortcuts, bit for bit."""
    split = open_split(holey_store, "train")
    holey = torch.from_numpy(np.stack([split.depth(i) for i in range(6)]))[:, None]
    dense = torch.from_numpy(np.random.default_rng(1).uniform(0.5, 9, (2, 1, H, W)).astype(np.float32))
    for maps in (holey, dense, torch.zeros_like(dense)):
        for size in ((20, 30), (60, 70)):
            assert torch.equal(resize_depth(maps, size, shortcuts=False), resize_depth(maps, size))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_targets_match_the_cpu(synthetic_with_teacher):
    store, cache = synthetic_with_teacher
    _, device = _pair(store, (40, 56), cache)
    sent = collate([device[(0, i)] for i in range(8)])
    cpu = finish_targets(sent)
    gpu = finish_targets({k: v.cuda() for k, v in sent.items()})
    for key in ("depth", "teacher"):
        torch.testing.assert_close(gpu[key].cpu(), cpu[key], rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------- train.data.decode


def test_draft_refusal_says_why(synthetic_store, tmp_path):
    from tests.train.test_fast_loading import JpegRGBD

    raw = open_split(synthetic_store, "train")  # 96x128 raw pixels
    assert "rgb_codec: raw" in str(draft_refusal(raw, (48, 64)))
    spec = SplitSpec("train", 2, dataset_arrays(64, 96, rgb_codec="jpeg"), {"height": "int32", "width": "int32"})
    path = tmp_path / "j.zarr"
    build_store(path, {"dataset": "j", "max_depth": 10.0}, "j", [SplitSource(spec, JpegRGBD())], show_progress=False)
    jpeg = open_split(path, "train")
    assert draft_refusal(jpeg, (32, 48)) is None and draft_refusal(jpeg, (16, 24)) is None
    assert "more than half" in str(draft_refusal(jpeg, (40, 48)))


class SmoothJpeg:
    """Smooth RGB as JPEG bytes (quality 90) with positive depth, 128x192."""

    def __call__(self, i: int) -> tuple[dict[str, Any], dict[str, Any]]:
        from leve.store.images import encode_jpeg

        yy, xx = np.mgrid[0:128, 0:192] / 192
        rng = np.random.default_rng(i)
        rgb = np.stack([np.sin(rng.uniform(2, 9) * xx + rng.uniform(1, 7) * yy + c) for c in range(3)], -1)
        rgb = np.clip(rgb * 100 + 128, 0, 255).astype(np.uint8)
        return {"rgb_jpeg": encode_jpeg(rgb, 90), "depth": (1 + 4 * yy).astype(np.float32)}, {"height": 128, "width": 192}


@pytest.fixture(scope="module")
def jpeg_train_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("jpegtrain") / "jt.zarr"
    meta = {"height": "int32", "width": "int32"}
    sources = [SplitSource(SplitSpec(name, n, dataset_arrays(128, 192, rgb_codec="jpeg"), meta), SmoothJpeg())
               for name, n in (("train", 4), ("val", 2))]
    build_store(path, {"dataset": "jt", "max_depth": 10.0}, "jt", sources, block_size=4, show_progress=False)
    return path


def test_train_param_decode_draft(jpeg_train_store, tmp_path, capsys):
    from PIL import Image

    from leve.models.checkpoint import read_checkpoint
    from leve.train.config import DataConfig, KDConfig
    from leve.train.loop import Trainer
    from leve.train.stage import TrainConfig

    def trainer(resolution: tuple[int, int], decode: str) -> Trainer:
        return Trainer(TrainConfig(dataset="jt", data_dir=jpeg_train_store.parent, resolution=resolution, batch_size=2,
                                   max_steps=1, workers=0, val_every=0, data=DataConfig(decode=decode), kd=KDConfig(eps=0.0),
                                   out_dir=tmp_path / decode / "models", log_dir=tmp_path / decode / "log"),
                       show_progress=False)

    half = trainer((64, 96), "draft")
    assert half.train_set.decode == "draft" and "no effect" not in capsys.readouterr().err
    # close to the full decode + PIL's bilinear resize, computed here without leve
    split = open_split(jpeg_train_store, "train")
    for i in range(2):
        import io

        full = Image.open(io.BytesIO(split.rgb_bytes(i))).convert("RGB").resize((96, 64), Image.BILINEAR)
        want = torch.from_numpy(np.asarray(full).astype(np.float32)).permute(2, 0, 1)
        got = DepthDataset(jpeg_train_store, "train", (64, 96), **loading(decode=half.train_set.decode), rgb_uint8=True)[i]["rgb"]
        diff = (got.float() - want).abs()
        assert diff.mean() < 1.5 and diff.max() < 16
    half.run()
    assert read_checkpoint(half.best_path)[1].extra["decode"] == "draft"  # recorded with the model
    assert trainer((64, 96), "full").train_set.decode == "full"
    more = trainer((72, 104), "draft")  # more than half of 128x192: ignored, said once
    assert more.train_set.decode == "full"
    assert "train.data.decode: draft has no effect" in capsys.readouterr().err
    with pytest.raises(Exception, match="data.decode"):
        trainer((64, 96), "fast")


@pytest.mark.parametrize("shape", [(480, 640), (102, 130), (33, 77)])
def test_draft_decode_equals_pillows_draft(shape: tuple[int, int]) -> None:
    """The simplejpeg fast path against Pillow's own ``draft`` (written out here), pixel for pixel,
    at every scale Pillow's rule picks, and a grayscale JPEG through Pillow."""
    import io

    from PIL import Image

    from leve.store.images import decode_rgb_draft, encode_jpeg

    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    rgb = np.clip(np.stack([np.sin(7 * xx + 3 * yy + c) for c in range(3)], -1) * 100 + 128
                  + np.random.default_rng(0).normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)
    data = encode_jpeg(rgb, 90)
    for size in ((h // 2, w // 2), (h // 3, w // 3), (h // 5, w // 5), (max(h // 9, 1), max(w // 9, 1)), (h, w), (2 * h, w)):
        img = Image.open(io.BytesIO(data))
        img.draft("RGB", (size[1], size[0]))
        assert np.array_equal(decode_rgb_draft(data, "x", size), np.asarray(img)), size
    buf = io.BytesIO()
    Image.fromarray(rgb[..., 0]).save(buf, format="JPEG", quality=90)
    got = decode_rgb_draft(buf.getvalue(), "x", (h // 2, w // 2))  # grey: no draft, converted as decode_rgb does
    assert got.shape == (h, w, 3) and np.array_equal(got[..., 0], got[..., 2])
