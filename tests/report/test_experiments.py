"""``leve report`` and ``leve experiments``: parsing a real ``dvc exp show --json`` capture
(``data/exp_show.json``, see ``data/README.md``), the thesis tables, the grid commands, and one
end-to-end run of the queue in a throw-away git + DVC repository."""

from __future__ import annotations

import copy
import csv
import json
import os
import re
import statistics
from pathlib import Path

import pytest

from leve.errors import LeveError
from leve.experiments import grid as g
from leve.models.published import published_text
from leve.models.registry import SEED_002, model_spec
from leve.report import exp_dvc, exp_records, exp_render, exp_rows
from tests.report.data.fake_stages import FPS, MODEL_BASE, ORGANS, PARAMS, SEED_STEP, expected_rmse, means

DATA = Path(__file__).parent / "data"
FIXTURE = DATA / "exp_show.json"
GRID_NAMES_ALL = ["kd-eps0.00", "kd-eps0.10", "kd-eps0.25", "kd-eps0.50", "lcb-3x3", "lcb-3x3-1x1",
                  "lcb-5x5-5x5", "lcb-3x3-dw", "skips-alt", "skips-none"]
# the encoder comparison (thesis Table 9.1, seed 002 Table I), also in `all` (`encoders-ddrnet23s` is kd-eps0.00)
GRID_NAMES_ENCODERS = ["encoders-mobilenetv3", "encoders-densedepth-densenet169", "encoders-densedepth-densenet161",
                       "encoders-densedepth-resnet50", "encoders-densedepth-mobilenetv2", "encoders-densedepth-resnet101"]


@pytest.fixture(scope="module")
def payload():
    return json.loads(FIXTURE.read_text())


@pytest.fixture(scope="module")
def records(payload):
    return exp_records.parse_exp_show(payload)


def cells(line):
    """The stripped cells of one Markdown table line (tabulate pads cells to the column width)."""
    return [c.strip() for c in line.strip().removeprefix("|").removesuffix("|").split("|")]


def table_lines(text):
    return [cells(line) for line in text.splitlines() if line.startswith("|")]


def table(tables, key):
    found = [t for t in tables if t.key == key]
    assert found, f"no table {key} in {[t.key for t in tables]}"
    return found[0]


# ----------------------------------------------------------------------------- parsing


def test_flatten_nested_params():
    assert exp_records.flatten({"train": {"kd": {"eps": 0.25, "loss": "l1"}, "resolution": [1, 2], "empty": {}}}) == {
        "train.kd.eps": 0.25, "train.kd.loss": "l1", "train.resolution": [1, 2], "train.empty": {}}


def test_parse_every_revision_of_the_capture(records):
    kinds = [r.kind for r in records]
    assert kinds[:2] == ["workspace", "baseline"] and kinds[2:] == ["experiment"] * 18
    assert records[0].name == "workspace" and records[1].name == "main" and len(records[1].rev) == 40
    by_name = {r.name: r for r in records}
    assert by_name["later-kd-eps0.50"].state == "queued" and not by_name["later-kd-eps0.50"].evals
    assert by_name["broken"].state == "failed" and by_name["broken"].error
    done = by_name["kd-eps0.10"]
    assert done.state == "success" and done.finished
    assert done.params["train.kd.eps"] == 0.1 and done.model == "leve" and done.params["train.kd.loss"] == "l1"
    assert sorted(done.evals) == ["endoslam", "kitti", "nyu"] and done.bench is not None
    assert done.evals["nyu"]["student"]["rmse"] == expected_rmse("leve", 0.1, "nyu")


def test_select_finished_experiments_only(records):
    chosen = exp_records.select_records(records)
    assert sorted(r.name for r in chosen) == sorted(GRID_NAMES_ALL + GRID_NAMES_ENCODERS)
    assert {r.name for r in exp_records.pending(records)} == {"broken", "later-kd-eps0.50"}


