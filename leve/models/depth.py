"""Network output <-> metric depth, shared by training, evaluation and prediction.

The network predicts ``out = max_depth / depth`` (DenseDepth's depth normalisation, as in the
thesis). Depth is read back as ``clamp(max_depth / out, max_depth / 100, max_depth)``; the
training target is built from depth clamped to the same range, so it lies in [1, 100].
Works on torch tensors and numpy arrays alike.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch
import torch.nn.functional as F

Array = TypeVar("Array", torch.Tensor, np.ndarray)
MIN_DEPTH_FRACTION = 0.01


def depth_range(max_depth: float) -> tuple[float, float]:
    """``(min_depth, max_depth)`` with ``min_depth = max_depth / 100``."""
    return max_depth * MIN_DEPTH_FRACTION, float(max_depth)


def output_to_depth(out: Array, max_depth: float) -> Array:
    """Metric depth from the network output: ``clamp(max_depth / out, max_depth/100, max_depth)``.

    A non-positive output (never a valid prediction) maps to the nearest bound by sign:
    ``+0`` to ``max_depth``, negatives to ``max_depth/100``, as the plain formula does.
    """
    lo, hi = depth_range(max_depth)
    if isinstance(out, torch.Tensor):
        return torch.clamp(max_depth / out, lo, hi)
    with np.errstate(divide="ignore"):
        return np.clip(max_depth / np.asarray(out, dtype=np.float32), lo, hi).astype(np.float32)


def upsample_output(out: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """The raw network output ``(B, 1, h, w)`` brought to ``size`` (bilinear, ``align_corners=False``)
    before it is read as depth; unchanged when it already has that size. A half-resolution model
    (``output_stride`` 2, DenseDepth) is upsampled x2 to its input size this way in prediction,
    serving, validation and evaluation."""
    if tuple(out.shape[-2:]) == tuple(size):
        return out
    return F.interpolate(out, size=tuple(size), mode="bilinear", align_corners=False)


def depth_to_output(depth: Array, max_depth: float) -> Array:
    """Training target from metric depth: ``max_depth / clamp(depth, max_depth/100, max_depth)``.

    Invalid depth (0) becomes ``max_depth/100`` and so the target 100, as in DenseDepth.
    """
    lo, hi = depth_range(max_depth)
    if isinstance(depth, torch.Tensor):
        return max_depth / torch.clamp(depth, lo, hi)
    return (max_depth / np.clip(np.asarray(depth, dtype=np.float32), lo, hi)).astype(np.float32)


class RelativeOutput(torch.nn.Module):
    """A student trained without depth (checkpoint ``depth_kind: relative``) in the output convention.

    Its raw output is known only up to scale and shift; training records ``(scale, shift)`` that map it
    to the teacher's max-normalised disparity ``x`` (near = 1). This module returns
    ``clamp(x / MIN_DEPTH_FRACTION, 1, 1 / MIN_DEPTH_FRACTION)``, so that :func:`output_to_depth` reads
    ``max_depth * MIN_DEPTH_FRACTION / x``: a depth proportional to ``1 / x`` (right up to scale, and up
    to shift in disparity), never clipped for ``x`` in [0.01, 1]. An aligned protocol (median or lstsq)
    fixes the unknown scale (and shift); the network's size contract passes through.
    """

    def __init__(self, model: torch.nn.Module, scale: float, shift: float) -> None:
        super().__init__()
        self.model, self.scale, self.shift = model, float(scale), float(shift)
        for attr in ("output_stride", "input_multiple", "min_input_size", "max_depth", "name"):
            if hasattr(model, attr):
                setattr(self, attr, getattr(model, attr))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        disparity = self.scale * self.model(x) + self.shift
        return (disparity / MIN_DEPTH_FRACTION).clamp(1.0, 1.0 / MIN_DEPTH_FRACTION)
