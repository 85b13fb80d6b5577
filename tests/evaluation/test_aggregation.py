"""How a split's metrics are aggregated (issue 15, item 4): per-image means, the thesis's eq. 8.1
(RMSE = sqrt of the mean per-image MSE) and pooled pixels give different numbers, each equal to
hand-computed values and to a naive implementation written here; the choice is recorded per
metric in metrics/<ds>.json and shown in the tables' captions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from leve.errors import LeveError
from leve.evaluation.protocols import get_protocol
from leve.metrics import (
    AGGREGATIONS,
    METRIC_KEYS,
    MetricAccumulator,
    aggregate_metrics,
    compute_metrics,
    metric_aggregation,
    pixel_sums,
)

LN2 = math.log(2.0)
# Two images: A has 4 pixels (gt 1, pred 2 1 1 1), B one pixel (gt 2, pred 1).
IMAGES = [(np.array([2.0, 1.0, 1.0, 1.0]), np.ones(4)), (np.array([1.0]), np.array([2.0]))]
# Worked out on paper. A: MSE 1/4, RMSE 1/2, REL 1/4, e = (ln 2, 0, 0, 0), SIlog² = ln²2 (1/4 - 1/16).
# B: MSE 1, RMSE 1, REL 1/2, e = -ln 2, SIlog 0. Pooled: 5 pixels, squared errors 1 + 1, REL 1 + 1/2.
HAND = {
    "per_image": {"rmse": (0.5 + 1.0) / 2, "abs_rel": (0.25 + 0.5) / 2, "rmse_log": (LN2 / 2 + LN2) / 2,
                  "silog": (LN2 * math.sqrt(3) / 4 + 0.0) / 2 * 100, "d1": (0.75 + 0.0) / 2},
    "per_image_mse": {"rmse": math.sqrt((0.25 + 1.0) / 2), "abs_rel": (0.25 + 0.5) / 2,
                      "rmse_log": math.sqrt((LN2**2 / 4 + LN2**2) / 2),
                      "silog": math.sqrt((3 * LN2**2 / 16 + 0.0) / 2) * 100, "d1": (0.75 + 0.0) / 2},
    "pooled": {"rmse": math.sqrt(2 / 5), "abs_rel": 1.5 / 5, "rmse_log": math.sqrt(2 * LN2**2 / 5),
               "silog": math.sqrt(2 * LN2**2 / 5 - 0.0) * 100, "d1": 3 / 5},
}


def aggregate(images, how: str):
    """The split's metrics as the library computes them."""
    acc = MetricAccumulator(how)
    for p, g in images:
        acc.add(compute_metrics(p, g), pixel_sums(p, g))
    return acc.result()


def naive(images, how: str) -> dict[str, float]:
    """Every metric aggregated as ``how``, the long way (no shared code with leve.metrics)."""
    def each(p, g):
        e = np.log(p) - np.log(g)
        ratio = np.maximum(p / g, g / p)
        return {"abs_rel": np.mean(np.abs(p - g) / g), "sq_rel": np.mean((p - g) ** 2 / g),
                "rmse": np.sqrt(np.mean((p - g) ** 2)), "rmse_log": np.sqrt(np.mean(e**2)),
                "log10": np.mean(np.abs(np.log10(p) - np.log10(g))), "silog": np.std(e) * 100,
                "mae": np.mean(np.abs(p - g)), "d1": np.mean(ratio < 1.25), "d2": np.mean(ratio < 1.25**2),
                "d3": np.mean(ratio < 1.25**3)}
    if how == "pooled":
        return each(np.concatenate([p for p, _ in images]), np.concatenate([g for _, g in images]))
    per = [each(p, g) for p, g in images]
    out = {k: float(np.mean([m[k] for m in per])) for k in per[0]}
    if how == "per_image_mse":   # square roots of the mean per-image squares
        for k in ("rmse", "rmse_log", "silog"):
            out[k] = float(np.sqrt(np.mean([m[k] ** 2 for m in per])))
    return out


@pytest.mark.parametrize("how", AGGREGATIONS)
def test_hand_computed_values(how):
    got = aggregate(IMAGES, how)
    assert got.aggregation == how and got.count == 2
    assert {k: got.means[k] for k in HAND[how]} == pytest.approx(HAND[how], rel=1e-12)


