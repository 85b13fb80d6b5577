"""The one place report outputs are rendered and written: Markdown tables (``tabulate``,
GitHub pipe format), the metric columns every thesis table shows, and atomic CSV / JSON /
text writers. Used by the evaluation tables (:mod:`leve.report.metrics`) and the
experiment report (:mod:`leve.report.experiments`)."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tabulate import tabulate

from leve import atomic

# The thesis's metric columns: header, key of the metrics document.
METRIC_COLUMNS = (("RMSE", "rmse"), ("REL", "abs_rel"), ("δ1", "d1"), ("δ2", "d2"), ("δ3", "d3"))
METRIC_HEADERS = tuple(header for header, _ in METRIC_COLUMNS)
# Seed 002's Table I columns, in its order and with its names (δ1↑ δ2↑ δ3↑ rel↓ rms↓ log10↓).
SEED002_COLUMNS = (("δ1", "d1"), ("δ2", "d2"), ("δ3", "d3"), ("REL", "abs_rel"), ("RMS", "rmse"), ("log10", "log10"))
MISSING = "–"


def number(value: Any, digits: int = 3) -> str:
    """``1.23456`` -> ``"1.235"``; anything that is not a number -> ``"–"``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return MISSING
    return f"{value:.{digits}f}"


def metric_cells(means: Mapping[str, Any], digits: int = 3,
                 columns: Sequence[tuple[str, str]] = METRIC_COLUMNS) -> list[str]:
    """The cells of ``columns`` (default :data:`METRIC_COLUMNS`) of one row of means."""
    return [number(means.get(key), digits) for _, key in columns]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table (no trailing newline). Cells are printed as given:
    number parsing is off, so preformatted values such as ``0.500`` keep their digits."""
    return tabulate([[str(c) for c in r] for r in rows], headers=list(headers), tablefmt="github",
                    disable_numparse=True)


def write_text(path: Path, text: str) -> Path:
    """Write atomically (:func:`leve.atomic.write_text`: a temporary name unique to the process, then a rename)."""
    return atomic.write_text(path, text)


def write_json(path: Path, doc: dict[str, Any]) -> Path:
    return write_text(path, json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


def write_csv(path: Path, rows: list[dict[str, Any]], fields: Sequence[str] | None = None) -> Path:
    """Rows to CSV, atomically (``fields``: the column order; default the first row's keys)."""
    with atomic.atomic_path(path) as tmp, tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(fields or (rows[0] if rows else [])), extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in r.items()} for r in rows)
    return path


def _cell(v: Any) -> Any:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return "" if v is None else v
