"""Protocols on fixtures: crops, flip handling, alignment."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.optimize import lsq_linear

from leve.errors import LeveError
from leve.evaluation.align import align_depth, align_median, fit_scale_shift
from leve.evaluation.protocols import crop_for, get_protocol
from leve.evaluation.runner import evaluate
from leve.metrics import compute_metrics
from tests.evaluation.conftest import (
    HEIGHT,
    WIDTH,
    ColumnRampNet,
    as_input,
    ramp_depth,
    split_of,
)
from tests.explicit import evaluation


def test_nyu_crops_select_the_stated_pixels():
    mask = crop_for("nyu", None, "leve2024").mask(480, 640)
    rows, cols = np.nonzero(mask)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (20, 459, 24, 615)
    assert mask.sum() == 440 * 592
    eigen = crop_for("nyu", None, "standard").mask(480, 640)
    rows, cols = np.nonzero(eigen)
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (45, 470, 41, 600)


def test_nyu_crops_are_the_two_published_boxes():
    from leve.evaluation.protocols import CROPS, DEFAULT_CROP

    # the thesis's crop (DenseDepth's "Eigen crop") and the literature's Eigen crop are different boxes
    assert CROPS["nyu"]["leve2024"].box(480, 640) == (20, 460, 24, 616)
    assert CROPS["nyu"]["eigen"].box(480, 640) == (45, 471, 41, 601)
    assert set(CROPS["nyu"]) == {"leve2024", "eigen", "full"} and set(CROPS["kitti"]) == {"leve2024", "garg", "eigen", "full"}
    assert DEFAULT_CROP == {"leve2024": {"nyu": "leve2024", "kitti": "leve2024"}, "standard": {"nyu": "eigen", "kitti": "garg"},
                            "densedepth": {"nyu": "leve2024"}}


def test_densedepth_protocol_settings():
    p = get_protocol("densedepth", "nyu", 10.0, align="lstsq", flip=False, min_depth=0.5)  # options are fixed
    assert p.settings() == {
        "name": "densedepth", "dataset": "nyu",
        "crop": {"name": "leve2024", "rows": [20, 460], "cols": [24, 616], "units": "pixels"},
        "flip": "average", "valid_mask": False, "min_depth": 0.1, "max_depth": 10.0, "depth_scale": "checkpoint",
        "align": "none", "teacher_align": "lstsq", "upsample": "depth", "rel_denominator": "pred",
        "aggregation": "pooled", "rmse_log": "ln", "teacher_flip": "none", "resize": ""}
    r0, r1, c0, c1 = p.crop.box(480, 640)
    assert (r0, r1 - 1, c0, c1 - 1) == (20, 459, 24, 615) and c0 == 640 - c1   # symmetric columns: crop and mirror commute
    assert get_protocol("densedepth", "kitti", 80.0).crop.name == "full"
    assert get_protocol("densedepth", "kitti", 80.0).min_depth == pytest.approx(0.8)
    for name in ("leve2024", "standard"):
        built = get_protocol(name, "nyu", 10.0, align="none", flip=True)
        assert built.settings()["aggregation"] == "per_image"
        assert (built.upsample, built.rel_denominator) == ("output", "gt")
    from dataclasses import replace

    with pytest.raises(LeveError, match="unknown aggregation 'mean'"):
        replace(get_protocol("densedepth", "nyu", 10.0), aggregation="mean")


class _OneImage:
    """A one-sample NYU-sized split in memory (what :func:`evaluate` reads of a store split)."""

    name, meta = "test", {}

    def __init__(self, depth: np.ndarray) -> None:
        self._depth = depth

    def __len__(self) -> int:
        return 1

    def rgb(self, i: int) -> np.ndarray:
        return np.zeros((*self._depth.shape, 3), np.uint8)

    def depth(self, i: int) -> np.ndarray:
        return self._depth


class _TwoMetres(torch.nn.Module):
    """Depth 2 everywhere (output max_depth/depth with max_depth 10)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.full_like(x[:, :1], 5.0)


