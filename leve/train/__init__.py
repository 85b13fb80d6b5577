"""Distillation training: ``train(TrainConfig(...))`` or ``leve train`` (see :mod:`leve.train.loop`)."""

from leve.train.loop import TrainResult, train
from leve.train.stage import AugmentConfig, KDConfig, LabelsConfig, ScheduleConfig, TrainConfig

__all__ = ["AugmentConfig", "KDConfig", "LabelsConfig", "ScheduleConfig", "TrainConfig", "TrainResult", "train"]
