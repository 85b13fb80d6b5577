"""Stage ``bench-model`` (``leve bench model``, params ``bench.model`` -> ``metrics/bench_model.json``):
size, compute and speed of every registered variant, side by side.

Per model: parameters (total, encoder, decoder), its output stride (1, or 2 for DenseDepth's
half-resolution output; the timings cover the network only, not the upsampling), MACs (``torch.utils.flop_counter``: convs and
matmuls; bilinear resizes, pooling and batch norm are not counted) and batch latency under
``torch.inference_mode`` with FPS, in each execution mode: ``eager``, ``channels_last`` (weights
and input only) and the inference runtimes of :mod:`leve.models.runtime` that ``leve predict`` and
``leve serve`` run: ``torch`` (batch norm folded, channels-last), ``compiled`` (that, through
``torch.compile``; only for ``compile_models``, since compiling takes minutes per model on a
CPU), ``onnx`` (onnxruntime, CPU), ``onnx-int8`` (that graph statically quantized to int8:
:func:`leve.models.runtime.quantize_int8`) and ``openvino`` (that graph converted by OpenVINO, its CPU
plugin in fp32). ``compile`` and ``fused`` are accepted for ``compiled`` and
``torch``. ``onnx-int8`` brings ``onnx`` with it and adds ``latency_ratio_vs_onnx`` (median over
rounds of int8 / fp32 ONNX) and ``accuracy``: δ1 and RMSE of fp32 ONNX and int8 against the ground
truth of ``int8_eval_images`` images of ``int8_eval_split`` of ``int8_store`` (``d1_drop`` = fp32 −
int8, ``rmse_rise`` = int8 − fp32; the prediction resized to the image as ``leve predict`` does),
calibrated on ``int8_calibration_images`` of ``int8_calibration_split``. Where ``int8_store`` is
absent (the demo's store not built), the embedded synthetic rooms it would hold are rendered
instead (``source`` says which). ``int8_goal`` checks issue 29's <= 0.5x fp32 ONNX and |Δδ1| <= 0.01;
where it is missed, ``operators`` says why: both graphs profiled by onnxruntime (kernel time per operator
type), the convolutions' speed-up and the share of int8's time spent (de)quantizing and transposing.

Every mode is prepared first, checked against eager on the timed input (``check``:
max and mean abs difference relative to the output range; ``onnx-int8``: on its first calibration
image instead) and warmed up; then ``repeats`` rounds each
time every mode once, in rotating order, so that load from other processes falls on all modes
alike. Per mode: ``prepare_s`` (preparing it and its first call: the export or compilation
included), median and p10/p90 latency; ``latency_ratio_vs_eager``: the median over rounds
of (mode / eager in the same round), the figure the goal (<= 0.6) is about; ``speedup_vs_eager_fp32``:
eager median / mode median. ``runtimes`` (:func:`runtime_table`) is one table across every model's fp32
modes: median latency, ratio to eager, max and mean difference from eager's output (and int8's δ1 drop
and RMSE rise against fp32 ONNX); ``leve bench model`` also prints it. On CUDA every mode is also timed
in fp16 (weights and input cast to half; onnx and openvino are CPU only). A mode that fails records its
error instead. The 1-minute load average is recorded at the start and end of each model.

``protocol: thesis`` times as the thesis's public notebooks did (``test_inference_speed``) instead:
batch 2 at 480x640, a fresh ``torch.randn`` input per run (drawn before the clock starts), the
model in eval mode with autograd on (no ``no_grad``), CUDA synchronised around each call, 10
warm-up runs, then the mean over 200 runs; FPS = 1 / the mean time per batch (batches per
second, as the thesis's tables), beside ``images_per_s`` = batch / mean. Only fp32 eager; the
``batch``, ``resolution``, ``warmup``, ``repeats`` and ``modes`` keys do not apply, and the
report records the values used under ``protocol``.
"""

from __future__ import annotations

import copy
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from leve import __version__
from leve.errors import LeveError
from leve.models.registry import DEFAULT_MODEL, THESIS_FPS_DEVICE, create_model, list_models, model_spec, model_specs
from leve.models.runtime import compare, prepare_for_inference
from leve.params import PARAMS_FILE, build_config, load_params, param, params_section, section

