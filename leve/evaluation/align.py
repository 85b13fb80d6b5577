"""Per-image alignment of a prediction to the ground truth.

An aligned protocol fits the *unclamped* prediction, in the space its fit lives in, and clips
only the aligned depth (monodepth2 scales the raw prediction and clips afterwards; MiDaS and
Marigold fit the raw prediction):

- ``median``: monodepth2's median scaling applied to a prediction read and resized as *depth*
  (leve's behaviour before ``median_disparity`` existed, kept as the default): scale by
  ``median(gt) / median(pred)`` over the valid pixels where the prediction is a depth (finite, > 0).
- ``median_disparity``: monodepth2's evaluation as its ``evaluate_depth.py`` does it: the network's
  disparity is resized (and flip-averaged) as *disparity*, inverted to depth, then median-scaled as
  ``median``. On a full-size map the two agree; they differ by how a low-resolution output is brought
  to the ground truth's size (resizing ``1/x`` is not ``1/`` the resized ``x``).
- ``lstsq`` (relative-depth protocol, MiDaS, Marigold): disparity space; fit ``s, t`` minimising
  ``sum((s·x + t − 1/gt)²)`` over the valid pixels where the disparity ``x`` is positive
  (Marigold leaves non-positive disparity out of the fit), **subject to s ≥ 0**
  (:func:`fit_positive_scale_shift`), then ``depth = 1 / (s·x + t)``.
- ``none``: the depth as it is.

Why the scale is constrained: an unconstrained affine fit takes a negative scale for a map whose
near and far are swapped, and so turns a wrong map into a good-looking one. The objective is a
convex quadratic in ``(s, t)``, so when the unconstrained optimum has ``s <= 0`` the constrained
optimum lies on ``s = 0``: the best constant, ``t = mean(1/gt)`` (depth ``1/mean(1/gt)``). Such an
image is scored with that constant and counted as a *non-positive fit* (the evaluation reports
``alignment.non_positive_fits`` per model). A median scale is positive by construction (both medians
are of positive numbers), so it never counts; a swapped map still gets a positive median scale,
which the depth-ordering metric (``spearman``) and the constant baseline row expose instead.

Aligned depth is clipped to ``[min_depth, max_depth]``; a disparity at or below ``1/max_depth``
(and a pixel without a depth prediction) becomes ``max_depth``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Where each alignment reads, resizes and fits the prediction.
SPACES = {"none": "depth", "median": "depth", "median_disparity": "disparity", "lstsq": "disparity"}


@dataclass(frozen=True)
class Fit:
    """A constrained scale-and-shift fit: ``scale >= 0``; ``non_positive`` when the unconstrained
    least-squares scale was ``<= 0`` (so ``scale = 0``, ``shift = mean(y)``: the best constant)."""

    scale: float
    shift: float
    non_positive: bool


def fit_scale_shift(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Unconstrained least-squares ``(s, t)`` with ``s·x + t ≈ y`` (closed form of the 2×2 normal
    equations); the scale may be negative. A constant ``x`` gives ``s = 0, t = mean(y)``.
    Alignment uses :func:`fit_positive_scale_shift`."""
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    xm, ym = x.mean(), y.mean()
    var = np.mean((x - xm) ** 2)
    if var <= 0:
        return 0.0, float(ym)
    s = float(np.mean((x - xm) * (y - ym)) / var)
    return s, float(ym - s * xm)


def fit_positive_scale_shift(x: np.ndarray, y: np.ndarray) -> Fit:
    """Least-squares ``(s, t)`` with ``s·x + t ≈ y`` subject to ``s >= 0``: the unconstrained fit when
    its scale is positive, else ``s = 0, t = mean(y)`` (the constrained optimum of the convex
    quadratic lies on the boundary), flagged ``non_positive``. A constant ``x`` (no scale to fit)
    counts as non-positive too."""
    s, t = fit_scale_shift(x, y)
    if s > 0:
        return Fit(s, t, False)
    return Fit(0.0, float(np.mean(np.asarray(y, dtype=np.float64))), True)


