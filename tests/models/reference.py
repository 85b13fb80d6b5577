"""The public DDRNet23s_imagenet.pth as names, shapes and dtypes (no weights), for tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch

REFERENCE = Path(__file__).parent / "data" / "ddrnet23s_imagenet_state_dict.json"
CLASSIFIER_ONLY = ("down5.", "last_layer.", "linear.")


def reference_entries() -> list[tuple[str, list[int], str]]:
    """(name, shape, dtype) of every tensor in the public DDRNet23s_imagenet.pth."""
    return [tuple(e) for e in json.loads(REFERENCE.read_text())["entries"]]


def random_imagenet_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with exactly the reference names, shapes and dtypes, random values."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, shape, dtype in reference_entries():
        if dtype == "int64":
            sd[name] = torch.randint(0, 1000, shape, generator=g, dtype=torch.int64)
        else:
            sd[name] = torch.randn(shape, generator=g)
    return sd
