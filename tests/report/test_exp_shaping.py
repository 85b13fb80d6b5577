"""Shaping rows of ``leve report`` on plain data (issue 28, item 5): the revisions of a hand-written
``dvc exp show --json`` payload into records, seeds merged, labels, rows and the ε table, each checked
against values worked out here (statistics module, literal labels), no dvc run. The split keeps dvc
out of these modules: importing them (and the report's facade) imports no dvc module."""

from __future__ import annotations

import statistics
import subprocess
import sys
import warnings

import pytest

from leve.report import exp_records, exp_rows
from leve.report.exp_records import Record

SHA = "a" * 40


def eval_doc(dataset: str, rmse: float, groups: dict[str, float] | None = None, **extra: object) -> dict:
    """A metrics document as ``leve eval`` writes it, reduced to what the report reads."""
    doc: dict = {"dataset": dataset, "split": "test", "student": {"rmse": rmse, "abs_rel": rmse / 4, "count": 10},
                 "protocol": {"name": "leve2024", "align": "none"}, **extra}
    if groups:
        doc["groups"] = {g: {"student": {"rmse": v, "abs_rel": v / 4, "count": 5}} for g, v in groups.items()}
    return doc


BENCH = {"batch": 1, "models": {"leve": {"params": {"total": 1234567}, "fp32": {"eager": {"median_ms": 20.0, "fps": 50.0}}},
                                "leve-3x3": {"params": {"total": 999}, "fp32": {"eager": {"median_ms": 10.0}}}}}


def revision(rev: str, train: dict, metrics: dict | None = None, other: dict | None = None) -> dict:
    params = {"params.yaml": {"data": {"train": train}}}
    if other is not None:
        params["other.yaml"] = {"data": other}
    return {"rev": rev, "data": {"rev": rev, "params": params, "metrics": metrics or {}}, "error": None}


def payload() -> list:
    missing = {"metrics/nyu.json": {"error": {"type": "FileNotFoundError", "msg": "no such file"}}}
    done = revision("b" * 40, {"model": "leve", "kd": {"eps": 0.25}, "seed": 0},
                    {"metrics/nyu.json": {"data": eval_doc("nyu", 0.5)},
                     "metrics/bench_model.json": {"data": BENCH},
                     "metrics/other.json": {"data": {"loss": 1.0}},          # neither an eval doc nor a bench
                     "metrics/kitti.json": {"error": {"type": "FileNotFoundError", "msg": "gone"}}},
                    other={"aug": {"flip": True}})
    return [
        {**revision("workspace", {"model": "leve"}, missing), "name": None, "experiments": None},
        {**revision(SHA, {"model": "leve"}, missing), "name": "main", "experiments": [
            {"name": "done", "executor": {"state": "success"}, "revs": [{**done, "name": "done"}]},
            {"name": "waiting", "executor": {"state": "queued"}, "revs": [revision("c" * 40, {"model": "leve"})]},
            {"name": "broken", "executor": {"state": "failed"},
             "revs": [{**revision("d" * 40, {"model": "nope"}), "name": "broken"}]},
            {"name": None, "executor": None,   # run in the workspace (no executor), an error without a dict
             "revs": [{**revision("e" * 40, {"model": "leve"}, {"metrics/nyu.json": {"data": eval_doc("nyu", 0.7)}}),
                       "error": "could not collect"}]},
        ]},
    ]


def test_parse_a_hand_written_exp_show():
    records = exp_records.parse_exp_show(payload())
    assert [(r.name, r.kind, r.state, r.baseline) for r in records] == [
        ("workspace", "workspace", None, "workspace"), ("main", "baseline", None, SHA),
        ("done", "experiment", "success", SHA), ("waiting", "experiment", "queued", SHA),
        ("broken", "experiment", "failed", SHA), ("eeeeeee", "experiment", None, SHA)]
    done = records[2]
    # params flattened to dotted keys, another params file's keys prefixed with its name
    assert done.params == {"train.model": "leve", "train.kd.eps": 0.25, "train.seed": 0, "other.yaml:aug.flip": True}
    assert done.rev == "b" * 40 and (done.model, done.eps) == ("leve", 0.25)
    # only readable eval documents, by their dataset; the bench apart; the rest ignored
    assert done.evals == {"nyu": eval_doc("nyu", 0.5)} and done.bench == BENCH
    assert records[0].evals == {} and records[0].bench is None
    assert records[5].error == "could not collect" and not records[5].finished
    assert records[4].model == "nope" and records[4].eps == 0.0 and not records[4].finished


