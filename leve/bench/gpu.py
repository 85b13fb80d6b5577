"""``leve bench gpu`` (``make gpu-check``): the GPU figures of issue 16 in one JSON, nothing downloaded.

Sized to finish in under 8 minutes on one H200 (:class:`Plan`; ``--tiny`` runs the same code on a
CPU in seconds, as the tests do). Sections, each timed, each with its own time budget (a soft one
its loops respect and a hard one, ``budget + grace``, that interrupts it), each recording its error
instead of ending the run:

* ``store``: a NYU-sized (480x640) synthetic store of smooth random images and depth;
* ``teacher_cache``: the Depth-Anything V1/V2-Small architecture with random weights
  (``small-random``: the same compute as the real checkpoints) in fp16 and bf16 autocast:
  images/s of the forward pass alone (uint8 batch in, maps at the stored size out, preprocessing on
  the device) and of the whole ``leve teacher-cache`` path (read, resize, teacher, write);
* ``train``: samples/s of the student (``leve``) at 240x320 and 480x640 through the real
  ``leve train`` pieces (:class:`leve.train.loop.Trainer`: its DataLoader and training step), without
  and with KD from the cache (ratio), against the loader alone and the step alone on a batch in
  memory: ``gpu_waited_for_data`` when the full loop is >10 % slower than the step alone;
* ``inference``: FPS at 480x640 for batch 1 and 32 in fp16 (fp32 on a CPU): ``eager``, ``torch``
  (batch norm folded, channels-last) and ``compiled`` (``torch.compile``, while the budget lasts,
  ``leve`` first), for every registered model, checked against eager;
* peak GPU memory per section and overall; ``goals`` (on CUDA only): teacher cache >= 1000
  images/s, ``leve`` >= 1000 FPS at batch 32, training never waiting for data.
"""

from __future__ import annotations

import contextlib
import copy
import gc
import os
import signal
import statistics
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from leve.bench import report_header
from leve.datasets.nyu import MAX_DEPTH
from leve.device import resolve_device
from leve.errors import LeveError
from leve.params import build_config

NYU_SIZE = (480, 640)
KD_EPS = 0.25
GOALS = {"teacher_images_per_s": 1000.0, "leve_fps_batch32": 1000.0}


@dataclass(frozen=True)
class Plan:
    """What ``leve bench gpu`` measures and how long each section may take (``--set key=value``)."""

    device: str = "auto"
    store_images: int = 512  # NYU-sized synthetic store (train split); the cache path runs over all of it
    store_size: tuple[int, int] = NYU_SIZE
    rgb_codec: str = "raw"  # raw | jpeg (the store's RGB encoding)
    teacher: str = "small-random"  # Depth-Anything V1/V2-Small architecture, random weights
    teacher_amps: tuple[str, ...] = ("float16", "bfloat16")
    teacher_batch: int = 32
    teacher_workers: int = 8
    teacher_rounds: int = 10  # timed forward batches
    train_model: str = "leve"
    train_sizes: tuple[tuple[int, int], ...] = ((240, 320), (480, 640))
    train_batch: int = 32
    train_steps: int = 40  # timed steps per measurement (step alone, loader alone, loop) and case
    train_warmup: int = 3  # untimed steps first: worker start-up, allocator, kernel choice
    train_workers: int = 8
    infer_size: tuple[int, int] = NYU_SIZE
    infer_batches: tuple[int, ...] = (1, 32)
    infer_models: tuple[str, ...] = ()  # empty: every registered model
    infer_repeats: int = 20
    compile: bool = True
    store_budget_s: float = 60.0
    teacher_budget_s: float = 90.0
    train_budget_s: float = 150.0
    infer_budget_s: float = 150.0
    grace_s: float = 60.0  # a section still running budget + grace seconds after it began is interrupted


TINY = Plan(device="auto", store_images=4, store_size=(128, 192), teacher="tiny-random", teacher_batch=2,
            teacher_workers=0, teacher_rounds=2, train_sizes=((64, 96), (128, 192)), train_batch=2,
            train_steps=2, train_warmup=1, train_workers=1, infer_size=(64, 96), infer_batches=(1, 2),
            infer_models=("leve", "leve-mobilenetv3", "densedepth-mobilenetv2"), infer_repeats=2, compile=False,
            store_budget_s=60, teacher_budget_s=60, train_budget_s=120, infer_budget_s=120, grace_s=60)


