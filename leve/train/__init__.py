"""Distillation training: ``train(TrainConfig(...))`` or ``leve train`` (see :mod:`leve.train.loop`)."""

from leve.train.loop import TrainResult, train
from leve.train.stage import AugmentConfig, KDConfig, ScheduleConfig, TrainConfig

__all__ = ["AugmentConfig", "KDConfig", "ScheduleConfig", "TrainConfig", "TrainResult", "train"]