def test_the_three_aggregations_differ():
    rmse = {how: aggregate(IMAGES, how).means["rmse"] for how in AGGREGATIONS}
    assert rmse == pytest.approx({"per_image": 0.75, "per_image_mse": 0.7905694150420949, "pooled": 0.6324555320336759})
    assert len({round(v, 6) for v in rmse.values()}) == 3


@pytest.mark.parametrize("how", AGGREGATIONS)
def test_random_images_match_the_naive_implementation(how):
    rng = np.random.default_rng(3)
    images = []
    for n in (7, 30, 2, 55):   # unequal pixel counts: per-image and pooled differ
        g = rng.uniform(0.5, 9.0, n)
        images.append((g * rng.uniform(0.6, 1.6, n), g))
    got = aggregate(images, how).means
    assert got == pytest.approx(naive(images, how), rel=1e-10)
    if how != "pooled":
        assert aggregate_metrics([compute_metrics(p, g) for p, g in images], how).means == pytest.approx(got)


def test_per_metric_record():
    assert metric_aggregation("per_image") == {k: f"mean_i({k}_i)" for k in METRIC_KEYS}
    eq81 = metric_aggregation("per_image_mse")
    assert eq81["rmse"] == "sqrt(mean_i(rmse_i^2))" and eq81["silog"] == "sqrt(mean_i(silog_i^2))"
    assert eq81["abs_rel"] == "mean_i(abs_rel_i)" and eq81["d1"] == "mean_i(d1_i)"
    assert set(metric_aggregation("pooled").values()) == {f"{k}(all pixels)" for k in METRIC_KEYS}
    with pytest.raises(ValueError, match="aggregation"):
        metric_aggregation("median")
    with pytest.raises(ValueError, match="pool_pixel_sums"):
        aggregate_metrics([], "pooled")


def test_protocols_default_and_override():
    own = {"standard": {"align": "lstsq", "flip": False}}  # standard's alignment and flip are eval.align and eval.flip
    assert [get_protocol(n, "nyu", 10.0, **own.get(n, {})).aggregation for n in ("leve2024", "standard", "densedepth")] == [
        "per_image", "per_image", "pooled"]
    assert get_protocol("leve2024", "nyu", 10.0, aggregation="per_image_mse").aggregation == "per_image_mse"
    assert get_protocol("densedepth", "nyu", 10.0, aggregation="per_image").aggregation == "per_image"
    with pytest.raises(LeveError, match="eval.aggregation: unknown aggregation 'mean'"):
        get_protocol("leve2024", "nyu", 10.0, aggregation="mean")


def test_eval_records_the_aggregation_and_tables_show_it(workspace, run_cli):
    """`leve eval --aggregation per_image_mse`: the student's RMSE is sqrt of the mean of the per-image
    RMSE² in reports/<ds>/per_image.csv; metrics JSON and `leve tables` say how it was aggregated."""
    import csv

    res = run_cli("eval", "--dataset", "synthetic", "--aggregation", "per_image_mse", "--no-teacher", "--quiet")
    assert res.code == 0, res.stderr
    doc = json.loads(Path("metrics/synthetic.json").read_text())
    assert doc["protocol"]["aggregation"] == "per_image_mse"
    assert doc["metric_aggregation"]["rmse"] == "sqrt(mean_i(rmse_i^2))"
    assert doc["metric_aggregation"]["abs_rel"] == "mean_i(abs_rel_i)"
    with open("reports/synthetic/per_image.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["model"] == "student"]
    assert len(rows) == 8   # leve2024: 4 images and their mirrors
    per_rmse = [float(r["rmse"]) for r in rows]
    assert doc["student"]["rmse"] == pytest.approx(math.sqrt(sum(v * v for v in per_rmse) / 8), rel=1e-4)
    assert doc["student"]["rmse"] > sum(per_rmse) / 8   # not the per-image mean (unless all were equal)
    assert doc["student"]["abs_rel"] == pytest.approx(sum(float(r["abs_rel"]) for r in rows) / 8, rel=1e-4)
    res = run_cli("tables")
    assert res.code == 0, res.stderr
    table = Path("reports/metrics.md").read_text()
    assert "leve2024 (crop full, RMSE per eq. 8.1)" in table
    assert "_Per-image means; RMSE, RMSE log and SIlog the square root of the mean per-image square (thesis eq. 8.1)._" in table
    res = run_cli("eval", "--dataset", "synthetic", "--aggregation", "median", "--no-teacher", "--quiet")
    assert res.code == 1 and res.stderr.strip().startswith("error: eval.aggregation: unknown aggregation 'median'")