def plan_from(overrides: dict[str, Any], tiny: bool = False) -> Plan:
    """The plan (``TINY`` with ``tiny``) with ``key=value`` overrides applied and checked."""
    base = asdict(TINY if tiny else Plan())
    plan = build_config(Plan, {**base, **overrides}, "bench gpu")
    positive = ("store_images", "teacher_batch", "teacher_rounds", "train_batch", "train_steps",
                "infer_repeats")
    bad = [k for k in positive if getattr(plan, k) < 1]
    if bad or min(plan.teacher_workers, plan.train_workers, plan.train_warmup) < 0 or min(plan.infer_batches, default=1) < 1:
        raise LeveError(f"bench gpu: {', '.join(bad) or 'workers and batches'} must be positive")
    if plan.store_images < plan.train_batch:
        raise LeveError(f"bench gpu: store_images {plan.store_images} < train_batch {plan.train_batch}")
    return plan


# --------------------------------------------------------------------------- sections


class SectionTimeout(Exception):
    """A section ran past its hard time limit."""


@contextlib.contextmanager
def hard_limit(seconds: float) -> Iterator[None]:
    """Raise :class:`SectionTimeout` in the main thread after ``seconds`` (a no-op elsewhere)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def fire(signum: int, frame: Any) -> None:
        raise SectionTimeout(f"interrupted after {seconds:.0f} s (time budget + grace)")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _reset_peak(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)


def _peak_gb(dev: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(dev) / 1e9, 3) if dev.type == "cuda" else None


def _error(exc: BaseException) -> dict[str, Any]:
    lines = traceback.format_exception(type(exc), exc, exc.__traceback__)
    first = str(exc).splitlines()[0][:400] if str(exc) else ""
    return {"error": f"{type(exc).__name__}: {first}", "where": "".join(lines[-3:])[-800:]}


def run_section(fn: Callable[[float], dict[str, Any]], budget: float, grace: float, dev: torch.device
                ) -> dict[str, Any]:
    """``fn(deadline)`` under a hard limit of ``budget + grace`` s; its result, or its error, with
    the seconds it took and its peak GPU memory."""
    _reset_peak(dev)
    t0 = time.monotonic()
    try:
        with hard_limit(budget + grace):
            result = fn(t0 + budget)
    except (Exception, SectionTimeout) as exc:
        result = _error(exc)
    result["seconds"] = round(time.monotonic() - t0, 2)
    result["budget_s"] = budget
    result["peak_gpu_memory_gb"] = _peak_gb(dev)
    return result


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


# --------------------------------------------------------------------------- store


class SmoothRGBD:
    """Picklable sample loader: smooth random RGB (JPEG bytes for ``jpeg``) and positive depth."""

    def __init__(self, size: tuple[int, int], codec: str) -> None:
        self.size, self.codec = size, codec

    def __call__(self, i: int) -> tuple[dict[str, Any], dict[str, Any]]:
        h, w = self.size
        rng = np.random.default_rng(i)
        yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
        rgb = np.stack([np.sin(rng.uniform(2, 9) * xx + rng.uniform(1, 7) * yy + c) for c in range(3)], -1)
        rgb = np.clip(rgb * 100 + 128 + rng.normal(0, 8, (h, w, 3)), 0, 255).astype(np.uint8)
        depth = (1 + 8 * yy + rng.uniform(0, 0.2, (h, w))).astype(np.float32)
        meta = {"height": h, "width": w}
        if self.codec == "jpeg":
            from leve.store.images import encode_jpeg

            return {"rgb_jpeg": encode_jpeg(rgb, 90), "depth": depth}, meta
        return {"rgb": rgb, "depth": depth}, meta


def build_synthetic_store(path: Path, plan: Plan) -> dict[str, Any]:
    """A one-split (``train``) store of ``plan.store_images`` samples at ``plan.store_size``."""
    from leve.datasets.build import SplitSource, build_store
    from leve.store.format import SplitSpec, dataset_arrays

    t0 = time.perf_counter()
    spec = SplitSpec("train", plan.store_images, dataset_arrays(*plan.store_size, rgb_codec=plan.rgb_codec),
                     {"height": "int32", "width": "int32"})
    build_store(path, {"dataset": "bench", "units": "m", "max_depth": MAX_DEPTH}, f"bench-gpu-{plan.store_images}",
                [SplitSource(spec, SmoothRGBD(plan.store_size, plan.rgb_codec))],
                workers=max(1, min(8, os.cpu_count() or 1, plan.store_images // 64)), block_size=64, show_progress=False)
    return {"path": path.name, "images": plan.store_images, "size": list(plan.store_size),
            "rgb_codec": plan.rgb_codec, "build_s": round(time.perf_counter() - t0, 2)}


# --------------------------------------------------------------------------- teacher


def teacher_forward(runner: Any, store: Path, batch: int, deadline: float, rounds: int) -> dict[str, Any]:
    """Images/s of the teacher on a uint8 batch in host memory, at the stored size when the runner
    preprocesses on the device (CUDA), else resized on the host (device preprocessing, forward, maps
    resized to the stored size), after one warm-up batch."""
    from leve.store.reader import open_split

    split = open_split(store, "train")
    prep = runner.teacher.preprocessing
    on_device = runner.preprocess == "device"
    images = torch.from_numpy(np.stack([prep.host_input(split.rgb(i % len(split)), on_device) for i in range(batch)]))
    if runner.cuda:
        images = images.pin_memory()
    size = split.size(0)
    runner.raw(images, size)
    _sync(runner.device)
    t0, done = time.perf_counter(), 0
    while done < rounds and (done == 0 or time.monotonic() < deadline):
        runner.raw(images, size)
        done += 1
    _sync(runner.device)
    seconds = time.perf_counter() - t0
    return {"batches": done, "batch_size": batch, "images_per_s": round(done * batch / seconds, 2)}


def teacher_cache_path(store: Path, out: Path, teacher: Any, amp: str, plan: Plan, dev: torch.device
                       ) -> dict[str, Any]:
    """Images/s of the whole ``leve teacher-cache`` path over the store."""
    from leve.teacher.cache.build import build_teacher_cache

    t0 = time.perf_counter()
    result = build_teacher_cache(store, out, "train", teacher, batch_size=plan.teacher_batch, device=str(dev),
                                 amp=amp, tta="none", crops=0, workers=plan.teacher_workers, block_size=64,
                                 show_progress=False,
                                 force=True)
    seconds = time.perf_counter() - t0
    return {"images": result.samples, "seconds": round(seconds, 2), "images_per_s": round(result.samples / seconds, 2),
            "workers": plan.teacher_workers}


def teacher_section(store: Path, cache: Path, plan: Plan, dev: torch.device, deadline: float) -> dict[str, Any]:
    """Forward and cache-path images/s per autocast dtype (CUDA; one float32 run on a CPU)."""
    from leve.teacher.infer import TeacherRunner
    from leve.teacher.loading import load_teacher

    teacher = load_teacher(plan.teacher)
    out: dict[str, Any] = {"model": plan.teacher, "parameters": sum(p.numel() for p in teacher.model.parameters()),
                           "teacher_input": list(teacher.preprocessing.output_size(*plan.store_size)), "amps": {}}
    amps = plan.teacher_amps if dev.type == "cuda" else ("float32",)
    if dev.type != "cuda":
        out["amps"].update({a: {"skipped": "autocast needs CUDA (ran float32 on the CPU)"} for a in plan.teacher_amps})
    for k, amp in enumerate(amps):
        if k and time.monotonic() > deadline:
            out["amps"][amp] = {"skipped": "time budget"}
            continue
        try:
            runner = TeacherRunner(teacher, device=str(dev), amp=amp, tta="none")
            row = {"forward": teacher_forward(runner, store, plan.teacher_batch, deadline, plan.teacher_rounds)}
            target = cache if k == 0 else cache.with_name(f"{cache.stem}-{amp}.zarr")  # the first feeds KD
            row["cache_path"] = teacher_cache_path(store, target, teacher, amp, plan, dev)
            out["amps"][amp] = row
        except Exception as exc:
            out["amps"][amp] = _error(exc)
    return out


# --------------------------------------------------------------------------- training


def _trainer(store: Path, cache: Path | None, size: tuple[int, int], plan: Plan, dev: torch.device,
             work: Path) -> Any:
    """The real ``leve train`` pieces on the synthetic store (the train split also serves as val)."""
    from leve.train.config import KDConfig, TrainConfig
    from leve.train.loop import Trainer

    kd = KDConfig(eps=KD_EPS, teacher_dir=cache.parent) if cache is not None else KDConfig(eps=0.0)
    cfg = TrainConfig(dataset=store.stem, data_dir=store.parent, train_split="train", val_split="train",
                      model=plan.train_model, resolution=size, epochs=1000, batch_size=plan.train_batch,
                      workers=plan.train_workers, device=str(dev), deterministic=False, kd=kd, val_every=0,
                      checkpoint_minutes=0, out_dir=work / "student", log_dir=work / "log")
    return Trainer(cfg, show_progress=False)


def _batches(trainer: Any) -> Iterator[Any]:
    """The training loader's batches, epoch after epoch, as ``leve train`` draws them."""
    epoch = 0
    while True:
        trainer.sampler.set_position(epoch, 0)
        yield from trainer.train_loader
        epoch += 1


