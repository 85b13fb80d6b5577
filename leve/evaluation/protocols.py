"""The evaluation protocols, as small named factories returning a :class:`Protocol`.

This module is the only place evaluation crops (:data:`CROPS`, by dataset and name) and depth
caps (:data:`LEVE2024_MIN_DEPTH_DIVISOR`, :data:`STANDARD_MIN_DEPTH`,
:data:`DENSEDEPTH_MIN_DEPTH_DIVISOR`) are defined; dataset stores record only the dataset's own
facts (units, max depth, intrinsics, sources), never a crop.

- ``leve2024`` reproduces the thesis: input resized to the training resolution, the fixed
  ``leve2024`` crops (NYU rows 20:460 cols 24:616, KITTI rows 128:381 cols 45:1196,
  EndoSLAM full), depth = ``clamp(D / out, D/100, D)`` with ``D`` the *dataset's* max depth,
  the width-flipped image predicted and scored as a separate sample (2N samples), no
  validity mask (only pixels without any measurement, gt <= 0, are left out). The thesis's
  KITTI and EndoSLAM tables scored ground truth that only some stores hold
  (``prepare.kitti.gt: guideddecoding``, ``prepare.endoslam.depth: thesis``; the latter stores
  every pixel as R/255 + 1e-6, so zero R is scored): on other stores :func:`ground_truth_note`
  says why the numbers are not comparable with those tables.
- ``standard`` follows the literature: valid mask ``min < gt < max``, the ``eigen`` crop on
  NYU (rows 45:471 cols 41:601, as in BTS/AdaBins), the ``garg`` or ``eigen`` crop on KITTI,
  the prediction averaged with the un-flipped prediction of the flipped image, depth from the
  checkpoint's own ``max_depth`` and clipped to ``[min, max]``, and per-image alignment
  ``none | median | lstsq`` (least-squares scale and shift in disparity space). An aligned
  prediction is fitted unclamped and clipped to ``[min, max]`` only afterwards: ``median`` reads
  the raw depth ``D/out``, ``lstsq`` the disparity ``out/D``, and flip-averages and resizes it in
  that space (monodepth2 scales the raw prediction, MiDaS and Marigold fit it). The teacher row
  scores the cached map flip-averaged exactly when the student's prediction is (``eval.flip``)
  and the cache holds both maps (``teacher.tta: flip``), recorded as ``teacher_flip``.
- ``densedepth`` reproduces DenseDepth's own evaluation (seed 002's Table I; see
  :func:`densedepth` for what its code does, line by line): depth ``clamp(D / out, D/100, D)``
  with the checkpoint's ``D``, a half-resolution output upsampled x2 *as depth*, averaged with
  the un-mirrored prediction of the flipped image, NYU rows 20:460 cols 24:616 (the ``leve2024``
  box), no validity mask, REL divided by the prediction, metrics pooled over every pixel.

How a split's numbers are aggregated (``per_image`` means, ``per_image_mse`` with RMSE as the thesis's
eq. 8.1, or ``pooled`` over every pixel; see :mod:`leve.metrics`) is part of each protocol
(``leve2024`` and ``standard``: per_image; ``densedepth``: pooled), can be overridden by
``eval.aggregation``, and is recorded with the numbers.
Any crop of the dataset can be chosen under any protocol (``eval.crop``).

The log of ``rmse_log`` is part of each protocol too (``rmse_log``: ``ln`` for all three, leve's
numbers as they always were; ``eval.rmse_log: log10`` gives the thesis code's ``RMSE_log``, as
``profiles/thesis-code.yaml`` names it), recorded with the numbers. ``standard``'s ``median`` reads
and resizes the prediction as depth; ``median_disparity`` as disparity, then inverts it, as
monodepth2's evaluation does (:mod:`leve.evaluation.align`). Every evaluation also scores a constant
predictor under the same protocol and a depth-ordering metric (``spearman``) for every model.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from leve.errors import LeveError
from leve.metrics import AGGREGATIONS, REL_DENOMINATORS, RMSE_LOG_BASES

ALIGNMENTS = ("none", "median", "median_disparity", "lstsq")  # see leve.evaluation.align
FLIPS = ("none", "separate", "average")
TEACHER_FLIPS = ("none", "average")  # the cached teacher map: as predicted | flip-averaged (teacher.tta: flip)
UPSAMPLES = ("output", "depth")  # a low-resolution output is brought to the input size before / after reading depth


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
DEFAULT_CROP = {"leve2024": {"nyu": "leve2024", "kitti": "leve2024"}, "standard": {"nyu": "eigen", "kitti": "garg"},
                # DenseDepth's evaluation crops NYU only (its code evaluates no other test set): the same box
                # as leve2024's; every other dataset is scored in full
                "densedepth": {"nyu": "leve2024"}}
# Depth caps. leve2024: depth clamped to [D/100, D], D the dataset's max depth (the store's
# max_depth: NYU 10 m, KITTI 80 m, EndoSLAM 1). standard: valid mask and clipping to
# [min_depth, D], min_depth 1e-3 unless eval.min_depth says otherwise (the KITTI literature's 1e-3..80 m).
LEVE2024_MIN_DEPTH_DIVISOR = 100  # min depth = D / 100
STANDARD_MIN_DEPTH = 1e-3
# densedepth: DenseDepth clips 1000/out to [10, 1000] (cm), i.e. depth to [D/100, D] with D = 10 m, the
# maximum of its own depth normalisation; for a leve checkpoint D is its max_depth (see densedepth()).
DENSEDEPTH_MIN_DEPTH_DIVISOR = 100


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
    upsample: str = "output"  # a half-resolution output upsampled as the raw output (then read) | as depth
    rel_denominator: str = "gt"  # abs_rel and sq_rel divide by the ground truth | by the prediction
    # each protocol states its own (eval.aggregation and eval.rmse_log null: the protocol's); keyword-only, field
    # order kept (the order the settings are recorded in):
    aggregation: str = field(kw_only=True)  # per_image: mean of per-image metrics | per_image_mse: RMSE (and the
    # other root metrics) sqrt of the mean per-image square, the thesis's eq. 8.1 | pooled: over every pixel of the split
    rmse_log: str = field(kw_only=True)  # the log of rmse_log: ln (every protocol's own) | log10 (the thesis code's)

    # Filled in by the evaluation (leve.evaluation.runner), recorded with the numbers:
    teacher_flip: str = "none"  # none | average: the teacher's cached map is flip-averaged (teacher.tta: flip)
    resize: str = ""  # how images and predictions are resized (leve.images.RGB_RESIZE)

    def __post_init__(self) -> None:
        if self.align not in ALIGNMENTS:
            raise LeveError(f"eval.align: unknown alignment '{self.align}'; choose from {', '.join(ALIGNMENTS)}")
        if self.flip not in FLIPS:
            raise LeveError(f"eval.flip: unknown flip handling '{self.flip}'; choose from {', '.join(FLIPS)}")
        for key, value, choices in (("upsample", self.upsample, UPSAMPLES),
                                    ("teacher_flip", self.teacher_flip, TEACHER_FLIPS),
                                    ("rel_denominator", self.rel_denominator, REL_DENOMINATORS),
                                    ("aggregation", self.aggregation, AGGREGATIONS),
                                    ("rmse_log", self.rmse_log, RMSE_LOG_BASES)):
            if value not in choices:
                raise LeveError(f"protocol '{self.name}': unknown {key} '{value}'; choose from {', '.join(choices)}")

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
                    depth_scale="dataset", align="none", aggregation="per_image", rmse_log="ln")


def standard(dataset: str, max_depth: float, min_depth: float | None = None, crop: str | None = None, *,
             align: str, flip: bool, **_: Any) -> Protocol:
    """The literature protocol (see the module docstring); ``min_depth`` defaults to 1e-3."""
    return Protocol("standard", dataset, crop_for(dataset, crop, "standard"),
                    flip="average" if flip else "none", valid_mask=True,
                    min_depth=STANDARD_MIN_DEPTH if min_depth is None else float(min_depth), max_depth=max_depth,
                    depth_scale="checkpoint", align=align, aggregation="per_image", rmse_log="ln")


def densedepth(dataset: str, max_depth: float, min_depth: float | None = None, crop: str | None = None,
               **_: Any) -> Protocol:
    """DenseDepth's own evaluation (seed 002's Table I), as its public code computes it.

    Checked against ialhashim/DenseDepth at 2e15107 (``utils.py``, the Keras evaluation behind
    its published numbers; ``evaluate.py`` calls it, line 40, ``batch_size=6``):

    - depth: ``predict`` (utils.py l.7-14) returns ``clip(1000 / out, 10, 1000) / 1000``, and
      ``evaluate`` (l.120) multiplies by 10: metres ``clip(10 / out, 0.1, 10)``, which is
      ``clamp(D / out, D/100, D)`` with ``D`` = 10 m, the max depth of the model's own output
      normalisation. For a leve checkpoint (whose output is ``max_depth / depth``,
      :mod:`leve.models.depth`) that is the checkpoint's ``max_depth`` (``depth_scale:
      checkpoint``); the depth is then clipped to ``[max_depth/100, max_depth]`` of the dataset
      (a no-op when the two agree, as for NYU, 10 m).
    - upsampling: ``scale_up(2, ...)`` (l.16-25, skimage ``resize`` order 1 = bilinear) is applied
      to that depth (l.120, l.123), not to the raw output: ``upsample: depth``. Bilinear at
      pixel centres as torch's ``align_corners=False``; skimage's ``mode='reflect'`` edge differs
      from torch's clamped edge only in the first/last row and column, which the NYU crop drops;
      ``anti_aliasing`` smooths only when downscaling.
    - input: the whole test image (``x/255``, l.120), no resize; leve resizes to the training
      resolution, the same thing for models trained at 480x640 (DenseDepth, seed 002).
    - flip: the width-mirrored image (``x[..., ::-1, :]`` on NHWC, l.123) is predicted too and
      ``0.5 * pred + 0.5 * fliplr(pred_flip)`` scored (l.132): ``flip: average``. DenseDepth crops
      the mirrored map before un-mirroring it (l.128, l.132); the column crop 24..615 of 640 is
      symmetric (24 columns each side), so this equals un-mirroring first.
    - crop: ``[:, crop[0]:crop[1]+1, crop[2]:crop[3]+1]`` (l.126-128), inclusive bounds read from
      ``eigen_test_crop.npy`` in its ``nyu_test.zip`` (l.92; evaluate.py l.34): data, not code.
      The box rows 20..459, cols 24..615 is DESIGN §3's and the one DenseDepth forks hard-code
      (``crop = [20, 459, 24, 615]``); leve's ``leve2024`` crop of NYU. DenseDepth evaluates no
      other test set in code: other datasets are scored in full.
    - mask: none; every pixel of the crop is scored (l.126-138). leve still leaves out pixels
      without a measurement (gt <= 0), which cannot be scored.
    - aggregation: every image's prediction and ground truth are stacked (l.135-136) and
      ``compute_errors`` (l.96-105) takes means over all pixels of the test set at once: pooled
      (``rmse = sqrt(mean over every pixel of (p - g)^2)``), not a mean of per-image numbers
      (the per-image mean was its code before commit fdcef58, "Fixed incorrect computation of RMSE").
    - REL: ``compute_errors(gt, pred)`` is called as ``compute_errors(predictions, testSetDepths)``
      (l.138), so its ``abs_rel = mean(|gt - pred| / gt)`` (l.101) divides by the *prediction*:
      ``rel_denominator: pred``. δ1-δ3 (l.97-100), rmse (l.102-103) and log10 (l.104) are
      symmetric in the two and unaffected; DenseDepth reports no sq_rel, rmse_log, silog or mae
      (leve computes them the same way, sq_rel also divided by the prediction).
    - every image is scored: ``N // bs`` batches (l.115) drop a last partial batch, none at
      654 images and ``batch_size=6``.

    ``min_depth``, ``align`` and ``flip`` options are ignored: the protocol fixes them.
    """
    return Protocol("densedepth", dataset, crop_for(dataset, crop, "densedepth"), flip="average",
                    valid_mask=False, min_depth=max_depth / DENSEDEPTH_MIN_DEPTH_DIVISOR, max_depth=max_depth,
                    depth_scale="checkpoint", align="none", upsample="depth", rel_denominator="pred",
                    aggregation="pooled", rmse_log="ln")


PROTOCOLS: dict[str, Callable[..., Protocol]] = {"leve2024": leve2024, "standard": standard, "densedepth": densedepth}


def get_protocol(name: str, dataset: str, max_depth: float, aggregation: str | None = None,
                 rmse_log: str | None = None, **options: Any) -> Protocol:
    """Build protocol ``name`` for ``dataset``; options: crop, align, flip, min_depth; ``aggregation``
    (None: the protocol's own) replaces how its numbers are aggregated over the split, ``rmse_log``
    (None: the protocol's own, ``ln``) the log of ``rmse_log`` (``log10``: the thesis code's)."""
    if name not in PROTOCOLS:
        raise LeveError(f"eval.protocol: unknown protocol '{name}'; choose from {', '.join(PROTOCOLS)}")
    if aggregation is not None and aggregation not in AGGREGATIONS:
        raise LeveError(f"eval.aggregation: unknown aggregation '{aggregation}'; choose from {', '.join(AGGREGATIONS)}")
    if rmse_log is not None and rmse_log not in RMSE_LOG_BASES:
        raise LeveError(f"eval.rmse_log: unknown log '{rmse_log}'; choose from {', '.join(RMSE_LOG_BASES)}")
    protocol = PROTOCOLS[name](dataset, float(max_depth), **options)
    if aggregation is not None:
        protocol = replace(protocol, aggregation=aggregation)
    return protocol if rmse_log is None else replace(protocol, rmse_log=rmse_log)


# The ground truth the thesis's leve2024 tables scored, per dataset: the store attribute naming a store's
# ground truth, its value in stores that predate the attribute, the value that holds what the thesis scored,
# and the note shown next to leve2024 numbers of any other store ({value}: the store's).
THESIS_GROUND_TRUTH: dict[str, tuple[str, str, str, str]] = {
    "kitti": ("gt", "velodyne", "guideddecoding",
              "not comparable with the thesis's Table 9.7, which scored GuidedDecoding's prepared KITTI test files "
              "(dense: no zero in the crop, as its finite REL without a mask shows; prepare.kitti.gt: guideddecoding); "
              "this store's ground truth is '{value}', sparse, its pixels without a measurement left out"),
    "endoslam": ("depth", "r255", "thesis",
                 "not comparable with the thesis's Table 9.8, which scored depth R/255 + 1e-6 at every pixel, zero R "
                 "included (prepare.endoslam.depth: thesis); this store holds R/255 with zero R left out"),
}


def ground_truth_note(protocol: Protocol, store_attrs: Mapping[str, Any]) -> str | None:
    """Why ``leve2024`` numbers on this store are not comparable with the thesis's table (None: they are,
    or another protocol); the evaluation writes it into the metrics document and the tables show it."""
    dataset = str(store_attrs.get("dataset") or protocol.dataset)
    if protocol.name != "leve2024" or dataset not in THESIS_GROUND_TRUTH:
        return None
    key, default, thesis, note = THESIS_GROUND_TRUTH[dataset]
    value = str(store_attrs.get(key) or default)
    return None if value == thesis else note.format(value=value)
