"""The thesis's experiment grid (chapter 9) as DVC experiments.

Each grid point is a named set of ``train`` params; queueing it is one
``dvc exp run --queue -n <name> -S train.model=<variant> -S train.kd.eps=<ε>`` call, so
``dvc exp show`` and ``leve report`` compare the results. Grids:

* ``kd`` — Tables 9.6–9.8: the models of the registry's ``kd`` group (the default Leve,
  LCB 3x3+3x3, main skips) with ε ∈ {0, 0.10, 0.25, 0.50} (ε = 0 is the plain student the
  thesis compares against). When the teacher the params name for ``train.dataset`` is metric
  (:func:`teacher_depth_kind`: a registry entry with ``depth_kind: metric``, or a ``save_pretrained``
  folder whose config says ``depth_estimation_type: metric``), each model also gets the points
  ``kd-…-metric-eps<ε>`` for ε > 0, ``-S train.kd.loss=metric`` (L1 in log depth against the teacher's
  metres); the other points keep the params' ``train.kd.loss``.
* ``lcb`` — Tables 9.2–9.3: the ``lcb`` group (the decoder's layered convolution block),
  without distillation.
* ``skips`` — Table 9.4: the ``skips`` group (main, alternative and no skip connections),
  without distillation.
* ``encoders`` — Table 9.1 and seed 002's Table I: the ``encoders`` group (Leve on DDRNet-23-slim
  and on MobileNetV3-Small, DenseDepth on DenseNet-169/161, ResNet-50/101 and MobileNetV2),
  without distillation, each at the training resolution of its published figures
  (``train.resolution``: 240x320 for MobileNetV3, 480x640 for the DenseDepth models, as seed 002
  trained them; Leve on DDRNet-23-slim at the params' own, as in the other grids).
* ``all`` — the union, each distinct configuration once.

The members of each group, their order and their experiment-name tags come from the model
registry (:func:`leve.models.registry.model_specs`); nothing here lists the variants.

``--seeds N`` (:func:`with_seeds`) runs every point N times, ``<name>-seed<k>`` with
``-S train.seed=<k>`` for k = 0..N-1; ``leve report`` then shows each point's mean ± standard
deviation and 95 % interval over its seeds (:mod:`leve.report.seeds`).
"""

from __future__ import annotations

import json
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leve.errors import LeveError
from leve.params import default, resolved_params, section

KD_EPS = (0.0, 0.10, 0.25, 0.50)
KD_LOSS_PARAM = "train.kd.loss"
SEED_PARAM = "train.seed"
GRID_NAMES = ("kd", "lcb", "skips", "encoders", "all")


def group_members(group: str) -> list[tuple[str, str]]:
    """``(tag, model)`` of every registered model in experiment group ``group``, in the thesis's order."""
    from leve.models.registry import model_specs

    return [(g.tag, s.name) for s in model_specs() if (g := s.group(group))]


def _train_resolution(model: str) -> tuple[int, int] | None:
    from leve.models.registry import model_spec

    return model_spec(model).train_resolution


@dataclass(frozen=True)
class GridPoint:
    """One experiment: its name and the params it sets (dotted key -> value)."""

    name: str
    params: tuple[tuple[str, str], ...]

    def set_args(self) -> list[str]:
        """The ``-S key=value`` arguments of ``dvc exp run``."""
        return [arg for key, value in self.params for arg in ("-S", f"{key}={value}")]


def _point(name: str, model: str, eps: float, resolution: tuple[int, int] | None = None,
           kd_loss: str | None = None) -> GridPoint:
    params = [("train.model", model), ("train.kd.eps", f"{eps:g}")]
    if kd_loss is not None:
        params.append((KD_LOSS_PARAM, kd_loss))
    if resolution is not None:
        params.append(("train.resolution", f"[{resolution[0]},{resolution[1]}]"))
    return GridPoint(name, tuple(params))