def test_workspace_is_used_only_without_experiment_metrics(payload):
    experiment = payload[1]["experiments"][0]["revs"][0]
    workspace = {**copy.deepcopy(payload[0]), "data": copy.deepcopy(experiment["data"])}
    workspace["data"]["rev"] = "workspace"
    only_workspace = exp_records.parse_exp_show([workspace, {**payload[1], "experiments": []}])
    assert [r.kind for r in exp_records.select_records(only_workspace)] == ["workspace"]
    with_experiments = exp_records.parse_exp_show([workspace, payload[1]])
    assert "workspace" not in {r.kind for r in exp_records.select_records(with_experiments)}
    # --workspace adds it, unless it repeats an experiment (the workspace after `dvc exp run`)
    assert "workspace" not in {r.kind for r in exp_records.select_records(with_experiments, workspace=True)}
    workspace["data"]["params"]["params.yaml"]["data"]["train"]["epochs"] = 20
    added = exp_records.select_records(exp_records.parse_exp_show([workspace, payload[1]]), workspace=True)
    assert [r.name for r in added if r.kind == "workspace"] == ["workspace"] and len(added) == 17


def test_no_metrics_anywhere_is_one_clear_error(payload):
    bare = [payload[0], {**payload[1], "experiments": [e for e in payload[1]["experiments"]
                                                       if e["name"] in ("broken", "later-kd-eps0.50")]}]
    with pytest.raises(LeveError, match=r"no experiment .* has evaluation metrics metrics/<dataset>\.json"):
        exp_records.select_records(exp_records.parse_exp_show(bare))


def test_not_exp_show_json_is_refused(tmp_path):
    bad = tmp_path / "exps.json"
    bad.write_text("[{not json")
    with pytest.raises(LeveError, match="exps.json: not the JSON"):
        exp_dvc.load_exp_show_file(bad)
    with pytest.raises(LeveError, match="expected a list"):
        exp_records.parse_exp_show({"rev": "workspace"})


# ----------------------------------------------------------------------------- labels


def test_labels_name_only_what_differs(records):
    chosen = [r for r in exp_records.select_records(records) if r.name.startswith("kd-")]
    assert exp_rows.differing_keys(chosen) == ["train.kd.eps"]
    labels = dict(zip((r.name for r in chosen), exp_rows.row_labels(chosen)))
    assert labels == {"kd-eps0.00": "ε=0 (no KD)", "kd-eps0.10": "ε=0.10", "kd-eps0.25": "ε=0.25",
                      "kd-eps0.50": "ε=0.50"}
    by_name = {r.name: r for r in records}
    mixed = [by_name["kd-eps0.25"], by_name["lcb-3x3"]]
    assert exp_rows.row_labels(mixed, model_labels=exp_rows.LCB_LABELS) == ["3x3+3x3, ε=0.25", "3x3, ε=0 (no KD)"]


def test_identical_params_get_the_experiment_name(records):
    one = next(r for r in records if r.name == "kd-eps0.25")
    twin = exp_records.Record(**{**one.__dict__, "name": "rerun"})
    other = next(r for r in records if r.name == "kd-eps0.10")
    assert exp_rows.row_labels([one, twin, other]) == ["ε=0.25 [kd-eps0.25]", "ε=0.25 [rerun]", "ε=0.10"]


def test_a_missing_param_counts_as_different(records):
    one = next(r for r in records if r.name == "kd-eps0.25")
    newer = exp_records.Record(**{**one.__dict__, "name": "ssi", "params": {**one.params, "train.kd.extra": 3.0}})
    assert exp_rows.differing_keys([one, newer]) == ["train.kd.extra"]
    as_float = exp_records.Record(**{**one.__dict__, "name": "float", "params": {**one.params, "train.epochs": 5.0}})
    assert one.params["train.epochs"] == 5 and exp_rows.differing_keys([one, as_float]) == []
    assert exp_rows.row_labels([one, newer]) == ["kd.extra=None", "kd.extra=3"]


# ----------------------------------------------------------------------------- tables


def test_kd_tables_carry_each_experiments_numbers(records):
    tables = exp_rows.build_tables(exp_records.select_records(records))
    for dataset, number in (("nyu", "9.6"), ("kitti", "9.7"), ("endoslam", "9.8")):
        t = table(tables, f"kd-{dataset}")
        assert t.title.startswith(f"Table {number}:")
        overall = [r for r in t.rows if r.group == "all" and not r.label.startswith("teacher")]
        assert [r.label for r in overall] == ["ε=0 (no KD)", "ε=0.10", "ε=0.25", "ε=0.50"]
        for row in overall:
            assert row.means["rmse"] == pytest.approx(expected_rmse("leve", row.record.eps, dataset))
            assert row.means["d1"] == pytest.approx(1 / (1 + row.means["rmse"]), abs=1e-6)
        assert t.rows[-1].label == "teacher tiny-random (lstsq-aligned)"