def _rate(samples: int, seconds: float) -> float:
    return round(samples / max(seconds, 1e-9), 2)


def train_case(trainer: Any, plan: Plan, dev: torch.device, deadline: float) -> dict[str, Any]:
    """Samples/s of the step alone (one batch held in memory), of the loader alone (after its
    prefetched batches are drained: the workers' own rate) and of the real loop, which starts with
    the prefetch queue drained, as the loader left it."""
    batches, n, steps = _batches(trainer), plan.train_batch, plan.train_steps
    loader = trainer.train_loader
    in_flight = (loader.prefetch_factor or 0) * loader.num_workers if loader.num_workers else 0
    for _ in range(plan.train_warmup):  # worker start-up, allocator and kernel choice
        trainer.runner.step(next(batches))
    _sync(dev)
    held = {k: v.clone() for k, v in next(batches).items()}  # a copy: a shared batch lasts until the next draw

    def timed(fn: Callable[[], float]) -> tuple[int, float, float]:
        t0, done, waited = time.perf_counter(), 0, 0.0
        while done < steps and (done < 2 or time.monotonic() < deadline):
            waited += fn()
            done += 1
        _sync(dev)
        return done, time.perf_counter() - t0, waited

    def step_only() -> float:
        trainer.runner.step(held)
        return 0.0

    def loader_only() -> float:
        next(batches)
        return 0.0

    def loop() -> float:
        t0 = time.perf_counter()
        batch = next(batches)
        wait = time.perf_counter() - t0
        trainer.runner.step(batch)
        return wait

    rows = {"step": timed(step_only)}
    for _ in range(in_flight):  # batches the workers prepared while the step ran
        next(batches)
    rows["loader"] = timed(loader_only)
    rows["loop"] = timed(loop)
    rates = {name: _rate(done * n, sec) for name, (done, sec, _) in rows.items()}
    done, seconds, waited = rows["loop"]
    return {"samples_per_s": rates["loop"], "loader_samples_per_s": rates["loader"],
            "step_samples_per_s": rates["step"], "steps": {k: v[0] for k, v in rows.items()},
            "prefetched_batches_drained": in_flight, "host_wait_fraction": round(waited / max(seconds, 1e-9), 3),
            "gpu_waited_for_data": rates["loop"] < 0.9 * rates["step"]}


