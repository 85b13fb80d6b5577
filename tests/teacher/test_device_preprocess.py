"""The teacher's preprocessing on the device (``TeacherRunner(preprocess="device")``): the same code path
a GPU runs, here in float32 on the CPU, against the PIL path that equals transformers' processor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from leve.store.reader import open_split
from leve.teacher.infer import TeacherRunner
from leve.teacher.loading import load_teacher
from leve.teacher.preprocess import DEVICE_BACKEND, Preprocessing
from tests.explicit import running


def _smooth(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    rgb = np.stack([np.sin(rng.uniform(2, 9) * xx + rng.uniform(1, 7) * yy + c) for c in range(3)], -1) * 110 + 128
    return np.clip(rgb + rng.normal(0, 10, (h, w, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("size", [(48, 64), (33, 77), (600, 560)])  # enlarging, and shrinking one side
def test_resize_batch_is_pils_bicubic_within_one_level(size: tuple[int, int]) -> None:
    prep = Preprocessing()
    rgbs = [_smooth(*size, seed) for seed in range(2)]
    got = prep.resize_batch(torch.from_numpy(np.stack([r.transpose(2, 0, 1) for r in rgbs])))
    h, w = prep.output_size(*size)
    for k, rgb in enumerate(rgbs):
        pil = np.asarray(Image.fromarray(rgb).resize((w, h), Image.BICUBIC)).transpose(2, 0, 1)  # PIL itself
        diff = np.abs(got[k].numpy().astype(int) - pil.astype(int))
        assert got.shape[-2:] == (h, w) and diff.max() <= 1 and diff.mean() < 0.3


def test_resize_batch_refuses_what_it_cannot_match() -> None:
    with pytest.raises(ValueError, match="uint8"):
        Preprocessing().resize_batch(torch.zeros((1, 3, 8, 8)))
    from leve.errors import LeveError

    with pytest.raises(LeveError, match="lanczos"):
        Preprocessing(resample=1).resize_batch(torch.zeros((1, 3, 8, 8), dtype=torch.uint8))
    same = torch.zeros((1, 3, 8, 8), dtype=torch.uint8)
    assert Preprocessing(do_resize=False).resize_batch(same) is same


def test_runner_device_preprocessing_equals_the_pil_path(mixed_store: Path, fast_teacher_dir: Path) -> None:
    teacher = load_teacher(str(fast_teacher_dir))  # fed at 70 px: seconds, not tens
    workers = TeacherRunner(teacher, **running(tta="flip"))
    device = TeacherRunner(teacher, **running(tta="flip"), preprocess="device")
    assert workers.preprocess == "workers" and device.preprocess == "device"  # auto on a CPU: workers
    prep, split = teacher.preprocessing, open_split(mixed_store, "train")
    for idx in ([0, 2, 5], [1, 4]):  # one stored size per batch
        rgbs = [split.rgb(i) for i in idx]
        size = rgbs[0].shape[:2]
        a = workers.predict(torch.from_numpy(np.stack([prep.host_input(r, False) for r in rgbs])), size)
        b = device.predict(torch.from_numpy(np.stack([prep.host_input(r, True) for r in rgbs])), size)
        assert a.disparity.shape == b.disparity.shape == (len(idx), *size)
        np.testing.assert_allclose(b.disparity.astype(np.float32), a.disparity.astype(np.float32), atol=0.02)
        np.testing.assert_allclose(b.raw_max, a.raw_max, rtol=0.02)


def test_cache_identity_names_the_device_resize() -> None:
    prep = Preprocessing()
    assert prep.describe()["backend"].startswith("PIL") and prep.describe(on_device=True)["backend"] == DEVICE_BACKEND
    rgb = _smooth(20, 30, 0)
    assert np.array_equal(prep.host_input(rgb, True), rgb.transpose(2, 0, 1))
    assert prep.host_input(rgb, False).shape == (3, *prep.output_size(20, 30))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("amp", ["bfloat16", "float16"])
def test_cuda_runner_matches_the_cpu(mixed_store: Path, amp: str) -> None:
    teacher = load_teacher("tiny-random")
    cpu, gpu = TeacherRunner(teacher, **running()), TeacherRunner(load_teacher("tiny-random"), **running(device="cuda", amp=amp))
    assert gpu.preprocess == "device"
    split = open_split(mixed_store, "train")
    rgbs = [split.rgb(i) for i in (0, 2, 5)]
    size = rgbs[0].shape[:2]
    prep = teacher.preprocessing
    a = cpu.predict(torch.from_numpy(np.stack([prep.host_input(r, False) for r in rgbs])), size)
    b = gpu.predict(torch.from_numpy(np.stack([prep.host_input(r, True) for r in rgbs])), size)
    np.testing.assert_allclose(b.disparity.astype(np.float32), a.disparity.astype(np.float32), atol=0.05)
