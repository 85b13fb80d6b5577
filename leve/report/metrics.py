"""Outputs of an evaluation: the small metrics JSON (DVC metrics), per-image CSV,
error-vs-depth CSV (DVC plots), and thesis-like tables (Markdown + CSV)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from leve.errors import LeveError
from leve.metrics import AGGREGATION_CAPTIONS, METRIC_KEYS, ORDER_KEYS, Aggregate, metric_aggregation
from leve.report.tables import METRIC_HEADERS, MISSING, markdown_table, metric_cells, number, write_csv, write_text

if TYPE_CHECKING:  # an annotation only: the `tables` stage need not import the runner (and torch)
    from leve.evaluation.runner import EvalResult

SUMMARY_FIELDS = ("dataset", "split", "protocol", "model", "group", "count", "skipped", *METRIC_KEYS, *ORDER_KEYS,
                  "align", "fits", "non_positive_fits")
MODELS = ("student", "teacher", "constant")  # the rows of a metrics document, in table order
CONSTANT = "constant"


def _rounded(agg: Aggregate) -> dict[str, float | int]:
    """Means rounded to 6 digits, ``count``, ``skipped`` (and ``pixels`` when pooled)."""
    return {k: (round(v, 6) if k in METRIC_KEYS or k in ORDER_KEYS else v) for k, v in agg.as_dict().items()}


def metric_definitions(rmse_log: str) -> dict[str, str]:
    """The formulas of the metrics whose definition a protocol option or leve's choice fixes: ``rmse_log``
    (its log) and the ordering metric ``spearman``."""
    log = "log10" if rmse_log == "log10" else "ln"
    return {"rmse_log": f"sqrt(mean(({log} p - {log} g)^2))",
            "spearman": "Spearman's rho of the prediction before alignment vs the ground truth over the valid pixels "
                        "(at most 20000, evenly spaced); 0 for a constant map, -1 for near and far swapped"}


def metrics_document(result: EvalResult, split: str, checkpoint: dict[str, Any],
                     teacher: dict[str, Any] | None, constant: dict[str, Any] | None = None) -> dict[str, Any]:
    """The metrics JSON: protocol (with its ``aggregation``: ``per_image`` means, ``per_image_mse`` or
    ``pooled`` over every pixel, and its ``rmse_log``), how each metric is aggregated (``metric_aggregation``:
    metric -> formula; ``spearman`` always the mean over images), the definitions a protocol decides
    (``metric_definitions``) and sources first, then per-model (and per-group) metrics: ``student``,
    ``teacher`` and the ``constant`` predictor (``constant_source``: its depth and rule), and ``alignment``:
    per model its ``method``, ``fits`` and ``non_positive_fits`` (samples whose unconstrained scale was
    <= 0, scored with the constrained fit: scale 0, the best constant)."""
    student = result.aggregate("student")
    if student is None or student.count == 0:
        raise LeveError(f"{result.protocol.dataset}/{split}: no sample has a valid pixel under protocol "
                        f"'{result.protocol.name}'; nothing to report")
    aggregation = {**metric_aggregation(result.protocol.aggregation), **{k: f"mean_i({k}_i)" for k in ORDER_KEYS}}
    doc: dict[str, Any] = {"dataset": result.protocol.dataset, "split": split,
                           "protocol": result.protocol.settings(),
                           "metric_aggregation": aggregation,
                           "metric_definitions": metric_definitions(result.protocol.rmse_log), "checkpoint": checkpoint,
                           "student": _rounded(student)}
    t = result.aggregate("teacher")
    if t is not None and t.count:
        doc["teacher"] = _rounded(t)
        doc["teacher_source"] = teacher or {}
    c = result.aggregate(CONSTANT)
    if c is not None and c.count:
        doc[CONSTANT] = _rounded(c)
    if constant is not None:
        doc["constant_source"] = constant
    aligned = {m: fits for m in ("student", "teacher") if m in doc and (fits := result.alignment(m)) is not None}
    doc["alignment"] = {key: {m: fits[key] for m, fits in aligned.items()} for key in ("method", "fits", "non_positive_fits")}
    if result.groups:
        doc["groups"] = {g: {m: _rounded(a) for m in ("student", "teacher")
                             if (a := result.aggregate(m, g)) is not None and a.count} for g in result.groups}
    return doc


def model_align(doc: dict[str, Any], model: str) -> str:
    """The alignment ``model``'s row of ``doc`` was scored under (the teacher's its own, lstsq)."""
    recorded = ((doc.get("alignment") or {}).get("method") or {}).get(model)
    if recorded:
        return str(recorded)
    p = doc.get("protocol") or {}
    return str(p.get("teacher_align", "lstsq") if model == "teacher" else p.get("align", "none"))


def summary_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Table rows of one metrics document: each model overall (student, teacher, the constant
    predictor), then per group; each with the alignment it was scored under and, for the aligned
    models, its fits and non-positive fits."""
    base = {"dataset": doc["dataset"], "split": doc["split"], "protocol": _protocol_label(doc["protocol"])}
    align = doc.get("alignment") or {}
    rows = []
    for model in MODELS:
        if model in doc:
            fits = {k: align[k][model] for k in ("fits", "non_positive_fits") if model in (align.get(k) or {})}
            rows.append({**base, "model": _model_label(doc, model), "group": "all", "align": model_align(doc, model),
                         "model_key": model, **fits, **doc[model]})
    for group, models in doc.get("groups", {}).items():
        for model, values in models.items():
            rows.append({**base, "model": _model_label(doc, model), "group": group, "align": model_align(doc, model),
                         "model_key": model, **values})
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
    if model == CONSTANT:
        return constant_label(doc)
    return f"student {doc['checkpoint'].get('model', '')} ({Path(doc['checkpoint'].get('path', '')).name})"


