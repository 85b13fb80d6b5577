"""Comparison tables of DVC experiments (thesis Tables 9.2–9.8), built from ``dvc exp show --json``.

Parsing is split into small pure functions over the JSON that ``dvc exp show --json`` prints
(a list of baselines: the workspace, then each commit with its ``experiments``; every revision
carries ``data.params`` per params file and ``data.metrics`` per metrics file, or an ``error``):

* :func:`parse_exp_show` -> :class:`Record` per revision (params flattened to dotted keys,
  evaluation documents ``metrics/<ds>.json`` by dataset, ``metrics/bench_model.json``);
* :func:`select_records` -> the finished experiments (and committed baselines) with metrics,
  or the workspace when no experiment has any;
* :func:`merge_seeds` -> one record per configuration run with several seeds (``train.seed``;
  ``leve experiments queue --seeds N``): its metrics the mean over the seeds, each row then shows
  mean ± standard deviation and the 95 % interval, and marks what is within seed noise
  (:mod:`leve.report.seeds`);
* :func:`build_tables` -> the thesis tables, rows labelled by the params that differ, and the
  encoder comparisons in the layouts the thesis (Table 9.1) and seed 002 (Table I) print, each
  run beside the figures that source published for its model (:class:`Published`, the model
  registry's :class:`~leve.models.registry.ReferenceResult` rows, never retyped here);
* :func:`markdown` / :func:`csv_rows` -> the outputs.
"""

from __future__ import annotations

import copy
import json
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

from leve.errors import LeveError
from leve.evaluation.metrics import AGGREGATION_CAPTIONS, LOWER_IS_BETTER, METRIC_KEYS, ORDER_KEYS
from leve.models.registry import (
    DEFAULT_MODEL,
    SEED_002,
    THESIS,
    THESIS_FPS_DEVICE,
    ModelSpec,
    ReferenceResult,
    model_spec,
    model_specs,
)
from leve.report.metrics import MIXED_MARK, aggregation_of, constant_label, model_align
from leve.report.seeds import SeedStats, noise_marks, seed_stats
from leve.report.tables import METRIC_COLUMNS, METRIC_HEADERS, MISSING, SEED002_COLUMNS, markdown_table, metric_cells
from leve.report.tables import number as cell_number

MODEL_KEY, EPS_KEY, DATASET_KEY, SEED_KEY = "train.model", "train.kd.eps", "train.dataset", "train.seed"
# Row labels and table membership come from the model registry (leve.models.registry): each
# spec names its thesis tables, its experiment groups and its label in each group.
# Ablation tables: (key, thesis table, registry group of the row labels, title).
ABLATION_TABLES = (("lcb", "9.2", "lcb", "layered convolution block (LCB)"),
                   ("dw", "9.3", "lcb", "depthwise-separable LCB"),
                   ("skips", "9.4", "skips", "skip connections"))
# Encoder comparisons in their source's layout: (key, source, table, layout, title). Members: the
# registry's `encoders` group models with a row in that table.
ENCODER_TABLES = (("encoders", THESIS, "9.1", "thesis-9.1", "Table 9.1: encoders under Leve's decoder"),
                  ("encoders-seed002", SEED_002, "I", "seed-002", "Seed 002 Table I: DenseDepth on ImageNet encoders"))
# The leve protocol that computes a source's numbers as it did (leve/evaluation/protocols.py).
SOURCE_PROTOCOL = {THESIS: "leve2024", SEED_002: "densedepth"}


def group_labels(group: str, table: str | None = None) -> dict[str, str]:
    """model -> row label of the registry's ``group`` (only the models of thesis ``table``), thesis order."""
    return {s.name: g.label for s in model_specs() if (g := s.group(group)) and (table is None or table in s.tables)}


LCB_LABELS = group_labels("lcb")
KD_LABEL = model_spec(DEFAULT_MODEL).label  # "3x3+3x3": the plain student of Tables 9.6-9.8
THESIS_KD_TABLES = {r.dataset: r.table for s in model_specs() if s.group("kd") for r in s.thesis if r.kd_eps > 0}
NOT_FINISHED = ("queued", "running", "failed")
VARIANT_ORDER = (DEFAULT_MODEL, *(s.name for s in model_specs() if s.name != DEFAULT_MODEL))
LABEL_KEYS_FIRST = (MODEL_KEY, EPS_KEY)


@dataclass(frozen=True)
class Record:
    """One revision of ``dvc exp show``: the workspace, a baseline commit or an experiment."""

    name: str
    rev: str
    kind: str  # workspace | baseline | experiment
    state: str | None  # experiments: queued | running | success | failed (None: run in the workspace)
    params: dict[str, Any] = field(default_factory=dict)  # dotted keys, e.g. train.kd.eps
    evals: dict[str, dict[str, Any]] = field(default_factory=dict)  # dataset -> metrics document
    bench: dict[str, Any] | None = None  # metrics/bench_model.json
    error: str | None = None
    baseline: str = ""  # the commit the revision is based on ("workspace" for the workspace)
    members: tuple[Record, ...] = ()  # a configuration's seeds (merge_seeds): one record per seed

    @property
    def model(self) -> str:
        return str(self.params.get(MODEL_KEY, DEFAULT_MODEL))

    @property
    def eps(self) -> float:
        return float(self.params.get(EPS_KEY, 0.0) or 0.0)

    @property
    def finished(self) -> bool:
        return self.state not in NOT_FINISHED and self.error is None


