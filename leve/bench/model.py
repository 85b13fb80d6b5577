"""Stage ``bench-model`` (``leve bench model``, params ``bench.model`` -> ``metrics/bench_model.json``):
size, compute and speed of every registered variant, side by side.

Per model: parameters (total, encoder, decoder), its output stride (1, or 2 for DenseDepth's
half-resolution output; the timings cover the network only, not the upsampling), MACs (``torch.utils.flop_counter``: convs and
matmuls; bilinear resizes, pooling and batch norm are not counted) and batch latency
(median of ``repeats`` timed runs after ``warmup`` runs, under ``torch.inference_mode``) with
FPS, in each execution mode: ``eager``, ``channels_last`` and ``compile`` (``torch.compile``,
only for ``compile_models`` since compiling takes about a minute per model on a CPU). On CUDA
every mode is also timed in fp16 (weights and input cast to half). Speed-ups are ratios to
eager fp32 measured in the same process. A mode that fails records its error instead.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from leve import __version__
from leve.errors import LeveError
from leve.models import DEFAULT_MODEL, create_model, list_models
from leve.models.registry import THESIS_FPS_DEVICE, model_spec, model_specs
from leve.params import PARAMS_FILE, build_config, load_params, section

MODES = ("eager", "channels_last", "compile")
# Thesis Tables 9.1-9.4: FPS on a GTX 1650 Ti, 480x640 input, fp32 eager (from the model registry).
THESIS_FPS = {s.name: s.fps for s in model_specs() if s.fps is not None}


@dataclass(frozen=True)
class Config:
    """Params section ``bench.model``."""

    models: tuple[str, ...] = ()  # empty: every registered model
    resolution: str = "480x640"
    device: str = "cpu"
    batch: int = 1
    warmup: int = 3
    repeats: int = 10
    modes: tuple[str, ...] = MODES
    compile_models: tuple[str, ...] = (DEFAULT_MODEL,)
    threads: int = 0  # 0: torch's default
    out: str = "metrics/bench_model.json"


def parse_resolution(text: str) -> tuple[int, int]:
    """``"480x640"`` -> ``(480, 640)`` (height x width)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise LeveError(f"resolution must look like 480x640 (HxW), got '{text}'") from exc
    if h % 8 or w % 8 or min(h, w) < 64:
        raise LeveError(f"resolution {text}: height and width must be multiples of 8 and at least 64")
    return h, w


def count_params(model: nn.Module) -> dict[str, int]:
    """Parameter counts of the whole model and of its encoder/decoder."""
    def n(m: nn.Module) -> int:
        return sum(p.numel() for p in m.parameters())

    return {"total": n(model), "encoder": n(model.encoder), "decoder": n(model.decoder)}


