"""Depth metrics for one image, and their aggregation over a split: one definition for training's
validation, the evaluation and the reports (hence among the small utilities at the bottom of the
layers, docs/ARCHITECTURE.md; :mod:`leve.evaluation.metrics` was its old name).

With ``p`` the predicted and ``g`` the ground-truth depth at a valid pixel and ``mean`` over
the valid pixels (the thesis's equations 8.1–8.3 and the usual Eigen et al. definitions):

- ``abs_rel``  = mean(|p − g| / g)
- ``sq_rel``   = mean((p − g)² / g)
- ``rmse``     = sqrt(mean((p − g)²))
- ``rmse_log`` = sqrt(mean((ln p − ln g)²))    (natural log; ``rmse_log_base="log10"``, a protocol option
  (``eval.rmse_log``), gives sqrt(mean((log10 p − log10 g)²)) = the natural-log value / ln 10, the
  thesis code's ``RMSE_log``)
- ``log10``    = mean(|log10 p − log10 g|)
- ``silog``    = sqrt(mean(e²) − mean(e)²) · 100, e = ln p − ln g (scale-invariant log error)
- ``mae``      = mean(|p − g|)
- ``d1, d2, d3`` = share of pixels with max(p/g, g/p) < 1.25, 1.25², 1.25³
  (strictly less, as the thesis defines the threshold: a ratio of exactly 1.25 fails δ1).

Depth ordering (:data:`ORDER_KEYS`), computed per image by the evaluation from the prediction *before*
alignment (ordering is what an alignment with a positive scale cannot change, so an inverted map scores
below zero under every alignment):

- ``spearman`` = Spearman's rank correlation ρ between the predicted depth order and the ground truth's
  over the valid pixels (:func:`spearman`): 1 for the right order, 0 for a constant (or no) order, −1
  for near and far swapped. It is always the mean over images (also when the protocol pools pixels).

``rel_denominator="pred"`` divides ``abs_rel`` and ``sq_rel`` by ``p`` instead of ``g``: DenseDepth's
evaluation does so (see :func:`leve.evaluation.protocols.densedepth`); every other metric is
symmetric in ``p`` and ``g`` or does not divide.

Three aggregations over a split (:data:`AGGREGATIONS`), named by each protocol (``eval.aggregation``
overrides it) and recorded with its numbers, per metric (:func:`metric_aggregation`):

- ``per_image``: every metric per image over its valid pixels, then the mean over images
  (BTS, monodepth2, and what the thesis's code computed: RMSE is the mean of the per-image RMSEs);
- ``per_image_mse``: as ``per_image``, except the root metrics (:data:`ROOT_KEYS`: rmse, rmse_log,
  silog), which are the square root of the mean over images of their per-image squares: the
  thesis's eq. 8.1, ``rmse = sqrt(mean_i MSE_i)``, applied alike to the log RMSE and SIlog;
- ``pooled``: every pixel of the split is one sample: the per-pixel terms are summed over all
  images (:func:`pixel_sums`) and the metrics computed once from the totals
  (:func:`metrics_from_sums`), e.g. ``rmse = sqrt(Σ(p − g)² / Σ pixels)`` (DenseDepth).

Valid pixels: ``valid`` (when given) and a finite ground truth > 0; a pixel with no
measurement cannot be scored, whatever the protocol. Predictions are clamped to at least
:data:`MIN_PRED` so logs and ratios stay finite (a non-positive prediction is never right,
and clamping keeps it counted as an error rather than dropping it).

An image with no valid pixel has no metrics: :func:`compute_metrics` (and :func:`pixel_sums`)
return ``None``, and the aggregation skips it and counts it in :attr:`Aggregate.skipped`.
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
ORDER_KEYS: tuple[str, ...] = ("spearman",)  # depth-ordering metrics: per image, always mean_i over images
LOWER_IS_BETTER: frozenset[str] = frozenset(METRIC_KEYS) - {"d1", "d2", "d3"}
RMSE_LOG_BASES = ("ln", "log10")  # the log of rmse_log: natural (leve's default) | log10 (the thesis code's RMSE_log)
SPEARMAN_MAX_PIXELS = 20000  # ρ of an image with more valid pixels: over this many, evenly spaced in raster order
DELTA = 1.25
MIN_PRED = 1e-6
AGGREGATIONS = ("per_image", "per_image_mse", "pooled")
ROOT_KEYS: tuple[str, ...] = ("rmse", "rmse_log", "silog")  # square roots of a per-image mean square
# One line per aggregation, for table captions.
AGGREGATION_CAPTIONS: dict[str, str] = {
    "per_image": "per-image means (BTS, monodepth2, the thesis code)",
    "per_image_mse": "per-image means; RMSE, RMSE log and SIlog the square root of the mean per-image square "
                     "(thesis eq. 8.1)",
    "pooled": "metrics pooled over every pixel of the split (DenseDepth)",
}
REL_DENOMINATORS = ("gt", "pred")
# The per-pixel terms whose sums make every metric (pixel_sums -> metrics_from_sums):
# pixels; |p-g|/den; (p-g)²/den; (p-g)²; e²; e (e = ln p - ln g); |log10 p - log10 g|; |p-g|; ratio < 1.25^n.
SUM_KEYS: tuple[str, ...] = ("pixels", "rel", "sq_rel", "sq", "log_sq", "log", "log10", "abs", "d1", "d2", "d3")


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


def pixel_sums(pred: Any, gt: Any, valid: Any = None, rel_denominator: str = "gt") -> dict[str, float] | None:
    """Sums over the valid pixels of one image of every per-pixel term (:data:`SUM_KEYS`), or
    ``None`` if no pixel is valid. Sums of several images add up key by key (pooled aggregation).

    ``pred``, ``gt`` and ``valid`` must have the same number of elements (any shape,
    e.g. (H, W) or (1, H, W)); depth is in the dataset's units.
    """
    if rel_denominator not in REL_DENOMINATORS:
        raise ValueError(f"rel_denominator must be one of {REL_DENOMINATORS}, got '{rel_denominator}'")
    p, g = _as_numpy(pred).ravel(), _as_numpy(gt).ravel()
    v = None if valid is None else _as_numpy(valid).ravel() != 0
    if p.shape != g.shape or (v is not None and v.shape != g.shape):
        raise ValueError(f"compute_metrics: shapes differ (pred {p.shape}, gt {g.shape}"
                         f"{'' if v is None else f', valid {v.shape}'})")
    mask = valid_pixels(g, v)
    if not mask.any():
        return None
    p, g = np.maximum(np.nan_to_num(p[mask], nan=MIN_PRED), MIN_PRED), g[mask]
    diff = p - g
    e = np.log(p) - np.log(g)
    ratio = np.maximum(p / g, g / p)
    den = g if rel_denominator == "gt" else p
    return {
        "pixels": float(p.size),
        "rel": float(np.sum(np.abs(diff) / den)),
        "sq_rel": float(np.sum(diff**2 / den)),
        "sq": float(np.sum(diff**2)),
        "log_sq": float(np.sum(e**2)),
        "log": float(np.sum(e)),
        "log10": float(np.sum(np.abs(np.log10(p) - np.log10(g)))),
        "abs": float(np.sum(np.abs(diff))),
        "d1": float(np.sum(ratio < DELTA)),
        "d2": float(np.sum(ratio < DELTA**2)),
        "d3": float(np.sum(ratio < DELTA**3)),
    }


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks from 1, ties sharing their average rank (float64): scipy.stats.rankdata's, through pandas'
    rank, which the store reader has imported already. Importing scipy.stats for rankdata alone cost
    every `leve eval` process about 0.5 s (python -X importtime); the two give equal arrays, at the same
    speed (tests/evaluation/test_honest_numbers.py checks spearman against scipy.stats.spearmanr)."""
    import pandas as pd

    return pd.Series(x).rank(method="average").to_numpy(dtype=np.float64, copy=True)  # writable


