"""``leve bench gpu``: the whole command on tiny sizes (CPU), sections that fail or overrun are
recorded rather than fatal, and the plan's overrides are checked."""

from __future__ import annotations

import json
import time

import pytest
import torch

from leve.bench.gpu import plan_from, run_section
from leve.errors import LeveError
from leve.params import parse_overrides

CPU = torch.device("cpu")


def test_a_failing_section_records_its_error():
    def boom(deadline: float) -> dict:
        raise ValueError("boom")

    result = run_section(boom, budget=5, grace=5, dev=CPU)
    assert result["error"] == "ValueError: boom" and "boom" in result["where"]
    assert result["seconds"] < 5 and result["budget_s"] == 5 and result["peak_gpu_memory_gb"] is None


def test_a_section_past_its_budget_and_grace_is_interrupted():
    seen = {}

    def slow(deadline: float) -> dict:
        seen["deadline_in"] = deadline - time.monotonic()
        time.sleep(30)
        return {"finished": True}

    t0 = time.monotonic()
    result = run_section(slow, budget=0.2, grace=0.3, dev=CPU)
    assert time.monotonic() - t0 < 30 and "finished" not in result  # interrupted: it did not sleep its 30 s
    assert result["error"].startswith("SectionTimeout: interrupted after")
    assert seen["deadline_in"] <= 0.2  # the soft deadline the section's loops see (already past if the start was slow)


def test_plan_overrides_are_parsed_and_checked():
    plan = plan_from(parse_overrides(["train_sizes=[[240,320]]", "infer_batches=[1,8]"]), tiny=True)
    assert plan.train_sizes == ((240, 320),) and plan.infer_batches == (1, 8) and plan.teacher == "tiny-random"
    with pytest.raises(LeveError, match="unknown parameter"):
        plan_from(parse_overrides(["nope=1"]))
    with pytest.raises(LeveError, match="train_steps"):
        plan_from(parse_overrides(["train_steps=0"]))


def _check_report(data: dict, cuda: bool) -> None:
    for section in ("store", "teacher_cache", "train", "inference"):
        assert "error" not in data[section], data[section]
        assert data[section]["seconds"] > 0
    assert data["store"]["images"] == 4 and data["store"]["size"] == [128, 192]
    for row in data["teacher_cache"]["amps"].values():
        if "cache_path" in row:
            c = row["cache_path"]
            assert c["images"] == 4 and c["images_per_s"] == pytest.approx(4 / c["seconds"], rel=0.02)
    train = data["train"]
    assert set(train["cases"]) == {"64x96/plain", "64x96/kd"}
    for case in train["cases"].values():
        assert case["gpu_waited_for_data"] == (case["samples_per_s"] < 0.9 * case["step_samples_per_s"])
        assert 0 <= case["host_wait_fraction"] <= 1 and case["steps"] == {"step": 2, "loader": 2, "loop": 2}
    plain, kd = train["cases"]["64x96/plain"]["samples_per_s"], train["cases"]["64x96/kd"]["samples_per_s"]
    assert train["kd_over_plain_samples_per_s"]["64x96"] == pytest.approx(kd / plain, abs=2e-3)
    model = data["inference"]["models"]["leve-mobilenetv3"]
    for batch in (1, 2):
        row = model[f"batch{batch}"]
        for mode in ("eager", "torch"):
            assert row[mode]["fps"] == pytest.approx(1000 * batch / row[mode]["median_ms"], rel=0.01)
        assert row["torch"]["check"]["relative"] < (1e-2 if cuda else 1e-4)
    assert data["goals"]["evaluated"] is cuda


@pytest.mark.slow
def test_bench_gpu_tiny_on_cpu(run_cli, tmp_path):
    out = tmp_path / "gpu.json"
    res = run_cli("bench", "gpu", "--tiny", "--device", "cpu", "--models", "leve-mobilenetv3",
                  "--set", "train_sizes=[[64,96]]", "--out", out)
    assert res.code == 0, res.stderr
    data = json.loads(out.read_text())
    assert data == json.loads(res.stdout)
    _check_report(data, cuda=False)
    amps = data["teacher_cache"]["amps"]
    assert amps["float16"] == amps["bfloat16"] == {"skipped": "autocast needs CUDA (ran float32 on the CPU)"}
    assert data["peak_gpu_memory_gb"] is None
    assert data["inference"]["models"]["leve-mobilenetv3"]["compiled"] == {"skipped": "compile off"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_bench_gpu_tiny_on_cuda(run_cli, tmp_path):
    res = run_cli("bench", "gpu", "--tiny", "--device", "cuda", "--models", "leve-mobilenetv3",
                  "--set", "train_sizes=[[64,96]]")
    assert res.code == 0, res.stderr
    data = json.loads(res.stdout)
    _check_report(data, cuda=True)
    for amp in ("float16", "bfloat16"):
        assert data["teacher_cache"]["amps"][amp]["forward"]["images_per_s"] > 0
    assert data["peak_gpu_memory_gb"] > 0