def test_select_and_pending_on_plain_records():
    records = exp_records.parse_exp_show(payload())
    assert [r.name for r in exp_records.select_records(records)] == ["done"]
    assert [r.name for r in exp_records.pending(records)] == ["waiting", "broken", "eeeeeee"]
    # without any finished experiment with metrics, the workspace when it has some
    ws = Record("workspace", "workspace", "workspace", None, {"train.model": "leve"}, {"nyu": eval_doc("nyu", 0.9)})
    assert exp_records.select_records([ws, records[3]]) == [ws]


def seed_run(name: str, seed: object, rmse: float, organ: float, kind: str = "experiment", eps: object = 0.25) -> Record:
    doc = eval_doc("endoslam", rmse, {"colon": organ}, teacher={"rmse": 0.1},
                   alignment={"fits": {"student": 4}, "non_positive_fits": {"student": 1}})
    return Record(name, name[-1] * 40, kind, "success" if kind == "experiment" else None,
                  {"train.model": "leve", "train.kd.eps": eps, "train.seed": seed}, {"endoslam": doc}, baseline=SHA)


def test_merge_seeds_means_and_spread_on_plain_records():
    rmse, organ = {0: 0.50, 1: 0.60, 2: 0.85}, {0: 0.40, 1: 0.45, 2: 0.65}
    runs = [seed_run(f"kd-seed{s}", s, rmse[s], organ[s]) for s in (2, 0, 1)]   # out of seed order
    again = seed_run("kd-seed1-base", 1, 9.9, 9.9, kind="baseline")   # seed 1 again, as the baseline: the experiment counts
    other = seed_run("kd-eps0.5", 0, 0.3, 0.3, eps=0.5)                # another configuration, one seed: unchanged
    plain = Record("noseed", "f" * 40, "experiment", "success", {"train.model": "leve"}, {"endoslam": eval_doc("endoslam", 1.0)})
    out = exp_records.merge_seeds([*runs, again, other, plain])
    assert [r.name for r in out] == ["kd", "kd-eps0.5", "noseed"] and out[1] is other and out[2] is plain
    merged = out[0]
    assert [m.name for m in merged.members] == ["kd-seed0", "kd-seed1", "kd-seed2"]
    assert merged.params["train.seed"] == "0,1,2" and merged.rev == "0000000 1111111 2222222"
    assert merged.kind == "experiment" and merged.baseline == SHA
    doc = merged.evals["endoslam"]
    assert doc["student"]["rmse"] == pytest.approx(statistics.mean(rmse.values()), rel=1e-12)
    assert doc["groups"]["colon"]["student"]["rmse"] == pytest.approx(statistics.mean(organ.values()), rel=1e-12)
    assert doc["teacher"] == {"rmse": 0.1}                                 # the first seed's
    assert doc["alignment"]["fits"]["student"] == 12 and doc["alignment"]["non_positive_fits"]["student"] == 3
    stats = exp_records.row_stats(merged, "endoslam")
    assert stats is not None and stats["rmse"].n == 3
    assert stats["rmse"].sd == pytest.approx(statistics.stdev(rmse.values()), rel=1e-12)
    colon = exp_records.row_stats(merged, "endoslam", "colon")
    assert colon is not None and colon["rmse"].mean == pytest.approx(statistics.mean(organ.values()), rel=1e-12)
    assert exp_records.row_stats(other, "endoslam") is None


def test_int_and_float_params_are_one_configuration():
    assert exp_records.canonical(0) == exp_records.canonical(0.0) != exp_records.canonical("0")
    a, b = seed_run("x-seed0", 0, 0.5, 0.5, eps=0), seed_run("x-seed1", 1, 0.7, 0.7, eps=0.0)
    (merged,) = exp_records.merge_seeds([a, b])
    assert merged.name == "x" and merged.evals["endoslam"]["student"]["rmse"] == pytest.approx(0.6)


def test_labels_from_plain_params():
    assert exp_rows.format_param("train.kd.eps", 0) == "ε=0 (no KD)"
    assert exp_rows.format_param("train.kd.eps", 0.1) == "ε=0.10"
    assert exp_rows.format_param("train.model", "leve-3x3", {"leve-3x3": "3x3"}) == "3x3"
    assert exp_rows.format_param("train.model", "leve-3x3") == "leve-3x3"
    assert exp_rows.format_param("train.lr", 0.0001) == "lr=0.0001"
    assert exp_rows.format_param("train.epochs", 20) == "epochs=20"
    base = {"train.model": "leve", "train.kd.eps": 0.25, "train.epochs": 5}
    a = Record("a", "1" * 40, "experiment", "success", base)
    b = Record("b", "2" * 40, "experiment", "success", {**base, "train.epochs": 20, "train.lr": 0.01})
    c = Record("c", "3" * 40, "experiment", "success", {**base, "train.model": "leve-3x3"})
    # the model first, then the other differing keys sorted; a missing key differs from any value
    assert exp_rows.differing_keys([a, b, c]) == ["train.model", "train.epochs", "train.lr"]
    assert exp_rows.row_labels([a, b, c]) == ["leve, epochs=5, lr=None", "leve, epochs=20, lr=0.01",
                                              "leve-3x3, epochs=5, lr=None"]
    assert exp_rows.row_labels([a, c], always=["train.kd.eps"]) == ["ε=0.25, leve", "ε=0.25, leve-3x3"]
    assert exp_rows.row_labels([a]) == ["a"]   # nothing differs: the experiment's name


