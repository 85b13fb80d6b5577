"""End to end: `leve demo` in a temporary folder, then what DVC says about the result."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from leve.pipeline.demo import Demo, run_demo


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Demo:
    # the whole story on a smaller sample (`make demo` runs it at full size on every fresh clone)
    quick = {"prepare.synthetic.train": 24, "prepare.synthetic.val": 4, "prepare.synthetic.test": 4,
             "prepare.synthetic.height": 64, "prepare.synthetic.width": 96, "train.resolution": [64, 96],
             "train.max_steps": 6, "bench.model.resolution": "64x96", "bench.model.warmup": 1,
             "bench.model.repeats": 2}
    return run_demo(tmp_path_factory.mktemp("demo") / "ws", quiet=True, overrides=quick)


@pytest.mark.slow
def test_demo_outputs_and_metrics_diff(demo):
    ws = demo.workspace
    metrics = json.loads((ws / "metrics/synthetic.json").read_text())
    assert metrics["protocol"]["name"] == "leve2024" and metrics["student"]["count"] > 0
    for path in ("reports/metrics.md", "reports/synthetic/examples.png", "reports/plots/index.html",
                 "models/student/best.pt", "dvclive/train/metrics.json", "metrics/bench_model.json"):
        assert (ws / path).is_file(), path
    diff = demo.run("dvc", "metrics", "diff", "--json", capture=True)
    changed = json.loads(diff)["metrics/synthetic.json"]
    assert "student.rmse" in changed and changed["student.rmse"]["diff"] != 0
    exps = json.loads(demo.run("dvc", "exp", "show", "--json", capture=True))
    assert any(e.get("experiments") for e in exps), "the second run is a DVC experiment"
    # the story: the committed baseline trains without the teacher, the experiment distils it
    baseline = yaml.safe_load(demo.run("git", "show", "HEAD:params.yaml", capture=True))["train"]
    assert baseline["kd"]["eps"] == 0 and yaml.safe_load((ws / "params.yaml").read_text())["train"]["kd"]["eps"] > 0
    assert "(lstsq-aligned)" in demo.run("leve", "report", capture=True)  # the aligned teacher row
    assert set(demo.timings) >= {"workspace", "baseline", "experiment", "total"}


def _changed_stages(status: str) -> set[str]:
    return {m for m in re.findall(r"^(\S+):$", status, flags=re.M)}


@pytest.mark.slow
def test_dvc_status_up_to_date_then_only_train_and_eval_change(demo):
    assert "up to date" in demo.run("dvc", "status", capture=True)
    params = demo.workspace / "params.yaml"
    original = params.read_text()
    try:
        epochs = yaml.safe_load(original)["train"]["epochs"]
        params.write_text(original.replace(f"  epochs: {epochs}\n", f"  epochs: {epochs + 1}\n", 1))
        assert _changed_stages(demo.run("dvc", "status", capture=True)) == {"train"}
        dry = demo.run("dvc", "repro", "--dry", capture=True)  # (eval reruns once train has changed best.pt)
        assert "Running stage 'train'" in dry
        assert "Stage 'prepare@synthetic' didn't change" in dry and "Stage 'teacher@synthetic' didn't change" in dry
    finally:
        params.write_text(original)
    code = demo.workspace / "leve/datasets/synthetic.py"
    source = code.read_text()
    try:
        code.write_text(source + "\n# edited\n")
        # bench-model too: its int8 mode renders the same rooms when it has no store to calibrate and score on
        assert _changed_stages(demo.run("dvc", "status", capture=True)) == {"prepare@synthetic", "bench-model"}
    finally:
        code.write_text(source)
