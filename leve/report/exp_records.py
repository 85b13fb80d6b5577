"""Shaping the revisions of ``dvc exp show --json`` into records: pure functions on the plain JSON
(lists and dicts as :mod:`json` loads them), no dvc import (reading dvc: :mod:`leve.report.exp_dvc`).

The JSON is a list of baselines: the workspace, then each commit with its ``experiments``; every
revision carries ``data.params`` per params file and ``data.metrics`` per metrics file, or an ``error``.

* :func:`parse_exp_show` -> a :class:`Record` per revision (params flattened to dotted keys,
  evaluation documents ``metrics/<ds>.json`` by dataset, ``metrics/bench_model.json``);
* :func:`select_records` -> the finished experiments (and committed baselines) with metrics,
  or the workspace when no experiment has any; :func:`pending` -> the ones left out;
* :func:`merge_seeds` -> one record per configuration run with several seeds (``train.seed``;
  ``leve experiments queue --seeds N``), its student metrics the mean over the seeds, the runs
  kept in ``members`` (:func:`row_stats`: their statistics, :mod:`leve.report.seeds`).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from leve.errors import LeveError
from leve.metrics import METRIC_KEYS, ORDER_KEYS
from leve.models.registry import DEFAULT_MODEL
from leve.report.seeds import SeedStats, seed_stats

MODEL_KEY, EPS_KEY, DATASET_KEY, SEED_KEY = "train.model", "train.kd.eps", "train.dataset", "train.seed"
NOT_FINISHED = ("queued", "running", "failed")


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
    return record.baseline, tuple(sorted((k, canonical(v)) for k, v in record.params.items() if k != SEED_KEY))


def _seed_order(value: Any) -> tuple[float, str]:
    number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.inf
    return number, str(value)


def one_per_seed(runs: Sequence[Record]) -> list[Record]:
    """The runs of one configuration, one per distinct seed (an experiment before the baseline commit
    or the workspace that repeat it), in seed order."""
    kept: dict[str, Record] = {}
    for r in sorted(runs, key=lambda r: KIND_ORDER.get(r.kind, len(KIND_ORDER))):
        kept.setdefault(canonical(r.params[SEED_KEY]), r)
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


def canonical(value: Any) -> str:
    """A comparable form of a param value: 0 and 0.0 (``-S x=0`` vs YAML ``0.0``) are equal."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = float(value)
    return json.dumps(value, default=repr, sort_keys=True)
