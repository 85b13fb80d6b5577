"""Stage ``train``: params ``train`` -> ``models/student/{best,last}.pt`` and DVCLive logs in
``dvclive/train`` (curves for ``dvc plots show``, a summary for ``dvc metrics show``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from leve.params import PARAMS_FILE, build_config, load_params, nest_overrides, section


def config(overrides: dict[str, Any] | None = None, params_file: Path = PARAMS_FILE) -> Any:
    """Code defaults < ``train`` in params.yaml < overrides (dotted keys such as ``kd.eps``)."""
    from leve.train import TrainConfig

    values = nest_overrides(section(load_params(params_file), "train"), overrides or {})
    return build_config(TrainConfig, values, "train")


def expected_teacher(dataset: str, params_file: Path = PARAMS_FILE) -> str:
    """The teacher the ``teacher`` params configure for ``dataset`` (a cache from another is stale)."""
    from stages import teacher

    return teacher.config(dataset, params_file=params_file).model


def run(overrides: dict[str, Any] | None = None, params_file: Path = PARAMS_FILE, restart: bool = False,
        stop_after: int | None = None, show_progress: bool = True) -> Any:
    """Train (or continue training) the student as configured; returns the :class:`TrainResult`."""
    from leve.train import train

    cfg = config(overrides, params_file)
    teacher = expected_teacher(cfg.dataset, params_file) if cfg.kd.eps > 0 else None
    return train(cfg, expected_teacher=teacher, restart=restart, stop_after=stop_after, show_progress=show_progress)