def train_section(store: Path, cache: Path, plan: Plan, dev: torch.device, deadline: float) -> dict[str, Any]:
    """Every training size, without and with KD from the cache; the KD / plain ratio per size."""
    out: dict[str, Any] = {"model": plan.train_model, "batch_size": plan.train_batch, "workers": plan.train_workers,
                           "kd_eps": KD_EPS, "cases": {}}
    cases = [(size, kd) for size in plan.train_sizes for kd in (False, True)]
    for k, (size, kd) in enumerate(cases):
        key = f"{size[0]}x{size[1]}/{'kd' if kd else 'plain'}"
        share = (deadline - time.monotonic()) / (len(cases) - k)
        if share <= 0:
            out["cases"][key] = {"skipped": "time budget"}
            continue
        trainer = None
        try:
            with tempfile.TemporaryDirectory() as work:
                trainer = _trainer(store, cache if kd else None, (size[0], size[1]), plan, dev, Path(work))
                out["cases"][key] = train_case(trainer, plan, dev, time.monotonic() + share)
        except Exception as exc:
            out["cases"][key] = _error(exc)
        finally:
            del trainer
            gc.collect()
    for size in plan.train_sizes:
        plain, kd = (out["cases"].get(f"{size[0]}x{size[1]}/{m}", {}).get("samples_per_s") for m in ("plain", "kd"))
        if plain and kd:
            out.setdefault("kd_over_plain_samples_per_s", {})[f"{size[0]}x{size[1]}"] = round(kd / plain, 3)
    waited = [c["gpu_waited_for_data"] for c in out["cases"].values() if "gpu_waited_for_data" in c]
    out["gpu_waited_for_data"] = any(waited) if waited else None
    return out