@pytest.mark.parametrize("name", ["leve2024", "standard"])
def test_eval_with_crop_leve2024_on_nyu_scores_rows_20_460_cols_24_616(name):
    gt = np.full((480, 640), 9.0)  # any pixel scored outside the box costs 7 m
    gt[20:460, 24:616] = 2.0
    gt[[20, 459], 24:616] = gt[20:460, [24, 615]] = 4.0  # the box's edges must be scored
    protocol = get_protocol(name, "nyu", 10.0, crop="leve2024", align="none", flip=False)
    assert protocol.settings()["crop"] == {"name": "leve2024", "rows": [20, 460], "cols": [24, 616], "units": "pixels"}
    result = evaluate(_TwoMetres(), _OneImage(gt), protocol, (64, 64), 10.0, **evaluation(), show_progress=False)
    want = compute_metrics(np.full((440, 592), 2.0), gt[20:460, 24:616])
    student = [s.metrics for s in result.scored if s.model == "student"]
    assert student and all(m == pytest.approx(want, rel=1e-9) for m in student)  # leve2024: the flipped sample too
    eigen = evaluate(_TwoMetres(), _OneImage(gt), get_protocol(name, "nyu", 10.0, crop="eigen", align="none", flip=False),
                     (64, 64), 10.0, **evaluation(), show_progress=False)
    assert eigen.scored[0].metrics["rmse"] > want["rmse"]  # the literature's box reaches rows 460..470


def test_kitti_crops():
    rows, cols = np.nonzero(crop_for("kitti", None, "leve2024").mask(375, 1242))
    assert (rows.min(), rows.max(), cols.min(), cols.max()) == (128, 374, 45, 1195)  # clamped to 375 rows
    garg = crop_for("kitti", "garg", "standard").box(375, 1242)
    assert garg == (int(0.40810811 * 375), int(0.99189189 * 375), int(0.03594771 * 1242), int(0.96405229 * 1242))
    assert garg == (153, 371, 44, 1197)
    assert crop_for("kitti", "eigen", "standard").box(375, 1242)[:2] == (124, 342)


def test_other_datasets_are_scored_in_full_and_bad_crops_refused():
    assert crop_for("endoslam", None, "leve2024").mask(320, 320).all()
    with pytest.raises(LeveError, match="no crop 'garg' for dataset 'nyu'"):
        crop_for("nyu", "garg", "standard")
    with pytest.raises(LeveError, match="unknown alignment"):
        get_protocol("standard", "nyu", 10.0, align="scale", flip=True)
    with pytest.raises(LeveError, match="unknown protocol"):
        get_protocol("eigen", "nyu", 10.0)


def test_lstsq_recovers_a_known_scale_and_shift_exactly():
    rng = np.random.default_rng(0)
    x = rng.uniform(0.1, 1.0, 500)
    s, t = fit_scale_shift(x, 2.5 * x + 0.125)
    assert s == pytest.approx(2.5, abs=1e-12) and t == pytest.approx(0.125, abs=1e-12)
    # in disparity space: a depth map that is 1/(a/gt + b) is restored to gt exactly
    gt = rng.uniform(1.0, 8.0, (12, 16))
    pred = 1.0 / (0.5 / gt + 0.05)
    valid = np.ones_like(gt, bool)
    restored = align_depth(pred, gt, valid, "lstsq", 0.01, 10.0)
    np.testing.assert_allclose(restored, gt, rtol=1e-10)
    assert compute_metrics(restored, gt)["rmse"] == pytest.approx(0.0, abs=1e-9)


def test_median_alignment_and_clipping():
    gt = np.array([[1.0, 2.0, 3.0]])
    valid = np.ones_like(gt, bool)
    np.testing.assert_allclose(align_median(gt * 0.25, gt, valid), gt)
    np.testing.assert_allclose(align_depth(np.array([[0.001, 5.0, 99.0]]), gt, valid, "none", 0.1, 10.0),
                               [[0.1, 5.0, 10.0]])


def test_leve2024_scores_the_flipped_image_as_a_second_sample(eval_workspace):
    split = split_of(eval_workspace)
    protocol = get_protocol("leve2024", "synthetic", 10.0)
    result = evaluate(ColumnRampNet(), split, protocol, (HEIGHT, WIDTH), 10.0, **evaluation(), show_progress=False)
    student = [s for s in result.scored if s.model == "student"]
    assert len(student) == 2 * len(split) and sum(s.flipped for s in student) == len(split)
    for i in range(len(split)):
        x, gt = as_input(split.rgb(i)), split.depth(i).astype(np.float64)
        flip_pred = ramp_depth(x.flip(-1))[0, 0].double().numpy()   # predicted on the mirrored image
        want = compute_metrics(np.clip(flip_pred, 0.1, 10.0), gt[:, ::-1])
        got = next(s for s in student if s.index == i and s.flipped)
        assert got.metrics == pytest.approx(want, rel=1e-6)
    assert result.aggregate("student").count == 2 * len(split)


