"""The two evaluation protocols, as small named factories returning a :class:`Protocol`.

This module is the only place evaluation crops (:data:`CROPS`, by dataset and name) and depth
caps (:data:`LEVE2024_MIN_DEPTH_DIVISOR`, :data:`STANDARD_MIN_DEPTH`) are defined; dataset
stores record only the dataset's own facts (units, max depth, intrinsics, sources), never a crop.

- ``leve2024`` reproduces the thesis: input resized to the training resolution, the fixed
  ``leve2024`` crops (NYU rows 20:460 cols 24:616, KITTI rows 128:381 cols 45:1196,
  EndoSLAM full), depth = ``clamp(D / out, D/100, D)`` with ``D`` the *dataset's* max depth,
  the width-flipped image predicted and scored as a separate sample (2N samples), no
  validity mask (only pixels without any measurement, gt <= 0, are left out).
- ``standard`` follows the literature: valid mask ``min < gt < max``, the ``eigen`` crop on
  NYU (rows 45:471 cols 41:601, as in BTS/AdaBins), the ``garg`` or ``eigen`` crop on KITTI,
  the prediction averaged with the un-flipped prediction of the flipped image, depth from the
  checkpoint's own ``max_depth`` and clipped to ``[min, max]``, and per-image alignment
  ``none | median | lstsq`` (least-squares scale and shift in disparity space).

Any crop of the dataset can be chosen under either protocol (``eval.crop``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from leve.errors import LeveError

ALIGNMENTS = ("none", "median", "lstsq")
FLIPS = ("none", "separate", "average")


@dataclass(frozen=True)
class Crop:
    """A rectangle ``rows[0]:rows[1], cols[0]:cols[1]``, in pixels or fractions of the size."""

    name: str
    rows: tuple[float, float] | None = None  # None: all rows
    cols: tuple[float, float] | None = None
    units: str = "pixels"  # pixels | fraction

    def box(self, height: int, width: int) -> tuple[int, int, int, int]:
        """``(r0, r1, c0, c1)`` for an image of this size, clamped to the image."""
        r0, r1 = self._span(self.rows, height)
        c0, c1 = self._span(self.cols, width)
        if r1 <= r0 or c1 <= c0:
            raise LeveError(f"crop '{self.name}' selects no pixel of a {height}x{width} image")
        return r0, r1, c0, c1

    def _span(self, span: tuple[float, float] | None, size: int) -> tuple[int, int]:
        if span is None:
            return 0, size
        if self.units == "fraction":
            return int(span[0] * size), int(span[1] * size)
        return max(0, int(span[0])), min(size, int(span[1]))

    def mask(self, height: int, width: int) -> np.ndarray:
        """Boolean (H, W) mask of the cropped pixels."""
        r0, r1, c0, c1 = self.box(height, width)
        out = np.zeros((height, width), dtype=bool)
        out[r0:r1, c0:c1] = True
        return out


FULL = Crop("full")
CROPS: dict[str, dict[str, Crop]] = {
    "nyu": {  # at 640x480
        # The crop the thesis's evaluation used (DESIGN §3): rows 20..459, cols 24..615 inclusive,
        # DenseDepth's evaluation crop, which DenseDepth calls the "Eigen crop"; not the literature's.
        "leve2024": Crop("leve2024", (20, 460), (24, 616)),
        # The literature's Eigen crop (Eigen et al. 2014, as evaluated by BTS and AdaBins).
        "eigen": Crop("eigen", (45, 471), (41, 601)),
        "full": FULL,
    },
    "kitti": {  # image sizes vary per drive (1242x375, 1241x376, ...): fractions scale, pixels are clamped
        # The fixed pixel box the thesis's evaluation used (DESIGN §3), whatever the image size.
        "leve2024": Crop("leve2024", (128, 381), (45, 1196)),
        # Garg et al. 2016's crop as fractions of height/width (monodepth2, BTS, AdaBins).
        "garg": Crop("garg", (0.40810811, 0.99189189), (0.03594771, 0.96405229), "fraction"),
        # Eigen et al. 2014's crop as fractions of height/width (same columns as Garg).
        "eigen": Crop("eigen", (0.3324324, 0.91351351), (0.03594771, 0.96405229), "fraction"),
        "full": FULL,
    },
}  # other datasets (EndoSLAM, synthetic): the full image only
DEFAULT_CROP = {"leve2024": {"nyu": "leve2024", "kitti": "leve2024"}, "standard": {"nyu": "eigen", "kitti": "garg"}}
# Depth caps. leve2024: depth clamped to [D/100, D], D the dataset's max depth (the store's
# max_depth: NYU 10 m, KITTI 80 m, EndoSLAM 1). standard: valid mask and clipping to
# [min_depth, D], min_depth 1e-3 unless eval.min_depth says otherwise (the KITTI literature's 1e-3..80 m).
LEVE2024_MIN_DEPTH_DIVISOR = 100  # min depth = D / 100
STANDARD_MIN_DEPTH = 1e-3


def crop_for(dataset: str, name: str | None, protocol: str) -> Crop:
    """The named crop of ``dataset`` (``None``: the protocol's default; others: full image)."""
    choices = CROPS.get(dataset, {"full": FULL})
    name = name or DEFAULT_CROP.get(protocol, {}).get(dataset, "full")
    if name not in choices:
        raise LeveError(f"eval.crop: no crop '{name}' for dataset '{dataset}'; choose from {', '.join(choices)}")
    return choices[name]


@dataclass(frozen=True)
class Protocol:
    """Everything that decides a number; recorded next to every metric."""

    name: str
    dataset: str
    crop: Crop
    flip: str  # none | separate (2N samples) | average (mean of both predictions)
    valid_mask: bool  # score only min_depth < gt < max_depth
    min_depth: float
    max_depth: float
    depth_scale: str  # dataset: D/out with the dataset's max depth | checkpoint: the model's own
    align: str  # none | median | lstsq (disparity space)
    teacher_align: str = "lstsq"

    def __post_init__(self) -> None:
        if self.align not in ALIGNMENTS:
            raise LeveError(f"eval.align: unknown alignment '{self.align}'; choose from {', '.join(ALIGNMENTS)}")
        if self.flip not in FLIPS:
            raise LeveError(f"eval.flip: unknown flip handling '{self.flip}'; choose from {', '.join(FLIPS)}")

    def settings(self) -> dict[str, Any]:
        """A JSON-friendly description (the crop with its numbers)."""
        out = asdict(self)
        out["crop"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self.crop).items()}
        return out

    def valid(self, gt: np.ndarray) -> np.ndarray:
        """Pixels scored in this (already cropped) ground truth."""
        ok = np.isfinite(gt) & (gt > 0)
        if self.valid_mask:
            ok &= (gt > self.min_depth) & (gt < self.max_depth)
        return ok


