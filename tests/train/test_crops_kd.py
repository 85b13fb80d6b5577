"""Cross-context distillation's local-global term (issue 30 item 3): the loss against a naive numpy
computation, the crops travelling through the loaders (mirrored with the image, the same on both target
paths) and a short training run that uses them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from leve.errors import LeveError
from leve.teacher.cache.build import build_teacher_cache
from leve.teacher.cache.crops import flip_boxes
from leve.teacher.loading import load_teacher
from leve.train.config import AugmentConfig
from leve.train.data import DepthDataset, collate, finish_targets
from leve.train.loop import train
from leve.train.losses import crop_output, kd_crops
from leve.train.stage import KDConfig, ScheduleConfig, TrainConfig
from tests.explicit import caching, loading
from tests.train.conftest import TRAIN_SIZE


def _bilinear(img: np.ndarray, x: float, y: float) -> float:
    """``img`` (H, W) at the continuous pixel position (x, y), pixel centres at integers, edges extended."""
    h, w = img.shape
    x, y = min(max(x, 0.0), w - 1.0), min(max(y, 0.0), h - 1.0)
    xa, ya = int(np.floor(x)), int(np.floor(y))
    xb, yb = min(xa + 1, w - 1), min(ya + 1, h - 1)
    fx, fy = x - xa, y - ya
    top = img[ya, xa] * (1 - fx) + img[ya, xb] * fx
    bottom = img[yb, xa] * (1 - fx) + img[yb, xb] * fx
    return float(top * (1 - fy) + bottom * fy)


def naive_kd_crops(output: np.ndarray, crops: np.ndarray, boxes: np.ndarray) -> float:
    """Crop each box out of the student's map by sampling it on the crop's own pixel grid, fit ``s x + t`` to
    the teacher's crop by least squares (numpy lstsq; a scale at or below 0 gives way to the best constant,
    the crop's mean, as ``kd.loss: ssi`` holds its scale at 0 or above), mean absolute residual over the
    teacher's mean absolute deviation, averaged over every crop."""
    b, k, h, w = crops.shape
    big_h, big_w = output.shape[-2:]
    values = []
    for i in range(b):
        for j in range(k):
            x0, y0, x1, y1 = boxes[i, j]
            student = np.array([[_bilinear(output[i, 0], (x0 + (c + 0.5) * (x1 - x0) / w) * big_w - 0.5,
                                           (y0 + (r + 0.5) * (y1 - y0) / h) * big_h - 0.5)
                                 for c in range(w)] for r in range(h)])
            x, t = student.ravel(), crops[i, j].ravel().astype(np.float64)
            (s, shift), *_ = np.linalg.lstsq(np.stack([x, np.ones_like(x)], 1), t, rcond=None)
            if s <= 0:
                s, shift = 0.0, t.mean()
            values.append(np.abs(s * x + shift - t).mean() / np.abs(t - t.mean()).mean())
    return float(np.mean(values))


def test_local_global_term_equals_a_naive_computation():
    g = torch.Generator().manual_seed(0)
    output = torch.rand(2, 1, 12, 16, generator=g, dtype=torch.float64) * 50 + 1
    crops = torch.rand(2, 3, 5, 7, generator=g, dtype=torch.float64)
    lo = torch.rand(2, 3, 2, generator=g, dtype=torch.float64) * 0.4
    size = 0.3 + torch.rand(2, 3, 2, generator=g, dtype=torch.float64) * 0.3
    boxes = torch.cat([lo, lo + size], -1)[..., [0, 1, 2, 3]]  # x0, y0, x1, y1 inside [0, 1]
    got = float(kd_crops(output, crops, boxes))
    want = naive_kd_crops(output.numpy(), crops.numpy(), boxes.numpy())
    assert got == pytest.approx(want, rel=1e-9)
    # a student equal to an affine map of the teacher's crop inside the box scores 0
    whole = torch.rand(1, 1, 8, 8, generator=g, dtype=torch.float64)
    box = torch.tensor([[[0.25, 0.5, 0.75, 1.0]]], dtype=torch.float64)  # columns 2-5, rows 4-7
    teacher = 3.0 * whole[:, :, 4:8, 2:6] + 2.0
    assert float(kd_crops(whole, teacher, box)) == pytest.approx(0.0, abs=1e-9)