MODES = ("eager", "channels_last", "torch", "compiled", "onnx", "onnx-int8", "openvino")
ALIASES = {"compile": "compiled", "fused": "torch"}  # older names of two modes
RATIO_GOAL = 0.6  # issue 16: a runtime at <= 0.6x the eager latency of the same model
INT8_RATIO_GOAL, INT8_D1_GOAL = 0.5, 0.01  # issue 29: int8 at <= 0.5x fp32 ONNX latency, |Δδ1| <= 0.01
PROTOCOLS = ("leve", "thesis")
# The thesis code's timing (test_inference_speed in its notebooks): what `protocol: thesis` runs.
THESIS_TIMING: dict[str, Any] = {"batch": 2, "resolution": "480x640", "warmup": 10, "runs": 200}
# Thesis Tables 9.1-9.4: FPS on a GTX 1650 Ti, 480x640 input, fp32 eager (from the model registry).
THESIS_FPS = {s.name: s.fps for s in model_specs() if s.fps is not None}


@params_section("bench.model")
@dataclass(frozen=True)
class Config:
    """Params section ``bench.model``."""

    models: tuple[str, ...] = param()  # empty: every registered model
    resolution: str = param()
    device: str = param()
    batch: int = param()
    warmup: int = param()
    repeats: int = param()
    modes: tuple[str, ...] = param()
    compile_models: tuple[str, ...] = param()
    threads: int = param()  # 0: torch's default
    protocol: str = param()  # leve (interleaved modes, median) | thesis (the thesis code's timing, see above)
    out: str = param()
    checkpoint: str = param()  # trained weights for the model it names ("": random init; int8 accuracy needs trained)
    int8_store: str = param()  # onnx-int8: calibration and accuracy images (absent: the rendered synthetic rooms)
    int8_calibration_split: str = param()
    int8_calibration_images: int = param()
    int8_eval_split: str = param()
    int8_eval_images: int = param()


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


def time_interleaved(fns: dict[str, tuple[Callable[[torch.Tensor], Any], torch.Tensor]], warmup: int,
                     repeats: int) -> dict[str, list[float]]:
    """Milliseconds per call of each ``fn(x)``: ``warmup`` untimed calls each, then ``repeats``
    rounds that call every one once, the order rotating by one each round (CUDA synchronised)."""
    cuda = any(x.is_cuda for _, x in fns.values())
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    with torch.inference_mode():
        for n in names:
            for _ in range(warmup):
                fns[n][0](fns[n][1])
        for r in range(repeats):
            for n in names[r % len(names):] + names[: r % len(names)]:
                fn, x = fns[n]
                sync()
                t0 = time.perf_counter()
                fn(x)
                sync()
                times[n].append((time.perf_counter() - t0) * 1000.0)
    return times


def prepare_mode(model: nn.Module, x: torch.Tensor, mode: str, batch: int,
                 calibration: list[torch.Tensor] | None = None) -> tuple[Callable, torch.Tensor]:
    """The callable and input of one mode; the runtimes come from :func:`prepare_for_inference`
    (``calibration``: onnx-int8's)."""
    if mode == "eager":
        return model, x
    if mode == "channels_last":
        return model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    return prepare_for_inference(model, mode, tuple(x.shape[-2:]), batch, check=False, calibration=calibration), x


def int8_images(cfg: Config, split: str, count: int) -> tuple[list[tuple[Any, Any]], str]:
    """``count`` evenly spaced (rgb uint8, depth) samples of ``split`` of ``cfg.int8_store``, or where that
    store is absent, of the embedded synthetic rooms rendered at the bench resolution; and their source."""
    import numpy as np

    if Path(cfg.int8_store).exists():
        from leve.store.reader import open_split

        data = open_split(cfg.int8_store, split)
        picks = sorted({int(round(v)) for v in np.linspace(0, len(data) - 1, min(count, len(data)))}) if len(data) else []
        return [(data.rgb(i), data.depth(i) if data.has_depth else None) for i in picks], f"{cfg.int8_store}/{split}"
    from leve.datasets.synthetic import render_sample

    h, w = parse_resolution(cfg.resolution)
    return ([render_sample(0, split, i, h, w) for i in range(count)],
            f"synthetic rooms rendered at {h}x{w} ({cfg.int8_store} not found), {split} split, seed 0")


def int8_calibration(cfg: Config) -> tuple[list[torch.Tensor], str]:
    """onnx-int8's calibration inputs at the bench resolution and where they come from."""
    from leve.images import resize_rgb

    samples, source = int8_images(cfg, cfg.int8_calibration_split, cfg.int8_calibration_images)
    if not samples:
        raise LeveError(f"bench.model: no calibration images in {source}")
    return [resize_rgb(rgb, parse_resolution(cfg.resolution))[None] for rgb, _ in samples], source


