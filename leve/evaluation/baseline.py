"""The constant predictor every evaluation scores beside the student (the ``constant`` row).

A depth model that has learnt nothing useful predicts about the same depth everywhere; a result is
only a result if it beats that. The constant's depth is the median valid depth of the store's
*train* split (the student's own training data, never the scored split), over at most
:data:`MEDIAN_IMAGES` images evenly spaced through the split (a fixed rule, the same images every
run), every finite pixel in ``(0, max_depth]`` pooled. A store without train depth falls back to its
val split; without either the metric constant is unknown and only an aligned protocol can score a
constant (its alignment sets the scale: any positive depth gives the same numbers).

The constant is read and aligned exactly as the student's prediction is
(:func:`leve.evaluation.runner.score_constant`): ``none`` scores the median as it is, ``median``
scales it to the image's median ground truth, ``lstsq`` to ``1/mean(1/gt)`` (the best constant
disparity).

:func:`beats_constant` is the rule of the eval summary's warning: the student beats the constant
when both its RMSE and its REL are strictly lower.
"""

from __future__ import annotations

from typing import Any

import numpy as np

MEDIAN_IMAGES = 32  # train images sampled for the median
SOURCE_SPLITS = ("train", "val")  # where the median comes from, in order of preference


def train_median_depth(store: Any, max_depth: float, images: int = MEDIAN_IMAGES) -> dict[str, Any] | None:
    """``{"depth", "split", "images", "pixels", "rule"}``: the median valid depth of the first of
    :data:`SOURCE_SPLITS` with depth, over ``images`` evenly spaced samples; None when neither has depth."""
    for name in SOURCE_SPLITS:
        if name not in store.splits:
            continue
        split = store.split(name)
        if not split.has_depth or len(split) == 0:
            continue
        picks = np.unique(np.linspace(0, len(split) - 1, min(images, len(split))).round().astype(np.int64))
        values = []
        for i in picks:
            d = np.asarray(split.depth(int(i)), dtype=np.float64).ravel()
            values.append(d[np.isfinite(d) & (d > 0) & (d <= max_depth)])
        pooled = np.concatenate(values) if values else np.empty(0)
        if pooled.size == 0:
            continue
        return {"depth": float(np.median(pooled)), "split": name, "images": int(len(picks)), "pixels": int(pooled.size),
                "rule": f"median valid depth of {len(picks)} of the {len(split)} '{name}' images, evenly spaced"}
    return None


def beats_constant(student: dict[str, Any], constant: dict[str, Any]) -> bool:
    """Whether the student's RMSE and REL (``abs_rel``) are both strictly lower than the constant's."""
    return bool(student["rmse"] < constant["rmse"] and student["abs_rel"] < constant["abs_rel"])
