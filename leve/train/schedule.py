"""Learning-rate schedules as a factor of the base lr per optimiser step (``LambdaLR``)."""

from __future__ import annotations

import math
from functools import partial

import torch

from leve.train.config import ScheduleConfig


def lr_factor(step: int, cfg: ScheduleConfig, total_steps: int, steps_per_epoch: int, base_lr: float) -> float:
    """Factor applied to the base learning rate before optimiser step ``step`` (0-based).

    ``step``: ``gamma ** (epoch // step_epochs)`` (the thesis: 1% down every 5 epochs);
    ``cosine``: from 1 down to ``min_lr / base_lr`` over the run; ``constant``: 1.
    A linear warm-up over ``warmup_steps`` multiplies any of them.
    """
    warm = min(1.0, (step + 1) / cfg.warmup_steps) if cfg.warmup_steps > 0 else 1.0
    if cfg.name == "step":
        factor = cfg.gamma ** ((step // max(steps_per_epoch, 1)) // max(cfg.step_epochs, 1))
    elif cfg.name == "cosine":
        floor = cfg.min_lr / base_lr if base_lr > 0 else 0.0
        progress = min(step / max(total_steps - 1, 1), 1.0)
        factor = floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    else:
        factor = 1.0
    return warm * factor


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig, total_steps: int,
                   steps_per_epoch: int, base_lr: float) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` over :func:`lr_factor`; call ``.step()`` after each ``optimizer.step()``."""
    fn = partial(lr_factor, cfg=cfg, total_steps=total_steps, steps_per_epoch=steps_per_epoch, base_lr=base_lr)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)


def validation_at(schedule: str, val_every: int, step: int, batch: int, epoch_end: bool) -> str | None:
    """What follows optimiser step ``step`` (1-based, global), the ``batch``-th (1-based) of its epoch:
    ``best`` (validate and keep the best model), ``log`` (validate, log only) or None.

    ``leve``: ``best`` every ``val_every`` steps (0: never) and at each epoch end (or the run's end).
    ``thesis-code`` (the thesis's public code): ``log`` after each batch whose 0-based index ``i`` in
    the epoch has ``i % val_every == 0`` and ``i > 0`` (batches 1001, 2001, ... with 1000), ``best``
    only at epoch ends: the checkpoint is chosen among the epoch-end validations."""
    if epoch_end:
        return "best"
    if schedule == "leve":
        return "best" if val_every and step % val_every == 0 else None
    return "log" if val_every and batch > 1 and (batch - 1) % val_every == 0 else None
