"""``leve eval`` end to end on the tiny workspace, and `dvc metrics diff` across two commits."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from leve.metrics import METRIC_KEYS

REPO = Path(__file__).resolve().parents[2]


def test_eval_writes_metrics_reports_and_figures(workspace, run_cli):
    res = run_cli("eval", "--dataset", "synthetic", "--quiet")
    assert res.code == 0, res.stderr
    doc = json.loads(Path("metrics/synthetic.json").read_text())
    assert doc["protocol"]["name"] == "leve2024" and doc["protocol"]["flip"] == "separate"
    assert doc["student"]["count"] == 8 and doc["teacher"]["count"] == 4   # 2N student samples
    assert set(METRIC_KEYS) <= set(doc["student"])
    assert doc["teacher_source"]["model"] == "tiny-random"
    with open("reports/synthetic/per_image.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 20   # per image: 2 student samples, 2 constant-predictor samples, 1 teacher map
    student = [float(r["rmse"]) for r in rows if r["model"] == "student"]
    assert np.mean(student) == pytest.approx(doc["student"]["rmse"], rel=1e-4)   # mean of per-image
    assert run_cli("tables").code == 0   # the combined table is the `tables` stage's, from metrics/*.json
    table = Path("reports/metrics.md").read_text()
    header = ["Model", "RMSE", "REL", "δ1", "δ2", "δ3", "ρ", "Fits s ≤ 0", "Samples"]  # cells: tabulate pads them
    assert header in [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()]
    assert "teacher tiny-random (lstsq)†" in table   # scored under another alignment than the student: marked
    assert "constant baseline (train median" in table
    assert f"{doc['student']['rmse']:.3f}" in table
    grid = np.asarray(Image.open("reports/synthetic/examples.png"))
    assert grid.shape[0] > 4 * 100 and grid.shape[1] > 4 * 100   # 4 rows of RGB | GT | student | teacher
    with open("reports/synthetic/error_vs_depth.csv") as fh:
        bins = list(csv.DictReader(fh))
    assert len(bins) == 20 and sum(int(b["student_pixels"]) for b in bins) == 4 * 48 * 64


def test_standard_protocol_options_are_recorded(workspace, run_cli):
    res = run_cli("eval", "--dataset", "synthetic", "--protocol", "standard", "--align", "median",
                  "--no-teacher", "--set", "batch_size=3", "--quiet")
    assert res.code == 0, res.stderr
    doc = json.loads(Path("metrics/synthetic.json").read_text())
    assert doc["protocol"]["align"] == "median" and doc["protocol"]["valid_mask"] is True
    assert doc["student"]["count"] == 4 and "teacher" not in doc


def test_densedepth_protocol_records_pooled_aggregation(workspace, run_cli):
    res = run_cli("eval", "--dataset", "synthetic", "--protocol", "densedepth", "--quiet")
    assert res.code == 0, res.stderr
    doc = json.loads(Path("metrics/synthetic.json").read_text())
    assert doc["protocol"]["name"] == "densedepth" and doc["protocol"]["aggregation"] == "pooled"
    assert (doc["protocol"]["flip"], doc["protocol"]["rel_denominator"]) == ("average", "pred")
    assert doc["student"]["count"] == 4 and doc["teacher"]["count"] == 4
    assert doc["student"]["pixels"] == doc["teacher"]["pixels"] == 4 * 48 * 64   # synthetic depth is dense
    with open("reports/synthetic/per_image.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["model"] == "student"]
    assert len(rows) == 4 and "pixels" not in rows[0]   # per-image rows stay per image
    table = Path("reports/synthetic/metrics.md").read_text()
    assert "densedepth (crop full, pooled over pixels)" in table and table.count("Metrics pooled over every pixel") == 1
    res = run_cli("eval", "--dataset", "synthetic", "--no-teacher", "--quiet")   # the default: leve2024, per image
    doc = json.loads(Path("metrics/synthetic.json").read_text())
    assert doc["protocol"]["aggregation"] == "per_image" and "pixels" not in doc["student"]


def test_params_section_and_per_dataset_overrides(workspace, run_cli):
    Path("params.yaml").write_text(yaml.safe_dump(
        {"eval": {"protocol": "standard", "teacher": False, "datasets": {"synthetic": {"align": "lstsq"}}}}))
    assert run_cli("eval", "--dataset", "synthetic", "--quiet").code == 0
    doc = json.loads(Path("metrics/synthetic.json").read_text())
    assert (doc["protocol"]["name"], doc["protocol"]["align"]) == ("standard", "lstsq")


@pytest.mark.parametrize("args, message", [
    (["--checkpoint", "missing.pt"], "missing.pt: checkpoint not found"),
    (["--protocol", "eigen"], "unknown protocol 'eigen'"),
    (["--set", "colour=red"], "eval: unknown parameter(s) colour"),
    (["--dataset", "nyu"], "data/zarr/nyu.zarr: no store here"),
    (["--split", "holdout"], "no split 'holdout'"),
])
def test_bad_input_is_one_line_and_writes_nothing(workspace, run_cli, args, message):
    res = run_cli("eval", "--quiet", *(["--dataset", "synthetic"] if "--dataset" not in args else []), *args)
    assert res.code == 1
    assert message in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not Path("metrics").exists()


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"{cmd}: {done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_dvc_repro_and_metrics_diff_across_two_commits(workspace):
    """dvc repro runs the real eval stage; a params change and a second repro give a commit
    whose `dvc metrics diff` lists the changed keys."""
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PYTHONPATH": str(REPO), "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}",
           "DVC_NO_ANALYTICS": "1", "PYTHONWARNINGS": "ignore"}
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    stage = stages["eval"]
    stage["foreach"] = ["synthetic"]
    stage["do"]["deps"] = [d for d in stage["do"]["deps"] if not d.startswith("leve/")]  # code is not here
    Path("dvc.yaml").write_text(yaml.safe_dump({"stages": {"eval": stage}}))
    params = yaml.safe_load((REPO / "params.yaml").read_text())["eval"]  # the stage lists each key of it
    Path("params.yaml").write_text(yaml.safe_dump({"eval": {**params, "protocol": "leve2024"}}))
    Path(".gitignore").write_text("/data\n/models\n")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    _run(["git", "init", "-q"], workspace, env)
    _run([str(bindir / "dvc"), "init", "-q"], workspace, env)
    _run([str(bindir / "dvc"), "config", "core.analytics", "false"], workspace, env)
    _run([str(bindir / "dvc"), "repro", "-q"], workspace, env)
    first = json.loads(Path("metrics/synthetic.json").read_text())
    _run(git + ["add", "-A"], workspace, env)
    _run(git + ["commit", "-qm", "leve2024"], workspace, env)
    Path("params.yaml").write_text(yaml.safe_dump({"eval": {**params, "protocol": "standard", "align": "lstsq"}}))
    _run([str(bindir / "dvc"), "repro", "-q"], workspace, env)
    _run(git + ["commit", "-qam", "standard lstsq"], workspace, env)
    diff = json.loads(_run([str(bindir / "dvc"), "metrics", "diff", "HEAD~1", "--json"], workspace, env))
    changed = diff["metrics/synthetic.json"]
    assert {"student.rmse", "student.abs_rel", "student.count"} <= set(changed)
    assert changed["student.count"] == {"old": 8, "new": 4, "diff": -4}
    assert changed["student.rmse"]["old"] == first["student"]["rmse"]
    text = _run([str(bindir / "dvc"), "metrics", "diff", "HEAD~1"], workspace, env)
    assert "student.rmse" in text
