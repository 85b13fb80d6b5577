"""``leve bench train`` runs the three step variants side by side and reports consistent figures."""

from __future__ import annotations

import json

import pytest


@pytest.mark.slow
def test_bench_train_cli_json(run_cli, tmp_path):
    out = tmp_path / "bench.json"
    res = run_cli("bench", "train", "--steps", "1", "--batch-size", "2", "--height", "64", "--width", "64",
                  "--workers", "0", "--out", out)
    assert res.code == 0, res.stderr
    data = json.loads(out.read_text())
    assert data == json.loads(res.stdout)
    secs = data["seconds_per_step"]
    assert set(secs) == {"plain", "kd_cache", "kd_online"} and all(v > 0 for v in secs.values())
    assert all(len(v) == 1 and v[0] == pytest.approx(secs[k], abs=1e-3) for k, v in data["all_step_seconds"].items())
    assert data["ratio_kd_cache_over_plain"] == pytest.approx(secs["kd_cache"] / secs["plain"], rel=1e-2)
    assert data["ratio_kd_online_over_plain"] == pytest.approx(secs["kd_online"] / secs["plain"], rel=1e-2)
    assert data["samples_per_s"]["plain"] == pytest.approx(2 / secs["plain"], rel=1e-2)
    loader = data["loader"]
    if loader["loader_samples_per_s"] != loader["model_samples_per_s"]:  # equal once rounded: either answer is right
        assert loader["model_waits_for_data"] == (loader["loader_samples_per_s"] < loader["model_samples_per_s"])
    assert loader["loader_samples_per_s_per_worker"] == loader["loader_samples_per_s"]  # no workers: one loader
    assert loader["loader_samples_per_cpu_s"] > 0 and loader["decode"] == "full"
    assert loader["shared_over_collate"] == pytest.approx(
        loader["loader_samples_per_cpu_s"] / loader["collate_samples_per_cpu_s"], rel=1e-2)
    assert loader["train_over_before"] == pytest.approx(
        loader["loader_samples_per_cpu_s"] / loader["before_samples_per_cpu_s"], rel=1e-2)
    assert "8 bits" in data["loader_store"]
    assert loader["main_cpu_ms_per_sample"] > 0 and loader["collate_main_cpu_ms_per_sample"] > 0
    assert loader["device_over_worker_targets"] == pytest.approx(
        loader["loader_samples_per_cpu_s"] / loader["worker_targets_samples_per_cpu_s"], rel=1e-2)
    parts = loader["worker_ms_per_sample"]
    assert set(parts) >= {"read_rgb", "resize_rgb_uint8", "read_depth", "sample_into_batch", "torch_collate",
                          "finish_on_device"}
    assert all(v >= 0 for v in parts.values())  # CPU ms of separately timed parts: no order between them is asserted
    jpeg = data["loader_jpeg_store"]
    rates = jpeg["samples_per_cpu_s"]
    assert set(rates) == {"full", "draft"} and all(v > 0 for v in rates.values())
    assert jpeg["draft_over_full"] == pytest.approx(rates["draft"] / rates["full"], rel=1e-2)