# --------------------------------------------------------------------------- inference


def _fps(times: list[float], batch: int) -> dict[str, Any]:
    med = statistics.median(times)
    return {"median_ms": round(med, 3), "fps": round(1000.0 * batch / med, 1), "runs": len(times)}


def infer_model(name: str, plan: Plan, dev: torch.device, dtype: torch.dtype, modes: tuple[str, ...]
                ) -> dict[str, Any]:
    """FPS of one model per batch size and mode, interleaved, each mode checked against eager."""
    from leve.bench.model import time_interleaved
    from leve.models.registry import create_model
    from leve.models.runtime import compare, prepare_for_inference

    eager = create_model(name).eval().to(dev, dtype)
    prepared: dict[str, Any] = {"eager": eager}
    out: dict[str, Any] = {}
    for mode in modes[1:]:
        t0 = time.perf_counter()
        try:
            options = {"dynamic": False} if mode == "compiled" else None
            prepared[mode] = prepare_for_inference(copy.deepcopy(eager), mode, check=False, compile_options=options)
        except Exception as exc:
            out[mode] = _error(exc)
        out.setdefault("prepare_s", {})[mode] = round(time.perf_counter() - t0, 2)
    for batch in plan.infer_batches:
        x = torch.rand(batch, 3, *plan.infer_size, generator=torch.Generator().manual_seed(0)).to(dev, dtype)
        row: dict[str, Any] = {}
        fns = {}
        with torch.inference_mode():
            reference = eager(x)
            for mode, fn in prepared.items():
                try:
                    t0 = time.perf_counter()
                    y = fn(x)  # a compiled graph compiles here, for this batch size
                    _sync(dev)
                    row[mode] = {"first_call_s": round(time.perf_counter() - t0, 3)}
                    if mode != "eager":
                        row[mode]["check"] = compare(reference, y).to_dict()
                    fns[mode] = (fn, x)
                except Exception as exc:
                    row[mode] = _error(exc)
        for mode, times in time_interleaved(fns, 2, plan.infer_repeats).items():
            row[mode].update(_fps(times, batch))
        out[f"batch{batch}"] = row
    return out


def inference_section(plan: Plan, dev: torch.device, deadline: float) -> dict[str, Any]:
    """Every model in eager and ``torch`` first; then compiled, ``leve`` first, while the budget lasts."""
    from leve.models.registry import DEFAULT_MODEL, list_models

    names = list(plan.infer_models) or list_models()
    names = sorted(names, key=lambda n: n != DEFAULT_MODEL)
    cuda = dev.type == "cuda"
    dtype = torch.float16 if cuda else torch.float32
    out: dict[str, Any] = {"size": list(plan.infer_size), "dtype": str(dtype).removeprefix("torch."),
                           "batches": list(plan.infer_batches), "models": {}}
    if cuda:
        torch.backends.cudnn.benchmark = True
    share = 0.4 if plan.compile else 1.0  # the first pass may use this much of the budget
    first_deadline = time.monotonic() + share * (deadline - time.monotonic())
    for name in names:
        if time.monotonic() > first_deadline and out["models"]:
            out["models"][name] = {"skipped": "time budget"}
            continue
        try:
            out["models"][name] = infer_model(name, plan, dev, dtype, ("eager", "torch"))
        except Exception as exc:
            out["models"][name] = _error(exc)
    last = 0.0  # seconds the previous model's compiled pass took: the next one is not started without them
    for name in names:
        row = out["models"][name]
        if not plan.compile:
            row["compiled"] = {"skipped": "compile off"}
        elif time.monotonic() + last > deadline:
            row["compiled"] = {"skipped": "time budget"}
        else:
            t0 = time.monotonic()
            try:
                row["compiled"] = infer_model(name, plan, dev, dtype, ("eager", "compiled"))
            except Exception as exc:
                row["compiled"] = _error(exc)
            last = time.monotonic() - t0
    return out


