"""Evaluation: score a depth predictor on a store split under a named protocol.

Kept apart from the models: :func:`~leve.evaluation.runner.evaluate` takes any callable
that maps a batch of images to network outputs, and a :class:`~leve.store.Split`.
"""

from leve.evaluation.protocols import (
    PROTOCOLS,
    Crop,
    Protocol,
    crop_for,
    densedepth,
    get_protocol,
    leve2024,
    standard,
)

__all__ = ["PROTOCOLS", "Crop", "Protocol", "crop_for", "densedepth", "get_protocol", "leve2024", "standard"]
