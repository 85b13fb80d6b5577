"""Batched teacher inference: normalised pixels in, per-image normalised disparity out.

Post-processing follows transformers' ``post_process_depth_estimation``: the model's
``predicted_depth`` is resized to the target size with bicubic interpolation
(``align_corners=False``). Then each map is normalised to [0, 1]: negative values (bicubic
overshoot) are clipped to 0 and the map is divided by its maximum; a map whose maximum
is not positive is stored as zeros and flagged. A metric teacher's map is depth in metres: after the
same resize it is clamped at :data:`MIN_METRIC_DEPTH` and inverted, so the cache holds its inverse
depth (1/m) normalised the same way, ``raw_max`` in 1/m keeping the scale (depth = 1 / (map * raw_max)).
With ``tta: flip`` the stored map is the mean of
the image's map and the un-mirrored map of its mirror, and the image's own map is kept beside it
(:attr:`Normalised.plain`), so evaluation can score either.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from leve.device import resolve_device
from leve.errors import LeveError
from leve.teacher.loading import Teacher
from leve.teacher.preprocess import normalize_batch

RESIZE_MODE = "bicubic, align_corners=False (transformers post_process_depth_estimation) to the stored image size"
NORMALISATION = "per image: clip(raw, 0) / max(raw); max <= 0 -> all zeros with zero=True; raw_min/raw_max stored"
MIN_METRIC_DEPTH = 1e-3  # m: a metric teacher's depth is clamped here before it is inverted
METRIC_NORMALISATION = (f"metric: raw = 1 / max(depth, {MIN_METRIC_DEPTH:g} m) (inverse depth, 1/m) after the resize; "
                        f"then {NORMALISATION}; depth in metres = 1 / (map * raw_max)")
AMP_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
TTA_MODES = ("none", "flip")
PREPROCESS_MODES = ("auto", "workers", "device")


@dataclass
class Normalised:
    """A batch of normalised maps (B, H, W) float16 with their per-image statistics."""

    disparity: np.ndarray
    raw_min: np.ndarray
    raw_max: np.ndarray
    zero: np.ndarray
    plain: Normalised | None = None  # tta flip: the map of the image alone, normalised the same way


class TeacherRunner:
    """Runs a teacher on uint8 batches: inference mode, autocast and channels-last on CUDA.

    ``preprocess``: where the processor's resize runs. ``workers``: the caller sends images already
    resized by :meth:`~leve.teacher.preprocess.Preprocessing.resize` (PIL, bit-equal to transformers);
    ``device``: it sends them at their stored size, one size per batch, and
    :meth:`~leve.teacher.preprocess.Preprocessing.resize_batch` resizes them here (within one level of
    PIL); ``auto`` (the default): ``device`` on CUDA, ``workers`` elsewhere."""

    def __init__(self, teacher: Teacher, *, device: str, amp: str, tta: str, preprocess: str = "auto") -> None:
        if tta not in TTA_MODES:
            raise LeveError(f"teacher.tta must be one of {TTA_MODES}, got '{tta}'")
        if amp not in AMP_DTYPES:
            raise LeveError(f"teacher.amp must be one of {tuple(AMP_DTYPES)}, got '{amp}'")
        if preprocess not in PREPROCESS_MODES:
            raise LeveError(f"teacher preprocess must be one of {PREPROCESS_MODES}, got '{preprocess}'")
        self.teacher = teacher
        self.device = resolve_device(device)
        self.cuda = self.device.type == "cuda"
        self.amp = amp if self.cuda else "float32"  # autocast only on CUDA
        self.preprocess = ("device" if self.cuda else "workers") if preprocess == "auto" else preprocess
        self.tta = tta
        self.metric = teacher.depth_kind == "metric"
        self.model = teacher.model.to(self.device).eval()
        if self.cuda:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.table = teacher.preprocessing.lookup_table().to(self.device)

    def _autocast(self) -> Any:
        if self.cuda and self.amp != "float32":
            return torch.autocast("cuda", dtype=AMP_DTYPES[self.amp])
        return nullcontext()

    def raw(self, images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """(B, 3, h, w) uint8 (one resized size) -> (B, H, W) float32 raw disparity at ``size``
        (flip-averaged under ``tta: flip``)."""
        return self.raw_views(images, size)[0]

    @torch.inference_mode()
    def raw_views(self, images: torch.Tensor, size: tuple[int, int], resized: bool = False
                  ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """:meth:`raw`, and under ``tta: flip`` also the image's own map (else None), both at ``size``.
        ``resized``: the images are already at the processor's size (a cache's local crops), whatever
        ``preprocess`` says."""
        x = images.to(self.device, non_blocking=True)
        if self.preprocess == "device" and not resized:
            x = self.teacher.preprocessing.resize_batch(x)
        x = normalize_batch(x, self.table)
        if self.tta == "flip":
            x = torch.cat([x, x.flip(-1)])
        if self.cuda:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            depth = self.model(pixel_values=x).predicted_depth
        depth = depth.float()
        plain = None
        if self.tta == "flip":
            n = images.shape[0]
            plain = self._post(depth[:n], size)
            depth = 0.5 * (depth[:n] + depth[n:].flip(-1))
        return self._post(depth, size), plain

    def _post(self, depth: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The model's map at ``size``; a metric teacher's depth then as inverse depth (1/m)."""
        out = _resize(depth, size)
        return 1.0 / out.clamp(min=MIN_METRIC_DEPTH) if self.metric else out

    def predict(self, images: torch.Tensor, size: tuple[int, int], first_index: int = 0) -> Normalised:
        """Raw maps normalised per image (with ``plain`` under ``tta: flip``); refuses non-finite
        output (e.g. fp16 overflow)."""
        maps, plain = self.raw_views(images, size)
        out = normalise(maps, first_index)
        if plain is not None:
            out.plain = normalise(plain, first_index)
        return out


def _resize(depth: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, h, w) -> (B, H, W) as transformers' post-processing resizes (bicubic, align_corners=False)."""
    return F.interpolate(depth.unsqueeze(1), size=size, mode="bicubic", align_corners=False).squeeze(1)


def normalise(raw: torch.Tensor, first_index: int = 0) -> Normalised:
    """(B, H, W) raw disparity -> float16 maps in [0, 1] plus raw min/max and zero flags."""
    flat = raw.flatten(1)
    finite = torch.isfinite(flat).all(dim=1)
    if not bool(finite.all()):
        bad = first_index + int((~finite).nonzero()[0, 0])
        raise LeveError(f"sample {bad}: the teacher produced non-finite values (try --amp float32 or bfloat16)")
    raw_min = flat.amin(dim=1)
    raw_max = flat.amax(dim=1)
    zero = raw_max <= 0
    scale = torch.where(zero, torch.ones_like(raw_max), raw_max)
    maps = raw.clamp(min=0) / scale[:, None, None]
    maps = torch.where(zero[:, None, None], torch.zeros_like(maps), maps)
    return Normalised(
        disparity=maps.to(torch.float16).cpu().numpy(),
        raw_min=raw_min.cpu().numpy().astype(np.float32),
        raw_max=raw_max.cpu().numpy().astype(np.float32),
        zero=zero.cpu().numpy(),
    )
