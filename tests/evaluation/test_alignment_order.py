"""``standard`` with ``median``/``lstsq``: the unclamped prediction is flip-averaged, resized and
fitted in the alignment's space and clipped only afterwards; the teacher fit leaves out
non-positive disparity; the teacher row records a flip-averaged cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.optimize import lsq_linear

from leve.evaluation.align import align_lstsq_disparity
from leve.evaluation.protocols import get_protocol
from leve.evaluation.runner import evaluate, score_teacher
from leve.metrics import compute_metrics
from tests.explicit import caching, evaluation, running


def _positive_fit(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least squares ``s x + t = y`` with ``s >= 0`` (leve's alignment never flips a map), by scipy's bounded solver."""
    a = np.stack([np.ravel(x), np.ones(np.size(x))], 1)
    s, t = lsq_linear(a, np.ravel(y), bounds=([0.0, -np.inf], [np.inf, np.inf]), tol=1e-12).x
    return float(s), float(t)


D = 10.0  # the checkpoint's max depth; the ground truth reaches 60 m (KITTI-like, protocol max 80)
H, W = 24, 32


class _Split:
    """One in-memory image whose RGB marks its orientation (a column ramp)."""

    name, meta = "test", {}

    def __init__(self, gt: np.ndarray) -> None:
        self.gt = gt

    def __len__(self) -> int:
        return 1

    def rgb(self, i: int) -> np.ndarray:
        ramp = np.linspace(0, 255, self.gt.shape[1]).round().astype(np.uint8)
        return np.broadcast_to(ramp[None, :, None], (*self.gt.shape, 3)).copy()

    def depth(self, i: int) -> np.ndarray:
        return self.gt


class _TwoMaps(torch.nn.Module):
    """Returns output ``a`` for the image and ``b`` for its mirror (told apart by the ramp)."""

    def __init__(self, a: np.ndarray, b: np.ndarray) -> None:
        super().__init__()
        self.a, self.b = torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mirrored = x[:, 0, 0, 0] > x[:, 0, 0, -1]
        return torch.stack([self.b if m else self.a for m in mirrored])[:, None]


def _gt() -> np.ndarray:
    rows = np.linspace(5.0, 60.0, H)[:, None]
    return rows + np.linspace(0.0, 3.0, W)[None, :]