# --------------------------------------------------------------------------- entry


def _environment(dev: torch.device) -> dict[str, Any]:
    env: dict[str, Any] = {"cuda_available": torch.cuda.is_available(), "cpu_count": os.cpu_count()}
    if dev.type == "cuda":
        props = torch.cuda.get_device_properties(dev)
        env.update({"gpu": props.name, "gpu_memory_gb": round(props.total_memory / 1e9, 1),
                    "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
                    "bf16_supported": torch.cuda.is_bf16_supported()})
    try:
        env["loadavg_1min"] = round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        pass
    return env


def _goals(report: dict[str, Any], cuda: bool) -> dict[str, Any]:
    """Issue 16's H200 goals against what was measured (only evaluated on CUDA)."""
    if not cuda:
        return {"evaluated": False, "why": "no CUDA: the goals are for an H200"}
    amps = report["teacher_cache"].get("amps", {})
    teacher = max((a.get("cache_path", {}).get("images_per_s", 0) for a in amps.values() if isinstance(a, dict)),
                  default=0)
    leve = report["inference"].get("models", {}).get("leve", {})
    fps = [leve.get("batch32", {}).get(m, {}).get("fps", 0) for m in ("eager", "torch")]
    fps.append(leve.get("compiled", {}).get("batch32", {}).get("compiled", {}).get("fps", 0))
    waited = report["train"].get("gpu_waited_for_data")
    return {"evaluated": True,
            "teacher_cache_images_per_s": {"best": teacher, "goal": GOALS["teacher_images_per_s"],
                                           "met": teacher >= GOALS["teacher_images_per_s"]},
            "leve_fps_480x640_batch32_fp16": {"best": max(fps), "goal": GOALS["leve_fps_batch32"],
                                              "met": max(fps) >= GOALS["leve_fps_batch32"]},
            "training_never_waits_for_data": {"gpu_waited_for_data": waited, "met": waited is False}}


def run_bench(plan: Plan, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Every section in turn; the JSON-ready report."""
    dev = resolve_device(plan.device)
    say = progress or (lambda message: None)
    t0 = time.monotonic()
    report: dict[str, Any] = {**report_header("gpu", dev), "plan": asdict(plan), "environment": _environment(dev)}
    with tempfile.TemporaryDirectory() as tmp:
        store, cache = Path(tmp) / "data" / "bench.zarr", Path(tmp) / "teacher" / "bench.zarr"
        say(f"bench gpu on {dev}: store {plan.store_images} x {plan.store_size[0]}x{plan.store_size[1]}")
        report["store"] = run_section(lambda d: build_synthetic_store(store, plan), plan.store_budget_s,
                                      plan.grace_s, dev)
        say("teacher cache")
        report["teacher_cache"] = run_section(lambda d: teacher_section(store, cache, plan, dev, d),
                                              plan.teacher_budget_s, plan.grace_s, dev)
        say("student training")
        report["train"] = run_section(lambda d: train_section(store, cache, plan, dev, d), plan.train_budget_s,
                                      plan.grace_s, dev)
    say("student inference")
    report["inference"] = run_section(lambda d: inference_section(plan, dev, d), plan.infer_budget_s, plan.grace_s, dev)
    peaks = [report[s]["peak_gpu_memory_gb"] for s in ("store", "teacher_cache", "train", "inference")]
    report["peak_gpu_memory_gb"] = max((p for p in peaks if p is not None), default=None)
    report["goals"] = _goals(report, dev.type == "cuda")
    report["seconds"] = round(time.monotonic() - t0, 1)
    return report