def spearman(order: Any, gt: Any, valid: Any = None) -> float | None:
    """Spearman's ρ between ``order`` (any map that increases with the predicted depth: the depth, or
    minus a disparity; NaN: no prediction, ranked farthest) and the ground truth over the valid pixels
    (:func:`valid_pixels`); ``None`` if no pixel is valid.

    ρ is the Pearson correlation of the two rank vectors (ties get their average rank); a prediction
    (or ground truth) with a single value has no order and scores 0. Images with more than
    :data:`SPEARMAN_MAX_PIXELS` valid pixels are scored on that many, evenly spaced in raster order
    (a fixed rule: the same pixels every run).
    """
    p, g = _as_numpy(order).ravel(), _as_numpy(gt).ravel()
    mask = valid_pixels(g, None if valid is None else _as_numpy(valid).ravel() != 0)
    if not mask.any():
        return None
    p, g = np.nan_to_num(p[mask], nan=np.inf), g[mask]
    if p.size > SPEARMAN_MAX_PIXELS:
        pick = np.linspace(0, p.size - 1, SPEARMAN_MAX_PIXELS).round().astype(np.int64)
        p, g = p[pick], g[pick]
    rp, rg = _average_ranks(p), _average_ranks(g)
    rp -= rp.mean()
    rg -= rg.mean()
    den = math.sqrt(float(np.dot(rp, rp)) * float(np.dot(rg, rg)))
    return 0.0 if den == 0 else float(np.dot(rp, rg) / den)


