"""Comparison tables of DVC experiments (thesis Tables 9.1-9.8, seed 002's Table I): ``leve report``.

Three jobs, one module each:

* reading DVC -- :mod:`leve.report.exp_dvc`: the JSON of ``dvc exp show --json`` (the command, run
  as ``python -m dvc``, or a saved file); the only one that runs dvc. Why the command and not dvc's
  internal ``Repo.experiments.show``: its docstring, with the measured cost;
* shaping rows -- pure functions on that plain JSON, testable without dvc:
  :mod:`leve.report.exp_records` (a :class:`Record` per revision, the finished ones selected, the
  seeds of a configuration merged) and :mod:`leve.report.exp_rows` (the thesis tables as
  :class:`Table` of :class:`Row`, published figures beside the runs);
* rendering -- :mod:`leve.report.exp_render`: Markdown and CSV.

This module keeps the names ``leve report`` calls (read -> shape -> render); every other name it
used to define still resolves here, with a one-line deprecation pointing to its new module.
"""

from __future__ import annotations

import importlib
import warnings
from typing import Any

from leve.report.exp_dvc import exp_show_json, load_exp_show_file, parse_json_text
from leve.report.exp_records import Record, parse_exp_show, pending, select_records
from leve.report.exp_render import CSV_FIELDS, csv_rows, markdown, protocol_caption
from leve.report.exp_rows import Row, Table, build_tables, dataset_rows

__all__ = ["CSV_FIELDS", "Record", "Row", "Table", "build_tables", "csv_rows", "dataset_rows", "exp_show_json",
           "load_exp_show_file", "markdown", "parse_exp_show", "parse_json_text", "pending", "protocol_caption",
           "select_records"]

# The other names this module defined before the split, by their new module.
MOVED = {
    "leve.report.exp_records": (
        "DATASET_KEY EPS_KEY KIND_ORDER MODEL_KEY NOT_FINISHED SEED_KEY cell_key flatten is_eval_doc merge_runs "
        "merge_seeds metric_stats one_per_seed parse_revision revision_metrics revision_params row_stats same_run "
        "student_means").split(),
    "leve.report.exp_rows": (
        "ABLATION_TABLES ENCODER_TABLES KD_LABEL LABEL_KEYS_FIRST LCB_LABELS Published "
        "THESIS_KD_TABLES VARIANT_ORDER ablation_dataset ablation_table bench_entry bench_note bench_params "
        "constant_row datasets_of differing_keys encoder_table format_param group_labels kd_table ordered "
        "overview_table row_labels table_members teacher_row with_baseline").split(),
    "leve.report.exp_render": (
        "LAYOUTS ORDER_COLUMNS SEED_CAPTION SEED_FIELDS comparison_markdown entries mixed row_cells seed_cell "
        "seed_columns seed_count seed_marks table_markdown").split(),
}


def __getattr__(name: str) -> Any:
    """A name this module defined before the split, from its new module, with a one-line DeprecationWarning."""
    home = next((h for h, names in MOVED.items() if name in names), None)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    warnings.warn(f"leve.report.experiments.{name} moved: import it from {home}", DeprecationWarning, stacklevel=2)
    return getattr(importlib.import_module(home), name)
