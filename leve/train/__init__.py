"""Distillation training: ``train(TrainConfig(...))`` or ``leve train`` (see :mod:`leve.train.loop`)."""

from __future__ import annotations

from leve import moved_names

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

__getattr__ = moved_names(__name__, _MOVED)