def test_endoslam_table_has_every_organ(records):
    t = table(exp_rows.build_tables(exp_records.select_records(records)), "kd-endoslam")
    organ_rows = [r for r in t.rows if r.group != "all"]
    assert len(organ_rows) == 4 * len(ORGANS)
    for row in organ_rows:
        i = ORGANS.index(row.group)
        assert row.means["rmse"] == pytest.approx(expected_rmse("leve", row.record.eps, "endoslam", i))


def test_ablation_tables_follow_the_thesis_rows(records):
    tables = exp_rows.build_tables(exp_records.select_records(records))
    expected = {"lcb": (["3x3", "3x3+1x1", "3x3+3x3", "5x5+5x5"], ["leve-3x3", "leve-3x3-1x1", "leve", "leve-5x5-5x5"]),
                "dw": (["3x3", "3x3-dw-separable"], ["leve-3x3", "leve-dw"]),
                "skips": (["main skips", "alternative skips", "no skips"], ["leve", "leve-alt-skips", "leve-no-skips"])}
    for key, (labels, models) in expected.items():
        t = table(tables, key)
        assert t.dataset == "nyu"  # train.dataset (synthetic) has no metrics here: the first thesis set
        assert [r.label for r in t.rows] == labels and [r.record.model for r in t.rows] == models
        for row in t.rows:
            assert row.record.eps == 0
            assert row.means["rmse"] == pytest.approx(expected_rmse(row.record.model, 0.0, "nyu"))
            assert row.bench["fps"] == FPS[row.record.model]
    assert exp_rows.build_tables(exp_records.select_records(records), dataset="kitti")[0].dataset == "kitti"


# the seeds' layouts: thesis Table 9.1 and seed 002 Table I, each run beside its model's published row
TABLE_9_1 = ["leve", "leve-mobilenetv3"]  # the registry's order
TABLE_I = ["densedepth-densenet169", "densedepth-densenet161", "densedepth-resnet50", "densedepth-mobilenetv2",
           "densedepth-resnet101"]  # seed 002's order


def printed(model: str, table: str, *columns: str) -> list[str]:
    """The cells of ``model``'s row in ``table`` as leve/models/published.csv prints them (read with the
    csv module, not through the registry): the numbers the report must show unchanged."""
    row = next(r for r in csv.DictReader(published_text().splitlines()) if (r["model"], r["table"]) == (model, table))
    return [row[c] for c in columns]


def _section(text, title):
    """The Markdown table lines (cells) and the text of the section ``### title``."""
    part = text.split(f"### {title}", 1)[1].split("\n### ", 1)[0]
    return table_lines(part), part


def test_table_9_1_pairs_each_run_with_the_thesis_row(records):
    t = table(exp_rows.build_tables(exp_records.select_records(records)), "encoders")
    assert t.title == "Table 9.1: encoders under Leve's decoder on nyu, no KD" and t.layout == "thesis-9.1"
    assert [(e.label, type(e).__name__) for e in exp_render.entries(t)] == [
        ("DDRNet-23-Slim", "Row"), ("DDRNet-23-Slim", "Published"), ("MobileNetV3", "Row"), ("MobileNetV3", "Published")]
    lines, part = _section(exp_render.markdown([t]), t.title)
    assert lines[0] == ["Encoder", "RMSE", "REL", "δ1", "δ2", "δ3", "Params (M)", "Inference (ms)", "FPS", "Source"]
    body = lines[2:]
    assert len(body) == 4
    for (run, published), model, experiment in zip((body[0:2], body[2:4]), TABLE_9_1,
                                                   ("kd-eps0.00", "encoders-mobilenetv3")):
        m = means(expected_rmse(model, 0.0, "nyu"))   # the run's own numbers, params and measured FPS
        assert run == [model_spec(model).result("9.1").row, *(f"{m[k]:.3f}" for k in ("rmse", "abs_rel", "d1", "d2", "d3")),
                       f"{PARAMS[model] / 1e6:.2f}", f"{1000 / FPS[model]:.1f}", f"{FPS[model]:.1f}", experiment]
        ref = model_spec(model).result("9.1")   # the registry's numbers, never retyped
        assert published == [ref.row, f"{ref.rmse:.3f}", f"{ref.rel:.3f}", f"{ref.d1:.3f}", f"{ref.d2:.3f}",
                             f"{ref.d3:.3f}", "–", f"{ref.latency_s * 1000:.1f}", f"{ref.fps:.1f}",
                             "published (thesis Table 9.1)"]
    assert body[1][1:6] == printed("leve", "9.1", "rmse", "rel", "d1", "d2", "d3")   # as printed
    assert body[3][-2] == f"{float(*printed('leve-mobilenetv3', '9.1', 'fps')):.1f}"
    assert "Published rows: thesis Table 9.1 (nyu test set, trained at 240x320; FPS on a GTX 1650 Ti" in part
    assert "`leve2024` does." in part and "These runs were scored" not in part   # the thesis's own protocol
    assert "Inference: `leve bench model` fp32 eager" in part


