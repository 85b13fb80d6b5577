"""Depth metrics for one image, and their average over a split.

Every metric is computed per image over its valid pixels, then averaged over images
(the thesis's equations 8.1–8.3 and the usual Eigen et al. definitions). With ``p`` the
predicted and ``g`` the ground-truth depth at a valid pixel, ``mean`` over valid pixels:

- ``abs_rel``  = mean(|p − g| / g)
- ``sq_rel``   = mean((p − g)² / g)
- ``rmse``     = sqrt(mean((p − g)²))
- ``rmse_log`` = sqrt(mean((ln p − ln g)²))                      (natural log)
- ``log10``    = mean(|log10 p − log10 g|)
- ``silog``    = sqrt(mean(e²) − mean(e)²) · 100, e = ln p − ln g (scale-invariant log error)
- ``mae``      = mean(|p − g|)
- ``d1, d2, d3`` = share of pixels with max(p/g, g/p) < 1.25, 1.25², 1.25³
  (strictly less, as the thesis defines the threshold: a ratio of exactly 1.25 fails δ1).

Valid pixels: ``valid`` (when given) and a finite ground truth > 0; a pixel with no
measurement cannot be scored, whatever the protocol. Predictions are clamped to at least
:data:`MIN_PRED` so logs and ratios stay finite (a non-positive prediction is never right,
and clamping keeps it counted as an error rather than dropping it).

An image with no valid pixel has no metrics: :func:`compute_metrics` returns ``None``, and
the aggregation skips it and counts it in :attr:`Aggregate.skipped`.
Arrays are numpy or torch (any device); work happens in float64 numpy.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

METRIC_KEYS: tuple[str, ...] = (
    "abs_rel", "sq_rel", "rmse", "rmse_log", "log10", "silog", "mae", "d1", "d2", "d3",
)
LOWER_IS_BETTER: frozenset[str] = frozenset(METRIC_KEYS) - {"d1", "d2", "d3"}
DELTA = 1.25
MIN_PRED = 1e-6


def _as_numpy(x: Any) -> np.ndarray:
    """A float64 numpy copy of a numpy array or torch tensor."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def valid_pixels(gt: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask of the pixels that can be scored: ``valid`` and finite gt > 0."""
    mask = np.isfinite(gt) & (gt > 0)
    if valid is not None:
        mask &= np.asarray(valid, dtype=bool)
    return mask


def compute_metrics(pred: Any, gt: Any, valid: Any = None) -> dict[str, float] | None:
    """Metrics of one image (see the module docstring), or ``None`` if no pixel is valid.

    ``pred``, ``gt`` and ``valid`` must have the same number of elements (any shape,
    e.g. (H, W) or (1, H, W)); depth is in the dataset's units.
    """
    p, g = _as_numpy(pred).ravel(), _as_numpy(gt).ravel()
    v = None if valid is None else _as_numpy(valid).ravel() != 0
    if p.shape != g.shape or (v is not None and v.shape != g.shape):
        raise ValueError(f"compute_metrics: shapes differ (pred {p.shape}, gt {g.shape}"
                         f"{'' if v is None else f', valid {v.shape}'})")
    mask = valid_pixels(g, v)
    if not mask.any():
        return None
    p, g = np.maximum(np.nan_to_num(p[mask], nan=MIN_PRED), MIN_PRED), g[mask]
    return _metrics_on_pixels(p, g)


def _metrics_on_pixels(p: np.ndarray, g: np.ndarray) -> dict[str, float]:
    """The metric dict for matching 1-D arrays of positive predictions and ground truth."""
    diff = p - g
    e = np.log(p) - np.log(g)
    ratio = np.maximum(p / g, g / p)
    silog_var = max(float(np.mean(e**2) - np.mean(e) ** 2), 0.0)
    return {
        "abs_rel": float(np.mean(np.abs(diff) / g)),
        "sq_rel": float(np.mean(diff**2 / g)),
        "rmse": float(np.sqrt(np.mean(diff**2))),
        "rmse_log": float(np.sqrt(np.mean(e**2))),
        "log10": float(np.mean(np.abs(np.log10(p) - np.log10(g)))),
        "silog": math.sqrt(silog_var) * 100.0,
        "mae": float(np.mean(np.abs(diff))),
        "d1": float(np.mean(ratio < DELTA)),
        "d2": float(np.mean(ratio < DELTA**2)),
        "d3": float(np.mean(ratio < DELTA**3)),
    }


@dataclass
class Aggregate:
    """Mean of per-image metrics; ``count`` images scored, ``skipped`` with no valid pixel.

    ``means`` holds NaN for every key when no image was scored.
    """

    means: dict[str, float]
    count: int
    skipped: int

    def as_dict(self) -> dict[str, float | int]:
        """The means plus ``count`` and ``skipped``, as one flat dict."""
        return {**self.means, "count": self.count, "skipped": self.skipped}


@dataclass
class MetricAccumulator:
    """Streaming mean of per-image metric dicts (``None`` entries are counted as skipped)."""

    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(METRIC_KEYS, 0.0))
    count: int = 0
    skipped: int = 0

    def add(self, metrics: dict[str, float] | None) -> None:
        """Add one image's metrics, or count a skipped image for ``None``."""
        if metrics is None:
            self.skipped += 1
            return
        for key in METRIC_KEYS:
            self.sums[key] += metrics[key]
        self.count += 1

    def result(self) -> Aggregate:
        """The per-image means so far."""
        n = self.count
        means = {k: (s / n if n else math.nan) for k, s in self.sums.items()}
        return Aggregate(means=means, count=n, skipped=self.skipped)


def aggregate_metrics(per_image: Iterable[dict[str, float] | None]) -> Aggregate:
    """Mean of per-image metric dicts over a split; ``None`` entries are skipped and counted."""
    acc = MetricAccumulator()
    for metrics in per_image:
        acc.add(metrics)
    return acc.result()
