"""``leve bench model``: JSON with params, MACs (checked by hand for a conv net) and timings."""

from __future__ import annotations

import json

import torch
from torch import nn

from leve.bench.model import count_macs


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.conv(x).mean((2, 3)))


def test_macs_match_closed_form():
    # conv: H*W*Cout*Cin*k*k ; linear: in*out
    assert count_macs(Tiny(), torch.rand(1, 3, 10, 12)) == 10 * 12 * 8 * 3 * 9 + 8 * 4


def test_bench_model_cli(tmp_path, run_cli):
    out = tmp_path / "metrics" / "bench.json"
    res = run_cli("bench", "model", "--models", "leve,leve-no-skips", "--resolution", "64x96", "--repeats", "2",
                   "--warmup", "1", "--modes", "eager", "--modes", "channels_last", "--out", out,
                   "--params", tmp_path / "none.yaml")
    assert res.code == 0, res.stderr
    report = json.loads(res.stdout)
    assert json.loads(out.read_text()) == report
    assert report["resolution"] == [64, 96] and report["environment"]["device"] == "cpu"
    leve = report["models"]["leve"]
    assert leve["params"] == {"total": 5_804_033, "encoder": 5_698_912, "decoder": 105_121}
    assert leve["macs"] > report["models"]["leve-no-skips"]["macs"] > 0
    for mode in ("eager", "channels_last"):
        r = leve["fp32"][mode]
        assert r["runs"] == 2 and r["median_ms"] > 0
        # fps is rounded to 0.01 (±0.005) and median_ms to 0.001 ms, which moves 1000/median by up to 0.5/median²
        bound = 0.005 + 0.5 / (r["median_ms"] - 0.0005) ** 2 + 1e-9
        assert abs(r["fps"] - 1000 / r["median_ms"]) <= bound
    assert "fp16" not in leve  # CUDA only
    assert leve["speedup_vs_eager_fp32"]["fp32/eager"] == 1.0
    assert report["thesis_comparison"]["variants"]["leve"]["thesis_fps"] == 27.0


def test_bench_model_rejects_bad_options(tmp_path, run_cli):
    res = run_cli("bench", "model", "--models", "nope", "--out", "", "--params", tmp_path / "none.yaml")
    assert res.code == 1 and "unknown model(s) nope" in res.stderr
    res = run_cli("bench", "model", "--resolution", "100x100", "--out", "", "--params", tmp_path / "none.yaml")
    assert res.code == 1 and "multiples of 8" in res.stderr
    res = run_cli("bench", "model", "--device", "cuda", "--out", "", "--params", tmp_path / "none.yaml")
    assert res.code == 1 and ("no CUDA device" in res.stderr or torch.cuda.is_available())


def test_params_yaml_section_builds():
    from pathlib import Path

    from leve.bench import model as bench_model

    cfg = bench_model.config({}, Path(__file__).parents[2] / "params.yaml")
    # params.yaml ships the embedded profile: the default model, eager only (the thesis profile
    # benchmarks every variant with compile)
    assert cfg.resolution == "480x640" and cfg.models == ("leve",) and cfg.modes == ("eager",)


def test_bench_model_other_architectures(tmp_path, run_cli):
    res = run_cli("bench", "model", "--models", "leve,leve-mobilenetv3,densedepth-mobilenetv2", "--resolution", "64x96",
                  "--repeats", "1", "--warmup", "0", "--modes", "eager", "--out", "", "--params", tmp_path / "none.yaml")
    assert res.code == 0, res.stderr
    models = json.loads(res.stdout)["models"]
    assert models["densedepth-mobilenetv2"]["params"] == {"total": 3_006_013, "encoder": 1_811_712, "decoder": 1_194_301}
    assert models["leve-mobilenetv3"]["params"] == {"total": 250_585, "encoder": 190_520, "decoder": 60_065}
    assert {n: r["output_stride"] for n, r in models.items()} == {
        "leve": 1, "leve-mobilenetv3": 1, "densedepth-mobilenetv2": 2}
    for r in models.values():
        assert r["macs"] > 0 and r["fp32"]["eager"]["runs"] == 1 and r["fp32"]["eager"]["median_ms"] > 0
    comparison = json.loads(res.stdout)["thesis_comparison"]["variants"]
    assert comparison["leve-mobilenetv3"]["thesis_fps"] == 43.0 and "densedepth-mobilenetv2" not in comparison


def test_bench_model_refuses_a_size_a_model_cannot_take(tmp_path, run_cli):
    res = run_cli("bench", "model", "--models", "leve,leve-mobilenetv3", "--resolution", "64x88", "--out", "",
                  "--params", tmp_path / "none.yaml")
    assert res.code == 1 and len(res.stderr.strip().splitlines()) == 1
    assert "resolution 64x88: model 'leve-mobilenetv3'" in res.stderr and "multiples of 16" in res.stderr


def test_interleaved_rounds_rotate_the_order():
    from leve.bench.model import time_interleaved

    calls: list[str] = []
    fns = {n: (lambda x, n=n: calls.append(n), torch.zeros(1)) for n in "abc"}
    times = time_interleaved(fns, warmup=1, repeats=3)
    assert calls == list("abc") + list("abc") + list("bca") + list("cab")  # warm-up, then rounds
    assert {n: len(t) for n, t in times.items()} == {"a": 3, "b": 3, "c": 3}


def test_bench_model_runtimes_side_by_side(tmp_path, run_cli):
    res = run_cli("bench", "model", "--models", "leve-mobilenetv3", "--resolution", "64x96", "--repeats", "3",
                  "--warmup", "1", "--modes", "torch,onnx,compile", "--out", "", "--params", tmp_path / "none.yaml")
    assert res.code == 0, res.stderr
    report = json.loads(res.stdout)
    modes = report["models"]["leve-mobilenetv3"]["fp32"]
    assert list(modes) == ["eager", "torch", "onnx", "compiled"]  # eager always first; compile = compiled
    assert modes["compiled"] == {"skipped": "not in compile_models"}
    assert modes["eager"]["latency_ratio_vs_eager"] == 1.0
    for mode in ("torch", "onnx"):
        assert modes[mode]["runs"] == 3 and modes[mode]["check"]["relative"] < 1e-4
        assert modes[mode]["check"]["shape"] == [1, 1, 64, 96]
    ratios = report["latency_ratio_vs_eager"]["models"]["leve-mobilenetv3"]
    assert ratios == {m: modes[m]["latency_ratio_vs_eager"] for m in ("eager", "torch", "onnx")}
    assert all(r > 0 for r in ratios.values())