def test_seed_002_table_i_in_the_seeds_layout(records):
    t = table(exp_rows.build_tables(exp_records.select_records(records)), "encoders-seed002")
    assert t.layout == "seed-002" and [r.record.model for r in t.rows] == TABLE_I
    lines, part = _section(exp_render.markdown([t]), t.title)
    assert lines[0] == ["Method", "δ1", "δ2", "δ3", "REL", "RMS", "log10", "Source"]
    body = lines[2:]
    assert len(body) == 2 * len(TABLE_I)
    for i, model in enumerate(TABLE_I):
        run, published = body[2 * i], body[2 * i + 1]
        m = means(expected_rmse(model, 0.0, "nyu"))
        assert run == [model_spec(model).label, *(f"{m[k]:.3f}" for k in ("d1", "d2", "d3", "abs_rel", "rmse", "log10")),
                       f"encoders-{model}"]
        ref = model_spec(model).result("I", source=SEED_002)
        assert published == [ref.row, f"{ref.d1:.3f}", f"{ref.d2:.3f}", f"{ref.d3:.3f}", f"{ref.rel:.3f}",
                             f"{ref.rmse:.3f}", f"{ref.log10:.3f}", "published (seed 002 Table I)"]
    assert body[1] == [*printed("densedepth-densenet169", "I", "row", "d1", "d2", "d3", "rel", "rmse", "log10"),
                       "published (seed 002 Table I)"]
    assert "trained at 480x640), as leve's model registry records them; computed as leve's protocol `densedepth`" in part
    # the runs' own protocol, as recorded, and its aggregation (the fixture's documents predate the field: per image)
    assert ("_test split, protocol leve2024 (crop leve2024), alignment none, per-image means (BTS, monodepth2, "
            "the thesis code);") in part
    assert "These runs were scored under protocol `leve2024`: evaluate them with `eval.protocol: densedepth`" in part
    assert "Inference:" not in part and t.bench_note is None   # no speed columns in seed 002's layout


def test_runs_scored_under_densedepth_need_no_protocol_note(records):
    from leve.evaluation.protocols import get_protocol

    settings = get_protocol("densedepth", "nyu", 10.0).settings()
    pooled = [exp_records.Record(**{**r.__dict__, "evals": {d: {**doc, "protocol": settings} for d, doc in r.evals.items()}})
              for r in exp_records.select_records(records)]
    t = table(exp_rows.build_tables(pooled), "encoders-seed002")
    _, part = _section(exp_render.markdown([t]), t.title)
    assert ("_test split, protocol densedepth (crop leve2024), alignment none, metrics pooled over every pixel of the "
            "split (DenseDepth);") in part
    assert "These runs were scored" not in part


def test_encoder_tables_in_the_csv(records):
    tables = [t for t in exp_rows.build_tables(exp_records.select_records(records)) if t.key.startswith("encoders")]
    rows = exp_render.csv_rows(tables)
    published = [r for r in rows if r["kind"] == "published"]
    assert [r["model"] for r in published] == TABLE_9_1 + TABLE_I
    for r in published:
        ref = next(x for x in model_spec(r["model"]).results if x.citation == r["reference"])
        assert (r["rmse"], r["abs_rel"], r["d1"], r["d2"], r["d3"], r["log10"], r["fps"]) == (
            ref.rmse, ref.rel, ref.d1, ref.d2, ref.d3, ref.log10, ref.fps)
    runs = [r for r in rows if r["kind"] == "experiment"]
    assert [(r["model"], r["params"], r["fps"]) for r in runs] == [(m, PARAMS[m], FPS[m]) for m in TABLE_9_1 + TABLE_I]


