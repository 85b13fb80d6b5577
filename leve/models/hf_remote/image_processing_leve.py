"""The image processor of a leve depth model: leve's own input resize and scaling, and its resize of
the depth back to the image (the functions of ``leve.images``, unchanged).

An image (PIL, or an (H, W, 3) uint8 array) is converted to 8-bit RGB, resized to ``size`` by
bilinear interpolation with pixel centres aligned, antialiased when shrinking (PIL's ``BILINEAR``
triangle filter), computed in 8 bits, then divided by 255: the network takes RGB in [0, 1] and
applies its ImageNet normalisation itself. ``post_process_depth_estimation`` resizes each
``predicted_depth`` to its image's size with the same filter in floating point, as ``leve predict``
does."""

from __future__ import annotations

import numpy as np
import torch
from transformers.image_processing_utils import BaseImageProcessor, BatchFeature

from leve.images import resize_maps, resize_rgb_uint8, rgb_to_float


def as_rgb_uint8(image) -> np.ndarray:
    """An (H, W, 3) uint8 array of a PIL image (any mode, converted to RGB) or of such an array."""
    if hasattr(image, "convert"):
        image = image.convert("RGB") if getattr(image, "mode", "RGB") != "RGB" else image
        return np.asarray(image, dtype=np.uint8)
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected a PIL image or an (H, W, 3) uint8 array, got {array.dtype} {array.shape}")
    return array


class LeveImageProcessor(BaseImageProcessor):
    """``size``: {"height": H, "width": W}, the model's input size (its training resolution)."""

    model_input_names = ["pixel_values"]

    def __init__(self, size: dict[str, int] | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.size = dict(size or {"height": 480, "width": 640})

    def preprocess(self, images, return_tensors=None, **kwargs) -> BatchFeature:
        """``pixel_values``: (B, 3, H, W) float32 RGB in [0, 1] at ``size``."""
        batch = list(images) if isinstance(images, list | tuple) else [images]
        size = (int(self.size["height"]), int(self.size["width"]))
        pixels = torch.stack([rgb_to_float(resize_rgb_uint8(as_rgb_uint8(image), size)) for image in batch])
        return BatchFeature({"pixel_values": pixels}, tensor_type=return_tensors)

    def post_process_depth_estimation(self, outputs, target_sizes=None) -> list[dict[str, torch.Tensor]]:
        """``[{"predicted_depth": (H, W)}]`` per image, resized to ``target_sizes[i]`` ((H, W)) when given."""
        depth = outputs["predicted_depth"]
        results = []
        for i, d in enumerate(depth):
            if target_sizes is not None and target_sizes[i] is not None:
                d = resize_maps(d[None, None], tuple(int(v) for v in target_sizes[i]))[0, 0]
            results.append({"predicted_depth": d})
        return results