@dataclass(frozen=True)
class Row:
    """A table row: one record's means on one dataset (``group``: an EndoSLAM organ or ``all``)."""

    label: str
    record: Record
    dataset: str
    group: str
    means: dict[str, Any]
    bench: dict[str, Any] | None = None  # fp32 eager latency of the row's model variant
    params: int | None = None  # the model's parameter count, from the same benchmark
    stats: dict[str, SeedStats] | None = None  # metric -> statistics over the record's seeds (merge_seeds)
    model_key: str = "student"  # student | teacher | constant: which row of the record's metrics document

    @property
    def reference(self) -> bool:
        """A teacher or constant-predictor row (no experiment, no seeds of its own)."""
        return self.model_key != "student" or self.label.startswith("teacher")

    @property
    def doc(self) -> dict[str, Any]:
        """The metrics document the row comes from."""
        return self.record.evals.get(self.dataset) or {}

    def scoring(self) -> tuple[str, str, str]:
        """(protocol, crop, alignment) the row was scored under."""
        p = self.doc.get("protocol") or {}
        return str(p.get("name", "?")), str((p.get("crop") or {}).get("name", "?")), model_align(self.doc, self.model_key)

    def fits(self) -> tuple[int, int] | None:
        """(non-positive fits, fits) of the row's model (None: no scale fitted, or a document from before the count)."""
        align = self.doc.get("alignment") or {}
        n = (align.get("fits") or {}).get(self.model_key)
        return (int(align["non_positive_fits"][self.model_key]), int(n)) if n else None


@dataclass(frozen=True)
class Published:
    """A row a paper printed for ``model`` (its registry entry's :class:`ReferenceResult`), shown
    beside that model's runs as a reference."""

    model: str
    result: ReferenceResult

    @property
    def label(self) -> str:
        return self.result.row

    @property
    def means(self) -> dict[str, float | None]:
        """The printed figures under the metrics document's keys (None where not printed)."""
        r = self.result
        return {"rmse": r.rmse, "abs_rel": r.rel, "d1": r.d1, "d2": r.d2, "d3": r.d3, "log10": r.log10}

    @property
    def source(self) -> str:
        """``published (thesis Table 9.1)``."""
        return f"published ({self.result.citation})"


@dataclass(frozen=True)
class Table:
    key: str
    title: str
    dataset: str
    rows: tuple[Row, ...]
    bench_note: str | None = None
    layout: str = "metrics"  # metrics (leve's: RMSE, REL, δ1-δ3) | thesis-9.1 | seed-002
    published: tuple[Published, ...] = ()
    models: tuple[str, ...] = ()  # the row order of a comparison layout (runs of a model, then its published row)
    notes: tuple[str, ...] = ()


# ----------------------------------------------------------------------------- parsing


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"kd": {"eps": 0.25}}}`` -> ``{"train.kd.eps": 0.25}`` (lists kept as values)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def revision_params(data: dict[str, Any]) -> dict[str, Any]:
    """Flattened params of a revision; keys of files other than params.yaml get ``<file>:`` first."""
    out: dict[str, Any] = {}
    for file, entry in (data.get("params") or {}).items():
        values = (entry or {}).get("data") or {}
        prefix = "" if file == "params.yaml" else f"{file}:"
        out.update(flatten(values, prefix))
    return out


def is_eval_doc(doc: Any) -> bool:
    """A document written by ``leve eval`` (``metrics/<ds>.json``)."""
    return isinstance(doc, dict) and isinstance(doc.get("student"), dict) and "dataset" in doc


def revision_metrics(data: dict[str, Any]) -> tuple[dict[str, dict[str, Any]], dict[str, Any] | None]:
    """Readable evaluation documents by dataset, and the model benchmark when present."""
    evals: dict[str, dict[str, Any]] = {}
    bench = None
    for _path, entry in sorted((data.get("metrics") or {}).items()):
        doc = (entry or {}).get("data")
        if isinstance(doc, dict) and is_eval_doc(doc):
            evals[str(doc["dataset"])] = doc
        elif isinstance(doc, dict) and isinstance(doc.get("models"), dict):
            bench = doc
    return evals, bench


def parse_revision(entry: dict[str, Any], kind: str, name: str, state: str | None, baseline: str = "") -> Record:
    data = entry.get("data") or {}
    evals, bench = revision_metrics(data)
    err = entry.get("error")
    error = (err.get("msg") or err.get("type") or "error") if isinstance(err, dict) else (str(err) if err else None)
    return Record(name=name, rev=str(entry.get("rev") or data.get("rev") or ""), kind=kind, state=state,
                  params=revision_params(data), evals=evals, bench=bench, error=error, baseline=baseline)


def parse_exp_show(payload: Any) -> list[Record]:
    """Every revision in the output of ``dvc exp show --json`` (workspace, baselines, experiments)."""
    if not isinstance(payload, list):
        raise LeveError("dvc exp show --json: expected a list of revisions")
    records = []
    for base in payload:
        if not isinstance(base, dict):
            continue
        rev = str(base.get("rev") or "")
        kind = "workspace" if rev == "workspace" else "baseline"
        name = base.get("name") or (kind if kind == "workspace" else rev[:7])
        records.append(parse_revision(base, kind, name, None, rev))
        for exp in base.get("experiments") or []:
            state = (exp.get("executor") or {}).get("state")
            for rev_entry in exp.get("revs") or []:
                name = rev_entry.get("name") or exp.get("name") or str(rev_entry.get("rev", ""))[:7]
                records.append(parse_revision(rev_entry, "experiment", name, state, rev))
    return records


