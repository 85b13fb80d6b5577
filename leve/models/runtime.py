"""Inference runtimes, one home for ``leve predict``, ``leve serve`` and ``leve bench model``.

:func:`prepare_for_inference` turns a registered model into an :class:`InferenceModel` that is
called like the model itself (RGB ``(B, 3, H, W)`` in [0, 1] -> raw output) and keeps its
``max_depth``, ``output_stride`` and input-size contract. Runtimes (:data:`RUNTIMES`):

* ``auto`` (the default of ``leve predict`` and ``leve serve``): ``onnx`` on the CPU when
  onnxruntime is installed, else ``torch``; if ``onnx`` fails (export or check), ``torch``
  (``InferenceModel.fallback`` says why);
* ``eager``: the model as it is (the baseline every other runtime is checked against);
* ``torch``: batch norm folded into the preceding convolutions (:func:`fuse_batchnorm`) and
  channels-last weights and inputs;
* ``compiled``: ``torch`` then ``torch.compile`` (inductor; a C++ compiler on the CPU, triton on
  CUDA); the first call at a new size compiles (tens of seconds on a CPU);
* ``onnx``: the folded model exported to ONNX in memory (:func:`export_onnx`, the exporter of
  ``leve export``) and run by onnxruntime on the CPU (needs the ``export`` extra);
* ``onnx-int8``: that ONNX graph quantized to int8 by onnxruntime's static quantization
  (:func:`quantize_int8`: QDQ, per-channel int8 weights, uint8 activations, min-max calibration on
  ``calibration`` images; by default :data:`CALIBRATION_IMAGES` of the embedded synthetic rooms,
  ``leve bench model`` passes its store's), CPU only. ``leve export --quantize int8`` writes the same
  quantization to a file, calibrated on a store split; ``leve predict`` and ``leve serve`` run that file
  (:func:`load_exported`), never a quantization of their own inputs;
* ``openvino``: the ONNX graph of ``onnx`` read by OpenVINO's ONNX frontend (:func:`openvino_model`) and
  compiled for its CPU plugin in fp32 (``INFERENCE_PRECISION_HINT: f32``: on CPUs with bf16 units the
  plugin would otherwise round to bf16); needs the ``openvino`` package (``export`` extra), imported with
  its usage telemetry off (:func:`import_openvino`).
  ``leve export --format openvino`` writes the same conversion as an IR (``.xml`` + ``.bin``).

Each prepared model is verified against the eager model on a seeded random input (at the size
it will run at, so a compiled graph is compiled there): the largest absolute difference must
stay below :data:`TOLERANCE` of the eager output's range, or :class:`~leve.errors.LeveError`;
``onnx-int8`` (rounding to 256 levels moves single pixels far more) on the first calibration
image instead, its mean absolute difference below :data:`INT8_TOLERANCE` of that range.
"""

from __future__ import annotations

import copy
import hashlib
import io
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from leve.errors import LeveError

RUNTIMES = ("auto", "eager", "torch", "compiled", "onnx", "onnx-int8", "openvino")
ONNX_RUNTIMES = ("onnx", "onnx-int8")  # onnxruntime's CPU provider
CPU_RUNTIMES = (*ONNX_RUNTIMES, "openvino")  # onnxruntime's and OpenVINO's CPU plugins
DEFAULT_RUNTIME = "auto"
TOLERANCE = 1e-4  # max abs difference / eager output range (as `leve export`; fp32 reordering gives ~1e-6)
# int8: mean abs difference / eager output range; measured 0.035-0.067 on untrained leve models (64x96 and
# 96x128, synthetic rooms: a near-constant output, so a small range), so 0.15 passes honest rounding with a
# 2x margin and refuses a broken graph (a wrong scale or zero point: 0.3 and up)
INT8_TOLERANCE = 0.15
DIGEST_KEY = "leve_checkpoint_sha256"  # an export's metadata key: the sha256 of the checkpoint it was made from
INT8_SUFFIX = ".int8.onnx"  # `leve export --quantize int8`'s file beside the checkpoint, what onnx-int8 runs
CALIBRATION_IMAGES = 16  # default calibration: this many embedded synthetic rooms (val split, seed 0)
_CONTRACT = ("max_depth", "output_stride", "input_multiple", "min_input_size", "name")
_METADATA = {"shape", "size", "dim", "ndim", "dtype", "device", "is_cuda", "stride", "numel", "is_contiguous"}


