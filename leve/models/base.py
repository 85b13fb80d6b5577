"""What every registered depth network shares: its parts, its output stride and the input sizes it takes.

A model maps RGB ``(B, 3, H, W)`` in [0, 1] to ``(B, 1, H / output_stride, W / output_stride)``,
read as ``max_depth / depth`` (:mod:`leve.models.depth`). ``output_stride`` is 1 (Leve: the input
resolution) or 2 (DenseDepth: half of it; prediction and evaluation bring the output to the input
size with :func:`leve.models.depth.upsample_output` before reading depth). H and W must be
multiples of ``input_multiple`` and at least ``min_input_size``; anything else is refused with an
:class:`InputSizeError` naming the size.
"""

from __future__ import annotations

import torch
from torch import nn

from leve.errors import LeveError


class InputSizeError(LeveError, ValueError):
    """An input the network cannot map back to its own size (one line naming the size).

    A :class:`~leve.errors.LeveError` (the CLI prints it as one line) and a ``ValueError``."""


def size_problem(h: int, w: int, multiple: int, min_size: int) -> str | None:
    """Why ``h x w`` is not a valid input size, or None when it is."""
    if h % multiple or w % multiple or min(h, w) < min_size:
        return f"H and W must be multiples of {multiple} and at least {min_size}, got {h}x{w}"
    return None


class DepthModel(nn.Module):
    """Base of the registered networks: ``encoder``, ``decoder``, ``max_depth`` and the size contract."""

    output_stride: int = 1  # output size = input size / output_stride
    input_multiple: int = 8  # H and W must be multiples of this
    min_input_size: int = 64  # and at least this
    max_depth: float
    encoder: nn.Module
    decoder: nn.Module

    def __init__(self, max_depth: float = 10.0) -> None:
        super().__init__()
        self.max_depth = float(max_depth)
        self.name = type(self).__name__  # create_model sets the registry name

    def check_input(self, x: torch.Tensor) -> None:
        """Refuse an input this network cannot take (skipped while tracing or compiling)."""
        if torch.jit.is_tracing() or torch.compiler.is_compiling():
            return
        if x.ndim != 4 or x.shape[1] != 3:
            raise InputSizeError(f"{self.name}: expected (B, 3, H, W) input, got {tuple(x.shape)}")
        problem = size_problem(int(x.shape[-2]), int(x.shape[-1]), self.input_multiple, self.min_input_size)
        if problem:
            raise InputSizeError(f"{self.name}: {problem}")