def count_macs(model: nn.Module, x: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass (torch's flop counter / 2)."""
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops()) // 2


def time_forward(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, warmup: int, repeats: int) -> list[float]:
    """Wall-clock milliseconds of ``repeats`` calls after ``warmup`` calls (CUDA synchronised)."""
    sync = torch.cuda.synchronize if x.is_cuda else (lambda: None)
    times = []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            sync()
            t0 = time.perf_counter()
            fn(x)
            sync()
            if i >= warmup:
                times.append((time.perf_counter() - t0) * 1000.0)
    return times


def _prepare(model: nn.Module, x: torch.Tensor, mode: str, dtype: torch.dtype) -> tuple[Callable, torch.Tensor]:
    model = model.to(dtype=dtype)
    x = x.to(dtype=dtype)
    if mode in ("channels_last", "compile"):
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if mode == "compile":
        return torch.compile(model), x
    return model, x


def _latency(times: list[float], batch: int) -> dict[str, float]:
    med = statistics.median(times)
    q = statistics.quantiles(times, n=10, method="inclusive") if len(times) >= 2 else [med] * 9
    return {"median_ms": round(med, 3), "p10_ms": round(q[0], 3), "p90_ms": round(q[-1], 3),
            "fps": round(1000.0 * batch / med, 2), "runs": len(times)}


def bench_mode(name: str, mode: str, dtype: torch.dtype, cfg: Config, x: torch.Tensor) -> dict[str, Any]:
    """Time one model in one mode; errors are recorded, not raised."""
    if mode == "compile" and name not in cfg.compile_models:
        return {"skipped": "not in compile_models"}
    model = create_model(name).eval().to(x.device)
    try:
        fn, xin = _prepare(model, x, mode, dtype)
        warmup = max(cfg.warmup, 1) if mode == "compile" else cfg.warmup  # never time the compilation
        return _latency(time_forward(fn, xin, warmup, cfg.repeats), cfg.batch)
    except Exception as exc:  # compile needs a C++ toolchain / triton; report why it failed
        return {"error": f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"}


def bench_model(name: str, cfg: Config, device: torch.device) -> dict[str, Any]:
    """Params, MACs and per-mode latency of one registered model."""
    h, w = parse_resolution(cfg.resolution)
    x = torch.rand(cfg.batch, 3, h, w, device=device)
    model = create_model(name).eval().to(device)
    result: dict[str, Any] = {"params": count_params(model), "macs": count_macs(model, x),
                              "output_stride": int(getattr(model, "output_stride", 1))}
    result["gmacs"] = round(result["macs"] / 1e9, 3)
    dtypes = {"fp32": torch.float32, **({"fp16": torch.float16} if device.type == "cuda" else {})}
    for dname, dtype in dtypes.items():
        result[dname] = {mode: bench_mode(name, mode, dtype, cfg, x) for mode in cfg.modes}
    base = result["fp32"].get("eager", {}).get("median_ms")
    result["speedup_vs_eager_fp32"] = {
        f"{d}/{m}": round(base / r["median_ms"], 3)
        for d in dtypes for m, r in result[d].items() if base and "median_ms" in r}
    return result


def _environment(device: torch.device, cfg: Config) -> dict[str, Any]:
    env = {"leve": __version__, "torch": torch.__version__, "python": platform.python_version(),
           "machine": platform.machine(), "processor": platform.processor() or platform.machine(),
           "threads": torch.get_num_threads(), "device": str(device)}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def _loadavg() -> float | None:
    """The 1-minute load average (other work competing for the CPU), where the OS reports it."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def _resolve(cfg: Config) -> tuple[list[str], torch.device]:
    names = list(cfg.models) or list_models()
    unknown = [n for n in names if n not in list_models()]
    if unknown:
        raise LeveError(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(list_models())}")
    bad = [m for m in cfg.modes if m not in MODES]
    if bad:
        raise LeveError(f"unknown mode(s) {', '.join(bad)}; choose from {', '.join(MODES)}")
    if cfg.device not in ("cpu", "cuda"):
        raise LeveError(f"device must be cpu or cuda, got '{cfg.device}'")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise LeveError("--device cuda: no CUDA device available to torch")
    if cfg.batch < 1 or cfg.repeats < 1 or cfg.warmup < 0:
        raise LeveError("bench.model: batch and repeats must be >= 1, warmup >= 0")
    h, w = parse_resolution(cfg.resolution)
    for name in names:  # every model must take the size (MobileNetV3 Leve: multiples of 16), before any is built
        model_spec(name).check_size(h, w, what=f"bench.model: resolution {cfg.resolution}")
    return names, torch.device(cfg.device)


def _thesis_comparison(models: dict[str, Any]) -> dict[str, Any]:
    """Our FPS relative to ``leve`` next to the thesis's relative FPS (devices differ; ratios compare)."""
    ours = {n: r["fp32"].get("eager", {}).get("fps") for n, r in models.items()}
    ref = ours.get(DEFAULT_MODEL)
    rows = {}
    for n, fps in ours.items():
        if n in THESIS_FPS and fps and ref:
            rows[n] = {"thesis_fps": THESIS_FPS[n], "thesis_rel": round(THESIS_FPS[n] / THESIS_FPS[DEFAULT_MODEL], 3),
                       "ours_rel": round(fps / ref, 3)}
    return {"source": f"thesis Tables 9.1-9.4, {THESIS_FPS_DEVICE}", "variants": rows}


def benchmark(cfg: Config, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Benchmark every selected model; returns the JSON-ready report."""
    names, device = _resolve(cfg)
    load_start = _loadavg()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # pick the fastest kernels for the fixed input size
    models = {}
    for name in names:
        if progress:
            progress(f"bench {name} @ {cfg.resolution} on {device}")
        models[name] = bench_model(name, cfg, device)
    h, w = parse_resolution(cfg.resolution)
    report = {"resolution": [h, w], "batch": cfg.batch, "warmup": cfg.warmup, "repeats": cfg.repeats,
              "environment": {**_environment(device, cfg), "loadavg_1min_start": load_start,
                              "loadavg_1min_end": _loadavg()}, "models": models}
    report["thesis_comparison"] = _thesis_comparison(models)
    return report


def config(overrides: dict[str, Any] | None = None, params_file: Path = PARAMS_FILE) -> Config:
    """The typed config of ``bench.model``: code defaults < params.yaml < overrides."""
    values = {**section(load_params(params_file), "bench.model"), **(overrides or {})}
    return build_config(Config, values, "bench.model")


def run(overrides: dict[str, Any] | None = None, params_file: Path = PARAMS_FILE,
        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the benchmark and write its JSON report to ``cfg.out`` (when set)."""
    cfg = config(overrides, params_file)
    report = benchmark(cfg, progress)
    if cfg.out:
        out = Path(cfg.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        tmp.replace(out)
    return report
