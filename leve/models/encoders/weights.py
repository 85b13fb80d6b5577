"""Loading published ImageNet weights into an encoder, refusing anything that does not fit exactly.

Files are read with ``torch.load(..., weights_only=True)`` (or safetensors for ``*.safetensors``).
Old DenseNet names (``denselayerN.norm.1.weight``) are mapped to ``norm1.weight``; classifier
tensors (``classifier.*``, ``fc.*``) are skipped; ``num_batches_tracked`` may be absent. Every
other tensor of the encoder must be present with the same shape and the file must hold nothing
else. A file carrying a registered torchvision file name must match that name's SHA-256 prefix.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from leve.errors import LeveError
from leve.models.encoders.registry import ENCODERS

OLD_DENSENET_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")
CLASSIFIER_PREFIXES = ("classifier.", "fc.")
OPTIONAL_SUFFIX = ".num_batches_tracked"


@dataclass
class WeightsReport:
    """What a weights file contributed to an encoder."""

    path: str
    loaded: int
    loaded_params: int
    skipped: list[str] = field(default_factory=list)


def _one_line(exc: BaseException) -> str:
    """``Type: first line`` of an exception, without terminal escapes, at most ~200 characters."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"


def check_sha256_prefix(path: Path) -> None:
    """If ``path`` has a registered file name, its SHA-256 must start with the name's hash."""
    prefix = next((s.sha256_prefix for s in ENCODERS.values() if s.file == path.name and s.sha256_prefix), None)
    if prefix is None:
        return
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    if not digest.hexdigest().startswith(prefix):
        raise LeveError(f"{path}: SHA-256 {digest.hexdigest()[:16]}... does not start with {prefix} "
                        "as its file name says; the file is corrupt or not the published one")


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a flat ``{name: tensor}`` dict safely; any failure is a one-line :class:`LeveError`."""
    path = Path(path)
    if not path.is_file():
        raise LeveError(f"{path}: weights file not found")
    check_sha256_prefix(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling, zip and safetensors errors come in many types
        raise LeveError(f"{path}: not a readable weights-only torch/safetensors file ({_one_line(exc)})") from exc
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise LeveError(f"{path}: expected a state dict of tensors, got {type(obj).__name__}")
    return obj


def to_module_names(sd: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename old DenseNet keys and split off classifier tensors: ``(tensors, skipped names)``."""
    out, skipped = {}, []
    for key, value in sd.items():
        if key.startswith(CLASSIFIER_PREFIXES):
            skipped.append(key)
            continue
        match = OLD_DENSENET_KEY.match(key)
        out[match.group(1) + match.group(2) if match else key] = value
    return out, skipped


def check_layout(path: Path, name: str, sd: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    """Refuse a file whose tensors are not exactly the encoder's (names and shapes)."""
    required = [k for k in expected if not k.endswith(OPTIONAL_SUFFIX)]
    unexpected = [k for k in sd if k not in expected]
    missing = [k for k in required if k not in sd]
    if unexpected and missing:
        raise LeveError(f"{path}: not a {name} weights file (unexpected tensor '{unexpected[0]}', "
                        f"missing '{missing[0]}')")
    if missing:
        raise LeveError(f"{path}: tensor '{missing[0]}' missing for {name} ({len(missing)} missing)")
    if unexpected:
        raise LeveError(f"{path}: unexpected tensor '{unexpected[0]}' for {name} ({len(unexpected)} unexpected)")
    for key, value in sd.items():
        if value.shape != expected[key].shape:
            raise LeveError(f"{path}: tensor '{key}' has shape {tuple(value.shape)}, "
                            f"{name} needs {tuple(expected[key].shape)}")


def load_imagenet_weights(encoder: nn.Module, path: str | Path) -> WeightsReport:
    """Load a published ImageNet state dict into ``encoder`` in place; refuse anything that does not fit."""
    path = Path(path)
    name = getattr(encoder, "name", type(encoder).__name__)
    sd, skipped = to_module_names(read_weights(path))
    expected = encoder.state_dict()
    check_layout(path, name, sd, expected)
    encoder.load_state_dict(sd, strict=False)
    param_names = {k for k, _ in encoder.named_parameters()}
    params = sum(v.numel() for k, v in sd.items() if k in param_names)
    return WeightsReport(str(path), len(sd), params, skipped)
