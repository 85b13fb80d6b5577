"""Numbers that cannot look right when the model is wrong (issue 27 items 1, 2, 3 and 8: D4-D6).

Each piece is checked against an independent computation written here: a bounded least-squares solver
(scipy's ``lsq_linear``) for the positive-scale fit, scipy's ``spearmanr`` and the no-ties closed form for
ρ, naive formulas for the constant and ``rmse_log`` in log10, monodepth2's evaluation order written out
for ``median_disparity``; and on real RGB-D that scikit-image ships (Middlebury 2014 *Motorcycle*,
tests/evaluation/middlebury.py), a map with near and far swapped is scored under every alignment.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch.nn.functional as F
from scipy.optimize import lsq_linear
from scipy.stats import spearmanr

from leve.errors import LeveError
from leve.evaluation.align import align_prediction_fit, fit_positive_scale_shift
from leve.evaluation.protocols import get_protocol
from leve.evaluation.runner import batch_input, evaluate
from leve.metrics import SPEARMAN_MAX_PIXELS, compute_metrics, metrics_from_sums, pixel_sums, spearman
from tests.evaluation.conftest import HEIGHT, WIDTH, ColumnRampNet, split_of

pytest.importorskip("skimage")  # the Middlebury pair ships in scikit-image's wheel (dev extra)

from tests.evaluation import middlebury as mb  # noqa: E402
from tests.explicit import evaluation

ALIGNMENTS = ("none", "median", "median_disparity", "lstsq")


# ----------------------------------------------------------------------------- item 1: positive-scale fits


def test_positive_scale_fit_is_the_bounded_least_squares_optimum():
    rng = np.random.default_rng(3)
    flagged = 0
    for _ in range(40):
        x = rng.uniform(0.1, 2.0, 200)
        slope = rng.uniform(-3, 3)
        y = slope * x + rng.uniform(-1, 1) + rng.normal(0, 0.5, x.size)
        fit = fit_positive_scale_shift(x, y)
        a = np.stack([x, np.ones_like(x)], 1)
        want = lsq_linear(a, y, bounds=([0.0, -np.inf], [np.inf, np.inf]), tol=1e-12).x  # independent, s >= 0
        np.testing.assert_allclose([fit.scale, fit.shift], want, rtol=1e-6, atol=1e-9)
        free_scale = np.polyfit(x, y, 1)[0]
        assert fit.non_positive is bool(free_scale <= 0)
        flagged += fit.non_positive
    assert 0 < flagged < 40   # both cases were exercised


def test_lstsq_gives_an_inverted_map_the_best_constant_and_counts_it():
    gt = np.linspace(1.0, 5.0, 64).reshape(8, 8)
    valid = np.ones_like(gt, dtype=bool)
    inverted = gt.copy()   # a depth map read as disparity: near and far swapped
    depth, non_positive = align_prediction_fit(inverted, gt, valid, "lstsq", 1e-3, 10.0)
    assert non_positive is True
    np.testing.assert_allclose(depth, 1.0 / np.mean(1.0 / gt))   # s = 0: t = mean(1/gt), depth 1/t
    right, flag = align_prediction_fit(1.0 / gt, gt, valid, "lstsq", 1e-3, 10.0)
    assert flag is False and np.allclose(right, gt)
    for method in ("median", "median_disparity"):   # a median scale is positive by construction
        assert align_prediction_fit(inverted if method == "median" else 1 / inverted, gt, valid, method, 1e-3, 10.0)[1] is False
    assert align_prediction_fit(gt, gt, valid, "none", 1e-3, 10.0)[1] is None


# ----------------------------------------------------------------------------- item 3: depth ordering


def test_spearman_against_scipy_and_the_closed_form():
    rng = np.random.default_rng(0)
    gt = rng.uniform(0.5, 8.0, (12, 16))
    pred = gt + rng.normal(0, 1.0, gt.shape)
    n = gt.size
    d = np.argsort(np.argsort(pred.ravel())) - np.argsort(np.argsort(gt.ravel()))   # no ties: ranks differ by d
    assert spearman(pred, gt) == pytest.approx(1 - 6 * np.sum(d**2) / (n * (n**2 - 1)), abs=1e-12)
    tied = np.round(pred, 0)   # many ties: average ranks
    assert spearman(tied, gt) == pytest.approx(spearmanr(tied.ravel(), gt.ravel()).statistic, abs=1e-12)
    valid = rng.random(gt.shape) > 0.3
    assert spearman(pred, gt, valid) == pytest.approx(spearmanr(pred[valid], gt[valid]).statistic, abs=1e-12)
    assert spearman(np.full_like(gt, 3.0), gt) == 0.0   # a constant map has no order
    assert spearman(10.0 - gt, gt) == pytest.approx(-1.0)   # near and far swapped
    assert spearman(pred, np.zeros_like(gt)) is None   # nothing to score


def test_spearman_subsamples_a_large_image_by_a_fixed_rule():
    rng = np.random.default_rng(1)
    gt = rng.uniform(0.5, 8.0, 3 * SPEARMAN_MAX_PIXELS)
    pred = gt + rng.normal(0, 2.0, gt.size)
    pick = np.linspace(0, gt.size - 1, SPEARMAN_MAX_PIXELS).round().astype(int)
    assert spearman(pred, gt) == pytest.approx(spearmanr(pred[pick], gt[pick]).statistic, abs=1e-12)


# ----------------------------------------------------------------------------- D5: rmse_log base


def test_rmse_log_in_log10_is_the_thesis_formula_and_ln_stays_the_default():
    rng = np.random.default_rng(2)
    gt, pred = rng.uniform(0.5, 8.0, 300), rng.uniform(0.5, 8.0, 300)
    sums = pixel_sums(pred, gt)
    assert metrics_from_sums(sums)["rmse_log"] == pytest.approx(np.sqrt(np.mean((np.log(pred) - np.log(gt)) ** 2)))
    assert metrics_from_sums(sums, "log10")["rmse_log"] == pytest.approx(
        np.sqrt(np.mean((np.log10(pred) - np.log10(gt)) ** 2)))
    assert get_protocol("leve2024", "nyu", 10.0).rmse_log == "ln"   # the default of every protocol
    with pytest.raises(LeveError, match="eval.rmse_log: unknown log 'log2'"):
        get_protocol("leve2024", "nyu", 10.0, rmse_log="log2")


def test_rmse_log_option_reaches_every_aggregation(eval_workspace):
    split = split_of(eval_workspace)
    for aggregation in ("per_image", "per_image_mse", "pooled"):
        ln = evaluate(ColumnRampNet(), split, get_protocol("leve2024", "synthetic", 10.0, aggregation=aggregation),
                      (HEIGHT, WIDTH), 10.0, **evaluation(), show_progress=False).aggregate()
        lg = evaluate(ColumnRampNet(), split, get_protocol("leve2024", "synthetic", 10.0, aggregation=aggregation,
                                                           rmse_log="log10"), (HEIGHT, WIDTH), 10.0, **evaluation(),
                      show_progress=False).aggregate()
        assert ln is not None and lg is not None
        assert lg.means["rmse_log"] == pytest.approx(ln.means["rmse_log"] / np.log(10.0), rel=1e-9)
        assert lg.means["rmse"] == ln.means["rmse"]   # nothing else moves


# ----------------------------------------------------------------------------- D4: median in disparity space


def test_median_disparity_resizes_disparity_then_inverts_as_monodepth2(eval_workspace):
    split = split_of(eval_workspace)
    low = (HEIGHT // 2, WIDTH // 2)   # the net sees half the size: its output is resized back up
    scored = {}
    for align in ("median", "median_disparity"):
        protocol = get_protocol("standard", "synthetic", 10.0, align=align, flip=False)
        scored[align] = evaluate(ColumnRampNet(), split, protocol, low, 10.0, **evaluation(), show_progress=False)
    for i in range(len(split)):
        gt = split.depth(i).astype(np.float64)
        x = batch_input([split.rgb(i)], low, "cpu")   # the network input as training resizes it (not under test here)
        disp = ColumnRampNet()(x) / 10.0   # monodepth2: the network's disparity ...
        up = F.interpolate(disp.double(), size=gt.shape, mode="bilinear", align_corners=False)[0, 0].numpy()  # ... resized
        depth = 1.0 / up   # ... inverted
        valid = (gt > 1e-3) & (gt < 10.0)
        depth = np.clip(depth * np.median(gt[valid]) / np.median(depth[valid]), 1e-3, 10.0)   # ... median-scaled, clipped
        assert scored["median_disparity"].scored[i].metrics == pytest.approx(compute_metrics(depth, gt, valid), rel=1e-5)
    a, b = scored["median"].aggregate(), scored["median_disparity"].aggregate()
    assert a is not None and b is not None and a.means["rmse"] != pytest.approx(b.means["rmse"], rel=1e-6)  # the space matters


# ----------------------------------------------------------------------------- real RGB-D: Middlebury Motorcycle


@pytest.fixture(scope="module")
def motorcycle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return mb.motorcycle_store(tmp_path_factory.mktemp("middlebury") / "middlebury.zarr")


def test_the_scene_in_metres(motorcycle):
    rgb, depth = mb.motorcycle()
    assert rgb.shape == (500, 741, 3) and depth.shape == (500, 741)
    measured = depth[depth > 0]
    assert 2.0 < measured.min() < measured.max() < 5.1   # about 2.1-5.0 m, as Z = b f / (d + doffs) gives


def test_train_median_is_the_constant(motorcycle):
    from leve.evaluation.baseline import train_median_depth
    from leve.store.reader import open_store

    _, depth = mb.motorcycle()
    crops = [depth[r:r + mb.CROP[0], c:c + mb.CROP[1]] for r, c in mb.TRAIN_CORNERS]
    want = np.median(np.concatenate([c[c > 0] for c in crops]))
    got = train_median_depth(open_store(motorcycle), mb.MAX_DEPTH)
    assert got is not None and got["split"] == "train" and got["images"] == 4
    assert got["depth"] == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("how", ["mirror", "reciprocal"])
def test_a_swapped_map_scores_no_better_than_a_constant_under_every_alignment(motorcycle, how):
    from leve.evaluation.baseline import train_median_depth
    from leve.store.reader import open_store

    store = open_store(motorcycle)
    split = store.split("test")
    constant = train_median_depth(store, mb.MAX_DEPTH)["depth"]
    gts = [split.depth(i).astype(np.float64) for i in range(len(split))]
    net = mb.lookup_net(split, [mb.swapped(g, how) for g in gts])
    for name, align in [("leve2024", "none")] + [("standard", a) for a in ALIGNMENTS]:
        protocol = get_protocol(name, "middlebury", mb.MAX_DEPTH, align=align, flip=True)
        result = evaluate(net, split, protocol, mb.CROP, mb.MAX_DEPTH, **evaluation(), constant=constant, show_progress=False)
        s, c = result.aggregate("student"), result.aggregate("constant")
        assert s is not None and c is not None and s.count == c.count
        assert s.means["rmse"] >= c.means["rmse"] - 1e-9 and s.means["abs_rel"] >= c.means["abs_rel"] - 1e-9, (name, align)
        assert s.means["d1"] <= c.means["d1"] + 1e-9, (name, align)
        assert s.means["spearman"] < -0.9 and c.means["spearman"] == 0.0   # visibly worse than no order at all
        fits = result.alignment("student")
        assert fits is not None
        if align == "lstsq":
            assert fits["non_positive_fits"] == fits["fits"] == len(split)   # every image: a non-positive fit
        else:
            assert fits["non_positive_fits"] == 0   # none fits nothing; a median scale is positive


def test_the_constraint_is_what_stops_the_swapped_map(motorcycle):
    """Without the s >= 0 constraint (an unconstrained fit, written here), the same swapped maps would beat the
    constant by far: the check above can fail."""
    from leve.store.reader import open_store

    split = open_store(motorcycle).split("test")
    free, best_constant = [], []
    for i in range(len(split)):
        gt = split.depth(i).astype(np.float64)
        valid = (gt > 1e-3) & (gt < mb.MAX_DEPTH)
        x = 1.0 / mb.swapped(gt, "reciprocal")   # its disparity
        a = np.stack([x[valid], np.ones(valid.sum())], 1)
        (s, t), *_ = np.linalg.lstsq(a, 1.0 / gt[valid], rcond=None)
        assert s < 0
        depth = np.clip(1.0 / np.maximum(s * x + t, 1.0 / mb.MAX_DEPTH), 1e-3, mb.MAX_DEPTH)
        free.append(compute_metrics(depth, gt, valid)["rmse"])
        best_constant.append(compute_metrics(np.full_like(gt, 1.0 / np.mean(1.0 / gt[valid])), gt, valid)["rmse"])
    assert np.mean(free) < 0.5 * np.mean(best_constant)


def test_the_document_tables_and_summary_show_it(motorcycle):
    from leve.evaluation.baseline import train_median_depth
    from leve.evaluation.stage import constant_source, constant_warning, summary_line
    from leve.report.metrics import evaluation_markdown, metrics_document, summary_rows
    from leve.store.reader import open_store

    store = open_store(motorcycle)
    split = store.split("test")
    net = mb.lookup_net(split, [mb.swapped(split.depth(i).astype(np.float64)) for i in range(len(split))])
    protocol = get_protocol("standard", "middlebury", mb.MAX_DEPTH, align="lstsq", flip=True)
    source = constant_source(train_median_depth(store, mb.MAX_DEPTH), "lstsq")
    result = evaluate(net, split, protocol, mb.CROP, mb.MAX_DEPTH, **evaluation(), constant=source["depth"], show_progress=False)
    doc = metrics_document(result, "test", {"path": "swapped.pt", "model": "lookup"}, None, source)
    n = len(split)
    assert doc["alignment"] == {"method": {"student": "lstsq"}, "fits": {"student": n}, "non_positive_fits": {"student": n}}
    assert doc["constant"]["count"] == doc["student"]["count"] == n and doc["constant"]["spearman"] == 0.0
    assert doc["metric_aggregation"]["spearman"] == "mean_i(spearman_i)"
    assert doc["protocol"]["rmse_log"] == "ln" and doc["metric_definitions"]["rmse_log"] == "sqrt(mean((ln p - ln g)^2))"
    rows = summary_rows(doc)
    assert [r["model"] for r in rows] == ["student lookup (swapped.pt)", "constant baseline (aligned by lstsq)"]
    table = evaluation_markdown([doc])
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines() if line.startswith("|")]
    assert cells[0] == ["Model", "RMSE", "REL", "δ1", "δ2", "δ3", "ρ", "Fits s ≤ 0", "Samples"]
    assert cells[2][6:] == [f"{doc['student']['spearman']:.3f}", f"{n}/{n}", str(n)]
    assert cells[3][7] == "–"   # the constant is not counted as a fit
    assert f"student lstsq ({n} of {n} fits with a non-positive scale" in table
    line = summary_line(doc, "middlebury/test", Path("metrics/middlebury.json"))
    assert f"non-positive fits student {n}/{n}" in line and "; constant rmse " in line and " spearman -" in line
    warning = constant_warning(doc, "middlebury/test")
    assert warning is not None and warning.startswith("warning: middlebury/test: the student does not beat the constant")


# ----------------------------------------------------------------------------- the stage and the profile


def test_eval_prints_the_constant_and_the_fits_and_warns_when_not_beaten(workspace, run_cli):
    import json

    from leve.evaluation.baseline import beats_constant

    res = run_cli("eval", "--dataset", "synthetic", "--protocol", "standard", "--align", "lstsq", "--quiet")
    assert res.code == 0, res.stderr
    doc = json.loads(Path("metrics/synthetic.json").read_text())
    out = res.stdout + res.stderr
    a = doc["alignment"]
    assert a["method"] == {"student": "lstsq", "teacher": "lstsq"} and a["fits"] == {"student": 4, "teacher": 4}
    assert (f"non-positive fits student {a['non_positive_fits']['student']}/4 "
            f"teacher {a['non_positive_fits']['teacher']}/4 -> metrics/synthetic.json") in out
    assert doc["constant_source"]["split"] == "train" and doc["constant"]["count"] == doc["student"]["count"] == 4
    assert f"; constant rmse {doc['constant']['rmse']:.4f} abs_rel {doc['constant']['abs_rel']:.4f}" in out
    warned = [line for line in out.splitlines() if line.startswith("warning: synthetic/test: the student does not beat")]
    assert len(warned) == (0 if beats_constant(doc["student"], doc["constant"]) else 1)


def test_thesis_code_profile_names_log10_and_the_shipped_params_keep_ln(tmp_path):
    import shutil

    from leve.evaluation import stage
    from leve.pipeline.profiles import apply_profile

    root = Path(__file__).resolve().parents[2]
    assert stage.config("nyu", params_file=root / "params.yaml").rmse_log is None   # the protocol's own: ln
    params = tmp_path / "params.yaml"
    shutil.copy(root / "params.yaml", params)
    apply_profile("thesis-code", params, root / "profiles")
    cfg = stage.config("nyu", params_file=params)
    assert cfg.rmse_log == "log10"
    built = get_protocol(cfg.protocol, "nyu", 10.0, rmse_log=cfg.rmse_log, align=cfg.align, flip=cfg.flip)
    assert built.settings()["rmse_log"] == "log10"


@pytest.mark.slow
def test_the_embedded_teacher_on_the_whole_scene_is_anti_correlated_and_scores_as_the_constant(tmp_path):
    """The issue's finding, on real RGB-D: the embedded teacher orders the Motorcycle scene backwards (ρ < 0), its
    unconstrained fit took a negative scale and scored better than the constant; now the fit is counted and the
    teacher row is the constant's."""
    whole = next(r for r in mb.teacher_numbers(tmp_path) if r["data"].startswith("whole"))
    assert whole["alignment"] == {"method": "lstsq", "fits": 1, "non_positive_fits": 1}
    assert whole["teacher"]["spearman"] < -0.2
    for key in ("rmse", "abs_rel", "d1"):
        assert whole["teacher"][key] == pytest.approx(whole["constant"][key], rel=1e-9)
    assert whole["unconstrained"]["rmse"] < 0.95 * whole["constant"]["rmse"]   # what the flip used to buy