# --------------------------------------------------------------------------- batch-norm folding


class _Uses(TorchFunctionMode):
    """Counts how many torch calls read each tensor (by identity; every tensor is kept alive so
    that ids are not reused). Metadata reads (``x.shape``) do not count."""

    def __init__(self) -> None:
        super().__init__()
        self.uses: Counter[int] = Counter()
        self.alive: list[Any] = []

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name != "__get__" and name not in _METADATA:
            for t in _tensors((args, kwargs)):
                self.uses[id(t)] += 1
                self.alive.append(t)
        out = func(*args, **kwargs)
        self.alive.append(out)
        return out


def _tensors(obj: Any) -> list[torch.Tensor]:
    """The tensors in nested tuples, lists and dicts."""
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for item in obj for t in _tensors(item)]
    if isinstance(obj, dict):
        return [t for item in obj.values() for t in _tensors(item)]
    return []


def example_input(model: nn.Module, batch: int = 1) -> torch.Tensor:
    """A seeded random input of the smallest size the model takes (64x64 for Leve)."""
    multiple = int(getattr(model, "input_multiple", 8))
    side = -(-int(getattr(model, "min_input_size", 64)) // multiple) * multiple
    g = torch.Generator().manual_seed(0)
    return torch.rand(batch, 3, side, side, generator=g)


def conv_bn_pairs(model: nn.Module, example: torch.Tensor | None = None) -> list[tuple[str, str]]:
    """``(conv, bn)`` module names where a ``BatchNorm2d`` reads a ``Conv2d``'s output and nothing
    else reads it, each module called once: found by running ``example`` through the model (in
    eval mode) while recording which call reads which tensor."""
    x = example_input(model) if example is None else example
    names = {m: n for n, m in model.named_modules()}
    calls: Counter[nn.Module] = Counter()
    conv_out: dict[int, nn.Module] = {}
    bn_in: list[tuple[nn.Module, int]] = []

    def hook(module: nn.Module, args: tuple, out: Any) -> None:
        calls[module] += 1
        if isinstance(module, nn.Conv2d):
            conv_out[id(out)] = module
            tracer.alive.append(out)
        elif isinstance(module, nn.BatchNorm2d) and args and isinstance(args[0], torch.Tensor):
            bn_in.append((module, id(args[0])))
            tracer.alive.append(args[0])

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.BatchNorm2d))]
    tracer = _Uses()
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), tracer:
            model(x.to(_device_of(model), _dtype_of(model)))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    pairs = []
    for bn, tensor in bn_in:
        conv = conv_out.get(tensor)
        if conv is not None and tracer.uses[tensor] == 1 and calls[conv] == calls[bn] == 1 \
                and conv.out_channels == bn.num_features and bn.track_running_stats:
            pairs.append((names[conv], names[bn]))
    return pairs


