"""Loading the public ImageNet DDRNet-23-slim weights (``DDRNet23s_imagenet.pth``) into the encoder.

Every tensor of the checkpoint except the classifier-only ``down5.*``, ``last_layer.*`` and
``linear.*`` must load with an identical shape (254 tensors, 4.55 M parameters); anything less
is refused, so a wrong file can never pass as pretrained. The DAPPM (``spp``) and the head
(``final_layer``) start random.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from leve.errors import LeveError

CLASSIFIER_ONLY = ("down5.", "last_layer.", "linear.")
NEW_PARTS = ("spp.", "final_layer.")
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")
PREFIXES = ("module.", "model.", "backbone.", "encoder.")


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
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path), device="cpu")
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle/zip/safetensors raise many types
        raise LeveError(f"{path}: cannot read as a safe torch/safetensors weights file "
                        f"({exc.__class__.__name__}: {str(exc).splitlines()[0][:200]})") from exc


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
