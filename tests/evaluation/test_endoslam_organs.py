"""EndoSLAM per-organ tables: a tiny store in the real EndoSLAM layout (three organs, different
frame counts), scored by :func:`evaluate` with a predictor known in closed form; every organ row
and the overall row are checked against a naive computation written here, under each aggregation,
in the metrics document, in ``leve tables``' Markdown and in ``leve report``'s organ rows."""

from __future__ import annotations

import numpy as np
import pytest

from leve.evaluation.protocols import get_protocol
from leve.evaluation.runner import evaluate
from leve.report import experiments as ex
from leve.report.metrics import evaluation_markdown, metrics_document, summary_rows
from leve.store.reader import open_split
from tests.evaluation.conftest import ColumnRampNet
from tests.explicit import evaluation
from tests.factories import endoslam_store

H, W = 12, 16
FRAMES = {"Colon": 3, "Small Intestine": 2, "Stomach": 4}  # unequal: the overall mean is not the mean of the organs


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory):
    return endoslam_store(tmp_path_factory.mktemp("endo") / "endoslam.zarr", FRAMES, H, W)


def naive_depth(rgb: np.ndarray) -> np.ndarray:
    """ColumnRampNet's depth under leve2024 on EndoSLAM (D = 1): clamp(D / (10 / ramp), D/100, D) = ramp / 10,
    ramp = 1 + 4 red + 3 column / (W - 1) in [1, 8], so never clamped."""
    cols = np.arange(rgb.shape[1]) / (rgb.shape[1] - 1)
    return (1.0 + 4.0 * rgb[..., 0] / 255.0 + 3.0 * cols) / 10.0


def naive_samples(truth: dict) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """organ -> the scored samples (pred, gt) at valid pixels: each frame, then its mirror predicted
    and scored against the mirrored ground truth (leve2024's 2N samples); gt 0 is no measurement."""
    out: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for organ, frames in truth.items():
        out[organ] = []
        for rgb, gt in frames:
            for img, g in ((rgb, gt), (rgb[:, ::-1], gt[:, ::-1])):
                g = g.astype(np.float64)
                ok = g > 0
                out[organ].append((naive_depth(img)[ok], g[ok]))
    return out


def per_sample(p: np.ndarray, g: np.ndarray) -> dict[str, float]:
    ratio = np.maximum(p / g, g / p)
    return {"rmse": float(np.sqrt(np.mean((p - g) ** 2))), "abs_rel": float(np.mean(np.abs(p - g) / g)),
            "d1": float(np.mean(ratio < 1.25)), "d2": float(np.mean(ratio < 1.25**2)),
            "d3": float(np.mean(ratio < 1.25**3))}


def naive_aggregate(samples: list[tuple[np.ndarray, np.ndarray]], how: str) -> dict[str, float]:
    """RMSE, REL, δ1-δ3 of ``samples`` aggregated as ``how``, the long way."""
    if how == "pooled":
        return per_sample(np.concatenate([p for p, _ in samples]), np.concatenate([g for _, g in samples]))
    each = [per_sample(p, g) for p, g in samples]
    out = {k: float(np.mean([m[k] for m in each])) for k in each[0]}
    if how == "per_image_mse":
        out["rmse"] = float(np.sqrt(np.mean([np.mean((p - g) ** 2) for p, g in samples])))
    return out


@pytest.mark.parametrize("aggregation", ["per_image", "per_image_mse", "pooled"])
def test_each_organ_row_and_the_overall_row(store, aggregation):
    path, truth = store
    split = open_split(path, "test")
    protocol = get_protocol("leve2024", "endoslam", 1.0, aggregation=aggregation)
    result = evaluate(ColumnRampNet(), split, protocol, (H, W), 10.0, **evaluation(batch_size=4), show_progress=False)
    doc = metrics_document(result, "test", {"path": "models/student/best.pt", "model": "ramp"}, None)

    samples = naive_samples(truth)
    assert list(doc["groups"]) == sorted(FRAMES) and result.groups == sorted(FRAMES)
    for organ, count in FRAMES.items():
        got = doc["groups"][organ]["student"]
        assert got["count"] == 2 * count and got["skipped"] == 0
        want = naive_aggregate(samples[organ], aggregation)
        assert {k: got[k] for k in want} == pytest.approx(want, rel=2e-5, abs=2e-6), organ
    every = [s for organ in FRAMES for s in samples[organ]]
    want_all = naive_aggregate(every, aggregation)
    assert doc["student"]["count"] == 2 * sum(FRAMES.values())
    assert {k: doc["student"][k] for k in want_all} == pytest.approx(want_all, rel=2e-5, abs=2e-6)
    organ_means = np.mean([naive_aggregate(samples[o], aggregation)["rmse"] for o in FRAMES])
    assert abs(doc["student"]["rmse"] - organ_means) > 1e-4   # the overall row is over all samples
    assert doc["metric_aggregation"]["rmse"] == {"per_image": "mean_i(rmse_i)", "per_image_mse": "sqrt(mean_i(rmse_i^2))",
                                                 "pooled": "rmse(all pixels)"}[aggregation]

    # `leve tables`: one row per organ plus the overall row, RMSE and REL as computed above
    rows = summary_rows(doc)
    assert [r["group"] for r in rows] == ["all", *sorted(FRAMES)]
    lines = [[c.strip() for c in line.strip().strip("|").split("|")]
             for line in evaluation_markdown([doc]).splitlines() if line.startswith("|")]
    assert lines[0][:4] == ["Model", "Organ", "RMSE", "REL"]
    body = {r[1]: r for r in lines[2:]}
    assert list(body) == ["all", *sorted(FRAMES)]
    for organ, want in (("all", want_all), *((o, naive_aggregate(samples[o], aggregation)) for o in FRAMES)):
        assert body[organ][2:4] == [f"{want['rmse']:.3f}", f"{want['abs_rel']:.3f}"], organ
        assert body[organ][-1] == str(2 * (sum(FRAMES.values()) if organ == "all" else FRAMES[organ]))

    # `leve report`: the same document as an experiment gives the overall row and one row per organ
    record = ex.Record("exp", "abc", "experiment", "success", {"train.seed": 0}, {"endoslam": doc})
    report_rows = ex.dataset_rows([record], ["run"], "endoslam", True, None)
    assert [r.group for r in report_rows] == ["all", *sorted(FRAMES)]
    for r in report_rows:
        want = want_all if r.group == "all" else naive_aggregate(samples[r.group], aggregation)
        assert r.means["rmse"] == pytest.approx(want["rmse"], rel=2e-5)


def test_the_store_groups_samples_by_organ(store):
    path, truth = store
    split = open_split(path, "test")
    organs = split.meta["organ"].astype(str).tolist()
    assert organs == [o for o, n in FRAMES.items() for _ in range(n)]
    for i, (organ, k) in enumerate((o, k) for o, n in FRAMES.items() for k in range(n)):
        np.testing.assert_array_equal(split.rgb(i), truth[organ][k][0])
        np.testing.assert_allclose(split.depth(i), truth[organ][k][1], rtol=1e-6)
