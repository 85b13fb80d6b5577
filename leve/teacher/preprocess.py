"""Preprocessing identical to transformers' DPT image processor (the PIL backend it uses
without torchvision), split so that it batches:

- per image (in DataLoader workers): the output size rule of the DPT processor (keep aspect
  ratio by scaling the side whose factor is closest to 1, then round each side to a multiple
  of ``ensure_multiple_of``) and a PIL resize of the uint8 image (bicubic for Depth-Anything);
- per batch (on the device): rescale and normalise through a per-channel lookup table that
  reproduces the processor's arithmetic exactly (uint8 -> float64 * 1/255 -> float32, then
  ``(x - mean) / std`` in float32).

On a GPU the resize can run there too (:meth:`Preprocessing.resize_batch`, a batch of one stored
size): PIL's bicubic filter (``a = -0.5``, widened when shrinking) in float32, in PIL's two passes
each rounded to uint8: within one level of PIL's fixed-point result. The same code runs on a CPU,
where the tests compare it with the PIL path.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from leve.errors import LeveError
from leve.sources.weights import IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class Preprocessing:
    """The DPT image processor settings that matter for pixel values."""

    height: int = 518
    width: int = 518
    keep_aspect_ratio: bool = True
    ensure_multiple_of: int = 14
    resample: int = 3  # PIL code: 3 = bicubic
    do_resize: bool = True
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = True
    image_mean: tuple[float, float, float] = IMAGENET_MEAN
    image_std: tuple[float, float, float] = IMAGENET_STD

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "preprocessing") -> Preprocessing:
        """From a ``preprocessor_config.json`` mapping; refuses settings this pipeline cannot match."""
        if values.get("do_pad") and values.get("size_divisor"):
            raise LeveError(f"{where}: do_pad with size_divisor is not supported by the teacher cache")
        if values.get("do_center_crop") or values.get("do_reduce_labels"):
            raise LeveError(f"{where}: center crop / label reduction are not supported by the teacher cache")
        size = values.get("size", {"height": 518, "width": 518})
        if not isinstance(size, dict) or "height" not in size or "width" not in size:
            raise LeveError(f"{where}: size must be {{height, width}}, got {size!r}")
        mean = values.get("image_mean", cls.image_mean)
        std = values.get("image_std", cls.image_std)
        if isinstance(mean, int | float):
            mean = [mean] * 3
        if isinstance(std, int | float):
            std = [std] * 3
        return cls(
            height=int(size["height"]),
            width=int(size["width"]),
            keep_aspect_ratio=bool(values.get("keep_aspect_ratio", False)),
            ensure_multiple_of=int(values.get("ensure_multiple_of", 1) or 1),
            resample=int(values.get("resample", 3)),
            do_resize=bool(values.get("do_resize", True)),
            do_rescale=bool(values.get("do_rescale", True)),
            rescale_factor=float(values.get("rescale_factor", 1 / 255)),
            do_normalize=bool(values.get("do_normalize", True)),
            image_mean=tuple(float(m) for m in mean),  # type: ignore[arg-type]
            image_std=tuple(float(s) for s in std),  # type: ignore[arg-type]
        )

    def describe(self, on_device: bool = False) -> dict[str, Any]:
        """JSON-friendly description recorded in the cache attributes (``on_device``: the resize of
        :meth:`resize_batch` instead of PIL's)."""
        d = asdict(self)
        d["resample"] = _RESAMPLE_NAMES.get(self.resample, str(self.resample))
        d["backend"] = DEVICE_BACKEND if on_device and self.do_resize else PIL_BACKEND
        return d

    # -- per image -----------------------------------------------------------

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """The resized (height, width) the DPT processor gives an image of this size."""
        if not self.do_resize:
            return height, width
        scale_h = self.height / height
        scale_w = self.width / width
        if self.keep_aspect_ratio:
            # scale as little as possible: keep the factor closest to 1 for both sides
            if abs(1 - scale_w) < abs(1 - scale_h):
                scale_h = scale_w
            else:
                scale_w = scale_h
        return _to_multiple(scale_h * height, self.ensure_multiple_of), _to_multiple(
            scale_w * width, self.ensure_multiple_of
        )

    def resize(self, rgb: np.ndarray) -> np.ndarray:
        """(H, W, 3) uint8 -> (3, h, w) uint8 resized as the processor does (PIL on uint8)."""
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
            raise ValueError(f"expected (H, W, 3) uint8, got {rgb.shape} {rgb.dtype}")
        if self.do_resize:
            h, w = self.output_size(*rgb.shape[:2])
            rgb = np.asarray(Image.fromarray(rgb).resize((w, h), resample=self.resample))
        return np.ascontiguousarray(rgb.transpose(2, 0, 1))

    def host_input(self, rgb: np.ndarray, on_device: bool) -> np.ndarray:
        """(H, W, 3) uint8 -> (3, h, w) uint8 as a runner takes it: resized here (:meth:`resize`), or,
        ``on_device`` (:meth:`resize_batch` follows there), only made channels-first."""
        return np.ascontiguousarray(rgb.transpose(2, 0, 1)) if on_device else self.resize(rgb)

    # -- per batch -----------------------------------------------------------

    def resize_batch(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) uint8 of one size, on any device -> (B, 3, h, w) uint8 at :meth:`output_size`:
        PIL's filter for ``resample`` (bicubic or bilinear, antialiased) computed in float32 in PIL's two
        passes, each rounded and clamped to 8 bits; within one level of :meth:`resize` (PIL's weights
        are fixed-point). Unchanged without ``do_resize``."""
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W) uint8, got {tuple(images.shape)} {images.dtype}")
        if not self.do_resize:
            return images
        if self.resample not in _TORCH_MODES:
            raise LeveError(f"teacher preprocessing: resample {_RESAMPLE_NAMES.get(self.resample, self.resample)} "
                            "has no device resize (bicubic and bilinear do)")
        size = self.output_size(*images.shape[-2:])
        if tuple(images.shape[-2:]) == size:
            return images
        x = images.float()
        for step in ((x.shape[-2], size[1]), size):  # PIL's order: width, then height, 8 bits after each pass
            x = F.interpolate(x, size=step, mode=_TORCH_MODES[self.resample], align_corners=False, antialias=True)
            x = x.round_().clamp_(0, 255)
        return x.to(torch.uint8)

    def lookup_table(self) -> torch.Tensor:
        """(3, 256) float32: the normalised value of each uint8 level per channel."""
        levels = np.arange(256, dtype=np.uint8)
        x = (levels.astype(np.float64) * self.rescale_factor if self.do_rescale else levels).astype(np.float32)
        rows = []
        for c in range(3):
            v: np.ndarray = x
            if self.do_normalize:
                v = (x - np.float32(self.image_mean[c])) / np.float32(self.image_std[c])
            rows.append(v.astype(np.float32))
        return torch.from_numpy(np.stack(rows))


def normalize_batch(images: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """(B, 3, h, w) uint8 -> float32 pixel values through the (3, 256) table (same device)."""
    idx = images.long()
    return torch.stack([table[c][idx[:, c]] for c in range(3)], dim=1)


def _to_multiple(value: float, multiple: int) -> int:
    """transformers' ``constrain_to_multiple_of`` with no bounds (Python's round: half to even)."""
    x = round(value / multiple) * multiple
    if x < 0:
        x = math.ceil(value / multiple) * multiple
    return int(x)


_TORCH_MODES = {3: "bicubic", 2: "bilinear"}  # PIL codes with the same filter in torch's antialiased interpolate
PIL_BACKEND = "PIL resize of uint8 (transformers DPTImageProcessorPil)"
DEVICE_BACKEND = "torch antialiased interpolate (PIL's filter) in float32 on the device, rounded to uint8"
_RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
