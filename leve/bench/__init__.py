"""Benchmarks behind ``leve bench ...``; each module returns a JSON-ready report."""

from __future__ import annotations

import platform
from typing import Any

import torch

from leve import __version__


def report_header(bench: str, device: torch.device) -> dict[str, Any]:
    """The fields every bench report starts with: what ran, where, with which versions."""
    cpu = f"cpu ({platform.processor() or platform.machine()})"
    return {
        "bench": bench,
        "leve_version": __version__,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