def test_standard_flip_averaging_equals_the_mean_of_both_predictions(eval_workspace):
    split = split_of(eval_workspace)
    protocol = get_protocol("standard", "synthetic", 10.0, align="none", flip=True)
    result = evaluate(ColumnRampNet(), split, protocol, (HEIGHT, WIDTH), 10.0, **evaluation(), show_progress=False)
    assert len(result.scored) == len(split)
    for i in range(len(split)):
        x, gt = as_input(split.rgb(i)), split.depth(i).astype(np.float64)
        plain = ramp_depth(x)[0, 0].double().numpy()
        mirrored = ramp_depth(x.flip(-1)).flip(-1)[0, 0].double().numpy()
        assert not np.allclose(plain, mirrored)   # the net is not flip-equivariant
        valid = (gt > 1e-3) & (gt < 10.0)
        want = compute_metrics(np.clip(0.5 * (plain + mirrored), 1e-3, 10.0), gt, valid)
        assert result.scored[i].metrics == pytest.approx(want, rel=1e-6)


def test_teacher_rows_are_lstsq_aligned_disparity(eval_workspace):
    from leve.teacher.cache.read import open_teacher_cache

    split = split_of(eval_workspace)
    cache = open_teacher_cache(eval_workspace / "data/teacher/synthetic.zarr", "test",
                               eval_workspace / "data/zarr/synthetic.zarr")
    protocol = get_protocol("standard", "synthetic", 10.0, align="none", flip=False)
    result = evaluate(ColumnRampNet(), split, protocol, (HEIGHT, WIDTH), 10.0, **evaluation(), teacher=cache, show_progress=False)
    rows = [s for s in result.scored if s.model == "teacher"]
    assert len(rows) == len(split)
    for i in range(len(split)):
        gt = split.depth(i).astype(np.float64)
        disp = cache.disparity(i).astype(np.float64)
        valid = (gt > 1e-3) & (gt < 10.0)
        fit = valid & (disp > 0)   # non-positive (clipped) disparity is left out of the fit
        a = np.stack([disp[fit], np.ones(fit.sum())], 1)
        bounds = ([0.0, -np.inf], [np.inf, np.inf])
        (s, t) = lsq_linear(a, 1.0 / gt[fit], bounds=bounds, tol=1e-12).x  # independent solver, s >= 0
        depth = np.clip(1.0 / np.maximum(s * disp + t, 0.1), 1e-3, 10.0)
        assert rows[i].metrics == pytest.approx(compute_metrics(depth, gt, valid), rel=1e-6, abs=1e-9)
        (s_free, _), *_ = np.linalg.lstsq(a, 1.0 / gt[fit], rcond=None)
        assert rows[i].non_positive_fit is bool(s_free <= 0)   # counted where the unconstrained fit would flip the map


def test_batching_does_not_change_the_numbers(eval_workspace):
    split = split_of(eval_workspace)
    protocol = get_protocol("leve2024", "synthetic", 10.0)
    one = evaluate(ColumnRampNet(), split, protocol, (32, 32), 10.0, **evaluation(batch_size=1), show_progress=False)
    three = evaluate(ColumnRampNet(), split, protocol, (32, 32), 10.0, **evaluation(batch_size=3), show_progress=False)
    assert len(one.scored) == len(three.scored) == 2 * len(split)
    for a, b in zip(one.scored, three.scored):
        assert (a.index, a.flipped) == (b.index, b.flipped)
        assert a.metrics == pytest.approx(b.metrics, rel=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(eval_workspace):
    split = split_of(eval_workspace)
    protocol = get_protocol("leve2024", "synthetic", 10.0)
    cpu = evaluate(ColumnRampNet(), split, protocol, (32, 32), 10.0, **evaluation(), show_progress=False)
    gpu = evaluate(ColumnRampNet().cuda(), split, protocol, (32, 32), 10.0, **evaluation(device="cuda"), show_progress=False)
    for a, b in zip(cpu.scored, gpu.scored):
        assert a.metrics == pytest.approx(b.metrics, rel=1e-4)