def constant_label(doc: dict[str, Any]) -> str:
    """``constant baseline (train median 2.41)`` or ``constant baseline (aligned by lstsq)``."""
    src = doc.get("constant_source") or {}
    align = src.get("align") or (doc.get("protocol") or {}).get("align", "none")
    if align != "none":
        return f"constant baseline (aligned by {align})"
    depth = src.get("depth")
    if not isinstance(depth, float):
        return "constant baseline"
    return f"constant baseline ({src.get('split', 'train')} median {depth:.3g})"


def fits_cell(row: dict[str, Any]) -> str:
    """``2/8``: a row's non-positive fits out of its fits (``–`` where no scale was fitted)."""
    return f"{row['non_positive_fits']}/{row['fits']}" if row.get("fits") else MISSING


MIXED_MARK = "†"  # a row scored under another alignment than the table's student row


def alignment_caption(rows: list[dict[str, Any]]) -> str:
    """``Alignment: student none; teacher lstsq†; constant none`` (each model once), with how many
    non-positive fits each aligned model had, and what † means when a row differs from the student's."""
    seen: dict[str, dict[str, Any]] = {}
    for r in rows:
        seen.setdefault(r.get("model_key", r["model"]), r)
    first = rows[0]["align"]
    parts = []
    for key, r in seen.items():
        text = f"{key} {r['align']}" + (MIXED_MARK if r["align"] != first else "")
        if r.get("fits"):
            text += f" ({r['non_positive_fits']} of {r['fits']} fits with a non-positive scale, scored as the best constant)"
        parts.append(text)
    mixed = any(r["align"] != first for r in rows)
    return ("Alignment: " + "; ".join(parts)
            + (f"; {MIXED_MARK} scored under another alignment than the student's: not like for like" if mixed else ""))


def evaluation_markdown(docs: list[dict[str, Any]]) -> str:
    """Thesis-like tables, one per dataset: model rows (student, teacher, the constant predictor) ×
    RMSE, REL, δ1–δ3, Spearman's ρ, non-positive fits (+ group column); each table's caption says how its
    numbers are aggregated over the split (per-image means, the thesis's eq. 8.1, pooled pixels) and the
    alignment of every row, marking rows scored under another alignment than the student's (†)."""
    parts = ["# Evaluation\n", ("Lower RMSE/REL and higher δ and ρ are better; each table says how its numbers are "
             "aggregated over the split. Teacher rows: the cached teacher aligned per image by least squares "
             "in disparity space (scale ≥ 0). Constant rows: one depth everywhere (the train split's median, or "
             "aligned as the student is): a model that does not beat it has learnt nothing. ρ: Spearman's rank "
             "correlation of the prediction before alignment with the ground truth (0: no order, −1: near and far "
             "swapped). Fits s ≤ 0: images whose unconstrained alignment took a non-positive scale.\n")]
    for doc in docs:
        rows = summary_rows(doc)
        grouped = any(r["group"] != "all" for r in rows)
        parts.append(f"\n## {doc['dataset']} ({doc['split']}, {rows[0]['protocol']})\n")
        parts.append(f"_{aggregation_caption(aggregation_of(doc['protocol']))}._\n")
        parts.append(f"_{alignment_caption(rows)}._\n")
        if doc.get("note"):  # why these numbers are not comparable with the thesis's table
            parts.append(f"_Note: {doc['note']}._\n")
        head = ["Model", *(["Organ"] if grouped else []), *METRIC_HEADERS, "ρ", "Fits s ≤ 0", "Samples"]
        first = rows[0]["align"]
        parts.append(markdown_table(head, [[r["model"] + (MIXED_MARK if r["align"] != first else ""),
                                            *([r["group"]] if grouped else []), *metric_cells(r),
                                            number(r.get("spearman")), fits_cell(r), r["count"]] for r in rows]))
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
