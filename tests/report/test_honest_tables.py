"""``leve report`` and ``leve tables`` show what makes a number honest (issue 27, items 1-2 and D6): the
constant predictor's row, Spearman's ρ, each aligned row's non-positive fits, and captions that list every
protocol, crop and alignment present with the rows scored under another one marked †.

The experiments are the real ``dvc exp show --json`` capture of test_experiments.py; their metrics documents
(written before these fields) get them here, as ``leve eval`` now writes them."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from leve.report import exp_records, exp_render, exp_rows
from leve.report.metrics import evaluation_markdown, summary_rows

FIXTURE = Path(__file__).parent / "data" / "exp_show.json"
CONSTANT = {"abs_rel": 0.4, "sq_rel": 0.5, "rmse": 1.25, "rmse_log": 0.5, "log10": 0.2, "silog": 40.0, "mae": 1.0,
            "d1": 0.3, "d2": 0.5, "d3": 0.7, "count": 1308, "skipped": 0, "spearman": 0.0}


def cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().removeprefix("|").removesuffix("|").split("|")]


def with_new_fields(record: exp_records.Record, protocol: dict | None = None, non_positive: int = 0) -> exp_records.Record:
    """``record`` whose documents carry a constant row, ρ and alignment counts (and ``protocol``, if given)."""
    evals = {}
    for dataset, doc in record.evals.items():
        doc = copy.deepcopy(doc)
        if protocol is not None:
            doc["protocol"] = {**doc["protocol"], **protocol}
        align = doc["protocol"]["align"]
        doc["student"]["spearman"] = 0.5 + record.eps
        doc["constant"] = dict(CONSTANT)
        doc["constant_source"] = {"depth": 2.75, "split": "train", "align": align}
        fitted = align == "lstsq"
        doc["alignment"] = {"method": {"student": align, "teacher": "lstsq"},
                            "fits": {"student": 1308 if fitted else 0, "teacher": 654},
                            "non_positive_fits": {"student": non_positive, "teacher": 7}}
        evals[dataset] = doc
    return exp_records.Record(**{**record.__dict__, "evals": evals})


@pytest.fixture(scope="module")
def kd_records() -> list[exp_records.Record]:
    records = exp_records.select_records(exp_records.parse_exp_show(json.loads(FIXTURE.read_text())))
    kd = [r for r in records if r.name.startswith("kd-")]
    odd = {"name": "standard", "crop": {"name": "eigen", "units": "pixels"}, "align": "lstsq"}
    return [with_new_fields(r, odd if r.eps == 0.5 else None, non_positive=3 if r.eps == 0.5 else 0) for r in kd]


def test_report_rows_constant_rho_and_marks(kd_records):
    t = next(t for t in exp_rows.build_tables(kd_records) if t.key == "kd-nyu")
    text = exp_render.table_markdown(t)
    lines = [cells(line) for line in text.splitlines() if line.startswith("|")]
    assert lines[0] == ["Model", "RMSE", "REL", "δ1", "δ2", "δ3", "ρ", "Experiment"]
    body = {r[0]: r for r in lines[2:]}
    # the ε = 0.50 run was scored under standard/eigen/lstsq, the teacher by lstsq: both marked, the others not
    assert list(body) == ["ε=0 (no KD)", "ε=0.10", "ε=0.25", "ε=0.50†", "teacher tiny-random (lstsq-aligned)†",
                          "constant baseline (train median 2.75)"]
    assert body["constant baseline (train median 2.75)"][1:7] == ["1.250", "0.400", "0.300", "0.500", "0.700", "0.000"]
    assert body["constant baseline (train median 2.75)"][7] == "–"   # no experiment of its own
    assert body["ε=0.10"][6] == "0.600"   # ρ of that run
    caption = text.splitlines()[2]
    assert "protocols leve2024 (crop leve2024), standard (crop eigen)" in caption
    assert "alignments none, lstsq" in caption
    assert "† scored under another protocol, crop or alignment than the first row: not like for like" in caption
    assert "ε=0.50 3/1308" in caption and "teacher tiny-random (lstsq-aligned) 7/654" in caption
    rows = {r["label"]: r for r in exp_render.csv_rows([t]) if r["group"] == "all"}
    assert rows["constant baseline (train median 2.75)"]["kind"] == "constant"
    assert (rows["ε=0.50"]["protocol"], rows["ε=0.50"]["crop"], rows["ε=0.50"]["align"]) == ("standard", "eigen", "lstsq")
    assert (rows["ε=0.50"]["non_positive_fits"], rows["ε=0.50"]["fits"], rows["ε=0.50"]["mixed"]) == (3, 1308, 1)
    assert rows["ε=0.10"]["mixed"] == 0 and rows["ε=0.10"]["fits"] is None and rows["ε=0.10"]["spearman"] == 0.6


def test_a_table_of_one_protocol_flags_nothing_but_other_alignments(kd_records):
    same = [r for r in kd_records if r.eps != 0.5]
    t = next(t for t in exp_rows.build_tables(same) if t.key == "kd-nyu")
    caption = exp_render.protocol_caption(t)
    assert caption.startswith("test split, protocol leve2024 (crop leve2024), alignments none, lstsq, per-image means")
    assert [r.label for r in t.rows if exp_render.mixed(t)[t.rows.index(r)]] == ["teacher tiny-random (lstsq-aligned)"]


def test_seeds_of_a_configuration_sum_their_fits(kd_records):
    runs = [with_new_fields(kd_records[0], {"align": "lstsq"}, non_positive=k) for k in (1, 2)]
    runs = [exp_records.Record(**{**r.__dict__, "name": f"x-seed{k}", "params": {**r.params, "train.seed": k}})
            for k, r in enumerate(runs)]
    merged = exp_records.merge_runs(runs)
    assert merged.evals["nyu"]["alignment"]["non_positive_fits"]["student"] == 3
    assert merged.evals["nyu"]["alignment"]["fits"]["student"] == 2 * 1308


def test_leve_tables_reads_documents_from_before_the_fields(kd_records):
    old = copy.deepcopy(exp_records.select_records(exp_records.parse_exp_show(json.loads(FIXTURE.read_text())))[0].evals["nyu"])
    rows = summary_rows(old)
    assert [r["align"] for r in rows] == ["none", "lstsq"]
    text = evaluation_markdown([old])
    body = [cells(line) for line in text.splitlines() if line.startswith("|")]
    assert body[0] == ["Model", "RMSE", "REL", "δ1", "δ2", "δ3", "ρ", "Fits s ≤ 0", "Samples"]
    assert body[2][6:8] == ["–", "–"]   # no ρ, no counted fits in an old document
    assert "_Alignment: student none; teacher lstsq†; † scored under another alignment than the student's" in text