def test_encoder_tables_need_two_models_and_show_published_rows_only_on_their_dataset(records):
    chosen = exp_records.select_records(records)
    one = [r for r in chosen if r.model != "leve-mobilenetv3"]
    assert "encoders" not in [t.key for t in exp_rows.build_tables(one)]
    kitti = table(exp_rows.build_tables(chosen, dataset="kitti"), "encoders-seed002")
    assert kitti.rows and kitti.published == () and kitti.notes == ()   # the papers printed NYU figures only
    assert kitti.rows[0].means["rmse"] == pytest.approx(expected_rmse(TABLE_I[0], 0.0, "kitti"))


def test_tables_need_two_comparable_rows(records):
    kd_only = [r for r in exp_records.select_records(records) if r.name.startswith("kd-")]
    keys = [t.key for t in exp_rows.build_tables(kd_only)]
    assert keys == ["kd-nyu", "kd-kitti", "kd-endoslam", "all-nyu", "all-kitti", "all-endoslam"]
    single = [r for r in kd_only if r.name == "kd-eps0.25"]
    assert [t.key for t in exp_rows.build_tables(single)] == ["all-nyu", "all-kitti", "all-endoslam"]


def test_markdown_and_csv(records, tmp_path):
    chosen = exp_records.select_records(records)
    tables = exp_rows.build_tables(chosen)
    text = exp_render.markdown(tables, exp_records.pending(records), "fixture")
    rmse = expected_rmse("leve", 0.1, "nyu")
    lines = table_lines(text)
    assert ["ε=0.10", f"{rmse:.3f}", f"{rmse / 4:.3f}", f"{1 / (1 + rmse):.3f}"] in [c[:4] for c in lines]
    assert ["Model", "Organ", "RMSE", "REL", "δ1", "δ2", "δ3", "ρ", "Experiment"] in lines
    assert ["Model", "RMSE", "REL", "δ1", "δ2", "δ3", "ρ", "Inference (ms)", "FPS", "Experiment"] in lines
    assert all(c and set(c) <= {"-"} for c in lines[1])  # the header's separator line
    assert "later-kd-eps0.50 (queued)" in text and "broken (failed)" in text
    rows = exp_render.csv_rows(tables)
    assert len(rows) == sum(len(t.rows) + len(t.published) for t in tables)
    from leve.report.tables import write_csv

    path = write_csv(tmp_path / "e.csv", rows, exp_render.CSV_FIELDS)
    back = list(csv.DictReader(path.open()))
    row = next(r for r in back if r["table"] == "kd-kitti" and r["experiment"] == "kd-eps0.50")
    assert float(row["rmse"]) == pytest.approx(expected_rmse("leve", 0.5, "kitti"))
    assert row["label"] == "ε=0.50" and row["rev"] and row["group"] == "all"


# ----------------------------------------------------------------------------- grid


def test_kd_grid_commands():
    assert [g.format_command(c) for c in g.queue_commands(g.grid("kd"))] == [
        "dvc exp run --queue -n kd-eps0.00 -S train.model=leve -S train.kd.eps=0",
        "dvc exp run --queue -n kd-eps0.10 -S train.model=leve -S train.kd.eps=0.1",
        "dvc exp run --queue -n kd-eps0.25 -S train.model=leve -S train.kd.eps=0.25",
        "dvc exp run --queue -n kd-eps0.50 -S train.model=leve -S train.kd.eps=0.5"]


def test_all_grid_has_each_configuration_once():
    points = g.grid("all")
    assert [p.name for p in points] == GRID_NAMES_ALL + GRID_NAMES_ENCODERS
    assert len({p.params for p in points}) == len(points)
    models = {dict(p.params)["train.model"] for p in points}
    from leve.models.registry import list_models

    assert models == set(list_models())
    with pytest.raises(LeveError, match="unknown grid 'lbc'"):
        g.grid("lbc")


