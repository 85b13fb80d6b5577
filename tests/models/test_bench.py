"""``leve bench model``: JSON with params, MACs (checked by hand for a conv net) and timings."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from leve.bench.model import count_macs
from leve.models.registry import list_models


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
    from leve.pipeline.profiles import load_profile

    root = Path(__file__).parents[2]
    cfg = bench_model.config({}, root / "params.yaml")
    # params.yaml ships the embedded profile: the default model, eager only, at the profile's
    # resolution (the thesis profile benchmarks every variant with compile at 480x640)
    embedded = load_profile("embedded", root / "profiles")
    assert cfg.resolution == embedded["bench.model.resolution"] == "240x320"
    assert cfg.models == ("leve",) and cfg.modes == ("eager",)
    assert load_profile("thesis", root / "profiles")["bench.model.resolution"] == "480x640"


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


def test_empty_models_list_means_every_registered_model():
    from leve.bench.model import Config, _resolve

    assert _resolve(Config(models=(), resolution="64x64"))[0] == list_models()  # `bench.model.models: []`
    assert _resolve(Config(models=("leve-dw",)))[0] == ["leve-dw"]


@pytest.mark.slow
def test_bench_model_large_densedepth_models(tmp_path, run_cli):
    # 64x64: the smallest size every model takes. Encoders: torchvision's published backbone counts (without
    # the classifier); the decoders are counted from the architecture in tests/models/test_zoo.py
    large = {"densedepth-densenet169": 12_484_480, "densedepth-densenet161": 26_472_000,
             "densedepth-resnet50": 23_508_032, "densedepth-resnet101": 42_500_160}
    res = run_cli("bench", "model", "--models", ",".join(large), "--resolution", "64x64", "--repeats", "1",
                  "--warmup", "0", "--modes", "eager", "--out", "", "--params", tmp_path / "none.yaml")
    assert res.code == 0, res.stderr
    models = json.loads(res.stdout)["models"]
    assert list(models) == list(large)
    for name, encoder in large.items():
        params = models[name]["params"]
        assert params["encoder"] == encoder and params["total"] == encoder + params["decoder"], name
        assert models[name]["output_stride"] == 2 and models[name]["macs"] > 0
        assert models[name]["fp32"]["eager"]["runs"] == 1 and models[name]["fp32"]["eager"]["median_ms"] > 0
    assert models["densedepth-densenet169"]["params"]["total"] == 42_657_689  # DenseDepth's paper: 42.6 M
    # MACs grow with the encoder: ResNet-101 repeats ResNet-50's layer3 block 23 times instead of 6
    assert models["densedepth-resnet101"]["macs"] > models["densedepth-resnet50"]["macs"]


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


class _Recorder(nn.Module):
    """Records each input's shape, a checksum and whether autograd was on."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[tuple[int, ...], float, bool]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append((tuple(x.shape), float(x.sum()), torch.is_grad_enabled()))
        return x


def test_thesis_timing_is_the_mean_of_the_timed_runs_after_warmup():
    from leve.bench.model import thesis_latency, time_thesis

    ticks = iter([0.0, 9.0, 1.0, 9.0, 10.0, 10.5, 20.0, 21.5, 30.0, 30.25])   # two warm-up pairs, three timed
    model = _Recorder()
    times = time_thesis(model, (2, 3, 8, 8), torch.device("cpu"), warmup=2, runs=3, clock=lambda: next(ticks))
    assert times == [0.5, 1.5, 0.25]
    assert len(model.calls) == 5 and all(shape == (2, 3, 8, 8) and grad for shape, _, grad in model.calls)
    assert len({s for _, s, _ in model.calls}) == 5   # a fresh random input every run
    got = thesis_latency(times, batch=2)
    mean = (0.5 + 1.5 + 0.25) / 3
    assert got == {"mean_ms": round(1000 * mean, 3), "fps": round(1 / mean, 2), "images_per_s": round(2 / mean, 2),
                   "runs": 3}


def test_bench_model_thesis_protocol_json(tmp_path, run_cli, monkeypatch):
    from leve.bench import model as bench

    # the thesis's numbers (batch 2 at 480x640, 10 + 200 runs), made tiny for the test
    assert bench.THESIS_TIMING == {"batch": 2, "resolution": "480x640", "warmup": 10, "runs": 200}
    monkeypatch.setitem(bench.THESIS_TIMING, "resolution", "64x64")
    monkeypatch.setitem(bench.THESIS_TIMING, "warmup", 1)
    monkeypatch.setitem(bench.THESIS_TIMING, "runs", 2)
    report = bench.benchmark(bench.Config(models=("leve",), protocol="thesis", batch=7, repeats=50))
    assert report["protocol"]["name"] == "thesis" and report["protocol"]["statistic"] == "mean"
    assert (report["batch"], report["resolution"], report["warmup"], report["repeats"]) == (2, [64, 64], 1, 2)
    r = report["models"]["leve"]["fp32"]["eager"]
    assert r["runs"] == 2 and set(r) == {"mean_ms", "fps", "images_per_s", "runs"}
    # fps = 1 / seconds per batch of 2 (mean_ms rounded to 0.001 ms), images_per_s = 2 x that
    assert r["fps"] == pytest.approx(1000 / r["mean_ms"], abs=0.01 + 0.5 / r["mean_ms"] ** 2)
    assert r["images_per_s"] == pytest.approx(2 * 1000 / r["mean_ms"], abs=0.01 + 1.0 / r["mean_ms"] ** 2)
    assert report["models"]["leve"]["params"]["total"] == 5_804_033 and "latency_ratio_vs_eager" not in report
    res = run_cli("bench", "model", "--protocol", "fastest", "--out", "", "--params", tmp_path / "none.yaml")
    assert res.code == 1 and "protocol must be one of leve, thesis" in res.stderr