def fold_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> None:
    """Fold an eval-mode batch norm into ``conv`` in place: ``conv'(x) == bn(conv(x))``."""
    assert bn.running_mean is not None and bn.running_var is not None
    with torch.no_grad():
        scale = torch.rsqrt(bn.running_var.double() + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight.double()
        shift = -bn.running_mean.double() * scale
        if bn.bias is not None:
            shift = shift + bn.bias.double()
        weight = conv.weight.double() * scale.reshape(-1, 1, 1, 1)
        bias = shift if conv.bias is None else conv.bias.double() * scale + shift
        conv.weight = nn.Parameter(weight.to(conv.weight.dtype), requires_grad=False)
        conv.bias = nn.Parameter(bias.to(conv.weight.dtype), requires_grad=False)


def fuse_batchnorm(model: nn.Module, example: torch.Tensor | None = None) -> nn.Module:
    """An eval-mode copy of ``model`` with every foldable batch norm (:func:`conv_bn_pairs`) folded
    into its convolution and replaced by ``nn.Identity``; ``model`` itself is left as it was."""
    fused = copy.deepcopy(model).eval()
    modules = dict(fused.named_modules())
    for conv_name, bn_name in conv_bn_pairs(fused, example):
        fold_conv_bn(modules[conv_name], modules[bn_name])
        parent, _, attr = bn_name.rpartition(".")
        setattr(modules[parent] if parent else fused, attr, nn.Identity())
    return fused


# --------------------------------------------------------------------------- runtimes


@dataclass(frozen=True)
class Check:
    """A prepared runtime's output against the eager model's on the same input."""

    shape: list[int]
    max_abs_diff: float
    output_range: float
    relative: float
    mean_relative: float = 0.0  # mean abs difference / output range

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class InferenceModel(nn.Module):
    """A model prepared for one runtime; called like the model, with its size contract."""

    def __init__(self, model: nn.Module, runtime: str, fn: Callable[[torch.Tensor], torch.Tensor],
                 channels_last: bool) -> None:
        super().__init__()
        self.model = model  # the (folded) torch model: parameters, encoder/decoder, size checks
        self.runtime = runtime
        self.channels_last = channels_last
        self.__dict__["_fn"] = fn  # a compiled module or an onnxruntime call; not a submodule
        self.check: Check | None = None  # set by verify()
        self.fallback: str | None = None  # why ``auto`` did not run its first choice
        self.source_parameters = sum(p.numel() for p in model.parameters())  # as trained (set by prepare)
        self.onnx_graph: bytes | None = fn.graph if isinstance(fn, (OnnxCall, OpenVinoCall)) else None  # what it runs
        self.metadata: dict[str, str] = {}  # an exported file's metadata (load_exported)
        for attr in _CONTRACT:
            if hasattr(model, attr):
                setattr(self, attr, getattr(model, attr))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check = getattr(self.model, "check_input", None)
        if check is not None:
            check(x)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self._fn(x)


def _device_of(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


def _dtype_of(model: nn.Module) -> torch.dtype:
    return next((p.dtype for p in model.parameters()), torch.float32)


def checkpoint_digest(checkpoint: str | Path) -> str:
    """sha256 of a checkpoint file (of a Hugging Face folder: its ``config.json`` then ``model.safetensors``):
    what an export records as ``leve_checkpoint_sha256``."""
    path = Path(checkpoint)
    digest = hashlib.sha256()
    for part in [path] if path.is_file() else [path / "config.json", path / "model.safetensors"]:
        with open(part, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def int8_export_path(checkpoint: str | Path) -> Path:
    """Where ``leve export --format onnx --quantize int8`` writes a checkpoint's int8 file by default (and
    ``leve predict --runtime onnx-int8`` looks for it): ``<checkpoint stem>.int8.onnx`` beside it."""
    return Path(checkpoint).with_suffix(INT8_SUFFIX)


def export_onnx(model: nn.Module, example: torch.Tensor, target: str | Path | BinaryIO, opset: int = 17) -> None:
    """Write ``model`` as ONNX (torch's TorchScript-based exporter, ``dynamo=False``) to a path or a
    binary buffer: input ``rgb``, output ``out``, dynamic batch, height and width. ``leve export``
    writes its files with it."""
    axes = {0: "batch", 2: "height", 3: "width"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notes
        torch.onnx.export(model, (example,), str(target) if isinstance(target, (str, Path)) else target,
                          dynamo=False, opset_version=opset, input_names=["rgb"], output_names=["out"],
                          dynamic_axes={"rgb": axes, "out": axes})


def synthetic_calibration(resolution: tuple[int, int], count: int = CALIBRATION_IMAGES) -> list[torch.Tensor]:
    """``count`` embedded synthetic rooms (val split, seed 0) as ``(1, 3, H, W)`` inputs in [0, 1]:
    the calibration of ``onnx-int8`` when none is given."""
    from leve.datasets.synthetic import render_sample
    from leve.images import resize_rgb

    return [resize_rgb(render_sample(0, "val", i, *resolution)[0], resolution)[None] for i in range(count)]


def quantize_int8(fp32: bytes | str | Path, calibration: Sequence[torch.Tensor], per_channel: bool = True) -> bytes:
    """An fp32 ONNX graph (bytes or a path; input ``rgb``) quantized by onnxruntime's static quantization:
    QDQ format, int8 weights (per output channel when ``per_channel``), uint8 activations whose ranges
    are the min-max over ``calibration`` (inputs ``(B, 3, H, W)``). The dynamic batch, height and width
    axes are kept. Batch norms that no convolution absorbed stay fp32 (their per-channel axis is not
    the weights' one)."""
    import tempfile

    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.registry import QDQRegistry
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not calibration:
        raise LeveError("int8 quantization needs at least one calibration image")
    arrays = [x.detach().float().cpu().numpy() for x in calibration]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(arrays)

        def get_next(self) -> dict[str, Any] | None:
            x = next(self.items, None)
            return None if x is None else {"rgb": x}

    with tempfile.TemporaryDirectory(prefix="leve-int8-") as tmp:
        src, pre, out = Path(tmp, "fp32.onnx"), Path(tmp, "pre.onnx"), Path(tmp, "int8.onnx")
        src.write_bytes(fp32 if isinstance(fp32, bytes) else Path(fp32).read_bytes())
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=True)  # onnx shape inference + ORT's basic fusions
        ops = [op for op in QDQRegistry if op != "BatchNormalization"]
        quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=ops,
                        per_channel=per_channel, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        return out.read_bytes()


def onnx_session(model: bytes | str | Path, profile_prefix: str | None = None) -> Any:
    """An onnxruntime CPU session as the runtimes run it: torch's thread count, all graph optimizations
    (``profile_prefix``: with onnxruntime's profiling on, its JSON written there)."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise LeveError(f"runtime onnx needs the export extra ({exc.name} missing): pip install 'leve[export]'") from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # idle threads sleep, as torch's do
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return ort.InferenceSession(model if isinstance(model, bytes) else str(model), options,
                                providers=["CPUExecutionProvider"])


def profile_operators(graphs: dict[str, bytes], x: torch.Tensor, runs: int = 10, top: int = 8) -> dict[str, Any]:
    """Kernel time per operator type of each graph on ``x`` (onnxruntime's ``enable_profiling``): one
    untimed run each, then ``runs`` rounds that run every graph once, in turn, so that load from other
    processes falls on all alike. Per graph: ``total_ms`` (median over runs of the kernel time) and the
    ``top`` operator types (as the optimized graph runs them: fused, layout-converted) with the median
    ms per run, share of the total and node count."""
    import json
    import statistics
    import tempfile

    array = x.detach().float().contiguous().numpy()
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="leve-profile-") as tmp:
        sessions = {name: onnx_session(g, str(Path(tmp, f"ort{i}"))) for i, (name, g) in enumerate(graphs.items())}
        for _ in range(runs + 1):
            for session in sessions.values():
                session.run(None, {"rgb": array})
        for name, session in sessions.items():
            events = json.loads(Path(session.end_profiling()).read_text())
            kernels = [e for e in events if e.get("cat") == "Node" and str(e.get("name", "")).endswith("_kernel_time")]
            per_run = len(kernels) // (runs + 1)
            rounds: list[Counter[str]] = []
            nodes: Counter[str] = Counter()
            for r in range(1, runs + 1):  # run 0 warms up
                ms: Counter[str] = Counter()
                for e in kernels[r * per_run:(r + 1) * per_run]:
                    op = str(e.get("args", {}).get("op_name", "?"))
                    ms[op] += e["dur"] / 1000
                    nodes[op] += 1
                rounds.append(ms)
            median = Counter({op: statistics.median(m[op] for m in rounds) for op in nodes})
            total = statistics.median(sum(m.values()) for m in rounds)
            report[name] = {"total_ms": round(total, 3), "operators": {
                op: {"ms": round(t, 3), "share": round(t / total, 3) if total else 0.0, "nodes": nodes[op] // runs}
                for op, t in median.most_common(top)}}
    return report


class OnnxCall:
    """A call through an onnxruntime session; ``graph``: the ONNX bytes it runs (for profiling)."""

    def __init__(self, graph: bytes) -> None:
        self.graph = graph
        self.session = onnx_session(graph)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().float().contiguous().numpy()
        return torch.from_numpy(self.session.run(None, {"rgb": array})[0])


def import_openvino() -> Any:
    """The ``openvino`` package, imported with its usage telemetry off. A plain ``import openvino`` sends an
    event to Intel and writes ``~/intel/`` (openvino-telemetry, on unless the user ran its ``opt_in_out
    --opt_out``), without asking; openvino uses its own no-op stub when ``openvino_telemetry`` cannot be
    imported, so that module is made unimportable for this one import (restored after). An openvino that
    the process imported before is returned as it is."""
    import importlib
    import sys

    if "openvino" in sys.modules:
        return sys.modules["openvino"]
    block = "openvino_telemetry" not in sys.modules
    if block:
        sys.modules["openvino_telemetry"] = None  # type: ignore[assignment]  # import raises ImportError
    try:
        return importlib.import_module("openvino")
    except ImportError as exc:
        raise LeveError(f"runtime openvino needs the export extra ({exc.name} missing): pip install 'leve[export]'") from exc
    finally:
        if block and sys.modules.get("openvino_telemetry", False) is None:
            del sys.modules["openvino_telemetry"]


def openvino_model(onnx_graph: bytes | str | Path) -> Any:
    """An ONNX graph (bytes or a path) as an OpenVINO model, read by OpenVINO's ONNX frontend
    (``Core.read_model``, the frontend ``openvino.convert_model`` converts an ONNX file with)."""
    return import_openvino().Core().read_model(onnx_graph if isinstance(onnx_graph, bytes) else str(onnx_graph))


def openvino_compiled(model: Any) -> Any:
    """An OpenVINO model (or an IR path) compiled for the CPU as the runtime runs it: fp32 (no bf16 rounding on
    CPUs that have it), torch's thread count, latency hint."""
    ov = import_openvino()
    config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": torch.get_num_threads(),
              "PERFORMANCE_HINT": "LATENCY"}
    return ov.Core().compile_model(str(model) if isinstance(model, Path) else model, "CPU", config)


class OpenVinoCall:
    """A call through an OpenVINO model compiled for the CPU; ``graph``: the ONNX bytes it was converted from."""

    def __init__(self, graph: bytes) -> None:
        self.graph = graph
        self.compiled = openvino_compiled(openvino_model(graph))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        array = x.detach().float().contiguous().numpy()
        return torch.from_numpy(self.compiled(array)[0].copy())


def load_exported(model: nn.Module, path: str | Path, runtime: str = "onnx-int8") -> InferenceModel:
    """``model``'s exported ONNX file at ``path`` run by onnxruntime as ``runtime`` (``leve predict`` and
    ``leve serve``'s ``onnx-int8``: the file ``leve export --quantize int8`` wrote, checked there against
    PyTorch; which checkpoint it belongs to is the caller's check, on ``metadata``, the file's
    ``metadata_props``). ``model`` keeps the size contract."""
    graph = Path(path).read_bytes()
    try:
        call = OnnxCall(graph)
    except LeveError:
        raise
    except Exception as exc:  # a truncated or foreign file
        raise LeveError(f"{path}: cannot load as an ONNX model ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:200] if str(exc) else ''})") from exc
    prepared = InferenceModel(model.eval(), runtime, call, channels_last=False)
    prepared.metadata = dict(call.session.get_modelmeta().custom_metadata_map)
    prepared.source_parameters = sum(p.numel() for p in model.parameters())
    return prepared


def _onnx_fn(model: nn.Module, example: torch.Tensor, calibration: Sequence[torch.Tensor] | None = None) -> OnnxCall:
    """Export ``model`` to ONNX in memory (quantized to int8 on ``calibration`` when given) and return
    a call through an onnxruntime session."""
    buf = io.BytesIO()
    export_onnx(model, example, buf)
    return OnnxCall(buf.getvalue() if calibration is None else quantize_int8(buf.getvalue(), calibration))


def check_runtime(runtime: str, device: str | torch.device) -> None:
    """Refuse an unknown runtime, or onnx/openvino off the CPU (one line)."""
    if runtime not in RUNTIMES:
        raise LeveError(f"unknown runtime '{runtime}'; choose from {', '.join(RUNTIMES)}")
    if runtime in CPU_RUNTIMES and str(device).split(":")[0] != "cpu":
        provider = "OpenVINO's CPU plugin" if runtime == "openvino" else "onnxruntime's CPU provider"
        raise LeveError(f"runtime {runtime} runs on the CPU ({provider}), not {device}")


def compare(reference: torch.Tensor, got: torch.Tensor) -> Check:
    """Largest absolute difference, relative to the reference's range."""
    ref, out = reference.detach().float().cpu(), got.detach().float().cpu()
    if ref.shape != out.shape:
        raise LeveError(f"prepared model gave shape {tuple(out.shape)}, eager {tuple(ref.shape)}")
    diff = float((ref - out).abs().max())
    mean = float((ref - out).abs().mean())
    span = float(ref.max() - ref.min())
    return Check(list(ref.shape), diff, span, diff / span if span > 0 else diff, mean / span if span > 0 else mean)


def verify(prepared: InferenceModel, reference: nn.Module, x: torch.Tensor, tolerance: float | None = None) -> Check:
    """Run both on ``x``; record the comparison on ``prepared`` and refuse one beyond ``tolerance``
    (default :data:`TOLERANCE` of the max difference; ``onnx-int8``: :data:`INT8_TOLERANCE` of the mean)."""
    with torch.inference_mode():
        check = compare(reference(x), prepared(x))
    prepared.check = check
    int8 = prepared.runtime == "onnx-int8"
    limit = tolerance if tolerance is not None else INT8_TOLERANCE if int8 else TOLERANCE
    if not (check.mean_relative if int8 else check.relative) < limit:
        what = "mean" if int8 else "max"
        raise LeveError(f"runtime {prepared.runtime}: output differs from eager PyTorch at {check.shape} "
                        f"({what} abs diff {check.mean_relative if int8 else check.relative:.3g} of the output range "
                        f"{check.output_range:.3g}, limit {limit:.3g}); use --runtime eager")
    return check


def auto_runtime(device: str | torch.device) -> str:
    """What ``auto`` runs first: ``onnx`` on the CPU when onnxruntime is installed, else ``torch``."""
    if str(device).split(":")[0] == "cpu":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return "torch"
        return "onnx"
    return "torch"


def prepare_for_inference(model: nn.Module, runtime: str = DEFAULT_RUNTIME, resolution: tuple[int, int] | None = None,
                          batch: int = 1, check: bool = True, compile_options: dict[str, Any] | None = None,
                          calibration: Sequence[torch.Tensor] | None = None) -> InferenceModel:
    """``model`` (left unchanged) prepared for ``runtime`` on its own device, verified against it
    on a seeded random ``(batch, 3, *resolution)`` input when ``check`` (default: the smallest size
    the model takes). ``calibration``: ``onnx-int8``'s calibration inputs (``(B, 3, H, W)`` in [0, 1];
    default :func:`synthetic_calibration` at ``resolution``); int8 is checked on the first of them."""
    device = _device_of(model)
    check_runtime(runtime, device)
    if runtime != "auto":
        return _prepare(model, runtime, resolution, batch, check, compile_options, calibration)
    first = auto_runtime(device)
    try:
        return _prepare(model, first, resolution, batch, check, compile_options)
    except Exception as exc:  # an op the exporter or onnxruntime lacks, a failed check
        if first == "torch":
            raise
        prepared = _prepare(model, "torch", resolution, batch, check, compile_options)
        prepared.fallback = f"{first}: {type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        return prepared


def _prepare(model: nn.Module, runtime: str, resolution: tuple[int, int] | None, batch: int, check: bool,
             compile_options: dict[str, Any] | None, calibration: Sequence[torch.Tensor] | None = None) -> InferenceModel:
    device, dtype = _device_of(model), _dtype_of(model)
    model = model.eval()
    x = example_input(model, batch)
    if resolution is not None:
        x = torch.rand(batch, 3, *resolution, generator=torch.Generator().manual_seed(0))
    x = x.to(device, dtype)
    if runtime == "eager":
        prepared = InferenceModel(model, runtime, model, channels_last=False)
    else:
        fused = fuse_batchnorm(model, example_input(model).to(device, dtype))
        if runtime == "onnx":
            prepared = InferenceModel(fused, runtime, _onnx_fn(fused, x.cpu()), channels_last=False)
        elif runtime == "openvino":
            buf = io.BytesIO()
            export_onnx(fused, x.cpu(), buf)
            prepared = InferenceModel(fused, runtime, OpenVinoCall(buf.getvalue()), channels_last=False)
        elif runtime == "onnx-int8":
            if calibration is None:
                calibration = synthetic_calibration(tuple(x.shape[-2:]))
            prepared = InferenceModel(fused, runtime, _onnx_fn(fused, x.cpu(), calibration), channels_last=False)
            x = calibration[0].to(device, dtype)  # a real image: random noise is no test of int8 ranges
        else:
            fused = fused.to(memory_format=torch.channels_last)
            fn: Callable = fused
            if runtime == "compiled":
                fn = torch.compile(fused, **(compile_options or {}))
            prepared = InferenceModel(fused, runtime, fn, channels_last=True)
    prepared.source_parameters = sum(p.numel() for p in model.parameters())
    if check:
        verify(prepared, model, x)
    return prepared
