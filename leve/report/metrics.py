"""Outputs of an evaluation: the small metrics JSON (DVC metrics), per-image CSV,
error-vs-depth CSV (DVC plots), and thesis-like tables (Markdown + CSV)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leve.errors import LeveError
from leve.evaluation.metrics import AGGREGATION_CAPTIONS, METRIC_KEYS, Aggregate, metric_aggregation
from leve.report.tables import METRIC_HEADERS, markdown_table, metric_cells, write_csv, write_text

if TYPE_CHECKING:  # an annotation only: the `tables` stage need not import the runner (and torch)
    from leve.evaluation.runner import EvalResult

SUMMARY_FIELDS = ("dataset", "split", "protocol", "model", "group", "count", "skipped", *METRIC_KEYS)


def _rounded(agg: Aggregate) -> dict[str, float | int]:
    """Means rounded to 6 digits, ``count``, ``skipped`` (and ``pixels`` when pooled)."""
    return {k: (round(v, 6) if k in METRIC_KEYS else v) for k, v in agg.as_dict().items()}


def metrics_document(result: EvalResult, split: str, checkpoint: dict[str, Any],
                     teacher: dict[str, Any] | None) -> dict[str, Any]:
    """The metrics JSON: protocol (with its ``aggregation``: ``per_image`` means, ``per_image_mse`` or
    ``pooled`` over every pixel), how each metric is aggregated (``metric_aggregation``: metric ->
    formula) and sources first, then per-model (and per-group) metrics."""
    student = result.aggregate("student")
    if student is None or student.count == 0:
        raise LeveError(f"{result.protocol.dataset}/{split}: no sample has a valid pixel under protocol "
                        f"'{result.protocol.name}'; nothing to report")
    doc: dict[str, Any] = {"dataset": result.protocol.dataset, "split": split,
                           "protocol": result.protocol.settings(),
                           "metric_aggregation": metric_aggregation(result.protocol.aggregation), "checkpoint": checkpoint,
                           "student": _rounded(student)}
    t = result.aggregate("teacher")
    if t is not None and t.count:
        doc["teacher"] = _rounded(t)
        doc["teacher_source"] = teacher or {}
    if result.groups:
        doc["groups"] = {g: {m: _rounded(a) for m in ("student", "teacher")
                             if (a := result.aggregate(m, g)) is not None and a.count} for g in result.groups}
    return doc


def summary_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Table rows of one metrics document: each model overall, then per group."""
    base = {"dataset": doc["dataset"], "split": doc["split"], "protocol": _protocol_label(doc["protocol"])}
    rows = []
    for model in ("student", "teacher"):
        if model in doc:
            rows.append({**base, "model": _model_label(doc, model), "group": "all", **doc[model]})
    for group, models in doc.get("groups", {}).items():
        for model, values in models.items():
            rows.append({**base, "model": _model_label(doc, model), "group": group, **values})
    return rows


def _protocol_label(p: dict[str, Any]) -> str:
    label = f"{p['name']} (crop {p['crop']['name']}"
    if p["name"] == "standard":
        label += f", align {p['align']}, flip {p['flip']}"
    return label + f", {AGGREGATION_LABELS.get(aggregation_of(p), aggregation_of(p))})"


# Short forms for the protocol label; the table caption says it in full (AGGREGATION_CAPTIONS).
AGGREGATION_LABELS = {"per_image": "per-image means", "per_image_mse": "RMSE per eq. 8.1",
                      "pooled": "pooled over pixels"}


def aggregation_of(protocol: dict[str, Any]) -> str:
    """The aggregation a document's protocol settings name (``per_image`` in documents older than the field)."""
    return str(protocol.get("aggregation") or "per_image")


def aggregation_caption(aggregation: str) -> str:
    """``Per-image means (BTS, ...)`` for a table caption."""
    text = AGGREGATION_CAPTIONS.get(aggregation, aggregation)
    return text[:1].upper() + text[1:]


def _model_label(doc: dict[str, Any], model: str) -> str:
    if model == "teacher":
        return f"teacher {doc.get('teacher_source', {}).get('model', '')} (lstsq)".replace("  ", " ")
    return f"student {doc['checkpoint'].get('model', '')} ({Path(doc['checkpoint'].get('path', '')).name})"


def evaluation_markdown(docs: list[dict[str, Any]]) -> str:
    """Thesis-like tables, one per dataset: model rows × RMSE, REL, δ1–δ3 (+ group column); each
    table's caption says how its numbers are aggregated over the split (per-image means, the thesis's
    eq. 8.1, pooled pixels)."""
    parts = ["# Evaluation\n", ("Lower RMSE/REL and higher δ are better; each table says how its numbers are "
             "aggregated over the split. Teacher rows: the cached teacher aligned per image by least squares "
             "in disparity space.\n")]
    for doc in docs:
        rows = summary_rows(doc)
        grouped = any(r["group"] != "all" for r in rows)
        parts.append(f"\n## {doc['dataset']} ({doc['split']}, {rows[0]['protocol']})\n")
        parts.append(f"_{aggregation_caption(aggregation_of(doc['protocol']))}._\n")
        if doc.get("note"):  # why these numbers are not comparable with the thesis's table
            parts.append(f"_Note: {doc['note']}._\n")
        head = ["Model", *(["Organ"] if grouped else []), *METRIC_HEADERS, "Samples"]
        parts.append(markdown_table(head, [[r["model"], *([r["group"]] if grouped else []), *metric_cells(r), r["count"]]
                                           for r in rows]))
    return "\n".join(parts) + "\n"


def read_metrics_docs(metrics_dir: Path) -> list[dict[str, Any]]:
    """Every evaluation document in ``metrics_dir`` (other metrics files are ignored)."""
    docs = []
    for path in sorted(metrics_dir.glob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(doc, dict) and "protocol" in doc and "student" in doc:
            docs.append(doc)
    return docs


def write_tables(docs: list[dict[str, Any]], md: Path, table_csv: Path) -> tuple[Path, Path]:
    """The Markdown and CSV tables of ``docs``."""
    rows = [r for d in docs for r in summary_rows(d)]
    return write_text(md, evaluation_markdown(docs)), write_csv(table_csv, rows, SUMMARY_FIELDS)


def combined_tables(metrics_dir: Path = Path("metrics"), reports_dir: Path = Path("reports")) -> tuple[Path, Path]:
    """Stage ``tables``: every evaluation document in ``metrics_dir`` as one Markdown and one CSV
    table, ``reports_dir/metrics.md`` and ``reports_dir/metrics.csv``."""
    docs = read_metrics_docs(metrics_dir)
    if not docs:
        raise LeveError(f"{metrics_dir}: no evaluation metrics (*.json with protocol and student); run `leve eval` first")
    return write_tables(docs, reports_dir / "metrics.md", reports_dir / "metrics.csv")
