"""Outputs of an evaluation: the small metrics JSON (DVC metrics), per-image CSV,
error-vs-depth CSV (DVC plots), and thesis-like tables (Markdown + CSV)."""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any

from leve.errors import LeveError
from leve.evaluation.metrics import METRIC_KEYS, Aggregate
from leve.evaluation.runner import EvalResult

TABLE_COLUMNS = (("RMSE", "rmse"), ("REL", "abs_rel"), ("δ1", "d1"), ("δ2", "d2"), ("δ3", "d3"))
SUMMARY_FIELDS = ("dataset", "split", "protocol", "model", "group", "count", "skipped", *METRIC_KEYS)


def _rounded(agg: Aggregate) -> dict[str, float | int]:
    return {**{k: round(v, 6) for k, v in agg.means.items()}, "count": agg.count, "skipped": agg.skipped}


def metrics_document(result: EvalResult, split: str, checkpoint: dict[str, Any],
                     teacher: dict[str, Any] | None) -> dict[str, Any]:
    """The metrics JSON: protocol and sources first, then per-model (and per-group) means."""
    student = result.aggregate("student")
    if student is None or student.count == 0:
        raise LeveError(f"{result.protocol.dataset}/{split}: no sample has a valid pixel under protocol "
                        f"'{result.protocol.name}'; nothing to report")
    doc: dict[str, Any] = {"dataset": result.protocol.dataset, "split": split,
                           "protocol": result.protocol.settings(), "checkpoint": checkpoint,
                           "student": _rounded(student)}
    t = result.aggregate("teacher")
    if t is not None and t.count:
        doc["teacher"] = _rounded(t)
        doc["teacher_source"] = teacher or {}
    if result.groups:
        doc["groups"] = {g: {m: _rounded(a) for m in ("student", "teacher")
                             if (a := result.aggregate(m, g)) is not None and a.count} for g in result.groups}
    return doc


def write_text(path: Path, text: str) -> Path:
    """Write atomically (temp file, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def write_json(path: Path, doc: dict[str, Any]) -> Path:
    return write_text(path, json.dumps(doc, indent=2, ensure_ascii=False) + "\n")


def write_csv(path: Path, rows: list[dict[str, Any]], fields: list[str] | tuple[str, ...] | None = None) -> Path:
    """Rows to CSV (``fields``: the column order; default the first row's keys)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(fields or (rows[0] if rows else [])), extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: _cell(v) for k, v in r.items()} for r in rows)
    os.replace(tmp, path)
    return path


def _cell(v: Any) -> Any:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return "" if v is None else v


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
    return label + ")"


def _model_label(doc: dict[str, Any], model: str) -> str:
    if model == "teacher":
        return f"teacher {doc.get('teacher_source', {}).get('model', '')} (lstsq)".replace("  ", " ")
    return f"student {doc['checkpoint'].get('model', '')} ({Path(doc['checkpoint'].get('path', '')).name})"


def markdown_table(docs: list[dict[str, Any]]) -> str:
    """Thesis-like tables, one per dataset: model rows × RMSE, REL, δ1–δ3 (+ group column)."""
    parts = ["# Evaluation\n", ("Per-image means; lower RMSE/REL and higher δ are better. "
             "Teacher rows: the cached teacher aligned per image by least squares in disparity space.\n")]
    for doc in docs:
        rows = summary_rows(doc)
        grouped = any(r["group"] != "all" for r in rows)
        parts.append(f"\n## {doc['dataset']} ({doc['split']}, {rows[0]['protocol']})\n")
        head = ["Model"] + (["Organ"] if grouped else []) + [c for c, _ in TABLE_COLUMNS] + ["Samples"]
        parts.append("| " + " | ".join(head) + " |")
        parts.append("|" + "|".join(["---"] * len(head)) + "|")
        for r in rows:
            cells = [r["model"]] + ([r["group"]] if grouped else [])
            cells += [f"{r[k]:.3f}" for _, k in TABLE_COLUMNS] + [str(r["count"])]
            parts.append("| " + " | ".join(cells) + " |")
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
    return write_text(md, markdown_table(docs)), write_csv(table_csv, rows, SUMMARY_FIELDS)