def metrics_from_sums(sums: dict[str, float], rmse_log_base: str = "ln") -> dict[str, float]:
    """The metric dict (see the module docstring) from per-pixel sums over ``sums["pixels"]`` > 0
    pixels: one image's (:func:`pixel_sums`) or a whole split's (their key-by-key total);
    ``rmse_log_base`` the log of ``rmse_log`` (:data:`RMSE_LOG_BASES`)."""
    if rmse_log_base not in RMSE_LOG_BASES:
        raise ValueError(f"rmse_log_base must be one of {RMSE_LOG_BASES}, got '{rmse_log_base}'")
    n = sums["pixels"]
    mean_e = sums["log"] / n
    silog_var = max(sums["log_sq"] / n - mean_e**2, 0.0)
    return {
        "abs_rel": sums["rel"] / n,
        "sq_rel": sums["sq_rel"] / n,
        "rmse": math.sqrt(sums["sq"] / n),
        "rmse_log": math.sqrt(sums["log_sq"] / n) / (math.log(10.0) if rmse_log_base == "log10" else 1.0),
        "log10": sums["log10"] / n,
        "silog": math.sqrt(silog_var) * 100.0,
        "mae": sums["abs"] / n,
        "d1": sums["d1"] / n,
        "d2": sums["d2"] / n,
        "d3": sums["d3"] / n,
    }


def compute_metrics(pred: Any, gt: Any, valid: Any = None, rel_denominator: str = "gt",
                    rmse_log_base: str = "ln") -> dict[str, float] | None:
    """Metrics of one image (see the module docstring), or ``None`` if no pixel is valid.

    ``pred``, ``gt`` and ``valid`` must have the same number of elements (any shape,
    e.g. (H, W) or (1, H, W)); depth is in the dataset's units.
    """
    sums = pixel_sums(pred, gt, valid, rel_denominator)
    return None if sums is None else metrics_from_sums(sums, rmse_log_base)


def metric_aggregation(aggregation: str) -> dict[str, str]:
    """How each metric of :data:`METRIC_KEYS` is aggregated over a split under ``aggregation``, as a
    formula (``mean_i(rmse_i)``, ``sqrt(mean_i(rmse_i^2))``, ``rmse(all pixels)``), for the metrics JSON."""
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got '{aggregation}'")
    if aggregation == "pooled":
        return {k: f"{k}(all pixels)" for k in METRIC_KEYS}
    root = ROOT_KEYS if aggregation == "per_image_mse" else ()
    return {k: f"sqrt(mean_i({k}_i^2))" if k in root else f"mean_i({k}_i)" for k in METRIC_KEYS}


@dataclass
class Aggregate:
    """The split's metrics under ``aggregation``; ``count`` images scored, ``skipped`` with no
    valid pixel; ``pixels`` the pixels scored (pooled aggregation only).

    ``means`` holds NaN for every key when no image was scored.
    """

    means: dict[str, float]
    count: int
    skipped: int
    aggregation: str = "per_image"
    pixels: int | None = None

    def as_dict(self) -> dict[str, float | int]:
        """The means plus ``count`` and ``skipped`` (and ``pixels`` when pooled), as one flat dict."""
        extra = {} if self.pixels is None else {"pixels": self.pixels}
        return {**self.means, "count": self.count, "skipped": self.skipped, **extra}


