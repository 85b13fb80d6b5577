"""Statistics over seeds (issue 15, item 9): ``leve experiments queue --seeds N`` builds one
experiment per configuration and seed; ``leve report`` merges a configuration's seeds into one row
with mean ± sd and the 95 % t-interval (checked against the statistics module and t quantiles from
printed tables), and marks what is within seed noise (Welch's t-test, worked by hand)."""

from __future__ import annotations

import csv
import math
import statistics

import pytest
import scipy.stats

from leve.errors import LeveError
from leve.experiments import grid as g
from leve.report import exp_records, exp_render, exp_rows
from leve.report.seeds import SeedStats, noise_marks, seed_stats, welch_p, within_noise
from leve.report.tables import write_csv
from tests.report.data.fake_stages import ORGANS, eval_doc, means

T_975 = {2: 4.302653, 4: 2.776445, 9: 2.262157}   # Student's t 97.5 % quantiles, from a printed table


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().removeprefix("|").removesuffix("|").split("|")]


# ----------------------------------------------------------------------------- statistics


@pytest.mark.parametrize("values", [[0.512, 0.509, 0.515], [0.5, 0.52, 0.49, 0.51, 0.53],
                                    [1.0, 1.1, 0.9, 1.05, 0.95, 1.02, 0.98, 1.01, 0.99, 1.0]])
def test_mean_sd_and_interval_against_the_statistics_module(values):
    got = seed_stats(values)
    n = len(values)
    mean, sd = statistics.mean(values), statistics.stdev(values)
    half = T_975[n - 1] * sd / math.sqrt(n)
    assert (got.n, got.mean, got.sd) == (n, pytest.approx(mean, rel=1e-12), pytest.approx(sd, rel=1e-12))
    assert (got.low, got.high) == (pytest.approx(mean - half, rel=1e-6), pytest.approx(mean + half, rel=1e-6))


def test_one_seed_has_no_spread():
    one = seed_stats([0.5])
    assert one.mean == 0.5 and math.isnan(one.sd) and math.isnan(one.low)
    with pytest.raises(ValueError):
        seed_stats([])


def _welch_t_df(a: list[float], b: list[float]) -> tuple[float, float]:
    """Welch's t and Welch–Satterthwaite degrees of freedom, the long way."""
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    t = (statistics.mean(a) - statistics.mean(b)) / math.sqrt(va + vb)
    return t, (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))


def test_welch_by_hand():
    # means 0.51 vs 0.54, sd 0.01 each: t = 0.03 / sqrt(2 * 0.0001 / 3) = 3.674, df 4 > t(0.975, 4) = 2.776
    a, b = [0.50, 0.51, 0.52], [0.53, 0.54, 0.55]
    t, df = _welch_t_df(a, b)
    assert (abs(t), df) == (pytest.approx(3.6742346, rel=1e-6), pytest.approx(4.0))
    assert abs(t) > T_975[4] and not within_noise(seed_stats(a), seed_stats(b))
    # means 0.52 vs 0.53, sd 0.02 each: t = 0.01 / 0.01633 = 0.612 < 2.776: within noise
    c, d = [0.50, 0.52, 0.54], [0.51, 0.53, 0.55]
    t, df = _welch_t_df(c, d)
    assert abs(t) == pytest.approx(0.6123724, rel=1e-6) and abs(t) < T_975[4]
    assert within_noise(seed_stats(c), seed_stats(d))
    # unequal spreads and sizes: the p-value equals scipy's Welch test on the raw values
    e, f = [0.50, 0.53, 0.47, 0.52], [0.55, 0.56, 0.545]
    want = scipy.stats.ttest_ind(e, f, equal_var=False).pvalue
    assert welch_p(seed_stats(e), seed_stats(f)) == pytest.approx(want, rel=1e-9)
    # no spread at all: equal means are within noise, different ones are not
    assert within_noise(seed_stats([0.5, 0.5]), seed_stats([0.5, 0.5]))
    assert not within_noise(seed_stats([0.5, 0.5]), seed_stats([0.6, 0.6]))


def test_noise_marks_compare_with_the_best_row():
    rows = [seed_stats([0.53, 0.54, 0.55]),   # significantly worse than the best (t 3.67 above)
            seed_stats([0.50, 0.51, 0.52]),   # best (lowest)
            seed_stats([0.49, 0.52, 0.55]),   # within noise of the best: t = 0.01 / sqrt(1e-4/3 + 9e-4/3) = 0.548
            None,                             # a single run: never marked
            SeedStats(1, 0.1, math.nan, math.nan, math.nan)]
    assert noise_marks(rows, lower_is_better=True) == ["", "best", "noise", "", ""]
    assert noise_marks(rows, lower_is_better=False) == ["best", "", "noise", "", ""]
    assert noise_marks([None, None], True) == ["", ""]


