"""Distillation training: ``train(TrainConfig(...))`` or ``leve train`` (see :mod:`leve.train.loop`)."""

from __future__ import annotations

from typing import Any

# No re-exports: each name is imported from the module that defines it, so that importing one module
# of this package runs only that module's code (dvc.yaml's derived deps, the training run identity).
# The old spellings (``from leve.train import AugmentConfig``) still work, with a deprecation warning.
_MOVED = {
    "AugmentConfig": "leve.train.config",
    "KDConfig": "leve.train.config",
    "LabelsConfig": "leve.train.config",
    "ScheduleConfig": "leve.train.config",
    "TrainConfig": "leve.train.config",
    "TrainResult": "leve.train.loop",
    "train": "leve.train.loop",
}


def __getattr__(name: str) -> Any:
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib
    import warnings

    warnings.warn(f"`from {__name__} import {name}` is deprecated: import it from {module}", DeprecationWarning,
                  stacklevel=2)
    return getattr(importlib.import_module(module), name)
