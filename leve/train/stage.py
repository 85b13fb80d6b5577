"""Stage ``train``: the ``train`` section of params.yaml as typed dataclasses (the schema, defined in
:mod:`leve.train.config`; the values live in params.yaml) -> ``models/student/{best,last}.pt`` and DVCLive
logs in ``dvclive/train``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

from leve.params import PARAMS_FILE, build_config, nest_overrides, resolved_params, section, shared_keys
from leve.processes import exclusive_writer
from leve.train.config import (  # the stage's Config and RESULT_INDEPENDENT (leve.pipeline.stages reads them here)
    BN_AFTER_VALIDATION,
    INVALID_MODES,
    KD_NORMS,
    KD_SHIFTS,
    RESULT_INDEPENDENT,
    SSIM_MODES,
    VAL_SCHEDULES,
    AugmentConfig,
    DataConfig,
    KDConfig,
    LabelsConfig,
    LossConfig,
    ScheduleConfig,
    TrainConfig,
)

__all__ = [
    "AugmentConfig", "BN_AFTER_VALIDATION", "DataConfig", "INVALID_MODES", "KDConfig", "KD_NORMS",
    "KD_SHIFTS", "LabelsConfig", "LossConfig", "RESULT_INDEPENDENT", "SSIM_MODES", "ScheduleConfig",
    "TrainConfig", "VAL_SCHEDULES", "config", "expected_teacher", "run",
]


def config(overrides: dict[str, Any] | None = None, params_file: Path = PARAMS_FILE) -> TrainConfig:
    """Defaults < ``train`` in params.yaml < overrides (dotted keys such as ``kd.eps``); ``paths.*`` for the places."""
    params = resolved_params(params_file)
    values = nest_overrides(shared_keys(TrainConfig, section(params, "train"), params, "train"), overrides or {})
    return build_config(TrainConfig, values, "train")


def expected_teacher(dataset: str, params_file: Path = PARAMS_FILE) -> str:
    """The teacher the ``teacher`` params configure for ``dataset`` (a cache from another is stale)."""
    from leve.teacher import stage as teacher

    return teacher.config(dataset, params_file=params_file).model


def expected_crops(dataset: str, params_file: Path = PARAMS_FILE) -> int:
    """The local crops per image the ``teacher`` params configure for ``dataset`` (``teacher.crops``)."""
    from leve.teacher import stage as teacher

    return teacher.config(dataset, params_file=params_file).crops


def run(overrides: dict[str, Any] | None = None, params_file: Path = PARAMS_FILE, restart: bool = False,
        stop_after: int | None = None, show_progress: bool = True) -> Any:
    """Train (or continue training) the student as configured; returns the :class:`TrainResult`."""
    from leve.train.loop import train
    from leve.train.mirror import out_at_url

    cfg = config(overrides, params_file)
    teacher = expected_teacher(cfg.dataset, params_file) if cfg.kd.eps > 0 else None
    crops = expected_crops(cfg.dataset, params_file) if cfg.kd.eps > 0 else None
    with out_at_url(cfg.out_dir, restart) as (out_dir, mirror), _sole_writer(out_dir):  # a URL: a local folder, uploaded
        return train(replace(cfg, out_dir=out_dir), expected_teacher=teacher, restart=restart, stop_after=stop_after,
                     show_progress=show_progress, expected_crops=crops, mirror=mirror)


@contextmanager
def _sole_writer(out_dir: Path) -> Iterator[None]:
    """The write lock of ``out_dir`` (``<out_dir>.lock``), held by the process that writes it (torchrun
    rank 0); another run on the same output is refused. A temporary checkpoint file left by a killed run
    is removed (never a half-written ``last.pt``: it is renamed into place only once whole)."""
    if os.environ.get("RANK", "0") != "0":
        yield
        return
    with exclusive_writer(out_dir):
        from leve.atomic import stale_temporaries

        for tmp in [*out_dir.glob("*.pt.tmp"), *stale_temporaries(out_dir)]:
            tmp.unlink(missing_ok=True)
        yield
