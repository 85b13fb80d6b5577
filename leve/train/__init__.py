"""Distillation training: ``train(TrainConfig(...))`` or ``leve train`` (see :mod:`leve.train.loop`)."""

from leve.train.config import AugmentConfig, KDConfig, ScheduleConfig, TrainConfig
from leve.train.loop import TrainResult, train

__all__ = ["AugmentConfig", "KDConfig", "ScheduleConfig", "TrainConfig", "TrainResult", "train"]