def test_a_mirrored_box_crops_the_mirrored_map():
    g = torch.Generator().manual_seed(1)
    output = torch.rand(2, 1, 10, 14, generator=g)
    boxes = torch.tensor([[[0.1, 0.2, 0.6, 0.9]], [[0.3, 0.0, 1.0, 0.5]]])
    a = crop_output(output.flip(-1), flip_boxes(boxes), (4, 6))
    b = crop_output(output, boxes, (4, 6)).flip(-1)
    torch.testing.assert_close(a, b)


def test_gradient_stays_inside_the_boxes():
    g = torch.Generator().manual_seed(2)
    output = torch.rand(1, 1, 16, 16, generator=g, requires_grad=True)
    box = torch.tensor([[[0.5, 0.5, 1.0, 1.0]]])  # the bottom-right quarter
    # the teacher's crop follows the student inside the box (a positive fit), with noise left to learn from
    crop = 2.0 * F.avg_pool2d(output.detach()[:, :, 8:, 8:], 2) + 0.2 * torch.rand(1, 1, 4, 4, generator=g)
    kd_crops(output, crop, box).backward()
    grad = output.grad[0, 0].abs()
    assert grad[8:, 8:].sum() > 0 and grad[:8, :].sum() == 0 and grad[:, :8].sum() == 0


@pytest.fixture(scope="module")
def crops_cache(synthetic_store: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    cache = tmp_path_factory.mktemp("crops") / "teacher" / "synthetic.zarr"
    build_teacher_cache(synthetic_store, cache, "train", load_teacher("tiny-random"),
                        **caching(crops=2, block_size=16), show_progress=False)
    return cache


def test_crops_are_mirrored_with_the_image_on_both_target_paths(synthetic_store: Path, crops_cache: Path):
    """``worker`` mirrors an item's crops and boxes in the loader, ``device`` in :func:`finish_targets`: the
    same values; a mirrored item's crops are its unmirrored crops flipped, its boxes moved."""
    kw = {**loading(), "local_crops": True}
    plain = DepthDataset(synthetic_store, "train", TRAIN_SIZE, crops_cache, **kw)
    flip = AugmentConfig(flip=1.0, channel_swap=0.0)
    worker = DepthDataset(synthetic_store, "train", TRAIN_SIZE, crops_cache, flip, **kw)
    device = DepthDataset(synthetic_store, "train", TRAIN_SIZE, crops_cache, flip, **kw, targets="device")
    keys = [(0, i) for i in range(4)]
    a = collate([worker[k] for k in keys])
    b = finish_targets(collate([device[k] for k in keys]))
    p = collate([plain[k] for k in keys])
    assert a["crops"].shape == (4, 2, 48, 64) and a["boxes"].shape == (4, 2, 4)
    torch.testing.assert_close(b["crops"].float(), a["crops"], rtol=0, atol=0)
    torch.testing.assert_close(b["boxes"], a["boxes"], rtol=0, atol=0)
    torch.testing.assert_close(a["crops"], p["crops"].flip(-1), rtol=0, atol=0)
    torch.testing.assert_close(a["boxes"], flip_boxes(p["boxes"]), rtol=0, atol=0)


def _config(store: Path, cache: Path, out: Path, **kd: float) -> TrainConfig:
    return TrainConfig(dataset="synthetic", data_dir=store.parent, resolution=(64, 96), batch_size=4, epochs=1,
                       max_steps=2, schedule=ScheduleConfig(name="constant"), workers=0, log_every=1, val_every=0,
                       out_dir=out / "models", log_dir=out / "dvclive",
                       kd=KDConfig(eps=0.2, loss="ssi", teacher_dir=cache.parent, **kd))


def test_training_uses_the_crops_and_refuses_another_count(synthetic_store: Path, crops_cache: Path, tmp_path: Path):
    result = train(_config(synthetic_store, crops_cache, tmp_path, crops_weight=0.5), show_progress=False,
                   expected_crops=2)
    assert result.steps == 2
    logged = (tmp_path / "dvclive/plots/metrics/train/kd_crops.tsv").read_text().split()
    values = [float(v) for v in logged[2:][1::2]]
    assert len(values) == 2 and all(np.isfinite(values)) and all(v > 0 for v in values)
    with pytest.raises(LeveError, match="teacher cache built with teacher.crops 2, the params say 0"):
        train(_config(synthetic_store, crops_cache, tmp_path / "b", crops_weight=0.0), show_progress=False,
              expected_crops=0)


def test_crops_weight_needs_distillation():
    with pytest.raises(LeveError, match=r"kd.crops_weight 0.5 distils from the cache: it needs kd.eps > 0"):
        TrainConfig(kd=KDConfig(eps=0.0, crops_weight=0.5))

