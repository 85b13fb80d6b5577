"""Statistics over the seeds of one experiment configuration (``leve experiments queue --seeds N``).

A grid cell run with seeds ``train.seed`` = 0..N-1 gives N values of each metric. :func:`seed_stats`
summarises them: the mean, the sample standard deviation (n − 1 in the denominator) and the 95 %
confidence interval of the mean from Student's t distribution with n − 1 degrees of freedom,
``mean ± t(0.975, n − 1) · sd / sqrt(n)``. :func:`within_noise` decides whether the difference of
two cells is within seed noise: Welch's unequal-variance t-test, two-sided, at the 5 % level (the
difference is *within noise* when p ≥ 0.05).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

CONFIDENCE = 0.95
ALPHA = 0.05  # Welch's t-test level: p >= ALPHA is "within noise"


@dataclass(frozen=True)
class SeedStats:
    """One metric over the seeds of a cell: ``n`` values, their mean, sample standard deviation and
    the 95 % t-interval of the mean ``[low, high]`` (sd and interval NaN for one value)."""

    n: int
    mean: float
    sd: float
    low: float
    high: float


def t_quantile(p: float, df: float) -> float:
    """The ``p`` quantile of Student's t distribution with ``df`` degrees of freedom (scipy)."""
    from scipy import stats

    return float(stats.t.ppf(p, df))


def seed_stats(values: Sequence[float]) -> SeedStats:
    """Mean, sample sd and 95 % t-interval of the mean of ``values`` (one per seed; at least one)."""
    n = len(values)
    if n == 0:
        raise ValueError("seed_stats needs at least one value")
    mean = statistics.fmean(values)
    if n == 1:
        return SeedStats(1, mean, math.nan, math.nan, math.nan)
    sd = statistics.stdev(values)
    half = t_quantile(0.5 + CONFIDENCE / 2, n - 1) * sd / math.sqrt(n)
    return SeedStats(n, mean, sd, mean - half, mean + half)


def welch_p(a: SeedStats, b: SeedStats) -> float:
    """Two-sided p-value of Welch's t-test that the two cells' means are equal (both need n ≥ 2).

    With no spread in either cell the test is degenerate: p = 1 for equal means, 0 otherwise."""
    if a.n < 2 or b.n < 2:
        raise ValueError("Welch's t-test needs at least two seeds in each cell")
    va, vb = a.sd**2 / a.n, b.sd**2 / b.n
    if va + vb == 0:
        return 1.0 if a.mean == b.mean else 0.0
    t = (a.mean - b.mean) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))  # Welch–Satterthwaite
    from scipy import stats

    return float(2 * stats.t.sf(abs(t), df))


def within_noise(a: SeedStats, b: SeedStats, alpha: float = ALPHA) -> bool:
    """Whether the difference of ``a`` and ``b`` is within seed noise (Welch's t-test: p ≥ ``alpha``)."""
    return welch_p(a, b) >= alpha


def best_index(stats: Sequence[SeedStats | None], lower_is_better: bool) -> int | None:
    """The position of the best mean among cells with at least two seeds (None when there is none)."""
    seeded = [(s.mean, i) for i, s in enumerate(stats) if s is not None and s.n >= 2 and math.isfinite(s.mean)]
    if not seeded:
        return None
    return (min(seeded) if lower_is_better else max(seeded, key=lambda m: (m[0], -m[1])))[1]


def noise_marks(stats: Sequence[SeedStats | None], lower_is_better: bool, alpha: float = ALPHA) -> list[str]:
    """Per cell: ``best`` (the best seeded mean), ``noise`` (a seeded cell whose difference from the
    best is within noise) or ``""`` (significantly worse, or fewer than two seeds)."""
    best = best_index(stats, lower_is_better)
    if best is None:
        return [""] * len(stats)
    ref = stats[best]
    assert ref is not None
    return ["best" if i == best else "noise" if s is not None and s.n >= 2 and within_noise(ref, s, alpha) else ""
            for i, s in enumerate(stats)]