def int8_accuracy(fp32: Callable, int8: Callable, cfg: Config, max_depth: float) -> dict[str, Any]:
    """δ1 and RMSE (mean over images) of fp32 ONNX and int8 against the ground truth of the eval split."""
    from leve.metrics import compute_metrics
    from leve.predict import predict_depth

    samples, source = int8_images(cfg, cfg.int8_eval_split, cfg.int8_eval_images)
    size = parse_resolution(cfg.resolution)
    scores: dict[str, list[dict[str, float]]] = {"fp32": [], "int8": []}
    for rgb, gt in samples:
        if gt is None:
            continue
        for name, fn in (("fp32", fp32), ("int8", int8)):
            m = compute_metrics(predict_depth(fn, rgb, size, max_depth), gt)
            if m is not None:
                scores[name].append(m)
    if not scores["fp32"]:
        raise LeveError(f"bench.model: no image with depth in {source}")
    mean = {n: {k: round(statistics.fmean(m[k] for m in v), 5) for k in ("d1", "rmse")} for n, v in scores.items()}
    return {"source": source, "images": len(scores["fp32"]), "onnx": mean["fp32"], "onnx-int8": mean["int8"],
            "d1_drop": round(mean["fp32"]["d1"] - mean["int8"]["d1"], 5),
            "rmse_rise": round(mean["int8"]["rmse"] - mean["fp32"]["rmse"], 5)}


def _latency(times: list[float], batch: int) -> dict[str, float]:
    med = statistics.median(times)
    q = statistics.quantiles(times, n=10, method="inclusive") if len(times) >= 2 else [med] * 9
    return {"median_ms": round(med, 3), "p10_ms": round(q[0], 3), "p90_ms": round(q[-1], 3),
            "fps": round(1000.0 * batch / med, 2), "runs": len(times)}


def _error(exc: BaseException) -> dict[str, str]:
    text = str(exc).splitlines()[0][:300] if str(exc) else ""
    return {"error": f"{exc.__class__.__name__}: {text}"}


def _skip_reason(name: str, mode: str, cfg: Config, dtype: torch.dtype, device: torch.device) -> str | None:
    if mode == "compiled" and name not in cfg.compile_models:
        return "not in compile_models"
    if mode in ("onnx", "onnx-int8") and (device.type != "cpu" or dtype != torch.float32):
        return "onnxruntime runs fp32 on the CPU here"
    if mode == "openvino" and (device.type != "cpu" or dtype != torch.float32):
        return "OpenVINO runs fp32 on its CPU plugin here"
    return None


def build_model(name: str, cfg: Config) -> nn.Module:
    """Model ``name`` with ``cfg.checkpoint``'s weights when that checkpoint holds it, else randomly initialised."""
    if cfg.checkpoint and _holds(cfg.checkpoint, name):
        from leve.models.checkpoint import load_checkpoint

        return load_checkpoint(cfg.checkpoint)[0]
    return create_model(name)


def _holds(checkpoint: str, name: str) -> bool:
    from leve.models.checkpoint import read_checkpoint

    return read_checkpoint(checkpoint)[1].model == name