@dataclass
class MetricAccumulator:
    """Streaming aggregation of scored images (``None`` entries are counted as skipped).

    ``per_image``: the mean of the images' metric dicts; ``per_image_mse``: the same, but the root
    metrics (:data:`ROOT_KEYS`) the square root of the mean of their squares; ``pooled``: the
    metrics of the summed per-pixel terms (each image added with its :func:`pixel_sums`).
    """

    aggregation: str = "per_image"
    sums: dict[str, float] = field(default_factory=lambda: dict.fromkeys(METRIC_KEYS, 0.0))
    squares: dict[str, float] = field(default_factory=lambda: dict.fromkeys(ROOT_KEYS, 0.0))
    totals: dict[str, float] = field(default_factory=lambda: dict.fromkeys(SUM_KEYS, 0.0))
    count: int = 0
    skipped: int = 0
    rmse_log_base: str = "ln"  # the log of a pooled rmse_log (per-image metrics arrive computed)
    order: dict[str, float] = field(default_factory=dict)  # ORDER_KEYS: sum over the images that have it
    order_count: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got '{self.aggregation}'")

    def _add_order(self, order: dict[str, float] | None) -> None:
        for key, value in (order or {}).items():
            if key in ORDER_KEYS and value is not None:
                self.order[key] = self.order.get(key, 0.0) + value
                self.order_count[key] = self.order_count.get(key, 0) + 1

    def add(self, metrics: dict[str, float] | None, sums: dict[str, float] | None = None,
            order: dict[str, float] | None = None) -> None:
        """Add one image: its metrics (per_image) or its pixel sums (pooled; ``sums`` alone also
        serves per_image), and its ordering metrics (``order``: :data:`ORDER_KEYS`, averaged over the
        images that have them, whatever the aggregation); ``None`` counts a skipped image."""
        if self.aggregation == "pooled":
            if sums is None and metrics is not None:
                raise ValueError("pooled aggregation needs each image's pixel sums (pixel_sums), not its metrics")
            if sums is None:
                self.skipped += 1
                return
            for key in SUM_KEYS:
                self.totals[key] += sums[key]
            self._add_order(order)
            self.count += 1
            return
        if metrics is None and sums is not None:
            metrics = metrics_from_sums(sums, self.rmse_log_base)
        if metrics is None:
            self.skipped += 1
            return
        for key in METRIC_KEYS:
            self.sums[key] += metrics[key]
        for key in ROOT_KEYS:
            self.squares[key] += metrics[key] ** 2
        self._add_order(order)
        self.count += 1

    def result(self) -> Aggregate:
        """The split's metrics so far (with the mean of each ordering metric the images had)."""
        n = self.count
        order = {k: self.order[k] / c for k, c in self.order_count.items() if c}
        if self.aggregation == "pooled":
            means = metrics_from_sums(self.totals, self.rmse_log_base) if n else dict.fromkeys(METRIC_KEYS, math.nan)
            return Aggregate(means={**means, **order}, count=n, skipped=self.skipped, aggregation="pooled",
                             pixels=int(self.totals["pixels"]))
        means = {k: (s / n if n else math.nan) for k, s in self.sums.items()}
        if self.aggregation == "per_image_mse":
            means.update({k: (math.sqrt(s / n) if n else math.nan) for k, s in self.squares.items()})
        return Aggregate(means={**means, **order}, count=n, skipped=self.skipped, aggregation=self.aggregation)


def aggregate_metrics(per_image: Iterable[dict[str, float] | None], aggregation: str = "per_image") -> Aggregate:
    """Per-image metric dicts over a split, aggregated as ``per_image`` (means) or ``per_image_mse``
    (root metrics from the mean of their squares); ``None`` entries are skipped and counted."""
    if aggregation == "pooled":
        raise ValueError("pooled aggregation needs each image's pixel sums: use pool_pixel_sums")
    acc = MetricAccumulator(aggregation)
    for metrics in per_image:
        acc.add(metrics)
    return acc.result()


def pool_pixel_sums(per_image: Iterable[dict[str, float] | None]) -> Aggregate:
    """Pooled metrics of per-image :func:`pixel_sums` over a split; ``None`` entries are skipped and counted."""
    acc = MetricAccumulator("pooled")
    for sums in per_image:
        acc.add(None, sums)
    return acc.result()