def test_dataset_rows_carry_bench_and_organs():
    other_bench = {"models": {"leve": {"params": {"total": 42}, "fp32": {"eager": {"median_ms": 5.0, "fps": 200.0}}}}}
    with_bench = Record("a", "1" * 40, "experiment", "success", {"train.model": "leve"},
                        {"endoslam": eval_doc("endoslam", 0.5, {"colon": 0.4, "stomach": 0.6})}, bench=BENCH)
    without = Record("b", "2" * 40, "experiment", "success", {"train.model": "leve"},
                     {"endoslam": eval_doc("endoslam", 0.7)})
    elsewhere = Record("c", "3" * 40, "experiment", "success", {}, {"nyu": eval_doc("nyu", 0.1)})
    assert exp_rows.bench_entry(with_bench, other_bench) == {"median_ms": 20.0, "fps": 50.0}   # its own first
    assert exp_rows.bench_entry(without, other_bench) == {"median_ms": 5.0, "fps": 200.0}     # else the fallback
    assert exp_rows.bench_params(with_bench, None) == 1234567 and exp_rows.bench_params(without, None) is None
    leve_3x3 = Record("d", "4" * 40, "experiment", "success", {"train.model": "leve-3x3"}, bench=BENCH)
    assert exp_rows.bench_entry(leve_3x3, None) is None   # no fps: not an fp32 eager timing
    rows = exp_rows.dataset_rows([with_bench, without, elsewhere], ["A", "B", "C"], "endoslam", True, other_bench)
    assert [(r.label, r.group, r.means["rmse"]) for r in rows] == [
        ("A", "all", 0.5), ("A", "colon", 0.4), ("A", "stomach", 0.6), ("B", "all", 0.7)]
    assert rows[0].bench == {"median_ms": 20.0, "fps": 50.0} and rows[0].params == 1234567
    assert rows[1].bench is None and rows[3].params == 42


def test_kd_table_orders_by_eps_then_teacher_then_constant():
    def run(name: str, eps: float, rmse: float, model: str = "leve") -> Record:
        doc = eval_doc("nyu", rmse, teacher={"rmse": 0.2}, teacher_source={"model": "dav2"},
                       constant={"rmse": 2.0}, constant_source={"depth": 2.5, "split": "train"})
        return Record(name, name * 40, "experiment", "success", {"train.model": model, "train.kd.eps": eps}, {"nyu": doc})

    records = [run("h", 0.5, 0.45), run("f", 0.0, 0.6), run("g", 0.25, 0.5), run("x", 0.1, 0.1, model="leve-3x3")]
    table = exp_rows.kd_table(records, "nyu")
    assert table is not None and table.key == "kd-nyu"
    assert [(r.label, r.record.name, r.means["rmse"]) for r in table.rows] == [
        ("ε=0 (no KD)", "f", 0.6), ("ε=0.25", "g", 0.5), ("ε=0.50", "h", 0.45),
        ("teacher dav2 (lstsq-aligned)", "f", 0.2), ("constant baseline (train median 2.5)", "f", 2.0)]
    assert [r.model_key for r in table.rows] == ["student"] * 3 + ["teacher", "constant"]
    assert exp_rows.kd_table(records[:1] + records[3:], "nyu") is None   # one ε of the default model: no table
    assert exp_rows.kd_table(records, "kitti") is None


def test_shaping_modules_import_no_dvc():
    code = ("import sys; import leve.report.exp_records, leve.report.exp_rows, leve.report.exp_render, "
            "leve.report.exp_dvc, leve.report.experiments; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dvc', 'dvc_data', 'scmrepo')))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"


def test_moved_names_still_resolve_from_the_facade():
    from leve.report import experiments

    with pytest.warns(DeprecationWarning, match="leve.report.experiments.row_labels moved: import it from leve.report.exp_rows"):
        assert experiments.row_labels is exp_rows.row_labels
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert experiments.build_tables is exp_rows.build_tables   # the report's own names: no warning
    with pytest.raises(AttributeError):
        experiments.no_such_name  # noqa: B018
