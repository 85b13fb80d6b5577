"""Published results as data: every row a source printed for a registered model, in one file.

``leve/models/published.csv`` (package data) holds one line per published row, in the registry's
order (the thesis's, then seed 002's), with the columns:

* ``source``: :data:`THESIS` (the thesis, chapter 9), :data:`SEED_002` (seed 002, the DenseDepth
  study: Table I) or :data:`PAPER` (a model's own paper);
* ``table``: the table's number as printed (``9.2``, ``I``); ``protocol``: the leve evaluation
  protocol that computes the numbers as the source did (:mod:`leve.evaluation.protocols`);
* ``model``: the registered model (:mod:`leve.models.registry`); ``row``: the row's label as printed;
* ``dataset`` (``nyu``, ``kitti``, ``endoslam``), ``train_resolution`` (``240x320``), ``kd_eps``
  (0 without distillation);
* the metrics as printed: ``rmse``, ``rel``, ``d1``, ``d2``, ``d3``, ``log10``, ``fps`` (on the
  source's device: the thesis's is :data:`THESIS_FPS_DEVICE`) and ``latency_s`` (seconds); an empty
  cell: not reported.

The model registry attaches each model's rows (:attr:`ModelSpec.results
<leve.models.registry.ModelSpec.results>`), the report prints them under the runs, the docs render
them (``docs/generate.py``, block ``published``) and the tests read them from here: no other file
retypes a number.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from functools import cache
from importlib import resources

from leve.errors import LeveError

# Where a ReferenceResult comes from.
THESIS = "thesis"  # the thesis, chapter 9 (Tables 9.1-9.8)
SEED_002 = "seed 002"  # seed 002 (DenseDepth with five ImageNet encoders), Table I: NYU, trained at 480x640
PAPER = "paper"  # a model's own paper
SOURCES = (THESIS, SEED_002, PAPER)
# Where the thesis's figures were measured (chapter 9): every §9.1-9.2 model trained at
# 240x320 on NYU-Depth V2; speed on a GTX 1650 Ti at 480x640 input, batch 1, fp32.
THESIS_FPS_DEVICE = "GTX 1650 Ti, 480x640, batch 1"

PUBLISHED_FILE = "published.csv"  # beside this module (package data)
COLUMNS = ("source", "table", "protocol", "model", "row", "dataset", "train_resolution", "kd_eps",
           "rmse", "rel", "d1", "d2", "d3", "log10", "fps", "latency_s")
REQUIRED = ("rmse", "rel", "d1")  # every published row has them; the other metrics may be empty


@dataclass(frozen=True)
class ReferenceResult:
    """One row of a published table for a model: the thesis's (``source`` :data:`THESIS`, chapter 9),
    seed 002's (:data:`SEED_002`, Table I) or a paper's (:data:`PAPER`).

    NYU-Depth V2 test set unless ``dataset`` says otherwise; ``fps`` only where the table has
    a speed column (the thesis: :data:`THESIS_FPS_DEVICE`) and ``latency_s`` (its "Inference Speed",
    seconds) where recorded; ``kd_eps`` > 0 for the distilled students of Tables 9.6–9.8; ``d2``,
    ``d3``, ``log10`` where recorded (seed 002's Table I; the thesis's Table 9.1); ``protocol`` the
    leve protocol that computes the numbers as the source did.
    """

    table: str  # "9.2", "I"
    row: str  # the row's label as printed in that table
    rmse: float
    rel: float
    d1: float
    fps: float | None = None
    dataset: str = "nyu"
    kd_eps: float = 0.0
    train_resolution: str = "240x320"
    source: str = THESIS
    d2: float | None = None
    d3: float | None = None
    log10: float | None = None
    latency_s: float | None = None
    protocol: str = "leve2024"

    @property
    def citation(self) -> str:
        """``"thesis Table 9.1"``, ``"seed 002 Table I"``."""
        return f"{self.source} Table {self.table}"


def published_text() -> str:
    """The published rows' file as text (the package's ``published.csv``)."""
    return resources.files("leve.models").joinpath(PUBLISHED_FILE).read_text(encoding="utf-8")


def _number(line: int, column: str, text: str) -> float | None:
    if not text.strip():
        return None
    try:
        return float(text)
    except ValueError:
        raise LeveError(f"{PUBLISHED_FILE}: line {line}: column {column} must be a number, got {text!r}") from None


def _required(line: int, column: str, text: str) -> float:
    value = _number(line, column, text)
    if value is None:
        raise LeveError(f"{PUBLISHED_FILE}: line {line}: column {column} is empty")
    return value


def parse_published(text: str) -> tuple[tuple[str, ReferenceResult], ...]:
    """``(model, row)`` for every line of a published-rows CSV, in file order; a malformed line is one
    :class:`~leve.errors.LeveError` naming it."""
    reader = csv.DictReader(text.splitlines())
    if tuple(reader.fieldnames or ()) != COLUMNS:
        raise LeveError(f"{PUBLISHED_FILE}: the header must be {','.join(COLUMNS)}, got {','.join(reader.fieldnames or ())}")
    rows = []
    for line, r in enumerate(reader, start=2):
        if None in r or any(v is None for v in r.values()):
            raise LeveError(f"{PUBLISHED_FILE}: line {line}: expected {len(COLUMNS)} cells")
        if r["source"] not in SOURCES:
            raise LeveError(f"{PUBLISHED_FILE}: line {line}: source must be one of {', '.join(SOURCES)}, "
                            f"got {r['source']!r}")
        for column in ("table", "protocol", "model", "row", "dataset", "train_resolution"):
            if not r[column].strip():
                raise LeveError(f"{PUBLISHED_FILE}: line {line}: column {column} is empty")
        n = {c: _number(line, c, r[c]) for c in ("d2", "d3", "log10", "fps", "latency_s")}
        rmse, rel, d1 = (_required(line, c, r[c]) for c in REQUIRED)
        kd_eps = _number(line, "kd_eps", r["kd_eps"]) or 0.0
        rows.append((r["model"], ReferenceResult(
            table=r["table"], row=r["row"], rmse=rmse, rel=rel, d1=d1, fps=n["fps"], dataset=r["dataset"], kd_eps=kd_eps,
            train_resolution=r["train_resolution"], source=r["source"], d2=n["d2"], d3=n["d3"], log10=n["log10"],
            latency_s=n["latency_s"], protocol=r["protocol"])))
    return tuple(rows)


@cache
def published_results() -> tuple[tuple[str, ReferenceResult], ...]:
    """Every published row of the package's ``published.csv``: ``(model, row)`` in file order."""
    return parse_published(published_text())


def results_of(model: str) -> tuple[ReferenceResult, ...]:
    """The published rows of ``model``, in file order (empty if none)."""
    return tuple(r for m, r in published_results() if m == model)