def test_dry_run_prints_the_commands(run_cli, tmp_path):
    res = run_cli("experiments", "queue", "--grid", "skips", "--set", "train.epochs=20", "--target",
                  "eval@nyu", "--prefix", "r2-", "--run", "-j", "2", "--dry-run", "--repo", tmp_path)
    assert res.code == 0, res.stderr
    assert res.stdout.splitlines() == [
        "dvc exp run --queue -n r2-skips-main -S train.model=leve -S train.kd.eps=0 -S train.epochs=20 eval@nyu",
        "dvc exp run --queue -n r2-skips-alt -S train.model=leve-alt-skips -S train.kd.eps=0 -S train.epochs=20 eval@nyu",
        "dvc exp run --queue -n r2-skips-none -S train.model=leve-no-skips -S train.kd.eps=0 -S train.epochs=20 eval@nyu",
        "dvc exp run --run-all --jobs 2"]
    assert not list(tmp_path.iterdir())


def test_queue_errors_are_one_line(run_cli, tmp_path):
    res = run_cli("experiments", "queue", "--grid", "kd", "--set", "epochs", "--dry-run")
    assert res.code == 1 and res.stderr.strip().startswith("error: --set expects key=value")
    res = run_cli("experiments", "queue", "--grid", "kd", "--repo", tmp_path)
    assert res.code == 1 and res.stderr.strip() == f"error: {tmp_path.resolve()}: not a DVC repository (no .dvc/); " \
                                                     "run inside the project or `dvc init`"


# ----------------------------------------------------------------------------- CLI


def test_report_cli_from_saved_json(run_cli, tmp_path):
    res = run_cli("report", "--from-json", FIXTURE, "--repo", tmp_path)
    assert res.code == 0, res.stderr
    md, table_csv = tmp_path / "reports/experiments.md", tmp_path / "reports/experiments.csv"
    assert md.read_text() + "\n" in res.stdout and "### Table 9.8:" in res.stdout
    assert f"wrote {md} and {table_csv} (16 runs, 11 tables)" in res.stdout
    assert "### Table 9.1: encoders under Leve's decoder on nyu, no KD" in res.stdout
    assert "### Seed 002 Table I: DenseDepth on ImageNet encoders on nyu, no KD" in res.stdout
    assert next(csv.reader(table_csv.open())) == list(exp_render.CSV_FIELDS)


def test_report_cli_errors(run_cli, tmp_path):
    res = run_cli("report", "--repo", tmp_path)
    assert res.code == 1
    assert res.stderr.strip() == f"error: {tmp_path.resolve()}: not a DVC repository (no .dvc/); run `leve report` in the project"
    res = run_cli("report", "--from-json", tmp_path / "missing.json")
    assert res.code == 1 and res.stderr.strip().startswith(f"error: {tmp_path / 'missing.json'}: cannot read")
    empty = tmp_path / "empty.json"
    empty.write_text(json.dumps(json.loads(FIXTURE.read_text())[:2][:1]))
    res = run_cli("report", "--from-json", empty, "--repo", tmp_path)
    assert res.code == 1 and "no experiment (and not the workspace) has evaluation metrics" in res.stderr
    assert not (tmp_path / "reports").exists()


def test_a_failing_dvc_exp_show_is_one_line(run_cli, tmp_path):
    """`dvc exp show --json` runs as leve's own `python -m dvc`; its failure is dvc's error line."""
    assert exp_dvc.exp_show_command(True)[1:] == ["-m", "dvc", "exp", "show", "--json", "--all-commits"]
    (tmp_path / ".dvc").mkdir()   # a .dvc folder but no git repository: dvc refuses
    res = run_cli("report", "--repo", tmp_path)
    assert res.code == 1 and not (tmp_path / "reports").exists()
    assert re.fullmatch(rf"error: {re.escape(str(tmp_path.resolve()))}: `dvc exp show --json` failed \(exit status \d+\): "
                        r"ERROR: .* is not a git repository", res.stderr.strip())


# ----------------------------------------------------------------------------- end to end


