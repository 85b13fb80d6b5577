"""Loading published ImageNet weights into an encoder, refusing anything that does not fit exactly: the
one home of that code (where the files are published and how they are checked: :mod:`leve.sources.weights`).

Files are read with ``torch.load(..., weights_only=True)`` (or safetensors for ``*.safetensors``).

* Leve's DDRNet-23-slim (``DDRNet23s_imagenet.pth``, :func:`load_encoder_weights`): every tensor of the
  checkpoint except the classifier-only ``down5.*``, ``last_layer.*`` and ``linear.*`` must load with an
  identical shape (254 tensors, 4.55 M parameters); anything less is refused, so a wrong file can never
  pass as pretrained. The DAPPM (``spp``) and the head (``final_layer``) start random.
* torchvision's ImageNet files (:func:`load_imagenet_weights`): old DenseNet names
  (``denselayerN.norm.1.weight``) are mapped to ``norm1.weight``; classifier tensors (``classifier.*``,
  ``fc.*``) are skipped; ``num_batches_tracked`` may be absent. Every other tensor of the encoder must be
  present with the same shape and the file must hold nothing else. A file carrying a catalogued file name
  must match that name's SHA-256 prefix.
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
from leve.sources.weights import WEIGHTS

# DDRNet-23-slim
CLASSIFIER_ONLY = ("down5.", "last_layer.", "linear.")
NEW_PARTS = ("spp.", "final_layer.")
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")
PREFIXES = ("module.", "model.", "backbone.", "encoder.")
# torchvision's files
OLD_DENSENET_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$")
CLASSIFIER_PREFIXES = ("classifier.", "fc.")
OPTIONAL_SUFFIX = ".num_batches_tracked"


# --------------------------------------------------------------------------- reading a file safely


def _read_file(path: Path) -> Any:
    """The file's object: safetensors, or a torch file read with ``weights_only=True`` (no code runs)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    return torch.load(path, map_location="cpu", weights_only=True)


def _one_line(exc: BaseException) -> str:
    """``Type: first line`` of an exception, without terminal escapes, at most ~200 characters."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:200] if text else ''}"


# --------------------------------------------------------------------------- DDRNet-23-slim


@dataclass
class LoadReport:
    """What a weights file contributed: tensor and parameter counts, and the parts left random."""

    path: str
    loaded: int
    loaded_params: int
    skipped: list[str] = field(default_factory=list)
    random: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{self.path}: loaded {self.loaded} tensors ({self.loaded_params / 1e6:.2f} M parameters); "
                f"skipped {len(self.skipped)} classifier tensors; random init: {', '.join(self.random)}")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict safely (``weights_only=True`` or safetensors), unwrapping wrappers and prefixes."""
    path = Path(path)
    if not path.is_file():
        raise LeveError(f"{path}: weights file not found")
    obj = _load_file(path)
    sd = _unwrap(obj, path)
    return _strip_prefixes(sd)


def _load_file(path: Path) -> Any:
    try:
        return _read_file(path)
    except Exception as exc:  # pickle/zip/safetensors raise many types
        raise LeveError(f"{path}: cannot read as a safe torch/safetensors weights file ({_one_line(exc)})") from exc


def _unwrap(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    for _ in range(3):
        if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            return obj
        inner = next((obj[k] for k in WRAPPER_KEYS if isinstance(obj, dict) and isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    raise LeveError(f"{path}: no state dict of tensors found (got {type(obj).__name__})")


def _strip_prefixes(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove wrapper prefixes (``module.`` from DataParallel, ``model.``...) shared by every key."""
    changed = True
    while changed:
        changed = False
        for prefix in PREFIXES:
            if all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix):]: v for k, v in sd.items()}
                changed = True
    return sd


def load_encoder_weights(encoder: nn.Module, path: str | Path) -> LoadReport:
    """Copy the ImageNet checkpoint into ``encoder``; refuse missing or mis-shaped tensors."""
    sd = read_state_dict(path)
    target = encoder.state_dict()
    wanted = [k for k in target if not k.startswith(NEW_PARTS)]
    skipped = [k for k in sd if k.startswith(CLASSIFIER_ONLY)]
    _check_shapes(sd, target, path)
    missing = [k for k in wanted if k not in sd]
    if missing:
        raise LeveError(f"{path}: only {len(wanted) - len(missing)} of {len(wanted)} DDRNet-23-slim encoder tensors "
                        f"found (missing e.g. '{missing[0]}'); is this DDRNet23s_imagenet.pth?")
    with torch.no_grad():
        for k in wanted:
            target[k].copy_(sd[k])
    params = sum(target[k].numel() for k in wanted if target[k].is_floating_point() and "running_" not in k)
    random = sorted({k.split(".")[0] for k in target if k.startswith(NEW_PARTS)})
    return LoadReport(str(path), len(wanted), params, skipped, random)


def _check_shapes(sd: dict[str, torch.Tensor], target: dict[str, torch.Tensor], path: str | Path) -> None:
    for k, v in sd.items():
        if k in target and not k.startswith(NEW_PARTS) and tuple(v.shape) != tuple(target[k].shape):
            raise LeveError(f"{path}: tensor '{k}' has shape {tuple(v.shape)}, the DDRNet-23-slim encoder "
                            f"expects {tuple(target[k].shape)}; not the DDRNet23s_imagenet.pth weights")


# --------------------------------------------------------------------------- torchvision's ImageNet files


@dataclass
class WeightsReport:
    """What a weights file contributed to an encoder."""

    path: str
    loaded: int
    loaded_params: int
    skipped: list[str] = field(default_factory=list)


def check_sha256_prefix(path: Path) -> None:
    """If ``path`` has a registered file name, its SHA-256 must start with the name's hash."""
    prefix = next((w.sha256_prefix for w in WEIGHTS.values() if w.file == path.name and w.sha256_prefix), None)
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
        obj = _read_file(path)
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
