"""Mobile exports for ``leve export`` (issue 29 item 3): LiteRT/TFLite (``--format tflite``, converted by
``litert-torch``) and Core ML (``--format coreml``, converted by ``coremltools``), both from a
``torch.export`` program of the student, both with a fixed ``1x3xHxW`` input at the export size (the
students specialise their graph on the input size, so neither converter is given dynamic axes).

Both carry the same description as the ONNX export (:func:`leve.export.model_metadata`): a ``.tflite`` as
the flatbuffer's metadata entry :data:`TFLITE_METADATA` (the dict as JSON: :func:`tflite_metadata` reads
it), a Core ML ``.mlpackage`` as its ``user_defined_metadata``. The input is ``rgb`` (RGB in [0, 1], NCHW,
float32), the output ``out``, as in ONNX.

A ``.tflite`` is run by LiteRT's interpreter (``ai_edge_litert``) after it is written and compared with
PyTorch by :func:`leve.export.export_checkpoint`. Core ML runs only on macOS: on any other system the
saved package is read back (``skip_model_load``) and its input and output names, shapes and types and its
metadata are checked against PyTorch's; its numbers are not (:data:`COREML_UNVERIFIED`).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from leve.errors import LeveError

TFLITE_METADATA = "leve"  # the .tflite metadata entry holding model_metadata as JSON
INPUT, OUTPUT = "rgb", "out"  # the input and output names, as in the ONNX export
COREML_UNVERIFIED = ("Core ML predicts only on macOS: the package's input, output, shapes, types and metadata "
                     "were checked against PyTorch, its numbers were not")
EXTRA = {"tflite": ("litert-torch", "tflite"), "coreml": ("coremltools", "export")}  # package, extra


class _Named(nn.Module):
    """The student with its input called ``rgb`` (``torch.export`` names the program's input after the
    argument); its output alone, or ``{"out": output}`` with ``named_output`` (litert-torch names a
    signature's outputs after a returned dict's keys)."""

    def __init__(self, model: nn.Module, named_output: bool = False) -> None:
        super().__init__()
        self.model = model
        self.named_output = named_output

    def forward(self, rgb: torch.Tensor) -> torch.Tensor | dict[str, torch.Tensor]:
        out = self.model(rgb)
        return {OUTPUT: out} if self.named_output else out


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the converters: their progress bars, version notes and the C++ logs of LiteRT and jax go
    to Python's streams and to file descriptors 1 and 2; Python warnings and log records below ERROR."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    disabled = logging.root.manager.disable
    with tempfile.TemporaryFile() as sink, warnings.catch_warnings(), \
            contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            logging.disable(disabled)


def _import(fmt: str, module: str) -> Any:
    """Import a converter quietly; missing, one line naming the package and the extra that installs it."""
    import importlib

    package, extra = EXTRA[fmt]
    try:
        with _quiet():
            return importlib.import_module(module)
    except ImportError as exc:
        raise LeveError(f"--format {fmt} needs {package} ({exc.name} missing): pip install 'leve[{extra}]'") from exc


def _program(model: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    with torch.no_grad():
        return torch.export.export(_Named(model).eval(), (), {INPUT: example})


def _failed(fmt: str, exc: Exception) -> LeveError:
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return LeveError(f"--format {fmt}: the converter failed: {type(exc).__name__}: {first}")


# --- LiteRT / TFLite --------------------------------------------------------------------------------------


def export_tflite(model: nn.Module, example: torch.Tensor, path: Path, meta: dict[str, str]) -> None:
    """Convert ``model`` at ``example``'s shape (``(1, 3, H, W)``) with litert-torch and write it to
    ``path`` with ``meta`` as the metadata entry :data:`TFLITE_METADATA`; its signature
    ``serving_default`` takes ``rgb`` and gives ``out``."""
    litert_torch = _import("tflite", "litert_torch")
    flatbuffers = _import("tflite", "ai_edge_litert.tools.flatbuffer_utils")
    schema = _import("tflite", "ai_edge_litert.schema_py_generated")
    try:
        with _quiet():
            converted = litert_torch.convert(_Named(model, named_output=True).eval(), sample_kwargs={INPUT: example})
            with tempfile.TemporaryDirectory(prefix=".leve-tflite-", dir=path.parent) as tmp:
                plain = Path(tmp, "model.tflite")
                converted.export(str(plain))
                flat = plain.read_bytes()
    except Exception as exc:  # the converter's own errors (unsupported ops, export failures)
        raise _failed("tflite", exc) from exc
    tree = flatbuffers.read_model_from_bytearray(bytearray(flat))
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    tree.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = TFLITE_METADATA
    entry.buffer = len(tree.buffers) - 1
    tree.metadata = [m for m in (tree.metadata or []) if m.name.decode() != TFLITE_METADATA] + [entry]
    path.write_bytes(bytes(flatbuffers.convert_object_to_bytearray(tree)))


def tflite_metadata(path: str | Path) -> dict[str, str]:
    """The description a ``leve export --format tflite`` file carries (its metadata entry
    :data:`TFLITE_METADATA`); ``{}`` when it has none."""
    flatbuffers = _import("tflite", "ai_edge_litert.tools.flatbuffer_utils")
    tree = flatbuffers.read_model_from_bytearray(bytearray(Path(path).read_bytes()))
    for entry in tree.metadata or []:
        if entry.name.decode() == TFLITE_METADATA:
            return json.loads(bytes(tree.buffers[entry.buffer].data).decode())
    return {}


def tflite_outputs(path: Path, inputs: list[torch.Tensor]) -> list[np.ndarray]:
    """Run the ``.tflite`` at ``path`` with LiteRT's interpreter (its ``serving_default`` signature) on each
    ``(1, 3, H, W)`` input."""
    interpreter = _import("tflite", "ai_edge_litert.interpreter")
    with _quiet():
        runner = interpreter.Interpreter(model_path=str(path)).get_signature_runner()
        return [runner(**{INPUT: x.numpy()})[OUTPUT] for x in inputs]


# --- Core ML ----------------------------------------------------------------------------------------------


def export_coreml(model: nn.Module, example: torch.Tensor, out: Path, meta: dict[str, str]) -> str:
    """Convert ``model`` at ``example``'s shape to a Core ML ML Program (fp32 compute) with coremltools and
    save it as the package folder ``out`` (``.mlpackage``), ``meta`` as its user-defined metadata. The
    package is saved under a temporary name beside ``out``, read back and checked (:func:`_check_coreml`)
    before it replaces ``out``; returns what was and was not verified (:data:`COREML_UNVERIFIED`)."""
    if out.suffix != ".mlpackage":
        raise LeveError(f"{out}: a Core ML ML Program is saved as a .mlpackage folder")
    ct = _import("coreml", "coremltools")
    with torch.no_grad():
        expected = tuple(model(example).shape)
    try:
        with _quiet():
            program = _program(model, example).run_decompositions({})
            converted = ct.convert(program, outputs=[ct.TensorType(name=OUTPUT)], convert_to="mlprogram",
                                   compute_precision=ct.precision.FLOAT32)
    except Exception as exc:
        raise _failed("coreml", exc) from exc
    converted.short_description = f"leve {meta['leve_model']}: {meta['leve_output']}"
    converted.license = meta.get("leve_licence", "")
    converted.input_description[INPUT] = meta["input"]
    converted.output_description[OUTPUT] = meta["leve_output"]
    for key, value in meta.items():
        converted.user_defined_metadata[key] = value
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".leve-coreml-", dir=out.parent) as tmp:
        staged = Path(tmp, out.name)
        with _quiet():
            converted.save(str(staged))
        _check_coreml(ct, staged, tuple(example.shape), expected, meta, out)
        if out.exists():  # the old package goes with the temporary folder, only once the new one is checked
            os.replace(out, Path(tmp, "replaced"))
        os.replace(staged, out)
    return COREML_UNVERIFIED


def coreml_spec(path: str | Path) -> Any:
    """The protobuf spec of a saved ``.mlpackage``, read without compiling it (works off macOS)."""
    ct = _import("coreml", "coremltools")
    with _quiet():
        return ct.models.MLModel(str(path), skip_model_load=True).get_spec()


def _check_coreml(ct: Any, path: Path, shape: tuple[int, ...], expected: tuple[int, ...], meta: dict[str, str],
                  out: Path) -> None:
    """The saved package read back: one float32 input ``rgb`` of ``shape``, one float32 output ``out`` of
    PyTorch's output shape ``expected``, and ``meta`` in its metadata."""
    spec = coreml_spec(path)
    fp32 = ct.proto.FeatureTypes_pb2.ArrayFeatureType.FLOAT32

    def feature(items: Any, name: str, want: tuple[int, ...]) -> None:
        got = [(f.name, tuple(f.type.multiArrayType.shape), f.type.multiArrayType.dataType) for f in items]
        if got != [(name, want, fp32)]:
            raise LeveError(f"{out}: the converted Core ML model's features are {got}, expected "
                            f"[{(name, want, fp32)}] as PyTorch's")

    feature(spec.description.input, INPUT, shape)
    feature(spec.description.output, OUTPUT, expected)
    stored = dict(spec.description.metadata.userDefined)
    lost = sorted(k for k, v in meta.items() if stored.get(k) != v)
    if lost:
        raise LeveError(f"{out}: the saved Core ML package lost its metadata {', '.join(lost)}")

