"""The image preprocessing every Depth-Anything checkpoint ships (its ``preprocessor_config.json``):
DPT image processor, keep the aspect ratio, a 518 px target rounded to a multiple of 14, PIL bicubic,
ImageNet statistics. A plain dict with no heavy imports, so the registry and the embedded teacher
(which differs only in its 126 px target) both read this one copy."""

from __future__ import annotations

from typing import Any

from leve.sources.weights import IMAGENET_MEAN, IMAGENET_STD

DEPTH_ANYTHING_PREPROCESSING: dict[str, Any] = {
    "do_resize": True,
    "size": {"height": 518, "width": 518},
    "keep_aspect_ratio": True,
    "ensure_multiple_of": 14,
    "resample": 3,  # PIL bicubic
    "do_rescale": True,
    "rescale_factor": 1 / 255,
    "do_normalize": True,
    "image_mean": list(IMAGENET_MEAN),
    "image_std": list(IMAGENET_STD),
}
