"""Choosing the torch device, the same way in every stage."""

from __future__ import annotations

import os

import torch

from leve.errors import LeveError


def resolve_device(name: str, param: str = "--device") -> torch.device:
    """``auto`` -> the local rank's GPU (torchrun's ``LOCAL_RANK``, else 0) when torch sees CUDA,
    else the CPU; a bare ``cuda`` gets the local rank's index; CUDA without a GPU is refused
    with a one-line error naming ``param``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise LeveError(f"{param} {name}: no CUDA device is available (use {param} cpu)")
        if device.index is None:
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
    return device
