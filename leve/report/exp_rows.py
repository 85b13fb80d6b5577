"""Shaping records into table rows: the thesis tables (Tables 9.1-9.8, seed 002's Table I) as
:class:`Table` of :class:`Row`, pure functions on :class:`~leve.report.exp_records.Record` (plain
data, no dvc import; rendering: :mod:`leve.report.exp_render`).

:func:`build_tables` merges the seeds of a configuration into one row (:func:`~leve.report.exp_records.merge_seeds`),
labels rows by the params that differ (:func:`row_labels`), and lays out the encoder comparisons
as the thesis (Table 9.1) and seed 002 (Table I) print them, each run beside the figures that source
published for its model (:class:`Published`, the model registry's
:class:`~leve.models.registry.ReferenceResult` rows, never retyped here).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

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
from leve.report.exp_records import (
    DATASET_KEY,
    EPS_KEY,
    MODEL_KEY,
    SEED_KEY,
    Record,
    canonical,
    merge_seeds,
    row_stats,
)
from leve.report.metrics import constant_label, model_align
from leve.report.seeds import SeedStats

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


def group_labels(group: str, table: str | None = None) -> dict[str, str]:
    """model -> row label of the registry's ``group`` (only the models of thesis ``table``), thesis order."""
    return {s.name: g.label for s in model_specs() if (g := s.group(group)) and (table is None or table in s.tables)}


LCB_LABELS = group_labels("lcb")
KD_LABEL = model_spec(DEFAULT_MODEL).label  # "3x3+3x3": the plain student of Tables 9.6-9.8
THESIS_KD_TABLES = {r.dataset: r.table for s in model_specs() if s.group("kd") for r in s.thesis if r.kd_eps > 0}
VARIANT_ORDER = (DEFAULT_MODEL, *(s.name for s in model_specs() if s.name != DEFAULT_MODEL))
LABEL_KEYS_FIRST = (MODEL_KEY, EPS_KEY)


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



# ----------------------------------------------------------------------------- labels


def differing_keys(records: Sequence[Record]) -> list[str]:
    """Params whose value is not the same in every record (a missing key counts as a value)."""
    found = {k for r in records for k in r.params}
    keys = [k for k in LABEL_KEYS_FIRST if k in found] + sorted(found - set(LABEL_KEYS_FIRST))
    return [k for k in keys if len({canonical(r.params[k]) if k in r.params else "<missing>" for r in records}) > 1]


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
        ref = published[0].result
        protocol = ref.protocol
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
