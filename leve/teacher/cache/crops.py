"""Local crops of the teacher cache, for cross-context distillation (``teacher.crops``, ``train.kd.crops_weight``).

Cross-context distillation (He et al. 2025, "Distill Any Depth", arXiv 2502.19204) also distils from the
teacher's view of a local crop: the teacher sees a region up close and predicts finer structure there than
in its map of the whole image, and the student's prediction of the whole image is asked to agree with that
local prediction inside the region, up to a scale and a shift (the local-global term). leve caches it: with
``teacher.crops: K > 0`` each image of a cached split gets K boxes, drawn by :func:`crop_boxes` from a seeded
generator per image index (a rebuild writes equal bytes), and the teacher's map of each cropped image::

    crops/disparity  (N, K, h, w) float16 in [0, 1]  each crop's map, normalised per crop as the global map is
    crops/boxes      (N, K, 4)    int32               x0, y0, x1, y1 (half-open) in pixels of the stored image

``h, w`` (:func:`crop_map_size`) are half the split's array shape. The cache's attrs record ``crops``
(:func:`crops_identity`: the count, the box rule and the map size); a cache without them has no crops. The
loss is :func:`leve.train.losses.kd_crops`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from leve.errors import LeveError

CROPS_DISPARITY = "crops/disparity"
CROPS_BOXES = "crops/boxes"
CROP_SEED = 20250226  # the generator of image i's boxes: numpy default_rng([CROP_SEED, i])
CROP_SIDE = (0.5, 0.8)  # each side of a box: this fraction of the image's side, uniform
BOX_RULE = (f"per image i: numpy default_rng([{CROP_SEED}, i]); per box: height fraction, width fraction ~ "
            f"U{list(CROP_SIDE)} of the stored image's (true) size, rounded; top, left uniform integers keeping "
            "the box inside; boxes x0, y0, x1, y1 (half-open) in pixels of the stored image")


def crop_map_size(array_shape: tuple[int, int] | list[int]) -> tuple[int, int]:
    """The size every crop's map is stored at: half the split's array shape (at least 1 x 1)."""
    return max(int(array_shape[0]) // 2, 1), max(int(array_shape[1]) // 2, 1)


def crops_identity(count: int, array_shape: tuple[int, int] | list[int]) -> dict[str, Any]:
    """The ``crops`` entry of a cache's attrs (``count`` > 0)."""
    return {"count": int(count), "box_rule": BOX_RULE, "map_size": list(crop_map_size(array_shape)),
            "arrays": [CROPS_DISPARITY, CROPS_BOXES]}


def cached_crops(attrs: dict[str, Any]) -> int:
    """How many crops per image a cached split holds (0: none, every cache built before crops)."""
    crops = attrs.get("crops")
    return int(crops.get("count", 0)) if isinstance(crops, dict) else 0


def crop_boxes(index: int, height: int, width: int, count: int) -> np.ndarray:
    """(count, 4) int32 boxes ``x0, y0, x1, y1`` (half-open) inside a ``height x width`` image, drawn from
    image ``index``'s own generator (:data:`BOX_RULE`), so a box depends on the image's index and size alone."""
    rng = np.random.default_rng([CROP_SEED, int(index)])
    boxes = np.zeros((count, 4), np.int32)
    for k in range(count):
        fh, fw = rng.uniform(*CROP_SIDE, size=2)
        bh = min(max(round(fh * height), 1), height)
        bw = min(max(round(fw * width), 1), width)
        y0 = int(rng.integers(0, height - bh + 1))
        x0 = int(rng.integers(0, width - bw + 1))
        boxes[k] = (x0, y0, x0 + bw, y0 + bh)
    return boxes


def check_crops(attrs: dict[str, Any], expected: int | None, weight: float, where: str) -> int:
    """The cached split's crop count, after refusing a cache whose count is not ``expected`` (the
    ``teacher.crops`` that the params configure; None: any) or which has none while ``weight`` > 0."""
    have = cached_crops(attrs)
    if expected is not None and have != expected:
        raise LeveError(f"{where}: teacher cache built with teacher.crops {have}, the params say {expected}; "
                        f"rerun `leve teacher-cache` (or set teacher.crops: {have})")
    if weight > 0 and have == 0:
        raise LeveError(f"{where}: kd.crops_weight {weight} needs local crops in the teacher cache; "
                        "set teacher.crops (e.g. 2) and rerun `leve teacher-cache`")
    return have


def normalised_boxes(boxes: np.ndarray, height: int, width: int) -> torch.Tensor:
    """(K, 4) pixel boxes of a ``height x width`` image -> (K, 4) float32 fractions of its sides
    (``x0 / W, y0 / H, x1 / W, y1 / H``): the same region at any resolution of the image."""
    scale = np.array([width, height, width, height], np.float32)
    return torch.from_numpy(np.asarray(boxes, np.float32) / scale)


def flip_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """Normalised boxes (..., 4) of the mirrored image: ``x0, x1`` become ``1 - x1, 1 - x0``."""
    x0, y0, x1, y1 = boxes.unbind(-1)
    return torch.stack([1 - x1, y0, 1 - x0, y1], dim=-1)