def same_run(a: Record, b: Record) -> bool:
    """Equal params and equal evaluation documents (the workspace after ``dvc exp run`` or ``apply``)."""
    return a.params == b.params and a.evals == b.evals


def select_records(records: Sequence[Record], workspace: bool = False) -> list[Record]:
    """Finished experiments and baselines with evaluation metrics; the workspace when none has any
    (or with ``workspace``, unless it repeats one of them); else an error."""
    chosen = [r for r in records if r.kind != "workspace" and r.finished and r.evals]
    ws = [r for r in records if r.kind == "workspace" and r.evals]
    if workspace or not chosen:
        chosen += [w for w in ws if not any(same_run(w, r) for r in chosen)]
    if not chosen:
        raise LeveError("no experiment (and not the workspace) has evaluation metrics metrics/<dataset>.json; "
                        "run `dvc repro`, `dvc exp run` or `leve experiments queue --run` first")
    return chosen


def pending(records: Sequence[Record]) -> list[Record]:
    """Experiments left out of the tables: queued, running or failed."""
    return [r for r in records if r.kind == "experiment" and not r.finished]


# ----------------------------------------------------------------------------- seeds

KIND_ORDER = {"experiment": 0, "baseline": 1, "workspace": 2}  # which run of a seed counts when it is there twice


def cell_key(record: Record) -> tuple[str, tuple[tuple[str, str], ...]] | None:
    """What identifies a configuration across its seeds: the baseline commit and every param but
    ``train.seed`` (None: the record has no seed param and is never merged)."""
    if SEED_KEY not in record.params:
        return None
    return record.baseline, tuple(sorted((k, _canonical(v)) for k, v in record.params.items() if k != SEED_KEY))


def _seed_order(value: Any) -> tuple[float, str]:
    number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.inf
    return number, str(value)


def one_per_seed(runs: Sequence[Record]) -> list[Record]:
    """The runs of one configuration, one per distinct seed (an experiment before the baseline commit
    or the workspace that repeat it), in seed order."""
    kept: dict[str, Record] = {}
    for r in sorted(runs, key=lambda r: KIND_ORDER.get(r.kind, len(KIND_ORDER))):
        kept.setdefault(_canonical(r.params[SEED_KEY]), r)
    return sorted(kept.values(), key=lambda r: _seed_order(r.params[SEED_KEY]))


def merge_seeds(records: Sequence[Record]) -> list[Record]:
    """Records with one record per configuration that ran with two or more distinct seeds (in the
    place of its first run; :func:`merge_runs`); every other record unchanged."""
    cells: dict[Any, list[Record]] = {}
    for r in records:
        if (key := cell_key(r)) is not None:
            cells.setdefault(key, []).append(r)
    out: list[Record] = []
    merged: set[Any] = set()
    for r in records:
        key = cell_key(r)
        runs = one_per_seed(cells[key]) if key is not None else [r]
        if len(runs) < 2:
            out.append(r)
        elif key not in merged:
            merged.add(key)
            out.append(merge_runs(runs))
    return out


def merge_runs(runs: Sequence[Record]) -> Record:
    """One record for the seeds ``runs`` of a configuration: the params of the first with
    ``train.seed`` the list of seeds (``0,1,2``), each dataset's document the first seed's with the
    student's metrics (overall and per group) the mean over the seeds; ``members`` keeps the runs."""
    first = runs[0]
    datasets = dict.fromkeys(d for r in runs for d in r.evals)
    evals = {d: _mean_doc([r.evals[d] for r in runs if d in r.evals]) for d in datasets}
    names = [r.name for r in runs]
    stem = [n.rsplit("-seed", 1)[0] for n in names]
    name = stem[0] if len(set(stem)) == 1 and all("-seed" in n for n in names) else "+".join(names)
    return Record(name=name, rev=" ".join(r.rev[:7] for r in runs),
                  kind=min((r.kind for r in runs), key=lambda k: KIND_ORDER.get(k, len(KIND_ORDER))),
                  state=first.state, params={**first.params, SEED_KEY: ",".join(str(r.params[SEED_KEY]) for r in runs)},
                  evals=evals, bench=next((r.bench for r in runs if r.bench), None), baseline=first.baseline,
                  members=tuple(runs))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def student_means(doc: dict[str, Any] | None, group: str = "all") -> dict[str, Any] | None:
    """The student's metrics of an evaluation document, overall (``all``) or of one group."""
    if not doc:
        return None
    found = doc.get("student") if group == "all" else ((doc.get("groups") or {}).get(group) or {}).get("student")
    return found if isinstance(found, dict) else None