def bench_modes(name: str, dtype: torch.dtype, cfg: Config, x: torch.Tensor) -> dict[str, Any]:
    """Prepare, check against eager and time every mode of one model in one dtype, interleaved;
    a mode that fails records its error, not raised."""
    x = x.to(dtype=dtype)
    eager = build_model(name, cfg).eval().to(x.device, dtype=dtype)
    results: dict[str, Any] = {}
    fns: dict[str, tuple[Callable, torch.Tensor]] = {}
    with torch.inference_mode():
        reference = eager(x)
    for mode in cfg.modes:
        reason = _skip_reason(name, mode, cfg, dtype, x.device)
        if reason:
            results[mode] = {"skipped": reason}
            continue
        try:  # compile needs a C++ toolchain / triton, onnx the export extra: report why it failed
            t0 = time.perf_counter()
            model = eager if mode == "eager" else copy.deepcopy(eager)  # the same weights
            calibration, source = int8_calibration(cfg) if mode == "onnx-int8" else (None, "")
            fn, xin = prepare_mode(model, x, mode, cfg.batch, calibration)
            with torch.inference_mode():
                check = compare(reference, fn(xin))  # also the first (compiling) call
                if calibration is not None:  # int8 on a real image: uniform noise lies outside its calibrated ranges
                    check = compare(eager(calibration[0]), fn(calibration[0]))
            fns[mode] = (fn, xin)
            results[mode] = {"prepare_s": round(time.perf_counter() - t0, 2)}  # incl. export/compile, 1st call
            if mode != "eager":
                results[mode]["check"] = check.to_dict()
            if calibration is not None:
                results[mode]["calibration"] = {"source": source, "images": len(calibration), "method": "minmax"}
        except Exception as exc:
            results[mode] = _error(exc)
    try:
        times = time_interleaved(fns, cfg.warmup, cfg.repeats)
    except Exception as exc:
        return {m: (_error(exc) if m in fns else r) for m, r in results.items()}
    for mode, t in times.items():
        results[mode].update(_latency(t, cfg.batch))
        if "eager" in times:
            results[mode]["latency_ratio_vs_eager"] = round(
                statistics.median(a / b for a, b in zip(t, times["eager"])), 3)
    if "onnx-int8" in times and "onnx" in times:
        int8 = results["onnx-int8"]
        int8["latency_ratio_vs_onnx"] = round(statistics.median(a / b for a, b in zip(times["onnx-int8"], times["onnx"])), 3)
        try:
            int8["accuracy"] = int8_accuracy(fns["onnx"][0], fns["onnx-int8"][0], cfg, float(eager.max_depth))
            int8["int8_goal"] = {
                "goal": f"latency_ratio_vs_onnx <= {INT8_RATIO_GOAL} and |d1_drop| <= {INT8_D1_GOAL}",
                "met": int8["latency_ratio_vs_onnx"] <= INT8_RATIO_GOAL
                and abs(int8["accuracy"]["d1_drop"]) <= INT8_D1_GOAL}
        except Exception as exc:
            int8["accuracy"] = _error(exc)
        if not int8.get("int8_goal", {}).get("met", False):
            int8["operators"] = _operators(fns["onnx"][0], fns["onnx-int8"][0], fns["onnx-int8"][1])
    return results


def runtime_table(models: dict[str, Any]) -> dict[str, Any]:
    """One table across the fp32 modes of every model (``report["runtimes"]``): per model and mode the median
    latency, its ratio to eager in the same rounds and the output's difference from eager on the checked input
    (max and mean abs difference / eager's output range; onnx-int8: on its first calibration image), with
    int8's δ1 drop and RMSE rise against fp32 ONNX on the store; a skipped or failed mode says why."""
    rows: dict[str, dict[str, Any]] = {}
    for name, result in models.items():
        rows[name] = {}
        for mode, r in result.get("fp32", {}).items():
            if "median_ms" not in r:
                rows[name][mode] = {k: r[k] for k in ("skipped", "error") if k in r}
                continue
            row = {"median_ms": r["median_ms"], "latency_ratio_vs_eager": r.get("latency_ratio_vs_eager")}
            check = r.get("check")
            if mode == "eager":
                row.update(max_diff_vs_eager=0.0, mean_diff_vs_eager=0.0)
            elif check:
                row.update(max_diff_vs_eager=check["relative"], mean_diff_vs_eager=check["mean_relative"])
            accuracy = r.get("accuracy", {})
            if "d1_drop" in accuracy:
                row.update(d1_drop_vs_onnx=accuracy["d1_drop"], rmse_rise_vs_onnx=accuracy["rmse_rise"])
            rows[name][mode] = row
    return {"columns": {"median_ms": "median latency (ms), fp32, batch as run",
                        "latency_ratio_vs_eager": "median over interleaved rounds of mode / eager",
                        "max_diff_vs_eager": "max abs difference from eager / eager's output range",
                        "mean_diff_vs_eager": "mean abs difference from eager / eager's output range",
                        "d1_drop_vs_onnx": "onnx-int8: δ1 of fp32 ONNX - δ1 of int8 (store split)",
                        "rmse_rise_vs_onnx": "onnx-int8: RMSE of int8 - RMSE of fp32 ONNX (m)"},
            "models": rows}