def _kd_points(metric_teacher: bool) -> list[GridPoint]:
    points = []
    for tag, model in group_members("kd"):
        stem = f"kd-{tag + '-' if tag else ''}"
        points += [_point(f"{stem}eps{eps:.2f}", model, eps) for eps in KD_EPS]
        if metric_teacher:  # eps 0 distils nothing: the same run as the plain student above
            points += [_point(f"{stem}metric-eps{eps:.2f}", model, eps, kd_loss="metric") for eps in KD_EPS if eps > 0]
    return points


def grid(name: str, metric_teacher: bool = False) -> list[GridPoint]:
    """The grid points of ``kd``, ``lcb``, ``skips``, ``encoders`` or ``all`` (duplicates dropped, first
    name kept); ``metric_teacher``: the ``kd`` points gain ``train.kd.loss=metric`` ones (ε > 0)."""
    if name == "kd":
        return _kd_points(metric_teacher)
    if name in ("lcb", "skips"):
        return [_point(f"{name}-{tag}", model, 0.0) for tag, model in group_members(name)]
    if name == "encoders":
        return [_point(f"{name}-{tag}", model, 0.0, _train_resolution(model)) for tag, model in group_members(name)]
    if name == "all":
        points: dict[tuple[tuple[str, str], ...], GridPoint] = {}
        for part in ("kd", "lcb", "skips", "encoders"):
            for p in grid(part, metric_teacher):
                points.setdefault(p.params, p)
        return list(points.values())
    raise LeveError(f"unknown grid '{name}'; choose from {', '.join(GRID_NAMES)}")


def teacher_model(params: dict[str, Any], sets: Sequence[str] = ()) -> str:
    """The teacher whose cache ``train`` distils from under ``params`` (a params.yaml mapping) with the
    ``-S key=value`` items ``sets`` applied as ``dvc exp run -S`` writes them into the file: the model of
    ``teacher.datasets.<train.dataset>``, else ``teacher.model`` (the teacher stage's order)."""
    given = {key.strip(): value for key, sep, value in (item.partition("=") for item in sets) if sep}
    dataset = given.get("train.dataset") or section(params, "train").get("dataset") or default("train.dataset")
    per_dataset = section(params, "teacher").get("datasets") or {}
    own = per_dataset.get(str(dataset)) if isinstance(per_dataset, dict) else None
    for value in (given.get(f"teacher.datasets.{dataset}.model"), (own or {}).get("model") if isinstance(own, dict)
                  else None, given.get("teacher.model"), section(params, "teacher").get("model")):
        if value:
            return str(value)
    return str(default("teacher.model"))


def teacher_depth_kind(model: str) -> str:
    """``metric`` or ``relative``: a registry entry's ``depth_kind``; a ``save_pretrained`` folder's by
    its ``config.json`` as the teacher loader reads it (``depth_estimation_type``); a hub id leve does not
    list counts as relative (its config is not fetched here)."""
    from leve.teacher.registry import find_entry

    entry = find_entry(model)
    if entry is not None:
        return entry.depth_kind
    config = Path(model).expanduser() / "config.json"
    if not config.is_file():
        return "relative"
    try:
        values = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise LeveError(f"{config}: cannot read the teacher's config ({exc.__class__.__name__})") from exc
    if not isinstance(values, dict):
        raise LeveError(f"{config}: expected a JSON object (a save_pretrained config)")
    return "metric" if values.get("depth_estimation_type") == "metric" else "relative"


def metric_teacher(params_file: Path, sets: Sequence[str] = ()) -> bool:
    """Whether the teacher the params file ``params_file`` (with ``sets``) names for ``train.dataset`` is
    metric (params.yaml as shipped when the file is absent)."""
    return teacher_depth_kind(teacher_model(resolved_params(params_file), sets)) == "metric"


def with_seeds(points: Sequence[GridPoint], seeds: int) -> list[GridPoint]:
    """Each point once per seed 0..``seeds``-1, named ``<name>-seed<k>`` and setting ``train.seed``;
    ``seeds`` 0 leaves the points as they are (the params' own seed)."""
    if seeds < 0:
        raise LeveError(f"--seeds must be >= 0, got {seeds}")
    if seeds == 0:
        return list(points)
    return [GridPoint(f"{p.name}-seed{k}", (*p.params, (SEED_PARAM, str(k)))) for p in points for k in range(seeds)]


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