# ----------------------------------------------------------------------------- merging runs into rows

# (eps, seed) -> the student's RMSE of a hand-made run on nyu; the ε = 0.25 cell is 0.02 worse but noisier
RMSE = {(0.0, 0): 0.500, (0.0, 1): 0.510, (0.0, 2): 0.520, (0.25, 0): 0.490, (0.25, 1): 0.540, (0.25, 2): 0.590,
        (0.5, 0): 0.600, (0.5, 1): 0.610, (0.5, 2): 0.620}


def run(eps: float, seed: int, kind: str = "experiment", name: str | None = None) -> exp_records.Record:
    """A finished run with a document of the fake stage's layout, RMSE from :data:`RMSE` (EndoSLAM: + organ)."""
    docs = {}
    for dataset in ("nyu", "endoslam"):
        doc = eval_doc(dataset, "leve", eps)
        doc["student"] = means(RMSE[(eps, seed)])
        if dataset == "endoslam":
            doc["groups"] = {o: {"student": means(RMSE[(eps, seed)] + 0.1 * i)} for i, o in enumerate(ORGANS)}
        docs[dataset] = doc
    return exp_records.Record(name or f"kd-eps{eps:.2f}-seed{seed}", f"{seed}{eps}".ljust(40, "0"), kind,
                     "success" if kind == "experiment" else None,
                     {"train.model": "leve", "train.kd.eps": eps, "train.seed": seed}, docs, baseline="c0ffee")


@pytest.fixture
def seeded():
    runs = [run(eps, seed) for eps in (0.0, 0.25, 0.5) for seed in range(3)]
    baseline = run(0.0, 0, "baseline", "main")   # the commit repeats seed 0 of ε = 0: counted once
    single = exp_records.Record("lone", "f" * 40, "experiment", "success", {"train.model": "leve", "train.kd.eps": 0.1,
                                                                   "train.seed": 0},
                       {"nyu": {**eval_doc("nyu", "leve", 0.1), "student": means(0.55)}}, baseline="c0ffee")
    return [baseline, *runs, single]


def test_seeds_of_a_configuration_become_one_record(seeded):
    merged = exp_records.merge_seeds(seeded)
    assert [r.name for r in merged] == ["kd-eps0.00", "kd-eps0.25", "kd-eps0.50", "lone"]
    first = merged[0]
    assert [m.name for m in first.members] == ["kd-eps0.00-seed0", "kd-eps0.00-seed1", "kd-eps0.00-seed2"]
    assert first.params["train.seed"] == "0,1,2" and first.kind == "experiment"
    for record, eps in zip(merged[:3], (0.0, 0.25, 0.5)):
        values = [RMSE[(eps, s)] for s in range(3)]
        assert record.evals["nyu"]["student"]["rmse"] == pytest.approx(statistics.fmean(values))
        stats = exp_records.row_stats(record, "nyu")
        assert stats is not None and stats["rmse"].n == 3
        assert stats["rmse"].sd == pytest.approx(statistics.stdev(values))
        organ = exp_records.row_stats(record, "endoslam", ORGANS[2])
        assert organ is not None and organ["rmse"].mean == pytest.approx(statistics.fmean(values) + 0.2)
        assert stats["abs_rel"].mean == pytest.approx(statistics.fmean(round(v / 4, 6) for v in values))
    assert merged[3] is seeded[-1] and not merged[3].members
    other_commit = [r if r.name != "kd-eps0.00-seed2" else exp_records.Record(**{**r.__dict__, "baseline": "beef"})
                    for r in seeded]   # the same params on another commit are not the same configuration
    assert [m.name for m in exp_records.merge_seeds(other_commit)[0].members] == ["kd-eps0.00-seed0", "kd-eps0.00-seed1"]


