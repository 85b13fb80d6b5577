"""The thesis's experiment grid (chapter 9) as DVC experiments.

Each grid point is a named set of ``train`` params; queueing it is one
``dvc exp run --queue -n <name> -S train.model=<variant> -S train.kd.eps=<ε>`` call, so
``dvc exp show`` and ``leve report`` compare the results. Grids:

* ``kd`` — Tables 9.6–9.8: the default Leve (LCB 3x3+3x3, main skips) with
  ε ∈ {0, 0.10, 0.25, 0.50} (ε = 0 is the plain student the thesis compares against).
* ``lcb`` — Tables 9.2–9.3: the decoder's layered convolution block, without distillation.
* ``skips`` — Table 9.4: main, alternative and no skip connections, without distillation.
* ``all`` — the union, each distinct configuration once.
"""

from __future__ import annotations

import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from leve.errors import LeveError

KD_EPS = (0.0, 0.10, 0.25, 0.50)
LCB_VARIANTS = (("3x3", "leve-3x3"), ("3x3-1x1", "leve-3x3-1x1"), ("3x3-3x3", "leve"),
                ("5x5-5x5", "leve-5x5-5x5"), ("3x3-dw", "leve-dw"))
SKIP_VARIANTS = (("main", "leve"), ("alt", "leve-alt-skips"), ("none", "leve-no-skips"))
GRID_NAMES = ("kd", "lcb", "skips", "all")


@dataclass(frozen=True)
class GridPoint:
    """One experiment: its name and the params it sets (dotted key -> value)."""

    name: str
    params: tuple[tuple[str, str], ...]

    def set_args(self) -> list[str]:
        """The ``-S key=value`` arguments of ``dvc exp run``."""
        return [arg for key, value in self.params for arg in ("-S", f"{key}={value}")]


def _point(name: str, model: str, eps: float) -> GridPoint:
    return GridPoint(name, (("train.model", model), ("train.kd.eps", f"{eps:g}")))


def grid(name: str) -> list[GridPoint]:
    """The grid points of ``kd``, ``lcb``, ``skips`` or ``all`` (duplicates dropped, first name kept)."""
    if name == "kd":
        return [_point(f"kd-eps{eps:.2f}", "leve", eps) for eps in KD_EPS]
    if name == "lcb":
        return [_point(f"lcb-{label}", model, 0.0) for label, model in LCB_VARIANTS]
    if name == "skips":
        return [_point(f"skips-{label}", model, 0.0) for label, model in SKIP_VARIANTS]
    if name == "all":
        points: dict[tuple[tuple[str, str], ...], GridPoint] = {}
        for part in ("kd", "lcb", "skips"):
            for p in grid(part):
                points.setdefault(p.params, p)
        return list(points.values())
    raise LeveError(f"unknown grid '{name}'; choose from {', '.join(GRID_NAMES)}")


def queue_commands(points: Sequence[GridPoint], extra_sets: Sequence[str] = (), targets: Sequence[str] = (),
                   prefix: str = "") -> list[list[str]]:
    """The ``dvc exp run --queue`` command of each point; ``extra_sets`` (``key=value``) apply to all."""
    extra = [arg for item in extra_sets for arg in ("-S", _checked_set(item))]
    return [["dvc", "exp", "run", "--queue", "-n", prefix + p.name, *p.set_args(), *extra, *targets]
            for p in points]


def run_command(jobs: int = 1) -> list[str]:
    """Run every queued experiment in the foreground (``dvc queue start`` runs them in the background)."""
    return ["dvc", "exp", "run", "--run-all", "--jobs", str(jobs)]


def _checked_set(item: str) -> str:
    key, sep, _ = item.partition("=")
    if not sep or not key.strip():
        raise LeveError(f"--set expects key=value (a params.yaml key such as train.epochs=20), got '{item}'")
    return item


def format_command(cmd: Sequence[str]) -> str:
    """A command as one shell-quoted line."""
    return shlex.join(cmd)


def check_dvc_repo(root: Path) -> None:
    """Refuse to run outside a DVC repository (one line naming the folder)."""
    if not (root / ".dvc").is_dir():
        raise LeveError(f"{root.resolve()}: not a DVC repository (no .dvc/); run inside the project or `dvc init`")


def run_dvc(cmd: Sequence[str], cwd: Path) -> None:
    """Run one dvc command, its output shown; a failure is one line naming the command."""
    try:
        proc = subprocess.run(list(cmd), cwd=cwd, check=False)
    except FileNotFoundError as exc:
        raise LeveError("dvc: command not found; install leve's dependencies (pip install -e .)") from exc
    if proc.returncode != 0:
        raise LeveError(f"`{format_command(cmd)}` failed with exit status {proc.returncode}")