def leve2024(dataset: str, max_depth: float, min_depth: float | None = None,
             crop: str | None = None, **_: Any) -> Protocol:
    """The thesis protocol (see the module docstring); ``min_depth`` is fixed at D/100."""
    return Protocol("leve2024", dataset, crop_for(dataset, crop, "leve2024"), flip="separate",
                    valid_mask=False, min_depth=max_depth / LEVE2024_MIN_DEPTH_DIVISOR, max_depth=max_depth,
                    depth_scale="dataset", align="none")


def standard(dataset: str, max_depth: float, min_depth: float | None = None, crop: str | None = None,
             align: str = "none", flip: bool = True, **_: Any) -> Protocol:
    """The literature protocol (see the module docstring); ``min_depth`` defaults to 1e-3."""
    return Protocol("standard", dataset, crop_for(dataset, crop, "standard"),
                    flip="average" if flip else "none", valid_mask=True,
                    min_depth=STANDARD_MIN_DEPTH if min_depth is None else float(min_depth), max_depth=max_depth,
                    depth_scale="checkpoint", align=align)


PROTOCOLS: dict[str, Callable[..., Protocol]] = {"leve2024": leve2024, "standard": standard}


def get_protocol(name: str, dataset: str, max_depth: float, **options: Any) -> Protocol:
    """Build protocol ``name`` for ``dataset``; options: crop, align, flip, min_depth."""
    if name not in PROTOCOLS:
        raise LeveError(f"eval.protocol: unknown protocol '{name}'; choose from {', '.join(PROTOCOLS)}")
    return PROTOCOLS[name](dataset, float(max_depth), **options)


def with_align(protocol: Protocol, align: str) -> Protocol:
    """The same protocol with another alignment."""
    return replace(protocol, align=align)
