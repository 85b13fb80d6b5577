"""Per-image alignment of a prediction to the ground truth.

An aligned protocol fits the *unclamped* prediction, in the space its fit lives in, and clips
only the aligned depth (monodepth2 scales the raw prediction and clips afterwards; MiDaS and
Marigold fit the raw prediction):

- ``median`` (monodepth2): depth space; scale by ``median(gt) / median(pred)`` over the valid
  pixels where the prediction is a depth (finite, > 0).
- ``lstsq`` (relative-depth protocol, MiDaS, Marigold): disparity space; fit ``s, t`` minimising
  ``sum((s·x + t − 1/gt)²)`` over the valid pixels where the disparity ``x`` is positive
  (Marigold leaves non-positive disparity out of the fit), then ``depth = 1 / (s·x + t)``.
- ``none``: the depth as it is.

Aligned depth is clipped to ``[min_depth, max_depth]``; a disparity at or below ``1/max_depth``
(and a pixel without a depth prediction) becomes ``max_depth``.
"""

from __future__ import annotations

import numpy as np

SPACES = {"none": "depth", "median": "depth", "lstsq": "disparity"}  # where each alignment fits


def fit_scale_shift(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares ``(s, t)`` with ``s·x + t ≈ y`` (closed form of the 2×2 normal equations).

    A constant ``x`` gives ``s = 0, t = mean(y)``.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    xm, ym = x.mean(), y.mean()
    var = np.mean((x - xm) ** 2)
    if var <= 0:
        return 0.0, float(ym)
    s = float(np.mean((x - xm) * (y - ym)) / var)
    return s, float(ym - s * xm)


def disparity_to_depth(disp: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    """``1/disp`` clipped to ``[min_depth, max_depth]`` (non-positive disparity -> max_depth)."""
    disp = np.nan_to_num(np.asarray(disp, dtype=np.float64), nan=0.0)
    floor = 1.0 / max_depth
    return np.clip(1.0 / np.maximum(disp, floor), min_depth, max_depth)


def align_lstsq_disparity(disp: np.ndarray, gt: np.ndarray, valid: np.ndarray,
                          min_depth: float, max_depth: float) -> np.ndarray:
    """Depth from disparity ``disp`` after the scale-and-shift fit to ``1/gt`` on the ``valid``
    pixels whose disparity is positive (unaligned when there is none)."""
    disp = np.asarray(disp, dtype=np.float64)
    fit = valid & np.isfinite(disp) & (disp > 0)
    if not fit.any():
        return disparity_to_depth(disp, min_depth, max_depth)
    s, t = fit_scale_shift(disp[fit], 1.0 / gt[fit])
    return disparity_to_depth(s * disp + t, min_depth, max_depth)


def align_median(depth: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Depth scaled by ``median(gt) / median(depth)`` over ``valid`` (unchanged when empty)."""
    if not valid.any():
        return depth
    scale = np.median(gt[valid]) / max(float(np.median(depth[valid])), 1e-12)
    return depth * scale


def align_prediction(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray, method: str,
                     min_depth: float, max_depth: float) -> np.ndarray:
    """Clipped depth from an unclamped prediction in ``SPACES[method]`` (a disparity for
    ``lstsq``, a depth otherwise; NaN: no prediction), aligned by ``none | median | lstsq``."""
    pred = np.asarray(pred, dtype=np.float64)
    if method == "lstsq":
        return align_lstsq_disparity(pred, gt, valid, min_depth, max_depth)
    if method == "median":
        ok = np.isfinite(pred) & (pred > 0)
        pred = np.where(ok, align_median(pred, gt, valid & ok), max_depth)
    return np.clip(pred, min_depth, max_depth)


def align_depth(depth: np.ndarray, gt: np.ndarray, valid: np.ndarray, method: str,
                min_depth: float, max_depth: float) -> np.ndarray:
    """Apply ``none | median | lstsq`` to a depth map, then clip to ``[min_depth, max_depth]``."""
    depth = np.asarray(depth, dtype=np.float64)
    if method == "lstsq":
        with np.errstate(divide="ignore"):
            depth = 1.0 / depth  # its disparity (0 -> inf is left out of the fit, as any x <= 0 is not)
    return align_prediction(depth, gt, valid, method, min_depth, max_depth)