def _outputs(want_avg: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two maps whose flip average (b un-mirrored) is ``want_avg``, each far from it."""
    noise = np.random.default_rng(seed).uniform(-0.3, 0.3, want_avg.shape) * want_avg
    return want_avg + noise, (want_avg - noise)[:, ::-1].copy()


def _run(align: str, a: np.ndarray, b: np.ndarray, resolution: tuple[int, int]) -> dict[str, float]:
    gt = _gt()
    protocol = get_protocol("standard", "kitti", 80.0, align=align, flip=True, crop="full")
    result = evaluate(_TwoMaps(a, b), _Split(gt), protocol, resolution, D, **evaluation(), show_progress=False)
    return result.scored[0].metrics


def _upsample(m: np.ndarray) -> np.ndarray:
    """Bilinear (pixel centres) to the ground-truth size."""
    return F.interpolate(torch.tensor(m)[None, None], size=(H, W), mode="bilinear", align_corners=False)[0, 0].numpy()


def test_lstsq_fits_the_unclamped_disparity_and_recovers_an_affine_prediction():
    gt = _gt()
    disparity = 0.4 / gt + 0.01            # affine in 1/gt: the fit restores gt exactly
    a, b = _outputs(D * disparity, 0)      # output = D · disparity; depth D/out reaches ~29 m > D
    assert (D / a > D).mean() > 0.3
    got = _run("lstsq", a, b, (H, W))
    assert got["rmse"] < 1e-4 and got["abs_rel"] < 1e-6   # float32 outputs
    # clamping to [D/100, D] first (the old order) loses every pixel beyond 10 m
    clamped = 0.5 * (np.clip(D / a, 0.1, D) + np.clip(D / b, 0.1, D)[:, ::-1])
    x = 1.0 / clamped
    (s, t), *_ = np.linalg.lstsq(np.stack([x.ravel(), np.ones(x.size)], 1), (1 / gt).ravel(), rcond=None)
    assert compute_metrics(np.clip(1 / np.maximum(s * x + t, 1 / 80), 1e-3, 80), gt)["rmse"] > 5.0


def test_median_scales_the_unclamped_depth_and_recovers_a_scaled_prediction():
    gt = _gt()
    depth = 0.2 * gt                        # 1..12.6 m: some beyond the checkpoint's 10 m
    da, db = _outputs(depth, 1)             # averaged in depth space
    got = _run("median", D / da, D / db, (H, W))
    assert got["rmse"] < 1e-4
    old = np.clip(depth, 0.1, D)            # clamped before scaling: the far rows stay wrong
    assert compute_metrics(old * np.median(gt) / np.median(old), gt)["rmse"] > 1.0


@pytest.mark.parametrize("align", ["lstsq", "median"])
def test_aligned_prediction_is_resized_in_the_space_it_is_fitted_in(align):
    gt = _gt()
    h, w = H // 2, W // 2
    rng = np.random.default_rng(2)
    a, b = rng.uniform(0.3, 3.0, (h, w)), rng.uniform(0.3, 3.0, (h, w))   # outputs: depth D/out 3.3..33 m
    got = _run(align, a, b, (h, w))
    if align == "lstsq":   # disparity out/D, averaged and resized as a disparity, fitted by an independent solver
        x = _upsample(0.5 * (a + b[:, ::-1]) / D).astype(np.float64)
        s, t = _positive_fit(x, 1 / gt)
        want = np.clip(1 / np.maximum(s * x + t, 1 / 80), 1e-3, 80)
    else:                  # depth D/out, averaged and resized as a depth, then scaled by the median ratio
        d = _upsample(0.5 * (D / a + D / b[:, ::-1])).astype(np.float64)
        want = np.clip(d * np.median(gt) / np.median(d), 1e-3, 80)
    assert got == pytest.approx(compute_metrics(want, gt), rel=1e-5)


def test_lstsq_leaves_non_positive_disparity_out_of_the_fit():
    gt = _gt()
    disp = 0.3 / gt + 0.02
    disp[::3, ::4] = 0.0                    # the teacher's clipped overshoot
    disp[1, 1] = -0.05
    valid = np.ones_like(gt, bool)
    got = align_lstsq_disparity(disp, gt, valid, 1e-3, 80.0)
    fit = disp > 0
    np.testing.assert_allclose(got[fit], gt[fit], rtol=1e-9)   # the positive pixels are affine in 1/gt
    assert np.all(got[~fit] == 80.0)   # s·0 + t with t = -0.02/0.3 < 0: beyond the far limit
    # an independent solver on every pixel (the old fit) does not restore them
    (s, t), *_ = np.linalg.lstsq(np.stack([disp.ravel(), np.ones(disp.size)], 1), (1 / gt).ravel(), rcond=None)
    assert not np.allclose(np.clip(1 / np.maximum(s * disp + t, 1 / 80), 1e-3, 80)[fit], gt[fit], rtol=1e-3)


class _Teacher:
    """A teacher-cache reader serving one fixed map; ``tta`` as the cache records it."""

    def __init__(self, disp: np.ndarray, tta: str | None) -> None:
        self.disp, self.attrs = disp, ({} if tta is None else {"tta": tta})

    def disparity(self, i: int) -> np.ndarray:
        return self.disp


@pytest.mark.parametrize(("tta", "recorded"), [("flip", "average"), ("none", "none"), (None, "none")])
def test_teacher_row_records_a_flip_averaged_cache(tta, recorded):
    gt = _gt()
    disp = 0.3 / gt + 0.02
    disp[::5, ::3] = 0.0
    protocol = get_protocol("standard", "kitti", 80.0, align="none", flip=True, crop="full")
    a = np.ones((H, W))
    result = evaluate(_TwoMaps(a, a), _Split(gt), protocol, (H, W), D, **evaluation(), teacher=_Teacher(disp, tta),
                      show_progress=False)
    assert result.protocol.settings()["teacher_flip"] == recorded
    row = next(s for s in result.scored if s.model == "teacher")
    fit = disp > 0   # an independent solver on the positive disparities only
    s, t = _positive_fit(disp[fit], 1 / gt[fit])
    want = np.clip(1 / np.maximum(s * disp + t, 1 / 80), 1e-3, 80)
    assert (s, t) == pytest.approx((1 / 0.3, -0.02 / 0.3), rel=1e-9)
    assert row.metrics == pytest.approx(compute_metrics(want, gt), rel=1e-9)
    assert score_teacher(disp, gt, protocol)[2] == pytest.approx(row.metrics)


def test_teacher_row_of_a_flip_cache_scores_the_flip_average(eval_workspace, tmp_path):
    """A cache built with ``teacher.tta: flip`` holds the mean of the teacher's map of the image
    and the un-mirrored map of its mirror; the ``standard`` teacher row scores exactly that."""
    from leve.teacher.cache.build import build_teacher_cache
    from leve.teacher.cache.read import open_teacher_cache
    from leve.teacher.infer import TeacherRunner
    from leve.teacher.loading import load_teacher
    from tests.evaluation.conftest import ColumnRampNet, split_of

    store = eval_workspace / "data/zarr/synthetic.zarr"
    teacher = load_teacher("tiny-random")
    build_teacher_cache(store, tmp_path / "t.zarr", "test", teacher, **caching(tta="flip", block_size=4), show_progress=False)
    cache = open_teacher_cache(tmp_path / "t.zarr", "test", store)
    split = split_of(eval_workspace)
    protocol = get_protocol("standard", "synthetic", 10.0, align="none", flip=True)
    result = evaluate(ColumnRampNet(), split, protocol, (48, 64), 10.0, **evaluation(), teacher=cache, show_progress=False)
    assert result.protocol.teacher_flip == "average"
    plain = TeacherRunner(teacher, **running(tta="none"))
    rows = [s for s in result.scored if s.model == "teacher"]
    for i in (0, 3):
        img = torch.from_numpy(teacher.preprocessing.resize(split.rgb(i)))[None]
        size = split.depth(i).shape
        raw = 0.5 * (plain.raw(img, size) + plain.raw(img.flip(-1), size).flip(-1))[0].double().numpy()
        np.testing.assert_allclose(cache.disparity(i), np.clip(raw, 0, None) / raw.max(), atol=2e-3)  # float16
        gt, disp = split.depth(i).astype(np.float64), cache.disparity(i).astype(np.float64)
        valid = (gt > 1e-3) & (gt < 10.0)
        fit = valid & (disp > 0)
        s, t = _positive_fit(disp[fit], 1 / gt[fit])
        want = np.clip(1 / np.maximum(s * disp + t, 0.1), 1e-3, 10.0)
        assert rows[i].metrics == pytest.approx(compute_metrics(want, gt, valid), rel=1e-6)


@pytest.mark.parametrize(("protocol_name", "flip"), [("standard", False), ("leve2024", True)])
def test_flip_cache_keeps_the_plain_map_for_rows_that_do_not_flip_average(eval_workspace, tmp_path, protocol_name,
                                                                          flip):
    """``teacher.tta: flip`` keeps the image's own map beside the average (issue 15, item 7): a
    protocol whose student row is not flip-averaged (``standard`` with ``eval.flip: false``;
    ``leve2024`` scores the mirror as a second sample) scores the teacher's plain map, recorded as
    ``teacher_flip: none``; training still reads the average from ``disparity``."""
    from leve.teacher.cache.build import build_teacher_cache
    from leve.teacher.cache.read import open_teacher_cache
    from leve.teacher.infer import TeacherRunner
    from leve.teacher.loading import load_teacher
    from tests.evaluation.conftest import ColumnRampNet, split_of

    store = eval_workspace / "data/zarr/synthetic.zarr"
    teacher = load_teacher("tiny-random")
    build_teacher_cache(store, tmp_path / "t.zarr", "test", teacher, **caching(tta="flip", block_size=4), show_progress=False)
    cache = open_teacher_cache(tmp_path / "t.zarr", "test", store)
    split = split_of(eval_workspace)
    protocol = get_protocol(protocol_name, "synthetic", 10.0, align="none", flip=flip)
    result = evaluate(ColumnRampNet(), split, protocol, (48, 64), 10.0, **evaluation(), teacher=cache, show_progress=False)
    assert result.protocol.teacher_flip == "none"
    plain_runner = TeacherRunner(teacher, **running(tta="none"))   # the plain map, computed on its own path
    rows = [s for s in result.scored if s.model == "teacher"]
    for i in (0, 2):
        img = torch.from_numpy(teacher.preprocessing.resize(split.rgb(i)))[None]
        raw = plain_runner.raw(img, split.depth(i).shape)[0].double().numpy()
        raw_avg = 0.5 * (raw + plain_runner.raw(img.flip(-1), split.depth(i).shape)[0].flip(-1).double().numpy())
        np.testing.assert_allclose(cache.plain_disparity(i), np.clip(raw, 0, None) / raw.max(), atol=2e-3)  # float16
        np.testing.assert_allclose(cache.disparity(i), np.clip(raw_avg, 0, None) / raw_avg.max(), atol=2e-3)
        assert cache.raw_scale()[i] == pytest.approx(raw_avg.max(), rel=1e-5)
        gt, disp = split.depth(i).astype(np.float64), cache.plain_disparity(i).astype(np.float64)
        scored = protocol.crop.mask(*gt.shape) & protocol.valid(gt)
        fit = scored & (disp > 0)
        s, t = _positive_fit(disp[fit], 1 / gt[fit])
        lo, hi = protocol.min_depth, protocol.max_depth
        want = np.clip(1 / np.maximum(s * disp + t, 1 / hi), lo, hi)
        assert rows[i].metrics == pytest.approx(compute_metrics(want, gt, scored), rel=1e-6)
