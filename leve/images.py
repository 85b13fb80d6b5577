"""The one image resize of leve, used by training (:mod:`leve.train.data`), evaluation
(:mod:`leve.evaluation.runner`), ``leve predict`` and ``leve serve`` (:mod:`leve.predict`).

- RGB (:func:`resize_rgb`: computed in 8 bits, as PIL does), and every dense map (the teacher's
  disparity, a prediction brought back to an image's size): :func:`resize_maps`, bilinear with
  pixel centres aligned (``align_corners=False``), antialiased when shrinking: the triangle filter
  widened by the scale factor that PIL's ``BILINEAR`` resize applies (the thesis resized with
  PIL). Enlarging is plain bilinear.
- Ground-truth depth: :func:`resize_depth`, the same filter weighted by validity (a normalised
  convolution): a target pixel is the filter-weighted mean of the *valid* (finite, > 0) source
  depths under it, sampled at the same pixel centres as the RGB, and invalid (0) where less than
  :data:`MIN_VALID_WEIGHT` of the filter's weight lies on valid pixels. No invalid zero ever
  blends into a depth value.

:data:`RGB_RESIZE` names the filter; the evaluation records it with every number.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

Size = Sequence[int]  # (height, width): a tuple or a torch.Size
MIN_VALID_WEIGHT = 0.5
RGB_RESIZE = ("bilinear, align_corners=False, antialiased when shrinking (PIL BILINEAR's triangle filter), "
              "in 8 bits (PIL's fixed-point arithmetic), then / 255")


def resize_maps(x: torch.Tensor, size: Size) -> torch.Tensor:
    """(B, C, h, w) float maps at ``size`` with the RGB filter; unchanged when already that size."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=(int(size[0]), int(size[1])), mode="bilinear", align_corners=False,
                         antialias=True)


def resize_rgb_uint8(rgb: np.ndarray, size: Size) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, h, w) uint8 by the RGB filter computed in 8 bits as PIL's ``BILINEAR``
    does (torch's uint8 kernel: Pillow's fixed-point weights; equal to PIL on a 2x shrink, within
    one level otherwise). Four times fewer bytes than float and several times faster to compute:
    what training's loader workers send; :func:`rgb_to_float` makes the network input of it."""
    x = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1)[None]  # channels-last: the fast kernel
    if tuple(x.shape[-2:]) == tuple(size):
        return x[0]
    return F.interpolate(x, size=(int(size[0]), int(size[1])), mode="bilinear", align_corners=False,
                         antialias=True)[0]


def rgb_to_float(rgb: torch.Tensor) -> torch.Tensor:
    """uint8 RGB (any shape, any device) -> float32 in [0, 1]: the one normalisation of the input."""
    return rgb.float().div_(255.0)


def resize_rgb(rgb: np.ndarray, size: Size) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, h, w) float32 in [0, 1]: the network input, wherever it is made
    (:func:`resize_rgb_uint8`, then :func:`rgb_to_float`)."""
    return rgb_to_float(resize_rgb_uint8(rgb, size))


@functools.lru_cache(maxsize=8)
def _ones_resized(shape: tuple[int, int], size: tuple[int, int], dtype: torch.dtype,
                  device: torch.device) -> torch.Tensor:
    """The filter's weight sum on an all-valid map: ones of ``shape`` resized, as (1, 1, h, w)."""
    return resize_maps(torch.ones((1, 1, *shape), dtype=dtype, device=device), size)


def resize_depth(depth: torch.Tensor, size: Size, shortcuts: bool = True) -> torch.Tensor:
    """(B, 1, H, W) depth (0 or non-finite = invalid) at ``size`` by the validity-weighted
    RGB filter; 0 where valid pixels carry less than :data:`MIN_VALID_WEIGHT` of the weight.
    ``shortcuts``: skip work on all-invalid or all-valid maps (the same result; on a GPU, pass False:
    the checks would wait for the device)."""
    if tuple(depth.shape[-2:]) == tuple(size):
        return depth
    valid = (depth > 0) & (depth < float("inf"))  # finite and > 0 (NaN fails both), in a third of isfinite's time
    if shortcuts and not valid.any():  # e.g. an unlabelled sample: nothing to resize
        return torch.zeros((*depth.shape[:-2], int(size[0]), int(size[1])), dtype=depth.dtype, device=depth.device)
    if shortcuts and valid.all():  # dense depth: the weight is the filtered ones, the same for every such map of this shape
        weight = _ones_resized(tuple(depth.shape[-2:]), (int(size[0]), int(size[1])), depth.dtype,
                               depth.device).expand(*depth.shape[:-2], -1, -1)
        total = resize_maps(depth, size)
    else:
        weight = resize_maps(valid.to(depth.dtype), size)
        total = resize_maps(torch.where(valid, depth, torch.zeros_like(depth)), size)
    keep = weight >= MIN_VALID_WEIGHT
    return torch.where(keep, total / torch.where(keep, weight, torch.ones_like(weight)), torch.zeros_like(total))
