"""Per-image alignment of a prediction to the ground truth.

- ``median`` (monodepth2): scale the depth by ``median(gt) / median(pred)``.
- ``lstsq`` (relative-depth protocol, MiDaS): fit ``s, t`` minimising
  ``sum((s·x + t − 1/gt)²)`` over the valid pixels, with ``x`` a disparity (``1/pred`` for a
  depth map, or the teacher's map as it is), then ``depth = 1 / (s·x + t)``.
Aligned depth is clipped to ``[min_depth, max_depth]``; a disparity at or below
``1/max_depth`` becomes ``max_depth``.
"""

from __future__ import annotations

import numpy as np


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
    disp = np.asarray(disp, dtype=np.float64)
    floor = 1.0 / max_depth
    return np.clip(1.0 / np.maximum(disp, floor), min_depth, max_depth)


def align_lstsq_disparity(disp: np.ndarray, gt: np.ndarray, valid: np.ndarray,
                          min_depth: float, max_depth: float) -> np.ndarray:
    """Depth from disparity ``disp`` after the scale-and-shift fit to ``1/gt`` on ``valid``."""
    if not valid.any():
        return disparity_to_depth(disp, min_depth, max_depth)
    s, t = fit_scale_shift(disp[valid], 1.0 / gt[valid])
    return disparity_to_depth(s * np.asarray(disp, dtype=np.float64) + t, min_depth, max_depth)


def align_median(depth: np.ndarray, gt: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Depth scaled by ``median(gt) / median(depth)`` over ``valid`` (unchanged when empty)."""
    if not valid.any():
        return depth
    scale = np.median(gt[valid]) / max(float(np.median(depth[valid])), 1e-12)
    return depth * scale


def align_depth(depth: np.ndarray, gt: np.ndarray, valid: np.ndarray, method: str,
                min_depth: float, max_depth: float) -> np.ndarray:
    """Apply ``none | median | lstsq`` to a depth map, then clip to ``[min_depth, max_depth]``."""
    depth = np.asarray(depth, dtype=np.float64)
    if method == "median":
        depth = align_median(depth, gt, valid)
    elif method == "lstsq":
        return align_lstsq_disparity(1.0 / np.maximum(depth, 1e-12), gt, valid, min_depth, max_depth)
    return np.clip(depth, min_depth, max_depth)