def disparity_to_depth(disp: np.ndarray, min_depth: float, max_depth: float) -> np.ndarray:
    """``1/disp`` clipped to ``[min_depth, max_depth]`` (non-positive disparity -> max_depth)."""
    disp = np.nan_to_num(np.asarray(disp, dtype=np.float64), nan=0.0)
    floor = 1.0 / max_depth
    return np.clip(1.0 / np.maximum(disp, floor), min_depth, max_depth)


def fit_lstsq_disparity(disp: np.ndarray, gt: np.ndarray, valid: np.ndarray,
                        min_depth: float, max_depth: float) -> tuple[np.ndarray, Fit | None]:
    """(depth, fit) from disparity ``disp`` after the positive-scale fit to ``1/gt`` on the ``valid``
    pixels whose disparity is positive; ``(unaligned depth, None)`` when there is no such pixel."""
    disp = np.asarray(disp, dtype=np.float64)
    fit_px = valid & np.isfinite(disp) & (disp > 0)
    if not fit_px.any():
        return disparity_to_depth(disp, min_depth, max_depth), None
    fit = fit_positive_scale_shift(disp[fit_px], 1.0 / gt[fit_px])
    return disparity_to_depth(fit.scale * disp + fit.shift, min_depth, max_depth), fit


def align_lstsq_disparity(disp: np.ndarray, gt: np.ndarray, valid: np.ndarray,
                          min_depth: float, max_depth: float) -> np.ndarray:
    """Depth from disparity ``disp`` after the positive-scale fit (:func:`fit_lstsq_disparity`)."""
    return fit_lstsq_disparity(disp, gt, valid, min_depth, max_depth)[0]


def align_median(depth: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Depth scaled by ``median(gt) / median(depth)`` over ``valid`` (unchanged when empty)."""
    if not valid.any():
        return depth
    scale = np.median(gt[valid]) / max(float(np.median(depth[valid])), 1e-12)
    return depth * scale


def align_prediction_fit(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray, method: str,
                         min_depth: float, max_depth: float) -> tuple[np.ndarray, bool | None]:
    """(clipped aligned depth, whether its fit's unconstrained scale was non-positive) of an unclamped
    prediction in ``SPACES[method]`` (NaN: no prediction). The flag is ``None`` where no scale was
    fitted (``none``, or no pixel to fit), and ``False`` for a median scale (positive by construction)."""
    pred = np.asarray(pred, dtype=np.float64)
    if method == "lstsq":
        depth, fit = fit_lstsq_disparity(pred, gt, valid, min_depth, max_depth)
        return depth, None if fit is None else fit.non_positive
    if method == "median_disparity":
        with np.errstate(divide="ignore", invalid="ignore"):
            pred = np.where(np.isfinite(pred) & (pred > 0), 1.0 / pred, np.nan)  # monodepth2: depth = 1 / disp
    if method in ("median", "median_disparity"):
        ok = np.isfinite(pred) & (pred > 0)
        fitted = bool((valid & ok).any())
        pred = np.where(ok, align_median(pred, gt, valid & ok), max_depth)
        return np.clip(pred, min_depth, max_depth), (False if fitted else None)
    return np.clip(pred, min_depth, max_depth), None


def align_prediction(pred: np.ndarray, gt: np.ndarray, valid: np.ndarray, method: str,
                     min_depth: float, max_depth: float) -> np.ndarray:
    """Clipped depth from an unclamped prediction in ``SPACES[method]`` (a disparity for ``lstsq`` and
    ``median_disparity``, a depth otherwise; NaN: no prediction), aligned by ``method``."""
    return align_prediction_fit(pred, gt, valid, method, min_depth, max_depth)[0]


def align_depth(depth: np.ndarray, gt: np.ndarray, valid: np.ndarray, method: str,
                min_depth: float, max_depth: float) -> np.ndarray:
    """Apply an alignment (``none | median | median_disparity | lstsq``) to a depth map, then clip to
    ``[min_depth, max_depth]``."""
    depth = np.asarray(depth, dtype=np.float64)
    if SPACES.get(method) == "disparity":
        with np.errstate(divide="ignore"):
            depth = 1.0 / depth  # its disparity (0 -> inf is left out of the fit, as any x <= 0 is not)
    return align_prediction(depth, gt, valid, method, min_depth, max_depth)
