"""The published rows: ``leve/models/published.csv`` is the one place the numbers are written; the
registry attaches every line to its model, exactly as printed, and a malformed file is refused."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

import leve.models.published as published
from leve.errors import LeveError
from leve.evaluation.protocols import PROTOCOLS
from leve.models.registry import list_models, model_spec

CSV = Path(published.__file__).with_name(published.PUBLISHED_FILE)
METRICS = ("rmse", "rel", "d1", "d2", "d3", "log10", "latency_s")


def raw_rows() -> list[dict[str, str]]:
    """The file's lines read with the csv module alone (not leve's reader): the cells as printed."""
    with CSV.open(newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def cells(r: published.ReferenceResult) -> dict[str, str]:
    """A registry row written back as the file's cells (3 decimals, as the tables print them)."""
    def num(v: float | None, fmt: str) -> str:
        return "" if v is None else format(v, fmt)
    return {"source": r.source, "table": r.table, "protocol": r.protocol, "row": r.row, "dataset": r.dataset,
            "train_resolution": r.train_resolution, "kd_eps": f"{r.kd_eps:.2f}", "fps": num(r.fps, "g"),
            **{m: num(getattr(r, m), ".3f") for m in METRICS}}


def test_the_package_ships_the_file():
    assert CSV.is_file() and published.published_text() == CSV.read_text(encoding="utf-8")
    lines = raw_rows()
    assert lines and tuple(lines[0]) == published.COLUMNS
    keys = [(r["model"], r["source"], r["table"], r["dataset"], r["kd_eps"], r["train_resolution"]) for r in lines]
    assert len(keys) == len(set(keys))  # each published row once (ModelSpec.result finds exactly one)


def test_every_line_is_one_registry_row_in_file_order():
    lines = raw_rows()
    for model in {r["model"] for r in lines}:
        mine = [{k: v for k, v in r.items() if k != "model"} for r in lines if r["model"] == model]
        assert [cells(r) for r in model_spec(model).results] == mine, model
    # and no registry row comes from anywhere else
    assert sum(len(model_spec(m).results) for m in list_models()) == len(lines)


def test_rows_are_consistent():
    rows = [r for m in list_models() for r in model_spec(m).results]
    assert {r.source for r in rows} <= set(published.SOURCES)
    assert {r.protocol for r in rows} <= set(PROTOCOLS)
    for m in list_models():  # one speed per model across the thesis's tables
        assert len({r.fps for r in model_spec(m).thesis if r.fps is not None}) <= 1, m
    # distilled rows only in the KD tables (9.6-9.8), one per ε and dataset
    kd = [(r.table, r.dataset, r.kd_eps) for r in rows if r.kd_eps > 0]
    assert {t for t, _, _ in kd} == {"9.6", "9.7", "9.8"} and len(kd) == len(set(kd)) == 9
    assert [r.citation for r in model_spec("densedepth-densenet169").results] == ["seed 002 Table I"]


def test_a_citation_finds_its_row():
    spec = model_spec("leve")
    row = spec.result("9.7", dataset="kitti", kd_eps=0.25)
    line = next(r for r in raw_rows() if (r["model"], r["table"], r["dataset"], r["kd_eps"]) == ("leve", "9.7", "kitti", "0.25"))
    assert (f"{row.rmse:.3f}", f"{row.rel:.3f}", f"{row.d1:.3f}") == (line["rmse"], line["rel"], line["d1"])
    assert spec.result("9.7", dataset="kitti", kd_eps=0.3) is None


def _file(lines: list[list[str]]) -> str:
    return "\n".join(",".join(line) for line in [list(published.COLUMNS), *lines]) + "\n"


GOOD = ["thesis", "9.2", "leve2024", "leve", "3x3+3x3", "nyu", "240x320", "0.00", "0.516", "0.142", "0.814",
        "", "", "", "27", ""]


def test_the_reader_parses_a_line():
    ((model, row),) = published.parse_published(_file([GOOD]))
    assert model == "leve" and (row.rmse, row.rel, row.d1, row.fps, row.d2, row.kd_eps) == (0.516, 0.142, 0.814, 27.0,
                                                                                          None, 0.0)
    assert row.citation == "thesis Table 9.2" and row.protocol == "leve2024"


@pytest.mark.parametrize(("column", "value", "message"), [
    ("source", "blog", "line 2: source must be one of thesis, seed 002, paper, got 'blog'"),
    ("rmse", "", "line 2: column rmse is empty"),
    ("d2", "0.9x", "line 2: column d2 must be a number, got '0.9x'"),
    ("model", "", "line 2: column model is empty"),
])
def test_a_bad_line_is_refused_naming_it(column, value, message):
    line = list(GOOD)
    line[published.COLUMNS.index(column)] = value
    with pytest.raises(LeveError, match=re.escape(message)) as err:
        published.parse_published(_file([line]))
    assert str(err.value).startswith("published.csv: ") and len(str(err.value).splitlines()) == 1


def test_a_wrong_header_or_short_line_is_refused():
    with pytest.raises(LeveError, match="the header must be source,table,protocol"):
        published.parse_published("source,table\nthesis,9.2\n")
    with pytest.raises(LeveError, match="line 3: expected 16 cells"):
        published.parse_published(_file([GOOD, GOOD[:10]]))
