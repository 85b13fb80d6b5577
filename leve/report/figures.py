"""Qualitative grids (RGB | ground truth | student | teacher) with a shared colour scale."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from leve.evaluation.runner import Example
from leve.report.preview import colour_map

TILE_HEIGHT = 160


def depth_scale(example: Example) -> tuple[float, float]:
    """The row's shared scale: the range of the valid ground truth (or of the prediction)."""
    valid = example.gt[np.isfinite(example.gt) & (example.gt > 0)]
    ref = valid if valid.size else example.student.ravel()
    return float(ref.min()), float(ref.max())


def _tile(img: np.ndarray, height: int) -> np.ndarray:
    width = max(1, round(img.shape[1] * height / img.shape[0]))
    return np.asarray(Image.fromarray(img).resize((width, height), Image.BILINEAR))


def example_row(example: Example, height: int = TILE_HEIGHT, cmap: str = "turbo_r") -> np.ndarray:
    """One row: RGB | GT | student | teacher (blank when there is no teacher)."""
    lo, hi = depth_scale(example)
    maps = [example.gt, example.student, example.teacher if example.teacher is not None else np.zeros_like(example.gt)]
    tiles = [example.rgb] + [colour_map(m, lo, hi, cmap) for m in maps]
    pad = ((2, 2), (2, 2), (0, 0))
    return np.concatenate([np.pad(_tile(t, height), pad, constant_values=255) for t in tiles], axis=1)


def save_grid(examples: list[Example], out: Path, height: int = TILE_HEIGHT) -> Path | None:
    """Write the grid PNG (one row per example, rows padded to one width); None if no example."""
    if not examples:
        return None
    rows = [example_row(e, height) for e in examples]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    from leve.atomic import atomic_path

    with atomic_path(out) as tmp:  # whole or not at all (a full disk leaves the previous grid)
        Image.fromarray(np.concatenate(rows, axis=0)).save(tmp)
    return out
