"""Stage ``eval@<dataset>``: params ``eval`` (+ ``eval.datasets.<dataset>``) ->
``metrics/<dataset>.json``, ``reports/<dataset>/`` (per-image CSV, tables, grid, error vs
depth, and ``MODEL_CARD.md``: the evaluated checkpoint's card with these test metrics). The combined
``reports/metrics.md`` / ``reports/metrics.csv`` are the ``tables`` stage's.

The card is written here rather than beside the checkpoint: ``models/student/`` is the ``train``
stage's output, and changing a file in it would make DVC see that output as modified (and rerun
``train``). A split without depth has nothing to score: it is refused in one line (with DVC, name
the eval stages of the datasets that have depth: ``dvc repro train eval@<dataset>``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from leve.errors import LeveError
from leve.params import PARAMS_FILE, build_config, load_params, section
from leve.progress import console


@dataclass
class Config:
    """The ``eval`` section of params.yaml."""

    checkpoint: Path = Path("models/student/best.pt")
    protocol: str = "leve2024"  # leve2024 (the thesis) | standard (the literature) | densedepth (DenseDepth's, pooled)
    split: str = "test"
    crop: str | None = None  # None: the protocol's default (nyu: leve2024|eigen; kitti: leve2024|garg)
    align: str = "none"  # standard only: none | median | lstsq (scale and shift in disparity space)
    flip: bool = True  # standard only: average with the prediction of the flipped image
    min_depth: float | None = None  # standard only: valid mask min (default 1e-3)
    max_depth: float | None = None  # default: the store's max_depth
    aggregation: str | None = None  # None: the protocol's own | per_image | per_image_mse (eq. 8.1) | pooled
    teacher: bool = True  # add teacher rows when the teacher cache has the split
    batch_size: int = 8
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    examples: int = 4  # images in the qualitative grid
    depth_bins: int = 20  # bins of the error-vs-depth plot
    data_dir: Path = Path("data/zarr")
    teacher_dir: Path = Path("data/teacher")
    metrics_dir: Path = Path("metrics")
    reports_dir: Path = Path("reports")


def config(dataset: str, overrides: dict[str, Any] | None = None, params_file: Path = PARAMS_FILE) -> Config:
    """Code defaults < ``eval`` < ``eval.datasets.<dataset>`` < overrides."""
    values = section(load_params(params_file), "eval")
    per_dataset = values.pop("datasets", None) or {}
    values.update(per_dataset.get(dataset) or {})
    values.update(overrides or {})
    return build_config(Config, values, "eval")


def _open_teacher(cfg: Config, dataset: str, store: Any) -> tuple[Any, dict[str, Any] | None]:
    """The teacher cache reader and its description, or (None, None) when absent/off."""
    from leve.teacher.cache.read import open_teacher_cache

    path = cfg.teacher_dir / f"{dataset}.zarr"
    if not cfg.teacher or not (path / cfg.split).exists():
        return None, None
    reader = open_teacher_cache(path, cfg.split, store)
    t = reader.attrs.get("teacher", {})
    return reader, {"path": str(path), "model": t.get("model"), "revision": t.get("revision")}


def scored_split(store: Any, name: str) -> Any:
    """Split ``name`` of ``store``, refused in one line when it (or the whole store) has no depth to score."""
    has_depth = store.attrs.get("has_depth")
    if isinstance(has_depth, dict) and has_depth and not any(has_depth.values()):
        raise LeveError(f"{store.path}: no split has depth (images only), so there is nothing to score; evaluate "
                        "the student on a dataset with depth (with DVC: `dvc repro train eval@<that dataset>`)")
    split = store.split(name)
    if not split.has_depth:
        raise LeveError(f"{store.path}: split '{name}' has no depth to score against; set eval.split (or "
                        f"eval.datasets.<dataset>.split) to a split with depth")
    return split


def run(dataset: str, overrides: dict[str, Any] | None = None, params_file: Path = PARAMS_FILE,
        show_progress: bool = True) -> dict[str, Any]:
    """Evaluate the checkpoint on ``dataset``; returns the metrics document written."""
    from leve.device import resolve_device
    from leve.evaluation.protocols import get_protocol, ground_truth_note
    from leve.evaluation.runner import evaluate
    from leve.models.card import CARD_NAME, write_model_card
    from leve.models.checkpoint import load_checkpoint
    from leve.report.figures import save_grid
    from leve.report.metrics import metrics_document, write_tables
    from leve.report.tables import write_csv, write_json
    from leve.store import open_store

    cfg = config(dataset, overrides, params_file)
    device = str(resolve_device(cfg.device, "eval.device"))
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise LeveError(f"eval.device {cfg.device}: no CUDA device available to torch")
    store = open_store(cfg.data_dir / f"{dataset}.zarr")
    split = scored_split(store, cfg.split)
    max_depth = cfg.max_depth or store.attrs.get("max_depth")
    if not max_depth:
        raise LeveError(f"{store.path}: no max_depth attribute; set eval.max_depth")
    protocol = get_protocol(cfg.protocol, dataset, max_depth, crop=cfg.crop, align=cfg.align,
                            flip=cfg.flip, min_depth=cfg.min_depth, aggregation=cfg.aggregation)
    model, info = load_checkpoint(cfg.checkpoint, device=device)
    if info.depth_kind == "relative" and (protocol.name != "standard" or protocol.align == "none"):
        raise LeveError(f"{cfg.checkpoint}: the student predicts relative depth (distilled without depth): score it "
                        f"with eval.protocol standard and eval.align median or lstsq, not {protocol.name} "
                        f"with align {protocol.align}")
    model.eval()
    teacher, teacher_info = _open_teacher(cfg, dataset, store)
    picks = tuple(int(i) for i in np.linspace(0, len(split) - 1, min(cfg.examples, len(split))).round())
    result = evaluate(model, split, protocol, info.resolution, info.max_depth, teacher=teacher,
                      batch_size=cfg.batch_size, device=device, examples=picks, depth_bins=cfg.depth_bins,
                      show_progress=show_progress)
    if teacher is not None and result.protocol.flip == "average" and result.protocol.teacher_flip == "none":
        console.print(f"note: the teacher row is not flip-averaged as the student's is: {cfg.teacher_dir}/{dataset}.zarr "
                      "was cached without teacher.tta: flip")
    ckpt = {"path": str(cfg.checkpoint), "model": info.model, "max_depth": info.max_depth,
            "resolution": list(info.resolution)}
    if info.depth_kind != "metric":
        ckpt["depth_kind"] = info.depth_kind
    doc = metrics_document(result, cfg.split, ckpt, teacher_info)
    note = ground_truth_note(protocol, store.attrs)
    if note:  # shown beside the numbers by the tables of `leve eval`, `leve tables` and `leve report`
        doc["note"] = note
    reports = cfg.reports_dir / dataset
    write_csv(reports / "per_image.csv", [s.row() for s in result.scored])
    write_csv(reports / "error_vs_depth.csv", result.bins.rows())
    save_grid(result.examples, reports / "examples.png")
    write_tables([doc], reports / "metrics.md", reports / "metrics.csv")
    write_json(cfg.metrics_dir / f"{dataset}.json", doc)
    write_model_card(cfg.checkpoint, reports / CARD_NAME, [cfg.metrics_dir / f"{dataset}.json"],
                     name=str(cfg.checkpoint))
    console.print(f"eval {dataset}/{cfg.split} [{protocol.name}]: rmse {doc['student']['rmse']:.4f} "
                  f"abs_rel {doc['student']['abs_rel']:.4f} d1 {doc['student']['d1']:.4f} "
                  f"({doc['student']['count']} samples) -> {cfg.metrics_dir / f'{dataset}.json'}",
                  markup=False, highlight=False)  # "[standard]" is text, not a rich markup tag
    return doc
