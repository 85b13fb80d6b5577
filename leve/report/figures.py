"""Figures a person can read, as static PNGs (matplotlib's Agg backend: they open anywhere, offline).

* ``examples.png`` (:func:`save_grid`, written by ``leve eval``): one row per example, columns
  RGB | ground truth | student | teacher (when the teacher cache has the split) | student error
  ``|student - ground truth|``, each column titled. All depth maps share one colour scale (``turbo_r``:
  near = red, far = blue; the range of the valid ground truth over every row) with a colour bar in
  metres (or the store's relative units); the error has its own bar; pixels without ground truth are
  black. The title names the run (checkpoint and model), the data (dataset/split) and the protocol.
* ``error_vs_depth.png`` (:func:`save_error_vs_depth`, written by ``leve eval`` beside
  ``error_vs_depth.csv``): abs_rel and RMSE per ground-truth depth bin, one line per model.
* ``training_curves.png`` (:func:`save_training_curves`, ``leve figures``): DVCLive's
  ``<log_dir>/plots/metrics/{train,val}/*.tsv`` drawn against the step (losses, learning rate,
  validation errors and accuracies).

Each ``*_figure`` function returns the :class:`matplotlib.figure.Figure` (tests read its texts and
image data); ``save_*`` writes it through :func:`leve.atomic.atomic_path`.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from leve.errors import LeveError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from leve.evaluation.protocols import Protocol
    from leve.evaluation.runner import Example

TILE_HEIGHT = 160  # pixels per example row (at DPI)
DPI = 100
DEPTH_CMAP = "turbo_r"  # near = red, far = blue
ERROR_CMAP = "inferno"  # small error = dark, large = bright
METRIC_UNITS = ("m", "metres", "meters", "", None)


def depth_scale(example: Example) -> tuple[float, float]:
    """One row's range: the valid ground truth's (or, without any, the prediction's)."""
    valid = example.gt[np.isfinite(example.gt) & (example.gt > 0)]
    ref = valid if valid.size else example.student.ravel()
    return float(ref.min()), float(ref.max())


def grid_scale(examples: Sequence[Example]) -> tuple[float, float]:
    """The grid's one depth scale: from the smallest to the largest row range."""
    ranges = [depth_scale(e) for e in examples]
    return min(r[0] for r in ranges), max(r[1] for r in ranges)


def valid_map(depth: np.ndarray) -> np.ndarray:
    """``depth`` as float with NaN where it is not finite and positive (drawn black)."""
    d = np.asarray(depth, dtype=np.float64)
    return np.where(np.isfinite(d) & (d > 0), d, np.nan)


def error_map(example: Example) -> np.ndarray:
    """``|student - ground truth|`` where the ground truth is valid, NaN elsewhere."""
    gt = valid_map(example.gt)
    return np.abs(np.asarray(example.student, dtype=np.float64) - gt)


def unit_label(units: str | None) -> str:
    """The depth's unit for labels: ``m`` for a store in metres, else the store's own (``relative``)."""
    return "m" if units in METRIC_UNITS else str(units)


def describe_run(checkpoint: str | Path, model: str, dataset: str, split: str, protocol: Protocol | None = None) -> str:
    """The figures' title: the run (checkpoint, model), the data and the protocol with its settings."""
    title = f"{checkpoint} ({model}) on {dataset}/{split}"
    if protocol is None:
        return title
    crop = getattr(protocol.crop, "name", protocol.crop)
    return (f"{title}\nprotocol {protocol.name}: crop {crop}, align {protocol.align}, flip {protocol.flip}, "
            f"depth {protocol.min_depth:g}-{protocol.max_depth:g}")


def new_figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def masked_cmap(name: str) -> Any:
    import matplotlib

    return matplotlib.colormaps[name].with_extremes(bad="black")


def grid_figure(examples: Sequence[Example], title: str = "", units: str | None = "m",
                height: int = TILE_HEIGHT) -> Figure:
    """The qualitative grid (see the module doc) as a Figure: ``title`` names the run and protocol,
    ``units`` the depth's (``m``, or a store's relative units)."""
    if not examples:
        raise LeveError("no examples to draw")
    unit = unit_label(units)
    teacher = any(e.teacher is not None for e in examples)
    columns = ["RGB", "ground truth", "student"] + (["teacher"] if teacher else []) + ["student error"]
    h, w = examples[0].rgb.shape[:2]
    tile_h = height / DPI
    tile_w = tile_h * w / h
    fig = new_figure(tile_w * len(columns) + 0.4, tile_h * len(examples) + 1.6 + 0.35 * title.count("\n"))
    axes = fig.subplots(len(examples), len(columns), squeeze=False)
    lo, hi = grid_scale(examples)
    errors = [error_map(e) for e in examples]
    finite = np.concatenate([err[np.isfinite(err)] for err in errors])
    err_hi = float(np.percentile(finite, 99)) if finite.size else 1.0
    depth_cmap, error_cmap = masked_cmap(DEPTH_CMAP), masked_cmap(ERROR_CMAP)
    depth_image = error_image = None
    for row, (example, err) in enumerate(zip(examples, errors)):
        maps = [example.gt, example.student] + ([example.teacher] if teacher else [])
        axes[row, 0].imshow(example.rgb, interpolation="bilinear")
        axes[row, 0].set_ylabel(f"sample {example.index}", fontsize=8)
        for col, depth in enumerate(maps, start=1):
            if depth is None:  # this row has no teacher map
                axes[row, col].text(0.5, 0.5, "no teacher map", ha="center", va="center", fontsize=8,
                                    transform=axes[row, col].transAxes)
                continue
            depth_image = axes[row, col].imshow(valid_map(depth), cmap=depth_cmap, vmin=lo, vmax=hi,
                                                interpolation="bilinear")
        error_image = axes[row, -1].imshow(err, cmap=error_cmap, vmin=0.0, vmax=max(err_hi, 1e-12),
                                           interpolation="bilinear")
    assert depth_image is not None and error_image is not None  # every row draws its student and error
    for col, name in enumerate(columns):
        axes[0, col].set_title(name, fontsize=10)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    depth_label = "depth (m), near = red" if unit == "m" else f"depth ({unit} units of the store), near = red"
    fig.colorbar(depth_image, ax=list(axes[:, 1:-1].ravel()), location="bottom", shrink=0.9, aspect=40,
                 label=depth_label + "; black: no ground truth")
    fig.colorbar(error_image, ax=list(axes[:, -1]), location="bottom", shrink=0.95, aspect=12,
                 label=f"|student - ground truth| ({unit})", extend="max")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def save_figure(fig: Figure, out: Path) -> Path:
    """Write ``fig`` as a PNG, whole or not at all."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from leve.atomic import atomic_path

    FigureCanvasAgg(fig)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return Path(out)


def save_grid(examples: list[Example], out: Path, height: int = TILE_HEIGHT, title: str = "",
              units: str | None = "m") -> Path | None:
    """Write the qualitative grid PNG (:func:`grid_figure`); None (nothing written) if no example."""
    if not examples:
        return None
    return save_figure(grid_figure(examples, title, units, height), out)


# --------------------------------------------------------------------------- error against depth


def _number(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def error_vs_depth_figure(rows: Sequence[dict[str, Any]], title: str = "", units: str | None = "m") -> Figure:
    """abs_rel and RMSE of every model (``<model>_abs_rel``, ``<model>_rmse`` columns) per depth bin
    (``depth``: the bin centre); empty bins are gaps."""
    if not rows:
        raise LeveError("no depth bins to draw")
    unit = unit_label(units)
    depth = np.array([_number(r.get("depth")) for r in rows])
    models = [k.removesuffix("_abs_rel") for k in rows[0] if k.endswith("_abs_rel")]
    fig = new_figure(9.0, 3.6 + 0.2 * title.count("\n"))
    axes = fig.subplots(1, 2)
    for ax, stat, label in ((axes[0], "abs_rel", "abs_rel (|pred - gt| / gt)"), (axes[1], "rmse", f"RMSE ({unit})")):
        for model in models:
            values = np.array([_number(r.get(f"{model}_{stat}")) for r in rows])
            ax.plot(depth, values, marker="o", markersize=3, label=model)
        ax.set_xlabel(f"ground-truth depth, bin centre ({unit})")
        ax.set_ylabel(label)
        ax.set_title(f"{stat} against depth", fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def save_error_vs_depth(rows: Sequence[dict[str, Any]], out: Path, title: str = "", units: str | None = "m") -> Path:
    """Write :func:`error_vs_depth_figure` as a PNG."""
    return save_figure(error_vs_depth_figure(rows, title, units), out)


# --------------------------------------------------------------------------- training curves

# panel of each DVCLive series, by its folder and name; anything else goes to the folder's panel
PANELS = {("train", "lr"): "learning rate", ("train", "samples_per_s"): "throughput (samples/s)",
          ("train", "gradient"): "gradient norm", ("val", "d1"): "validation accuracy (δ)",
          ("val", "d2"): "validation accuracy (δ)", ("val", "d3"): "validation accuracy (δ)"}


def read_dvclive(log_dir: Path) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """DVCLive's scalar series under ``<log_dir>/plots/metrics``: {panel: {series: (steps, values)}}."""
    root = Path(log_dir) / "plots" / "metrics"
    files = sorted(root.rglob("*.tsv")) if root.is_dir() else []
    if not files:
        raise LeveError(f"{root}: no DVCLive metrics (*.tsv) to draw; train first (`leve train` or `dvc repro train`)")
    panels: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for tsv in files:
        folder = tsv.parent.relative_to(root).as_posix()
        name = tsv.stem
        steps, values = [], []
        try:
            with open(tsv, newline="", encoding="utf-8") as fh:
                for row in csv.DictReader(fh, delimiter="\t"):
                    steps.append(_number(row.get("step")))
                    values.append(_number(row.get(name)))
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise LeveError(f"{tsv}: cannot read DVCLive series ({exc.__class__.__name__}: {exc})") from exc
        if not steps:
            continue
        default = "validation errors" if folder == "val" else "training losses" if folder == "train" else folder
        panel = PANELS.get((folder, name), default)
        panels.setdefault(panel, {})[f"{folder}/{name}" if folder not in ("train", "val") else name] = (
            np.array(steps), np.array(values))
    return panels


def training_figure(log_dir: Path, title: str = "") -> Figure:
    """Every DVCLive series of ``log_dir`` against the optimiser step, one panel per kind (losses on a
    log scale when positive)."""
    panels = read_dvclive(log_dir)
    order = ["training losses", "validation errors", "validation accuracy (δ)", "learning rate",
             "throughput (samples/s)", "gradient norm"]
    names = [p for p in order if p in panels] + sorted(p for p in panels if p not in order)
    cols = 2 if len(names) == 4 else min(3, len(names))
    rows = math.ceil(len(names) / cols)
    fig = new_figure(4.2 * cols, 3.0 * rows + 0.5)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False).ravel())
    for ax, panel in zip(axes, names):
        positive = True
        for label, (steps, values) in sorted(panels[panel].items()):
            ax.plot(steps, values, marker="o" if len(steps) < 20 else None, markersize=3, label=label)
            positive = positive and bool(np.all(values[np.isfinite(values)] > 0))
        if panel in ("training losses", "validation errors", "learning rate") and positive:
            ax.set_yscale("log")
        ax.set_title(panel, fontsize=10)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    fig.suptitle(title or f"training curves: {log_dir}", fontsize=10)
    return fig


def run_name(log_dir: Path) -> str:
    """A title for the curves: the log folder and, when DVCLive recorded them, the training params that
    name the run (model, dataset, KD weight, seed)."""
    params = Path(log_dir) / "params.yaml"
    parts: list[str] = []
    import yaml

    try:
        data = yaml.safe_load(params.read_text(encoding="utf-8")) if params.is_file() else None
    except (OSError, ValueError, yaml.YAMLError):  # the title is a courtesy, not a contract
        data = None
    if isinstance(data, dict):
        kd = data.get("kd")
        kd = kd if isinstance(kd, dict) else {}
        for key, value in (("model", data.get("model")), ("dataset", data.get("dataset")),
                           ("kd.eps", kd.get("eps")), ("seed", data.get("seed"))):
            if value is not None:
                parts.append(f"{key} {value}")
    return f"training curves: {log_dir}" + (f" ({', '.join(parts)})" if parts else "")


def save_training_curves(log_dir: Path, out: Path, title: str = "") -> Path:
    """Write :func:`training_figure` of ``log_dir`` as a PNG (title: :func:`run_name` by default)."""
    return save_figure(training_figure(log_dir, title or run_name(log_dir)), out)