def _mean_doc(docs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    doc = copy.deepcopy(docs[0])  # protocol, checkpoint, teacher and constant rows: the first seed's
    doc["student"] = _mean_values([m for d in docs if (m := student_means(d)) is not None])
    align = doc.get("alignment") or {}
    if "student" in (align.get("fits") or {}):  # the student's fits: summed over the seeds
        for key in ("fits", "non_positive_fits"):
            align[key]["student"] = sum(int(((d.get("alignment") or {}).get(key) or {}).get("student", 0)) for d in docs)
    for group, models in (doc.get("groups") or {}).items():
        if "student" in models:
            models["student"] = _mean_values([m for d in docs if (m := student_means(d, group)) is not None])
    return doc


def _mean_values(means: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The first dict with each metric replaced by its mean over ``means``."""
    stats = metric_stats(means)
    return {**means[0], **{k: s.mean for k, s in stats.items()}}


def metric_stats(means: Sequence[dict[str, Any]]) -> dict[str, SeedStats]:
    """metric -> :class:`SeedStats` over the seeds' metric dicts (the metrics with a value)."""
    out = {}
    for key in (*METRIC_KEYS, *ORDER_KEYS):
        values = [float(m[key]) for m in means if _is_number(m.get(key))]
        if values:
            out[key] = seed_stats(values)
    return out


def row_stats(record: Record, dataset: str, group: str = "all") -> dict[str, SeedStats] | None:
    """Statistics over the seeds of a merged record on ``dataset`` (None for a single run)."""
    if not record.members:
        return None
    return metric_stats([m for r in record.members if (m := student_means(r.evals.get(dataset), group)) is not None])


# ----------------------------------------------------------------------------- labels


def differing_keys(records: Sequence[Record]) -> list[str]:
    """Params whose value is not the same in every record (a missing key counts as a value)."""
    found = {k for r in records for k in r.params}
    keys = [k for k in LABEL_KEYS_FIRST if k in found] + sorted(found - set(LABEL_KEYS_FIRST))
    return [k for k in keys if len({_canonical(r.params.get(k, _MISSING)) for r in records}) > 1]


_MISSING = object()


def _canonical(value: Any) -> str:
    """A comparable form of a param value: 0 and 0.0 (``-S x=0`` vs YAML ``0.0``) are equal."""
    if value is _MISSING:
        return "<missing>"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = float(value)
    return json.dumps(value, default=repr, sort_keys=True)


def format_param(key: str, value: Any, model_labels: dict[str, str] | None = None) -> str:
    """A param as a row label: ``ε=0.25``, ``LCB 3x3``, ``epochs=20``."""
    if key == EPS_KEY:
        eps = float(value or 0.0)
        return "ε=0 (no KD)" if eps == 0 else f"ε={eps:.2f}"
    if key == MODEL_KEY:
        return (model_labels or {}).get(str(value), str(value))
    short = key.removeprefix("train.")
    return f"{short}={value:g}" if isinstance(value, float) else f"{short}={value}"


def row_labels(records: Sequence[Record], always: Sequence[str] = (),
               model_labels: dict[str, str] | None = None) -> list[str]:
    """A label per record from the params that differ among ``records`` (plus ``always``; not the
    seed when a record stands for several, which the Seeds column counts); records that still share
    a label get their experiment name appended."""
    keys = list(dict.fromkeys([*always, *differing_keys(records)]))
    if any(r.members for r in records):
        keys = [k for k in keys if k != SEED_KEY]
    labels = [", ".join(format_param(k, r.params.get(k), model_labels) for k in keys) or r.name for r in records]
    counts = Counter(labels)
    return [f"{lab} [{r.name}]" if counts[lab] > 1 else lab for lab, r in zip(labels, records)]


# ----------------------------------------------------------------------------- tables


def bench_entry(record: Record, fallback: dict[str, Any] | None) -> dict[str, Any] | None:
    """fp32 eager latency (``median_ms``, ``fps``) of the record's model in its (or any) model benchmark."""
    bench = record.bench or fallback
    if not bench:
        return None
    entry = ((bench.get("models") or {}).get(record.model) or {}).get("fp32", {}).get("eager")
    return entry if isinstance(entry, dict) and "fps" in entry else None


def bench_params(record: Record, fallback: dict[str, Any] | None) -> int | None:
    """The parameter count of the record's model in its (or any) model benchmark."""
    bench = record.bench or fallback
    total = (((bench or {}).get("models") or {}).get(record.model) or {}).get("params", {}).get("total")
    return total if isinstance(total, int) and not isinstance(total, bool) else None


def bench_note(bench: dict[str, Any] | None) -> str | None:
    if not bench:
        return None
    env = bench.get("environment") or {}
    where = env.get("gpu") or env.get("processor") or env.get("device") or "this machine"
    return (f"Inference: `leve bench model` fp32 eager, batch {bench.get('batch', 1)}, on {where}; "
            "rerun it on the target device to compare with the thesis (GTX 1650 Ti).")


def dataset_rows(records: Sequence[Record], labels: Sequence[str], dataset: str, organs: bool,
                 bench: dict[str, Any] | None) -> list[Row]:
    """Rows of ``records`` on ``dataset`` (records without that dataset are skipped); per organ if asked."""
    rows = []
    for record, label in zip(records, labels):
        doc = record.evals.get(dataset)
        if doc is None:
            continue
        rows.append(Row(label, record, dataset, "all", doc["student"], bench_entry(record, bench),
                        bench_params(record, bench) if bench else None, row_stats(record, dataset)))
        if organs:
            for group, models in (doc.get("groups") or {}).items():
                if "student" in models:
                    rows.append(Row(label, record, dataset, group, models["student"], None,
                                    stats=row_stats(record, dataset, group)))
    return rows


def teacher_row(records: Sequence[Record], dataset: str) -> Row | None:
    """The teacher's (lstsq-aligned) scores on ``dataset``, from the first record that has them."""
    for r in records:
        doc = r.evals.get(dataset) or {}
        if isinstance(doc.get("teacher"), dict):
            model = (doc.get("teacher_source") or {}).get("model", "")
            return Row(f"teacher {model} (lstsq-aligned)".replace("  ", " "), r, dataset, "all", doc["teacher"],
                       model_key="teacher")
    return None


def constant_row(records: Sequence[Record], dataset: str) -> Row | None:
    """The constant predictor's scores on ``dataset`` (the baseline a result must beat), from the first
    record that has them."""
    for r in records:
        doc = r.evals.get(dataset) or {}
        if isinstance(doc.get("constant"), dict):
            return Row(constant_label(doc), r, dataset, "all", doc["constant"], model_key="constant")
    return None


def with_baseline(rows: Sequence[Row], records: Sequence[Record], dataset: str) -> tuple[Row, ...]:
    """``rows`` and, last, the constant predictor's row (:func:`constant_row`) when a record has one."""
    constant = constant_row(records, dataset)
    return (*rows, *([constant] if constant else []))


def ordered(records: Iterable[Record], order: Sequence[str]) -> list[Record]:
    """Records in the thesis's row order: by model variant, then ε, then name."""
    rank = {m: i for i, m in enumerate(order)}
    return sorted(records, key=lambda r: (rank.get(r.model, len(rank)), r.eps, r.name))


def ablation_table(records: Sequence[Record], key: str, title: str, labels: dict[str, str], dataset: str,
                   bench: dict[str, Any] | None) -> Table | None:
    """Variants of the decoder/skips without distillation (ε = 0); None with fewer than two variants."""
    chosen = ordered((r for r in records if r.model in labels and r.eps == 0 and dataset in r.evals), list(labels))
    if len({r.model for r in chosen}) < 2:
        return None
    rows = dataset_rows(chosen, row_labels(chosen, [MODEL_KEY], labels), dataset, False, bench)
    return Table(key, title, dataset, with_baseline(rows, chosen, dataset),
                 bench_note(bench) if any(r.bench for r in rows) else None)


def table_members(source: str, table: str) -> list[ModelSpec]:
    """The ``encoders`` group models with a row in ``source``'s ``table``, in the registry's order."""
    return [s for s in model_specs() if s.group("encoders") and any(r.source == source and r.table == table
                                                                      for r in s.results)]


def encoder_table(records: Sequence[Record], key: str, source: str, number: str, layout: str, title: str,
                  dataset: str, bench: dict[str, Any] | None) -> Table | None:
    """The members of ``source``'s ``number`` table without distillation (ε = 0) on ``dataset``, each
    run beside the row that source printed for its model (on ``dataset``); None with fewer than two
    models run."""
    members = table_members(source, number)
    names = [s.name for s in members]
    chosen = ordered((r for r in records if r.model in names and r.eps == 0 and dataset in r.evals), names)
    if len({r.model for r in chosen}) < 2:
        return None
    printed = {s.name: next(r.row for r in s.results if r.source == source and r.table == number) for s in members}
    rows = dataset_rows(chosen, [printed[r.model] for r in chosen], dataset, False, bench)
    published = tuple(Published(s.name, ref) for s in members
                      if (ref := s.result(number, dataset, 0.0, source)) is not None)
    notes = []
    if published:
        ref, protocol = published[0].result, SOURCE_PROTOCOL.get(source, "?")
        fps = f"; FPS on a {THESIS_FPS_DEVICE}" if any(p.result.fps is not None for p in published) else ""
        notes.append(f"Published rows: {ref.citation} ({ref.dataset} test set, trained at {ref.train_resolution}{fps}), "
                     f"as leve's model registry records them; computed as leve's protocol `{protocol}` does.")
        used = sorted({str((r.record.evals[dataset].get("protocol") or {}).get("name", "?")) for r in rows})
        if used != [protocol]:
            notes.append(f"These runs were scored under protocol {', '.join(f'`{u}`' for u in used)}: evaluate them with "
                         f"`eval.protocol: {protocol}` (`leve eval --protocol {protocol}`) to compare like for like.")
    timed = layout == "thesis-9.1" and any(r.bench for r in rows)  # seed 002's layout has no speed columns
    return Table(key, f"{title} on {dataset}, no KD", dataset, tuple(rows), bench_note(bench) if timed else None,
                 layout, published, tuple(names), tuple(notes))


def kd_table(records: Sequence[Record], dataset: str) -> Table | None:
    """The default Leve at each ε on ``dataset`` (+ organs, + teacher); None with fewer than two ε."""
    chosen = ordered((r for r in records if r.model == DEFAULT_MODEL and dataset in r.evals), [DEFAULT_MODEL])
    if len({r.eps for r in chosen}) < 2:
        return None
    rows = dataset_rows(chosen, row_labels(chosen, [EPS_KEY]), dataset, True, None)
    teacher = teacher_row(chosen, dataset)
    number = THESIS_KD_TABLES.get(dataset)
    title = (f"Table {number}: " if number else "") + f"knowledge distillation ε, Leve {KD_LABEL} on {dataset}"
    return Table(f"kd-{dataset}", title, dataset, with_baseline(rows + ([teacher] if teacher else []), chosen, dataset))


def overview_table(records: Sequence[Record], dataset: str) -> Table:
    """Every selected record on ``dataset`` (organs only in Table 9.8), labelled by what differs."""
    chosen = ordered((r for r in records if dataset in r.evals), VARIANT_ORDER)
    labels = row_labels(chosen) if len(chosen) > 1 else [r.name for r in chosen]
    return Table(f"all-{dataset}", f"All experiments on {dataset}", dataset,
                 with_baseline(dataset_rows(chosen, labels, dataset, False, None), chosen, dataset))


def datasets_of(records: Sequence[Record]) -> list[str]:
    """Datasets with metrics, the thesis's order first."""
    found = {d for r in records for d in r.evals}
    known = [d for d in ("nyu", "kitti", "endoslam", "synthetic") if d in found]
    return known + sorted(found - set(known))


def ablation_dataset(records: Sequence[Record]) -> str:
    """The in-domain test set for Tables 9.2–9.4: the most common ``train.dataset`` that has metrics."""
    found = datasets_of(records)
    trained = Counter(str(r.params.get(DATASET_KEY)) for r in records if str(r.params.get(DATASET_KEY)) in found)
    return trained.most_common(1)[0][0] if trained else found[0]


def build_tables(records: Sequence[Record], dataset: str | None = None) -> list[Table]:
    """Tables 9.1 (encoders), 9.2 (LCB), 9.3 (depthwise), 9.4 (skips) and seed 002's Table I
    (DenseDepth encoders) on the in-domain set, 9.6–9.8 (ε) per dataset, then an overview per
    dataset; a configuration run with several seeds is one row (:func:`merge_seeds`). Tables with
    fewer than two comparable rows are left out."""
    if not records:
        return []
    records = merge_seeds(records)
    ds = dataset or ablation_dataset(records)
    bench = next((r.bench for r in records if r.bench), None)
    thesis_91, seed_i = (encoder_table(records, *spec, ds, bench) for spec in ENCODER_TABLES)
    tables = [
        thesis_91,
        *(ablation_table(records, key, f"Table {number}: {title} on {ds}, no KD", group_labels(group, number), ds, bench)
          for key, number, group, title in ABLATION_TABLES),
        seed_i,
        *(kd_table(records, d) for d in datasets_of(records)),
        *(overview_table(records, d) for d in datasets_of(records)),
    ]
    return [t for t in tables if t is not None]


# ----------------------------------------------------------------------------- outputs


def _aggregation(row: Row) -> str:
    return aggregation_of(row.record.evals.get(row.dataset, {}).get("protocol") or {})


def mixed(table: Table) -> list[bool]:
    """Per row: scored under another protocol, crop or alignment than the table's first row (marked †)."""
    first = table.rows[0].scoring() if table.rows else None
    return [r.scoring() != first for r in table.rows]


def protocol_caption(table: Table) -> str:
    """``test split, protocol leve2024 (crop leve2024), alignment none, per-image means (...)``: every
    protocol with its crop and every alignment the rows were scored under (a table whose rows differ says
    so and marks those unlike its first row †), how the metrics are aggregated over the split (from every
    row's protocol), the non-positive alignment fits of each row that has fits, then each row document's
    ``note`` (why its numbers are not comparable with the thesis's table,
    :func:`leve.evaluation.protocols.ground_truth_note`)."""
    doc = table.rows[0].doc if table.rows else {}
    scorings = [r.scoring() for r in table.rows]
    protocols = list(dict.fromkeys(f"{name} (crop {crop})" for name, crop, _ in scorings)) or ["?"]
    aligns = list(dict.fromkeys(align for _, _, align in scorings)) or ["none"]
    aggs = list(dict.fromkeys(_aggregation(r) for r in table.rows)) or ["per_image"]
    how = (AGGREGATION_CAPTIONS.get(aggs[0], aggs[0]) if len(aggs) == 1
           else f"rows aggregated differently ({', '.join(aggs)}): not comparable")
    text = (f"{doc.get('split', '?')} split, protocol{'s' if len(protocols) > 1 else ''} {', '.join(protocols)}, "
            f"alignment{'s' if len(aligns) > 1 else ''} {', '.join(aligns)}, {how}")
    if any(mixed(table)):
        text += f"; {MIXED_MARK} scored under another protocol, crop or alignment than the first row: not like for like"
    fits = [f"{r.label} {f[0]}/{f[1]}" for r in table.rows if (f := r.fits()) is not None]
    if fits:
        text += "; alignment fits with a non-positive scale (scored as the best constant): " + ", ".join(fits)
    notes = [n for n in dict.fromkeys(r.doc.get("note") for r in table.rows) if n]
    return text + "".join(f"; note: {n}" for n in notes)


SEED_CAPTION = ("Rows over several seeds (`train.seed`; Seeds: how many): mean ± sample standard deviation "
                "[95 % confidence interval of the mean, Student's t with n − 1 degrees of freedom]; **bold**: the "
                "best such row of each column (per organ); ≈: its difference from that best row is within seed "
                "noise (Welch's unequal-variance t-test, two-sided, p ≥ 0.05).")


def seed_marks(rows: Sequence[Row], columns: Sequence[tuple[str, str]] = METRIC_COLUMNS) -> list[dict[str, str]]:
    """Per row, metric -> ``best`` | ``noise`` | ``""`` (:func:`leve.report.seeds.noise_marks`), rows
    compared only with rows of the same group (organ)."""
    marks: list[dict[str, str]] = [{} for _ in rows]
    for group in dict.fromkeys(r.group for r in rows):
        idx = [i for i, r in enumerate(rows) if r.group == group]
        for _, key in columns:
            found = noise_marks([(rows[i].stats or {}).get(key) for i in idx], key in LOWER_IS_BETTER)
            for i, mark in zip(idx, found):
                marks[i][key] = mark
    return marks


def seed_cell(stats: SeedStats, mark: str = "", digits: int = 4) -> str:
    """``0.5123 ± 0.0031 [0.5046, 0.5200]``, bold when ``best``, ``≈ `` first when within noise of it."""
    text = (f"{stats.mean:.{digits}f} ± {stats.sd:.{digits}f} "
            f"[{stats.low:.{digits}f}, {stats.high:.{digits}f}]")
    return f"**{text}**" if mark == "best" else f"≈ {text}" if mark == "noise" else text


def row_cells(row: Row, marks: dict[str, str], columns: Sequence[tuple[str, str]] = METRIC_COLUMNS) -> list[str]:
    """The metric cells of a row: over seeds (:func:`seed_cell`) where it has two or more, else the value."""
    cells = metric_cells(row.means, columns=columns)
    for i, (_, key) in enumerate(columns):
        stats = (row.stats or {}).get(key)
        if stats is not None and stats.n >= 2:
            cells[i] = seed_cell(stats, marks.get(key, ""))
    return cells


def seed_count(row: Row) -> int | None:
    """How many seeds a row's statistics come from (None: a single run)."""
    return max((s.n for s in (row.stats or {}).values()), default=None)


def entries(table: Table) -> list[Row | Published]:
    """The table's rows in print order: a comparison layout lists, model by model (``table.models``),
    its runs then its published row; other tables their rows as built."""
    if table.layout == "metrics":
        return list(table.rows)
    out: list[Row | Published] = []
    for model in table.models:
        out += [r for r in table.rows if r.record.model == model]
        out += [p for p in table.published if p.model == model]
    return out


ORDER_COLUMNS = (("ρ", "spearman"),)  # the depth-ordering column of leve's layout (Spearman's ρ)
# Each comparison layout: its first column's header and its metric columns (tables.py's definitions).
LAYOUTS = {"thesis-9.1": ("Encoder", METRIC_COLUMNS), "seed-002": ("Method", SEED002_COLUMNS)}


def comparison_markdown(table: Table) -> list[str]:
    """Table 9.1 (Encoder, RMSE, REL, δ1–δ3, Params (M), Inference (ms), FPS, Source) or seed 002's
    Table I (Method, δ1, δ2, δ3, REL, RMS, log10, Source) lines: runs and published rows."""
    first, columns = LAYOUTS[table.layout]
    speed = table.layout == "thesis-9.1"
    head = [first, *(h for h, _ in columns), *(["Params (M)", "Inference (ms)", "FPS"] if speed else []), "Source"]
    runs = [e for e in entries(table) if isinstance(e, Row)]
    marks = dict(zip(map(id, runs), seed_marks(runs, columns)))
    rows = []
    for e in entries(table):
        if isinstance(e, Published):
            r = e.result
            ms = None if r.latency_s is None else r.latency_s * 1000.0
            timing = [MISSING, cell_number(ms, 1), cell_number(r.fps, 1)]
            rows.append([e.label, *metric_cells(e.means, columns=columns), *(timing if speed else []), e.source])
        else:
            params = None if e.params is None else e.params / 1e6
            timing = [cell_number(params, 2), *(cell_number((e.bench or {}).get(k), 1) for k in ("median_ms", "fps"))]
            rows.append([e.label, *row_cells(e, marks[id(e)], columns), *(timing if speed else []), e.record.name])
    return [markdown_table(head, rows)]


def table_markdown(table: Table) -> str:
    """One table: label, [organ,] RMSE, REL, δ1–δ3, [seeds,] [ms, FPS,] experiment; or a comparison
    layout (:func:`comparison_markdown`). Rows over seeds show mean ± sd and the 95 % interval."""
    seeded = any(seed_count(r) for r in table.rows)
    lines = [f"### {table.title}", "", f"_{protocol_caption(table)}; lower RMSE/REL, higher δ are better._", ""]
    if seeded:
        lines += [f"_{SEED_CAPTION}_", ""]
    if table.layout != "metrics":
        lines += comparison_markdown(table)
        for note in (*table.notes, *([table.bench_note] if table.bench_note else [])):
            lines += ["", note]
        return "\n".join(lines) + "\n"
    organs = any(r.group != "all" for r in table.rows)
    bench = table.bench_note is not None
    head = ["Model", *(["Organ"] if organs else []), *METRIC_HEADERS, *(h for h, _ in ORDER_COLUMNS),
            *(["Seeds"] if seeded else []), *(["Inference (ms)", "FPS"] if bench else []), "Experiment"]
    rows = []
    for r, marks, odd in zip(table.rows, seed_marks(table.rows), mixed(table)):
        timing = [cell_number((r.bench or {}).get(k), 1) for k in ("median_ms", "fps")] if bench else []
        seeds = [MISSING if r.reference else str(seed_count(r) or 1)] if seeded else []
        rows.append([r.label + (MIXED_MARK if odd else ""), *([r.group] if organs else []), *row_cells(r, marks),
                     *row_cells(r, marks, ORDER_COLUMNS), *seeds, *timing, MISSING if r.reference else r.record.name])
    lines.append(markdown_table(head, rows))
    if table.bench_note:
        lines += ["", table.bench_note]
    return "\n".join(lines) + "\n"


def markdown(tables: Sequence[Table], left_out: Sequence[Record] = (), source: str = "") -> str:
    """The report: every table, then the experiments not in them."""
    parts = ["# Experiments\n", f"From {source}. Rows are labelled by the params that differ between them.\n"
             if source else ""]
    parts += [table_markdown(t) for t in tables]
    if left_out:
        items = ", ".join(f"{r.name} ({r.state or 'error'})" for r in left_out)
        parts.append(f"Not in the tables (no metrics yet): {items}.\n")
    return "\n".join(p for p in parts if p)


SEED_FIELDS = ("seeds", *(f"{k}_{s}" for k in METRIC_KEYS for s in ("sd", "ci_low", "ci_high")), "best", "within_noise")
CSV_FIELDS = ("table", "label", "experiment", "rev", "kind", "dataset", "group", "model", "eps",
              *METRIC_KEYS, "count", "params", "inference_ms", "fps", "reference", *SEED_FIELDS,
              *ORDER_KEYS, "protocol", "crop", "align", "fits", "non_positive_fits", "mixed")


def seed_columns(row: Row, marks: dict[str, str]) -> dict[str, Any]:
    """The CSV's columns over seeds: ``seeds``, each metric's sd and 95 % interval, and the metrics in
    which the row is the best (``best``) or within noise of the best (``within_noise``), space-separated."""
    n = seed_count(row)
    if not n or n < 2:
        return {}
    out: dict[str, Any] = {"seeds": n}
    for key, s in (row.stats or {}).items():
        out.update({f"{key}_sd": s.sd, f"{key}_ci_low": s.low, f"{key}_ci_high": s.high})
    for mark, column in (("best", "best"), ("noise", "within_noise")):
        out[column] = " ".join(k for k, m in marks.items() if m == mark)
    return out


def csv_rows(tables: Sequence[Table]) -> list[dict[str, Any]]:
    """One CSV row per table row (in print order), with every metric (the mean over seeds, with their
    spread, for a row over seeds); published rows have ``kind`` published, the printed figures and
    ``reference`` (``thesis Table 9.1``)."""
    out: list[dict[str, Any]] = []
    for t in tables:
        marks = dict(zip(map(id, t.rows), seed_marks(t.rows, [(k, k) for k in METRIC_KEYS])))
        odd = dict(zip(map(id, t.rows), mixed(t)))
        for r in entries(t):
            if isinstance(r, Published):
                ms = None if r.result.latency_s is None else r.result.latency_s * 1000.0
                out.append({"table": t.key, "label": r.label, "kind": "published", "dataset": r.result.dataset,
                            "group": "all", "model": r.model, "eps": r.result.kd_eps, **r.means,
                            "inference_ms": ms, "fps": r.result.fps, "reference": r.result.citation})
                continue
            ref = r.reference
            protocol, crop, align = r.scoring()
            fits = r.fits()
            kind = ("teacher" if r.model_key == "student" else r.model_key) if ref else r.record.kind
            out.append({"table": t.key, "label": r.label, "experiment": "" if ref else r.record.name,
                        "rev": "" if ref else r.record.rev, "kind": kind,
                        "dataset": r.dataset, "group": r.group, "model": "" if ref else r.record.model,
                        "eps": "" if ref else r.record.eps,
                        **{k: r.means.get(k) for k in (*METRIC_KEYS, *ORDER_KEYS, "count")},
                        "params": r.params, "inference_ms": (r.bench or {}).get("median_ms"),
                        "fps": (r.bench or {}).get("fps"), **seed_columns(r, marks[id(r)]),
                        "protocol": protocol, "crop": crop, "align": align,
                        "fits": fits[1] if fits else None, "non_positive_fits": fits[0] if fits else None,
                        "mixed": int(odd[id(r)])})
    return out


# ----------------------------------------------------------------------------- dvc


def exp_show_json(repo: Path, all_commits: bool = False) -> Any:
    """What ``dvc exp show --json [--all-commits]`` prints for ``repo``, computed in this process.

    This is the call the dvc command makes (``Repo.experiments.show``, each ``ExpState.dumpd()``,
    JSON-encoded as the command does), so :func:`parse_exp_show` reads it and saved ``--json``
    files alike; the result equals the command's output (compared). Measured on the kd grid of
    tests/report/exp_repo.py (4 experiments, 1 queued, 1 failed; 2 shared CPU cores), first call in
    a fresh process after importing leve: ``subprocess dvc exp show --json`` 2.5-2.8 s,
    ``dvc.api.exp_show`` 1.4-1.9 s, this 1.1-1.8 s (dvc's import included; 0.24-0.46 s once imported).
    ``dvc.api.exp_show`` is not used: its flat rows (``dvc exp show --csv`` as dicts) name a
    metrics column by its file only when two files share the key (with one dataset it is just
    ``student.rmse``), make ints floats, show unreadable metrics as ``"!"``, keep only short revs
    and have no ``--all-commits``, so the per-dataset documents cannot be rebuilt reliably from them.
    """
    if not (repo / ".dvc").is_dir():
        raise LeveError(f"{repo.resolve()}: not a DVC repository (no .dvc/); run `leve report` in the project")
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(str(repo)) as dvc_repo:
            states = dvc_repo.experiments.show(all_commits=all_commits)
    except DvcException as exc:
        raise LeveError(f"{repo.resolve()}: `dvc exp show` failed: {exc}") from exc
    return json.loads(json.dumps([s.dumpd() for s in states], default=_dvc_json))


def _dvc_json(obj: Any) -> Any:
    """Encode what ``ExpState.dumpd()`` leaves as objects, as ``dvc exp show --json`` does."""
    if isinstance(obj, (date, datetime)):
        return obj.isoformat()
    if isinstance(obj, Exception):
        return {"type": type(obj).__name__, "msg": str(obj)}
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def parse_json_text(text: str, source: str) -> Any:
    """JSON from ``source``; the first '[' starts it (dvc may print notices before)."""
    start = text.find("[")
    try:
        return json.loads(text[start:] if start >= 0 else text)
    except json.JSONDecodeError as exc:
        raise LeveError(f"{source}: not the JSON of `dvc exp show --json` ({exc.msg} at line {exc.lineno})") from exc


def load_exp_show_file(path: Path) -> Any:
    """A saved ``dvc exp show --json`` output."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise LeveError(f"{path}: cannot read ({exc.strerror or exc.__class__.__name__})") from exc
    return parse_json_text(text, str(path))
