"""Rendering the experiment tables: Markdown (:func:`markdown`) and CSV rows (:func:`csv_rows`) of
the :class:`~leve.report.exp_rows.Table` that :func:`~leve.report.exp_rows.build_tables` shapes;
captions name every protocol, crop and alignment the rows were scored under, rows over seeds show
mean ± sd and the 95 % interval and mark what is within seed noise (:mod:`leve.report.seeds`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from leve.metrics import AGGREGATION_CAPTIONS, LOWER_IS_BETTER, METRIC_KEYS, ORDER_KEYS
from leve.report.exp_records import Record
from leve.report.exp_rows import Published, Row, Table
from leve.report.metrics import MIXED_MARK, aggregation_of
from leve.report.seeds import SeedStats, noise_marks
from leve.report.tables import METRIC_COLUMNS, METRIC_HEADERS, MISSING, SEED002_COLUMNS, markdown_table, metric_cells
from leve.report.tables import number as cell_number


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
