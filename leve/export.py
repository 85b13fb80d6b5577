"""``leve export``: a checkpoint to ONNX, TorchScript, an OpenVINO IR, a Hugging Face folder (``hf``:
:mod:`leve.models.hf`), LiteRT/TFLite or Core ML (:mod:`leve.export_mobile`), verified against PyTorch after
export.

A student distilled from a non-commercial teacher (its lineage's ``non_commercial``: Depth-Anything V2
Base/Large, DepthPro) is exported, in any format, only with ``accept_noncommercial``
(``--accept-noncommercial``); without it one line names the checkpoint, the teacher and its licence, and
nothing is written.

ONNX uses torch's TorchScript-based exporter (``dynamo=False``: no onnxscript dependency) with
dynamic batch, height and width; the graph is run with onnxruntime and compared with the
PyTorch output at the export size (batch 2) and at a second size. The model description
(name, max_depth, resolution, output_stride: the output is the input size / output_stride, 2 for
DenseDepth; ``leve_input_multiple``: height and width must be multiples of it), what the output
means (``leve_depth_kind`` metric | relative, ``leve_depth_units``, ``leve_output``: the sentence of
:func:`leve.models.card.depth_output`; ``output`` keeps its short form, ``max_depth/depth`` for a
metric model) and its lineage (teacher, licence, non-commercial flag, data: :mod:`leve.models.lineage`)
go into the ONNX metadata, and into a TorchScript export's extra file ``leve.json`` (read it with
``torch.jit.load(path, _extra_files={"leve.json": ""})``). The export size must be one the model takes (DenseDepth:
multiples of 8). The file is written under a
temporary name and moved into place only when verification passes. Every ONNX, OpenVINO and
TorchScript export records which checkpoint it was made from: ``leve_checkpoint`` (its file name) and
``leve_checkpoint_sha256`` (:func:`leve.models.runtime.checkpoint_digest`), which ``leve predict --runtime
onnx-int8`` compares before it runs an int8 file.

``--format openvino``: the verified ONNX graph converted by OpenVINO's ONNX frontend
(:func:`leve.models.runtime.openvino_model`: ``Core.read_model``, the frontend ``openvino.convert_model``
converts an ONNX file with) and saved with ``openvino.save_model`` as an IR (``<checkpoint stem>.xml`` and
its ``.bin``, fp32 weights: ``compress_to_fp16=False``), the ONNX metadata under the IR's ``rt_info``
section ``leve`` (``model.get_rt_info(["leve", key])``); the IR is read back from disk, compiled for
OpenVINO's CPU plugin in fp32 and checked against PyTorch as the ONNX file is.

``--quantize int8`` (ONNX only) then quantizes the verified graph with onnxruntime's static
quantization (:func:`leve.models.runtime.quantize_int8`: QDQ, per-channel int8 weights, uint8
activations, min-max ranges) calibrated on ``calibration.images`` images of a store split (evenly
spaced, resized to the export size), written by default as ``<checkpoint stem>.int8.onnx``. Its
metadata adds ``leve_quantization`` (int8), ``leve_quant_format``, ``leve_calibration_store``,
``leve_calibration_split``, ``leve_calibration_images`` and ``leve_calibration_method``. It is checked
against PyTorch on calibration images at the export size and at a second size (the dynamic axes
survive quantization): the mean absolute difference must stay below
:data:`leve.models.runtime.INT8_TOLERANCE` of the output range (rounding to 256 levels moves single
pixels far more than fp32 reordering, so the max is reported, not held to :data:`TOLERANCE`).

``--format tflite`` (litert-torch, the ``tflite`` extra) writes ``<checkpoint stem>.tflite`` with a fixed
``1x3xHxW`` input at the export size, the metadata as its flatbuffer metadata entry ``leve`` (JSON); it is
run by LiteRT's interpreter on two inputs and held to :data:`TOLERANCE` like ONNX. ``--format coreml``
(coremltools) writes the ML Program package ``<checkpoint stem>.mlpackage`` (fp32, fixed input), the
metadata in its ``user_defined_metadata``; Core ML runs only on macOS, so its features and metadata are
checked, not its numbers (the result's ``note`` says so).
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from leve.atomic import atomic_path
from leve.errors import LeveError
from leve.models.card import depth_output
from leve.models.checkpoint import CheckpointInfo, load_checkpoint
from leve.models.lineage import Lineage
from leve.models.runtime import DIGEST_KEY, INT8_SUFFIX, INT8_TOLERANCE, checkpoint_digest, export_onnx, quantize_int8
from leve.params import PARAMS_FILE, resolved

FORMATS = ("onnx", "torchscript", "hf", "openvino", "tflite", "coreml")
QUANTIZE = ("int8",)
SUFFIX = {"onnx": ".onnx", "torchscript": ".torchscript.pt", "int8": INT8_SUFFIX, "openvino": ".xml",
          "tflite": ".tflite", "coreml": ".mlpackage"}
OPENVINO_SECTION = "leve"  # an OpenVINO IR's rt_info section holding the metadata
TOLERANCE = 1e-4  # max abs difference relative to the output's range
TORCHSCRIPT_META = "leve.json"  # a TorchScript export's description (model_metadata), an extra file in its archive


@dataclass
class Check:
    """One comparison of the exported model with PyTorch."""

    shape: list[int]
    max_abs_diff: float
    output_range: float
    relative: float
    mean_relative: float = 0.0  # mean abs difference / output range


@dataclass(frozen=True)
class Calibration:
    """Where int8 calibration images come from: ``images`` evenly spaced samples of ``split`` of ``store``
    (:meth:`from_params`: the ``bench.model.int8_*`` keys, which ``leve bench model`` calibrates with too)."""

    store: str
    split: str
    images: int
    method: str = "minmax"

    @classmethod
    def from_params(cls, store: str | Path | None = None, split: str | None = None, images: int | None = None,
                    params_file: Path = PARAMS_FILE) -> Calibration:
        """The values given, the rest from params ``bench.model.int8_store``, ``int8_calibration_split``
        and ``int8_calibration_images`` (``params_file``, else as shipped)."""
        def key(name: str, value: Any) -> Any:
            return value if value is not None else resolved(f"bench.model.{name}", params_file)

        return cls(str(key("int8_store", store)), str(key("int8_calibration_split", split)),
                   int(key("int8_calibration_images", images)))

    def inputs(self, size: tuple[int, int]) -> list[torch.Tensor]:
        """The calibration images as ``(1, 3, H, W)`` inputs in [0, 1] at ``size``."""
        from leve.images import resize_rgb
        from leve.store.reader import open_split

        if self.images < 1:
            raise LeveError(f"--calibration-images must be >= 1, got {self.images}")
        if not Path(self.store).exists():
            raise LeveError(f"calibration store {self.store} not found; build it (leve prepare ...) or pass "
                            "--calibration-store")
        split = open_split(self.store, self.split)
        if len(split) == 0:
            raise LeveError(f"{self.store}/{self.split}: no images to calibrate on")
        picks = sorted({int(round(v)) for v in np.linspace(0, len(split) - 1, min(self.images, len(split)))})
        return [resize_rgb(split.rgb(i), size)[None] for i in picks]

    def metadata(self, count: int) -> dict[str, str]:
        return {"leve_quantization": "int8", "leve_quant_format": "QDQ (per-channel int8 weights, uint8 activations)",
                "leve_calibration_store": Path(self.store).name, "leve_calibration_split": self.split,
                "leve_calibration_images": str(count), "leve_calibration_method": self.method}


@dataclass
class ExportResult:
    path: str
    format: str
    model: str
    checks: list[Check] = field(default_factory=list)
    quantize: str | None = None
    note: str = ""  # what was not verified (Core ML: no numbers off macOS)

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def max_abs_diff(self) -> float:
        """The largest difference from PyTorch over the checks; NaN when nothing was run (Core ML)."""
        return max((c.max_abs_diff for c in self.checks), default=float("nan"))


def require_licence(checkpoint: str | Path, info: CheckpointInfo, accept_noncommercial: bool) -> None:
    """Refuse to export a student of a non-commercial teacher unless ``accept_noncommercial`` (one line)."""
    lineage = Lineage.of(info)
    if lineage.non_commercial and not accept_noncommercial:
        t = lineage.teacher or {}
        raise LeveError(f"{checkpoint}: distilled from the teacher {t.get('model', 'unknown')} whose licence is "
                        f"{t.get('licence', lineage.licence)}: the student is for non-commercial use only; pass "
                        "--accept-noncommercial to export it under those terms")


def export_checkpoint(checkpoint: str | Path, fmt: str, out: str | Path | None = None,
                      resolution: tuple[int, int] | None = None, opset: int = 17,
                      metrics: tuple[str | Path, ...] = (), quantize: str | None = None,
                      calibration: Calibration | None = None, accept_noncommercial: bool = False) -> ExportResult:
    """Export, verify, then move the file into place; a failed check leaves nothing behind.
    ``hf``: a Hugging Face layout folder (:mod:`leve.models.hf`; ``metrics``: ``leve eval`` files
    for its model card), by default ``<checkpoint stem>-hf`` beside the checkpoint. ``quantize="int8"``
    (onnx only): the graph quantized on ``calibration`` (default :meth:`Calibration.from_params`), by default
    ``<checkpoint stem>.int8.onnx``. ``openvino``: an IR, by default ``<checkpoint stem>.xml`` (and ``.bin``).
    ``tflite``: ``<checkpoint stem>.tflite``; ``coreml``: the package ``<checkpoint stem>.mlpackage``.
    A student of a non-commercial teacher needs ``accept_noncommercial`` (:func:`require_licence`)."""
    if fmt not in FORMATS:
        raise LeveError(f"unknown export format '{fmt}'; choose from {', '.join(FORMATS)}")
    if quantize is not None and (quantize not in QUANTIZE or fmt != "onnx"):
        raise LeveError(f"--quantize {quantize}: only {', '.join(QUANTIZE)} with --format onnx")
    if fmt == "hf":
        from leve.models.checkpoint import read_checkpoint

        require_licence(checkpoint, read_checkpoint(checkpoint)[1], accept_noncommercial)
        return _export_hf(Path(checkpoint), out, metrics)
    from leve.models.registry import model_spec

    model, info = load_checkpoint(checkpoint)
    require_licence(checkpoint, info, accept_noncommercial)
    size = resolution or info.resolution
    model_spec(info.model).check_size(*size, what=f"export resolution {size[0]}x{size[1]}")
    out = Path(out) if out else Path(checkpoint).with_suffix(SUFFIX[quantize or fmt])
    meta = model_metadata(model, info, size, checkpoint)
    if fmt == "openvino":
        return ExportResult(str(out), fmt, info.model, _export_openvino(model, size, out, opset, meta))
    if fmt == "coreml":
        from leve.export_mobile import export_coreml

        note = export_coreml(model, _model_inputs(model, size)[0][:1], out, meta)
        return ExportResult(str(out), fmt, info.model, [], note=note)
    if quantize:
        cal = calibration or Calibration.from_params()
        inputs = cal.inputs(size)  # before anything is written: a missing store is refused first
    with atomic_path(out) as tmp:  # verified under a temporary name; a failed check leaves nothing behind
        if fmt == "onnx":
            checks = _export_onnx(model, size, tmp, opset, meta)
            _require_close(checks, out)
            if quantize:
                checks = _quantize_onnx(model, size, tmp, inputs, cal)
                _require_close(checks, out, INT8_TOLERANCE, mean=True)
        elif fmt == "tflite":
            checks = _export_tflite(model, size, tmp, meta, out)
            _require_close(checks, out)
        else:
            checks = _export_torchscript(model, size, tmp, meta)
            _require_close(checks, out)
    return ExportResult(str(out), fmt, info.model, checks, quantize)


def _export_hf(checkpoint: Path, out: str | Path | None, metrics: tuple[str | Path, ...]) -> ExportResult:
    from leve.models.checkpoint import read_checkpoint
    from leve.models.hf import write_hf_folder

    target = Path(out) if out else checkpoint.with_name(f"{checkpoint.stem}-hf")
    diff, shape, span = write_hf_folder(checkpoint, target, metrics)
    check = Check(shape, diff, span, diff / span if span > 0 else diff)
    return ExportResult(str(target), "hf", read_checkpoint(target)[1].model, [check])


def _inputs(size: tuple[int, int], multiple: int = 8, min_size: int = 64) -> list[torch.Tensor]:
    """The export-size input (batch 2) and a second size (batch 1) for dynamic axes, both sizes the
    model takes (multiples of ``multiple``, at least ``min_size``); the second differs in width."""
    g = torch.Generator().manual_seed(0)
    h, w = size
    other = (max(min_size, (h // 2) // multiple * multiple), max(min_size, (w // 2) // multiple * multiple + multiple))
    return [torch.rand(2, 3, h, w, generator=g), torch.rand(1, 3, *other, generator=g)]


def _model_inputs(model: nn.Module, size: tuple[int, int]) -> list[torch.Tensor]:
    return _inputs(size, int(getattr(model, "input_multiple", 8)), int(getattr(model, "min_input_size", 64)))


def _check(ref: torch.Tensor, got: np.ndarray) -> Check:
    ref_np = ref.detach().cpu().numpy()
    if ref_np.shape != got.shape:
        raise LeveError(f"exported model gave shape {got.shape}, PyTorch {ref_np.shape}")
    diff = float(np.abs(ref_np - got).max())
    mean = float(np.abs(ref_np - got).mean())
    span = float(ref_np.max() - ref_np.min())
    return Check(list(ref_np.shape), diff, span, diff / span if span > 0 else diff, mean / span if span > 0 else mean)


def _require_close(checks: list[Check], out: Path, tolerance: float = TOLERANCE, mean: bool = False) -> None:
    for c in checks:
        value = c.mean_relative if mean else c.relative
        if not value < tolerance:
            raise LeveError(f"{out}: exported model differs from PyTorch at {c.shape} "
                            f"({'mean' if mean else 'max'} abs diff {value:.3g} of the output range, "
                            f"limit {tolerance:.3g}; max abs diff {c.max_abs_diff:.3g})")


def model_metadata(model: nn.Module, info: CheckpointInfo, size: tuple[int, int],
                   checkpoint: str | Path | None = None) -> dict[str, str]:
    """What an exported file says about its model (ONNX ``metadata_props``; TorchScript's extra file
    ``leve.json``; an OpenVINO IR's ``rt_info``): name, max_depth, resolution, input, output (``output`` short,
    ``leve_output`` the sentence), output stride, input multiple, depth kind and units, the lineage and, given
    the ``checkpoint`` path, which checkpoint it is (file name and :func:`checkpoint_digest`)."""
    meaning = depth_output(info)
    made_from = {} if checkpoint is None else {"leve_checkpoint": Path(checkpoint).name,
                                               DIGEST_KEY: checkpoint_digest(checkpoint)}
    short = "max_depth/depth" if meaning["depth_kind"] == "metric" else "100*disparity (relative; max_depth/output not metres)"
    return {"leve_model": info.model, "max_depth": str(info.max_depth),
            "resolution": f"{size[0]}x{size[1]}", "input": "RGB in [0,1], NCHW", "output": short,
            "output_stride": str(int(getattr(model, "output_stride", 1))),
            "leve_input_multiple": str(int(getattr(model, "input_multiple", 1))),
            "leve_depth_kind": meaning["depth_kind"], "leve_depth_units": meaning["units"],
            "leve_output": meaning["output"], **Lineage.of(info).onnx_metadata(), **made_from}


def _export_onnx(model: nn.Module, size: tuple[int, int], path: Path, opset: int,
                 meta: dict[str, str]) -> list[Check]:
    import onnx
    import onnxruntime as ort

    xs = _model_inputs(model, size)
    export_onnx(model, xs[0], path, opset)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto)
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.inference_mode():
        return [_check(model(x), session.run(None, {"rgb": x.numpy()})[0]) for x in xs]


def _export_openvino(model: nn.Module, size: tuple[int, int], out: Path, opset: int, meta: dict[str, str]) -> list[Check]:
    """The verified ONNX graph converted to an OpenVINO IR at ``out`` (``.xml``; its weights in the ``.bin`` of
    the same stem), ``meta`` in its ``rt_info``; read back, compiled for the CPU (fp32) and checked against
    PyTorch at both sizes before the two files are moved into place."""
    from leve.models.runtime import import_openvino, openvino_compiled, openvino_model

    if out.suffix != ".xml":
        raise LeveError(f"{out}: an OpenVINO IR is an .xml file (its weights go to the .bin beside it)")
    ov = import_openvino()  # its usage telemetry off
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".leve-openvino-", dir=out.parent) as tmp:
        onnx_path = Path(tmp, "model.onnx")
        _require_close(_export_onnx(model, size, onnx_path, opset, meta), out)
        converted = openvino_model(onnx_path)
        for key, value in meta.items():
            converted.set_rt_info(value, [OPENVINO_SECTION, key])
        xml = Path(tmp, out.name)
        ov.save_model(converted, str(xml), compress_to_fp16=False)
        compiled = openvino_compiled(xml)  # the IR as written
        with torch.inference_mode():
            checks = [_check(model(x), compiled(x.numpy())[0]) for x in _model_inputs(model, size)]
        _require_close(checks, out)
        os.replace(xml.with_suffix(".bin"), out.with_suffix(".bin"))  # the weights first: the .xml names a whole IR
        os.replace(xml, out)
    return checks


def _export_tflite(model: nn.Module, size: tuple[int, int], path: Path, meta: dict[str, str],
                   out: Path) -> list[Check]:
    """Convert at the export size (batch 1, fixed), write to ``path``, check that the metadata reads back and
    run the file with LiteRT's interpreter on the two export-size images of :func:`_model_inputs` (its batch
    of 2, one at a time) against PyTorch."""
    from leve.export_mobile import export_tflite, tflite_metadata, tflite_outputs

    xs = list(_model_inputs(model, size)[0].split(1))
    export_tflite(model, xs[0], path, meta)
    if tflite_metadata(path) != meta:
        raise LeveError(f"{out}: the written .tflite lost its metadata")
    with torch.inference_mode():
        return [_check(model(x), got) for x, got in zip(xs, tflite_outputs(path, xs), strict=True)]


def _quantize_onnx(model: nn.Module, size: tuple[int, int], path: Path, inputs: list[torch.Tensor],
                   cal: Calibration) -> list[Check]:
    """Quantize the verified fp32 file at ``path`` in place (its metadata kept, the calibration added) and
    check it against PyTorch on calibration images: at the export size and at a second size."""
    import onnx

    from leve.models.runtime import onnx_session

    proto = onnx.load_from_string(quantize_int8(path.read_bytes(), inputs))
    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    meta.update(cal.metadata(len(inputs)))
    del proto.metadata_props[:]
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
    onnx.save(proto, str(path))
    session = onnx_session(path)
    other = tuple(_model_inputs(model, size)[1].shape[-2:])
    xs = [inputs[0], torch.nn.functional.interpolate(inputs[-1], size=other, mode="bilinear", align_corners=False)]
    with torch.inference_mode():
        return [_check(model(x), session.run(None, {"rgb": x.numpy()})[0]) for x in xs]


def _export_torchscript(model: nn.Module, size: tuple[int, int], path: Path,
                        meta: dict[str, str] | None = None) -> list[Check]:
    """Trace and save (``meta`` as the extra file ``leve.json``: ``torch.jit.load(path, _extra_files=...)``)."""
    xs = _model_inputs(model, size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(model, (xs[0],))
        torch.jit.save(traced, str(path), _extra_files={TORCHSCRIPT_META: json.dumps(meta or {}, sort_keys=True)})
        loaded = torch.jit.load(str(path))
        return [_check(model(x), loaded(x).numpy()) for x in xs]