def runtime_lines(table: dict[str, Any]) -> list[str]:
    """:func:`runtime_table` as aligned text lines (``leve bench model`` prints them)."""
    def cell(v: Any, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    lines = [f"{'model':<22} {'mode':<14} {'ms':>10} {'x eager':>8} {'max diff':>9} {'mean diff':>9}"]
    for name, modes in table["models"].items():
        for mode, row in modes.items():
            if "median_ms" not in row:
                lines.append(f"{name:<22} {mode:<14} {row.get('skipped') or row.get('error', '')}")
                continue
            lines.append(f"{name:<22} {mode:<14} {cell(row['median_ms'], '.1f'):>10} "
                         f"{cell(row['latency_ratio_vs_eager'], '.3f'):>8} {cell(row.get('max_diff_vs_eager'), '.2g'):>9} "
                         f"{cell(row.get('mean_diff_vs_eager'), '.2g'):>9}")
    return lines


def _operators(fp32: Any, int8: Any, x: torch.Tensor) -> dict[str, Any]:
    """Why int8 misses its goal, operator by operator: both graphs profiled by onnxruntime on ``x``, in turn;
    ``conv_speedup``: fp32 convolution time / int8 convolution time; ``int8_overhead_share``: the share
    of int8's time in (de)quantization and layout transposes."""
    from leve.models.runtime import profile_operators

    try:
        prof = profile_operators({"onnx": fp32.onnx_graph, "onnx-int8": int8.onnx_graph}, x)
    except Exception as exc:
        return _error(exc)
    conv = {n: sum(o["ms"] for op, o in p["operators"].items() if "Conv" in op) for n, p in prof.items()}
    ops = prof["onnx-int8"]["operators"]
    overhead = sum(o["share"] for op, o in ops.items() if op in ("QuantizeLinear", "DequantizeLinear", "Transpose"))
    return {**prof, "conv_speedup": round(conv["onnx"] / conv["onnx-int8"], 3) if conv["onnx-int8"] else None,
            "int8_overhead_share": round(overhead, 3)}


def bench_model(name: str, cfg: Config, device: torch.device) -> dict[str, Any]:
    """Params, MACs and per-mode latency of one registered model."""
    h, w = parse_resolution(cfg.resolution)
    x = torch.rand(cfg.batch, 3, h, w, generator=torch.Generator().manual_seed(0)).to(device)
    model = create_model(name).eval().to(device)
    result: dict[str, Any] = {"params": count_params(model), "macs": count_macs(model, x),
                              "output_stride": int(getattr(model, "output_stride", 1)),
                              "loadavg_1min_start": _loadavg()}
    del model
    result["weights"] = cfg.checkpoint if cfg.checkpoint and _holds(cfg.checkpoint, name) else "random init"
    result["gmacs"] = round(result["macs"] / 1e9, 3)
    dtypes = {"fp32": torch.float32, **({"fp16": torch.float16} if device.type == "cuda" else {})}
    for dname, dtype in dtypes.items():
        result[dname] = bench_modes(name, dtype, cfg, x)
    result["loadavg_1min_end"] = _loadavg()
    base = result["fp32"].get("eager", {}).get("median_ms")
    result["speedup_vs_eager_fp32"] = {
        f"{d}/{m}": round(base / r["median_ms"], 3)
        for d in dtypes for m, r in result[d].items() if base and "median_ms" in r}
    result["latency_ratio_vs_eager"] = {
        m: r["latency_ratio_vs_eager"] for m, r in result["fp32"].items() if "latency_ratio_vs_eager" in r}
    return result


def time_thesis(model: nn.Module, shape: tuple[int, ...], device: torch.device, warmup: int, runs: int,
                clock: Callable[[], float] = time.perf_counter) -> list[float]:
    """Seconds of each of ``runs`` calls after ``warmup`` untimed ones, as the thesis code timed: a fresh
    ``torch.randn(shape)`` per call made before the clock starts, autograd on, CUDA synchronised."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times = []
    with torch.enable_grad():
        for i in range(warmup + runs):
            x = torch.randn(shape).to(device)
            sync()
            t0 = clock()
            model(x)
            sync()
            elapsed = clock() - t0
            if i >= warmup:  # the warm-up runs are timed too, then dropped (the thesis code reset its sum)
                times.append(elapsed)
    return times


def thesis_latency(times: list[float], batch: int) -> dict[str, float]:
    """Mean seconds per batch as ``mean_ms``; ``fps`` = 1 / mean (the thesis's figure); ``images_per_s``."""
    mean = statistics.fmean(times)
    return {"mean_ms": round(1000.0 * mean, 3), "fps": round(1.0 / mean, 2),
            "images_per_s": round(batch / mean, 2), "runs": len(times)}


def bench_model_thesis(name: str, cfg: Config, device: torch.device) -> dict[str, Any]:
    """Params, MACs and the thesis code's timing (fp32 eager) of one registered model."""
    h, w = parse_resolution(cfg.resolution)
    model = create_model(name).eval().to(device)
    x = torch.rand(cfg.batch, 3, h, w, generator=torch.Generator().manual_seed(0)).to(device)
    result: dict[str, Any] = {"params": count_params(model), "macs": count_macs(model, x),
                              "output_stride": int(getattr(model, "output_stride", 1)),
                              "loadavg_1min_start": _loadavg()}
    result["gmacs"] = round(result["macs"] / 1e9, 3)
    times = time_thesis(model, (cfg.batch, 3, h, w), device, cfg.warmup, cfg.repeats)
    result["fp32"] = {"eager": thesis_latency(times, cfg.batch)}
    result["loadavg_1min_end"] = _loadavg()
    return result


def thesis_config(cfg: Config) -> Config:
    """``cfg`` with the thesis's timing values (:data:`THESIS_TIMING`), fp32 eager only."""
    t = THESIS_TIMING
    return replace(cfg, batch=int(t["batch"]), resolution=str(t["resolution"]), warmup=int(t["warmup"]),
                   repeats=int(t["runs"]), modes=("eager",))


def _protocol_record(cfg: Config) -> dict[str, Any]:
    if cfg.protocol == "leve":
        return {"name": "leve", "statistic": "median over interleaved rounds", "fps": "batch / median seconds"}
    return {"name": "thesis", "batch": cfg.batch, "resolution": cfg.resolution, "warmup": cfg.warmup,
            "runs": cfg.repeats, "input": "torch.randn per run, drawn before the clock starts",
            "autograd": True, "statistic": "mean", "fps": "1 / mean seconds per batch (batches per second)",
            "source": "the thesis code's test_inference_speed (andrei-dragan/Leve notebooks)"}


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
    if cfg.threads < 0:
        raise LeveError(f"bench.model: threads must be >= 0, got {cfg.threads}")
    if cfg.device not in ("cpu", "cuda"):
        raise LeveError(f"device must be cpu or cuda, got '{cfg.device}'")
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise LeveError("--device cuda: no CUDA device available to torch")
    if cfg.batch < 1 or cfg.repeats < 1 or cfg.warmup < 0:
        raise LeveError("bench.model: batch and repeats must be >= 1, warmup >= 0")
    if cfg.int8_calibration_images < 1 or cfg.int8_eval_images < 1:
        raise LeveError("bench.model: int8_calibration_images and int8_eval_images must be >= 1")
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
    if cfg.protocol not in PROTOCOLS:
        raise LeveError(f"bench.model: protocol must be one of {', '.join(PROTOCOLS)}, got '{cfg.protocol}'")
    if cfg.protocol == "thesis":
        cfg = thesis_config(cfg)
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
        models[name] = (bench_model_thesis if cfg.protocol == "thesis" else bench_model)(name, cfg, device)
    h, w = parse_resolution(cfg.resolution)
    report = {"protocol": _protocol_record(cfg),
              "resolution": [h, w], "batch": cfg.batch, "warmup": cfg.warmup, "repeats": cfg.repeats,
              "environment": {**_environment(device, cfg), "loadavg_1min_start": load_start,
                              "loadavg_1min_end": _loadavg()}, "models": models}
    if cfg.protocol == "leve":
        report["latency_ratio_vs_eager"] = {
            "goal": f"<= {RATIO_GOAL} (median over interleaved rounds of runtime / eager, fp32, same process)",
            "models": {n: r["latency_ratio_vs_eager"] for n, r in models.items()}}
        report["runtimes"] = runtime_table(models)
    report["thesis_comparison"] = _thesis_comparison(models)
    return report


def config(overrides: dict[str, Any] | None = None, params_file: Path = PARAMS_FILE) -> Config:
    """The typed config of ``bench.model``: code defaults < params.yaml < overrides."""
    values = {**section(load_params(params_file), "bench.model"), **(overrides or {})}
    cfg = build_config(Config, values, "bench.model")
    modes = [ALIASES.get(m, m) for m in ("eager", *cfg.modes)]  # eager always: the baseline of the ratios
    if "onnx-int8" in modes:  # int8's latency and accuracy are reported against fp32 ONNX
        modes.insert(modes.index("onnx-int8"), "onnx")
    return replace(cfg, modes=tuple(dict.fromkeys(modes)))


def run(overrides: dict[str, Any] | None = None, params_file: Path = PARAMS_FILE,
        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the benchmark and write its JSON report to ``cfg.out`` (when set)."""
    cfg = config(overrides, params_file)
    report = benchmark(cfg, progress)
    if cfg.out:
        from leve.atomic import write_text

        write_text(Path(cfg.out), json.dumps(report, indent=2) + "\n")
    return report
