"""Evaluation: score a depth predictor on a store split under a named protocol.

Kept apart from the models: :func:`~leve.evaluation.runner.evaluate` takes any callable
that maps a batch of images to network outputs, and a :class:`~leve.store.Split`.
"""

from __future__ import annotations

from leve import moved_names

# No re-exports: each name is imported from the module that defines it, so that importing one module
# of this package runs only that module's code (dvc.yaml's derived deps, the training run identity).
# The old spellings (``from leve.evaluation import Crop``) still work, with a deprecation warning.
_MOVED = {
    "Crop": "leve.evaluation.protocols",
    "PROTOCOLS": "leve.evaluation.protocols",
    "Protocol": "leve.evaluation.protocols",
    "crop_for": "leve.evaluation.protocols",
    "densedepth": "leve.evaluation.protocols",
    "get_protocol": "leve.evaluation.protocols",
    "leve2024": "leve.evaluation.protocols",
    "standard": "leve.evaluation.protocols",
}

__getattr__ = moved_names(__name__, _MOVED)
