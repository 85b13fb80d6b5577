"""leve.metrics against values computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from leve.metrics import (
    METRIC_KEYS,
    MetricAccumulator,
    aggregate_metrics,
    compute_metrics,
)

GT = np.array([[1.0, 2.0], [4.0, 5.0]])
PRED = np.array([[1.5, 2.0], [2.0, 5.0]])


def hand_metrics() -> dict[str, float]:
    """The metrics of PRED vs GT worked out on paper (pixel by pixel)."""
    ln15, ln2 = math.log(1.5), math.log(2.0)
    mean_e, mean_e2 = (ln15 - ln2) / 4, (ln15**2 + ln2**2) / 4
    return {
        "abs_rel": (0.5 / 1 + 0 + 2 / 4 + 0) / 4,          # 0.25
        "sq_rel": (0.25 / 1 + 0 + 4 / 4 + 0) / 4,          # 0.3125
        "rmse": math.sqrt((0.25 + 0 + 4 + 0) / 4),
        "rmse_log": math.sqrt(mean_e2),
        "log10": (math.log10(1.5) + math.log10(2.0)) / 4,
        "silog": math.sqrt(mean_e2 - mean_e**2) * 100,
        "mae": (0.5 + 0 + 2 + 0) / 4,
        "d1": 2 / 4,   # ratios 1.5, 1, 2, 1: only the exact pixels pass 1.25
        "d2": 3 / 4,   # 1.5 < 1.5625
        "d3": 3 / 4,   # 2 > 1.953125
    }


def test_keys_and_hand_values():
    got = compute_metrics(PRED, GT)
    assert got is not None and tuple(got) == METRIC_KEYS
    assert got == pytest.approx(hand_metrics(), rel=1e-12, abs=1e-15)


def test_perfect_prediction_gives_zero_errors_and_full_delta():
    gt = np.linspace(0.5, 9.5, 48).reshape(6, 8)
    got = compute_metrics(gt.copy(), gt)
    assert got is not None
    for key in METRIC_KEYS:
        assert got[key] == (1.0 if key.startswith("d") else 0.0), key


@pytest.mark.parametrize("factor", [1.25, 1 / 1.25])
def test_uniform_125_error_lies_on_the_delta1_boundary(factor):
    # Powers of two times 1.25 are exact in binary, so the ratio is exactly 1.25:
    # δ1 needs a ratio strictly below 1.25, so no pixel passes; δ2 and δ3 all pass.
    gt = np.array([0.5, 1.0, 2.0, 4.0, 8.0])
    got = compute_metrics(gt * factor, gt)
    assert got is not None
    assert (got["d1"], got["d2"], got["d3"]) == (0.0, 1.0, 1.0)
    assert got["abs_rel"] == pytest.approx(abs(factor - 1))
    assert got["silog"] == pytest.approx(0.0, abs=1e-9)       # a pure scale: no silog error
    assert got["rmse_log"] == pytest.approx(math.log(1.25))


def test_just_inside_the_boundary_passes():
    gt = np.array([1.0, 2.0])
    got = compute_metrics(gt * np.nextafter(1.25, 0), gt)
    assert got is not None and got["d1"] == 1.0


def test_valid_mask_and_zero_ground_truth_are_excluded():
    gt = np.array([[1.0, 2.0, 0.0], [4.0, 5.0, np.nan]])
    pred = np.array([[1.5, 2.0, 7.0], [2.0, 5.0, 3.0]])
    # zero / NaN ground truth can never be scored: same as the 4-pixel case
    assert compute_metrics(pred, gt) == pytest.approx(hand_metrics())
    valid = np.array([[True, True, True], [False, True, True]])
    # the mask drops the (pred 2, gt 4) pixel: three pixels (1.5|1, 2|2, 5|5) remain
    got = compute_metrics(pred, gt, valid)
    assert got is not None
    assert got["abs_rel"] == pytest.approx(0.5 / 3)
    assert got["rmse"] == pytest.approx(math.sqrt(0.25 / 3))
    assert got["d1"] == pytest.approx(2 / 3)


def test_empty_images_give_none():
    gt = np.zeros((4, 4))
    assert compute_metrics(np.ones((4, 4)), gt) is None
    assert compute_metrics(np.ones((2, 2)), np.ones((2, 2)), np.zeros((2, 2), bool)) is None


def test_non_positive_predictions_stay_counted_and_finite():
    gt = np.array([1.0, 2.0])
    got = compute_metrics(np.array([0.0, -3.0]), gt)
    assert got is not None
    assert all(math.isfinite(v) for v in got.values())
    assert got["d3"] == 0.0 and got["abs_rel"] == pytest.approx(1.0, abs=1e-5)


def test_torch_inputs_match_numpy():
    pred_t = torch.tensor(PRED, dtype=torch.float32).unsqueeze(0)
    gt_t = torch.tensor(GT, dtype=torch.float32).unsqueeze(0)
    valid_t = torch.ones_like(gt_t, dtype=torch.bool)
    assert compute_metrics(pred_t, gt_t, valid_t) == pytest.approx(hand_metrics(), rel=1e-6)


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="shapes differ"):
        compute_metrics(np.ones(3), np.ones(4))


def test_aggregation_is_the_mean_of_images_and_counts_skips():
    first = compute_metrics(PRED, GT)
    second = compute_metrics(GT, GT)
    agg = aggregate_metrics([first, None, second, None])
    assert (agg.count, agg.skipped) == (2, 2)
    assert agg.means["rmse"] == pytest.approx(math.sqrt(1.0625) / 2)   # (x + 0) / 2
    assert agg.means["d1"] == pytest.approx((0.5 + 1.0) / 2)
    flat = agg.as_dict()
    assert flat["count"] == 2 and flat["skipped"] == 2 and flat["abs_rel"] == pytest.approx(0.125)


def test_per_image_mean_differs_from_pooled_pixels():
    # A big image and a small one: the split mean weights images, not pixels.
    a = compute_metrics(np.full(100, 2.0), np.full(100, 1.0))   # abs_rel 1
    b = compute_metrics(np.full(1, 1.0), np.full(1, 1.0))       # abs_rel 0
    assert aggregate_metrics([a, b]).means["abs_rel"] == pytest.approx(0.5)


def test_empty_aggregation_gives_nan_means():
    acc = MetricAccumulator()
    acc.add(None)
    agg = acc.result()
    assert (agg.count, agg.skipped) == (0, 1)
    assert all(math.isnan(v) for v in agg.means.values())


# ----------------------------------------------------------------------------- pooled aggregation


def _pooled_by_hand(preds, gts, valids, rel_to="gt"):
    """Every metric over the concatenated valid pixels of all images (an independent numpy computation)."""
    p = np.concatenate([np.asarray(a, float)[v] for a, v in zip(preds, valids)])
    g = np.concatenate([np.asarray(a, float)[v] for a, v in zip(gts, valids)])
    den = g if rel_to == "gt" else p
    e = np.log(p) - np.log(g)
    ratio = np.maximum(p / g, g / p)
    return {"abs_rel": np.mean(np.abs(p - g) / den),
            "sq_rel": np.mean((p - g) ** 2 / den), "rmse": np.sqrt(np.mean((p - g) ** 2)),
            "rmse_log": np.sqrt(np.mean(e**2)), "log10": np.mean(np.abs(np.log10(p) - np.log10(g))),
            "silog": np.sqrt(np.mean(e**2) - np.mean(e) ** 2) * 100, "mae": np.mean(np.abs(p - g)),
            "d1": np.mean(ratio < 1.25), "d2": np.mean(ratio < 1.25**2), "d3": np.mean(ratio < 1.25**3)}


def _three_images():
    """Three images of different sizes and valid-pixel counts (one with holes gt = 0), where the
    per-image mean and the pooled value differ."""
    rng = np.random.default_rng(7)
    gts = [rng.uniform(0.5, 9.0, (6, 8)), rng.uniform(0.5, 9.0, (3, 4)), rng.uniform(0.5, 9.0, (10, 10))]
    gts[2][:, :7] = 0.0   # 30 measured pixels of 100
    preds = [gts[0] * rng.uniform(0.7, 1.4, gts[0].shape), gts[1] * 2.5, gts[2] * rng.uniform(0.9, 1.1, gts[2].shape)]
    masks = [np.ones_like(gts[0], bool), np.ones_like(gts[1], bool), np.ones_like(gts[2], bool)]
    masks[0][0, :] = False   # an explicit validity mask too
    valids = [m & (g > 0) for m, g in zip(masks, gts)]
    assert [int(v.sum()) for v in valids] == [40, 12, 30]
    return preds, gts, masks, valids


@pytest.mark.parametrize("rel_to", ["gt", "pred"])
def test_pooled_metrics_equal_a_computation_over_the_concatenated_pixels(rel_to):
    from leve.metrics import pixel_sums, pool_pixel_sums

    preds, gts, masks, valids = _three_images()
    sums = [pixel_sums(p, g, m, rel_to) for p, g, m in zip(preds, gts, masks)]
    pooled = pool_pixel_sums([sums[0], None, sums[1], sums[2]])
    want = _pooled_by_hand(preds, gts, valids, rel_to)
    assert pooled.means == pytest.approx(want, rel=1e-12)
    assert (pooled.count, pooled.skipped, pooled.pixels, pooled.aggregation) == (3, 1, 82, "pooled")
    assert pooled.as_dict()["pixels"] == 82 and "pixels" not in aggregate_metrics([None]).as_dict()
    per_image = aggregate_metrics(compute_metrics(p, g, m, rel_to) for p, g, m in zip(preds, gts, masks))
    for key in ("abs_rel", "rmse", "log10", "d1"):   # the aggregation matters for these images
        assert abs(per_image.means[key] - pooled.means[key]) > 1e-3, key
    # one image: pooled and per-image agree, and the metrics come from the same sums
    assert pool_pixel_sums([sums[0]]).means == pytest.approx(compute_metrics(preds[0], gts[0], masks[0], rel_to))


def test_rel_denominator_pred_divides_by_the_prediction():
    got = compute_metrics(PRED, GT, rel_denominator="pred")
    assert got["abs_rel"] == pytest.approx((0.5 / 1.5 + 0 + 2 / 2 + 0) / 4)
    assert got["sq_rel"] == pytest.approx((0.25 / 1.5 + 0 + 4 / 2 + 0) / 4)
    same = {k: v for k, v in hand_metrics().items() if k not in ("abs_rel", "sq_rel")}
    assert {k: got[k] for k in same} == pytest.approx(same)   # the symmetric metrics do not change
    with pytest.raises(ValueError, match="rel_denominator"):
        compute_metrics(PRED, GT, rel_denominator="mean")


def test_accumulator_aggregations():
    from leve.metrics import pixel_sums

    acc = MetricAccumulator("pooled")
    with pytest.raises(ValueError, match="needs each image's pixel sums"):
        acc.add(compute_metrics(PRED, GT))
    acc.add(None)
    assert math.isnan(acc.result().means["rmse"]) and acc.result().pixels == 0
    per_image = MetricAccumulator()
    per_image.add(None, pixel_sums(PRED, GT))   # per_image also takes an image's sums
    assert per_image.result().means == pytest.approx(hand_metrics())
    with pytest.raises(ValueError, match="aggregation"):
        MetricAccumulator("median")


def test_old_module_path_still_works_with_a_deprecation():
    import importlib
    import sys

    import leve.metrics

    sys.modules.pop("leve.evaluation.metrics", None)
    with pytest.warns(DeprecationWarning, match="import leve.metrics"):
        old = importlib.import_module("leve.evaluation.metrics")
    assert old.compute_metrics is leve.metrics.compute_metrics and old.METRIC_KEYS == leve.metrics.METRIC_KEYS