def test_report_prints_mean_sd_interval_and_marks_noise(seeded, tmp_path):
    tables = exp_rows.build_tables(seeded)
    kd = next(t for t in tables if t.key == "kd-nyu")
    text = exp_render.table_markdown(kd)
    assert "Welch's unequal-variance t-test, two-sided, p ≥ 0.05" in text and "95 % confidence interval" in text
    lines = [cells(line) for line in text.splitlines() if line.startswith("|")]
    assert lines[0] == ["Model", "RMSE", "REL", "δ1", "δ2", "δ3", "ρ", "Seeds", "Experiment"]
    body = {r[0]: r for r in lines[2:]}
    # the teacher row is scored under another alignment than the students' (lstsq, not none): marked †
    assert list(body) == ["ε=0 (no KD)", "ε=0.10", "ε=0.25", "ε=0.50", "teacher tiny-random (lstsq-aligned)†"]

    def cell(eps: float) -> str:
        values = [RMSE[(eps, s)] for s in range(3)]
        m, sd = statistics.mean(values), statistics.stdev(values)
        half = T_975[2] * sd / math.sqrt(3)
        return f"{m:.4f} ± {sd:.4f} [{m - half:.4f}, {m + half:.4f}]"

    # RMSE: ε = 0 is best (0.510); ε = 0.25 (0.540 ± 0.050) is within noise of it, ε = 0.50 (0.610 ± 0.010) not
    assert body["ε=0 (no KD)"][1] == f"**{cell(0.0)}**" and body["ε=0 (no KD)"][7:] == ["3", "kd-eps0.00"]
    assert body["ε=0.25"][1] == f"≈ {cell(0.25)}"
    assert body["ε=0.50"][1] == cell(0.5)
    assert body["ε=0.10"][1:3] == ["0.550", "0.138"] and body["ε=0.10"][7] == "1"   # one run: a plain value
    assert body["teacher tiny-random (lstsq-aligned)†"][1] == "0.700"
    # δ1 = 1 / (1 + rmse) here: higher is better, so the same row is best and the same one within noise
    assert body["ε=0 (no KD)"][3].startswith("**") and body["ε=0.25"][3].startswith("≈ ")
    rows = exp_render.csv_rows([kd])
    by_label = {r["label"]: r for r in rows}
    assert by_label["ε=0.25"]["seeds"] == 3 and "rmse" in by_label["ε=0.25"]["within_noise"].split()
    assert by_label["ε=0.25"]["rmse_sd"] == pytest.approx(0.05) and "seeds" not in by_label["ε=0.10"]
    assert "rmse" in by_label["ε=0 (no KD)"]["best"].split()
    path = write_csv(tmp_path / "e.csv", rows, exp_render.CSV_FIELDS)
    back = {r["label"]: r for r in csv.DictReader(path.open())}
    assert float(back["ε=0.50"]["rmse_ci_high"]) == pytest.approx(0.61 + T_975[2] * 0.01 / math.sqrt(3), rel=1e-5)


def test_organ_rows_are_compared_within_their_organ(seeded):
    kd = next(t for t in exp_rows.build_tables(seeded) if t.key == "kd-endoslam")
    lines = [cells(line) for line in exp_render.table_markdown(kd).splitlines() if line.startswith("|")]
    stomach = [r for r in lines[2:] if r[1] == ORGANS[2]]
    assert [r[0] for r in stomach] == ["ε=0 (no KD)", "ε=0.25", "ε=0.50"]
    assert stomach[0][2].startswith("**0.7100 ± 0.0100") and stomach[1][2].startswith("≈ 0.7400")
    overall = [r for r in lines[2:] if r[1] == "all"]
    assert overall[0][2].startswith("**0.5100") and sum(r[2].startswith("**") for r in lines[2:]) == 1 + len(ORGANS)


# ----------------------------------------------------------------------------- queue


def test_queue_seeds_commands(run_cli, tmp_path):
    points = g.with_seeds(g.grid("kd")[:2], 3)
    assert [g.format_command(c) for c in g.queue_commands(points, ["train.epochs=2"])] == [
        f"dvc exp run --queue -n kd-eps{eps}-seed{k} -S train.model=leve -S train.kd.eps={v} -S train.seed={k} "
        "-S train.epochs=2" for eps, v in (("0.00", "0"), ("0.10", "0.1")) for k in range(3)]
    assert g.with_seeds(g.grid("kd"), 0) == g.grid("kd")
    res = run_cli("experiments", "queue", "--grid", "skips", "--seeds", "2", "--prefix", "r-", "--dry-run",
                  "--repo", tmp_path)
    assert res.code == 0, res.stderr
    assert res.stdout.splitlines() == [
        f"dvc exp run --queue -n r-skips-{tag}-seed{k} -S train.model={model} -S train.kd.eps=0 -S train.seed={k}"
        for tag, model in (("main", "leve"), ("alt", "leve-alt-skips"), ("none", "leve-no-skips")) for k in (0, 1)]
    res = run_cli("experiments", "queue", "--grid", "kd", "--seeds", "2", "--set", "train.seed=4", "--dry-run")
    assert res.code == 1 and res.stderr.strip() == "error: --set train.seed=... conflicts with --seeds 2; use one of them"
    with pytest.raises(LeveError, match="--seeds must be >= 0"):
        g.with_seeds(g.grid("kd"), -1)