@pytest.mark.slow
def test_queue_run_and_report_in_a_real_dvc_repo(run_cli, tmp_path, monkeypatch):
    """`leve experiments queue --grid kd --run` in a git + DVC repo with fake stages, then `leve report`."""
    from tests.report.exp_repo import dvc_env, make_repo, sh

    repo = make_repo(tmp_path / "proj", datasets=("synthetic",))
    for key, value in dvc_env().items():
        monkeypatch.setenv(key, value)
    res = run_cli("experiments", "queue", "--grid", "kd", "--run", "--repo", repo)
    assert res.code == 0, res.stderr
    assert "$ dvc exp run --queue -n kd-eps0.25 -S train.model=leve -S train.kd.eps=0.25" in res.stderr
    assert "kd-eps0.50" in sh(["dvc", "exp", "list", "--name-only"], repo)
    res = run_cli("report", "--repo", repo)
    assert res.code == 0, res.stderr
    kd = [row for row in table_lines(res.stdout) if row[0].startswith("ε=")]
    assert [row[0] for row in kd[:4]] == ["ε=0 (no KD)", "ε=0.10", "ε=0.25", "ε=0.50"]
    for row, eps in zip(kd, (0.0, 0.1, 0.25, 0.5)):
        assert row[1] == f"{expected_rmse('leve', eps, 'synthetic'):.3f}"
    assert "knowledge distillation ε, Leve 3x3+3x3 on synthetic" in res.stdout
    assert os.path.exists(repo / "reports/experiments.csv")
    # a second seed of ε = 0.50, queued as `--seeds 2` names it: its row becomes the mean ± sd of the two seeds
    second = g.queue_commands(g.with_seeds(g.grid("kd")[-1:], 2)[1:])
    assert g.format_command(second[0]).endswith("-n kd-eps0.50-seed1 -S train.model=leve -S train.kd.eps=0.5 -S train.seed=1")
    sh([arg for arg in second[0] if arg != "--queue"], repo)   # run at once: one dvc process, not a queue worker
    res = run_cli("report", "--repo", repo)
    assert res.code == 0, res.stderr
    rows = {row[0]: row for row in table_lines(res.stdout) if row[0].startswith("ε=")}
    values = [expected_rmse("leve", 0.5, "synthetic") + SEED_STEP * k for k in (0, 1)]
    assert f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f} [" in rows["ε=0.50"][1]
    assert rows["ε=0.50"][-2:] == ["2", "kd-eps0.50+kd-eps0.50-seed1"] and rows["ε=0.10"][-2] == "1"


@pytest.mark.slow
def test_encoders_grid_and_report_in_a_real_dvc_repo(run_cli, tmp_path, monkeypatch):
    """`leve experiments queue --grid encoders --run` in a git + DVC repo with fake stages (NYU metrics,
    the published rows' dataset), then `leve report`: thesis Table 9.1 and seed 002's Table I in their
    layouts, each run beside its model's published row."""
    from tests.report.exp_repo import dvc_env, make_repo

    repo = make_repo(tmp_path / "proj", datasets=("nyu",))
    for key, value in dvc_env().items():
        monkeypatch.setenv(key, value)
    res = run_cli("experiments", "queue", "--grid", "encoders", "--run", "--repo", repo)
    assert res.code == 0, res.stderr
    assert ("$ dvc exp run --queue -n encoders-densedepth-resnet101 -S train.model=densedepth-resnet101 "
            "-S train.kd.eps=0 -S 'train.resolution=[480,640]'") in res.stderr
    # every experiment ran, with the training resolution of its published figures set through -S
    done = {r.name: r for r in exp_records.select_records(exp_records.parse_exp_show(exp_dvc.exp_show_json(repo)))}
    assert sorted(done) == sorted(["encoders-ddrnet23s", *GRID_NAMES_ENCODERS])
    assert {n: (r.model, r.params["train.resolution"]) for n, r in done.items()} == {
        "encoders-ddrnet23s": ("leve", [120, 160]), "encoders-mobilenetv3": ("leve-mobilenetv3", [240, 320]),
        **{f"encoders-{m}": (m, [480, 640]) for m in TABLE_I}}

    res = run_cli("report", "--repo", repo)
    assert res.code == 0, res.stderr
    assert (repo / "reports/experiments.md").read_text() + "\n" in res.stdout

    # thesis Table 9.1: Encoder | RMSE REL δ1 δ2 δ3 | Params (M) | Inference (ms) | FPS | Source
    lines, part = _section(res.stdout, "Table 9.1: encoders under Leve's decoder on nyu, no KD")
    assert lines[0] == ["Encoder", "RMSE", "REL", "δ1", "δ2", "δ3", "Params (M)", "Inference (ms)", "FPS", "Source"]
    body = lines[2:]
    assert [row[0] for row in body] == ["DDRNet-23-Slim"] * 2 + ["MobileNetV3"] * 2
    for (run, published), model, experiment in zip((body[0:2], body[2:4]), TABLE_9_1,
                                                   ("encoders-ddrnet23s", "encoders-mobilenetv3")):
        rmse = MODEL_BASE[model]   # the fake eval's formula at ε = 0 on nyu (offset 0), seed 0
        expected = [rmse, rmse / 4, 1 / (1 + rmse), 1 / (1 + rmse / 2), 1 / (1 + rmse / 4)]
        assert run[1:6] == [f"{round(v, 6):.3f}" for v in expected]   # the JSON holds 6 decimals
        assert run[6:] == [f"{PARAMS[model] / 1e6:.2f}", f"{1000 / FPS[model]:.1f}", f"{FPS[model]:.1f}", experiment]
        ref = model_spec(model).result("9.1")
        assert published == [ref.row, f"{ref.rmse:.3f}", f"{ref.rel:.3f}", f"{ref.d1:.3f}", f"{ref.d2:.3f}",
                             f"{ref.d3:.3f}", "–", f"{ref.latency_s * 1000:.1f}", f"{ref.fps:.1f}",
                             "published (thesis Table 9.1)"]
    # as the thesis printed them (Table 9.1), and the fake runs' numbers worked out by hand
    for i, model in ((1, "leve"), (3, "leve-mobilenetv3")):
        latency_s, fps = map(float, printed(model, "9.1", "latency_s", "fps"))
        assert body[i][1:] == [*printed(model, "9.1", "rmse", "rel", "d1", "d2", "d3"), "–", f"{latency_s * 1000:.1f}",
                               f"{fps:.1f}", "published (thesis Table 9.1)"]
    assert body[0][1:6] == ["0.500", "0.125", "0.667", "0.800", "0.889"]
    assert "Inference: `leve bench model` fp32 eager, batch 1, on this machine" in part
    assert "These runs were scored" not in part   # leve2024 is the thesis's own protocol

    # seed 002 Table I: Method | δ1 δ2 δ3 REL RMS log10 | Source (no speed columns)
    lines, part = _section(res.stdout, "Seed 002 Table I: DenseDepth on ImageNet encoders on nyu, no KD")
    assert lines[0] == ["Method", "δ1", "δ2", "δ3", "REL", "RMS", "log10", "Source"]
    body = lines[2:]
    assert len(body) == 2 * len(TABLE_I)
    for i, model in enumerate(TABLE_I):
        run, published = body[2 * i], body[2 * i + 1]
        ref = model_spec(model).result("I", source=SEED_002)
        rmse = MODEL_BASE[model]
        expected = [1 / (1 + rmse), 1 / (1 + rmse / 2), 1 / (1 + rmse / 4), rmse / 4, rmse, rmse / 10]
        assert run == [ref.row, *(f"{round(v, 6):.3f}" for v in expected), f"encoders-{model}"]
        assert published == [ref.row, f"{ref.d1:.3f}", f"{ref.d2:.3f}", f"{ref.d3:.3f}", f"{ref.rel:.3f}",
                             f"{ref.rmse:.3f}", f"{ref.log10:.3f}", "published (seed 002 Table I)"]
    assert [row[0] for row in body[::2]] == ["DenseNet-169", "DenseNet-161", "ResNet-50", "MobileNetV2", "ResNet-101"]
    # seed 002's printed DenseNet-169 and ResNet-101 rows, and the fake DenseNet-169 run (RMSE 0.48) by hand
    for i, model in ((1, "densedepth-densenet169"), (9, "densedepth-resnet101")):
        assert body[i][1:7] == printed(model, "I", "d1", "d2", "d3", "rel", "rmse", "log10")
    assert body[0][1:7] == ["0.676", "0.806", "0.893", "0.120", "0.480", "0.048"]
    assert "These runs were scored under protocol `leve2024`: evaluate them with `eval.protocol: densedepth`" in part
    assert "Inference:" not in part

    rows = list(csv.DictReader((repo / "reports/experiments.csv").open()))
    published = [(r["table"], r["model"]) for r in rows if r["kind"] == "published"]
    assert published == [("encoders", m) for m in TABLE_9_1] + [("encoders-seed002", m) for m in TABLE_I]
