"""Stage ``eval@<dataset>``: params ``eval`` (+ ``eval.datasets.<dataset>``) ->
``metrics/<dataset>.json``, ``reports/<dataset>/`` (per-image CSV, tables, grid, error vs
depth, and ``MODEL_CARD.md``: the evaluated checkpoint's card with these test metrics). The combined
``reports/metrics.md`` / ``reports/metrics.csv`` are the ``tables`` stage's.

The card is written here rather than beside the checkpoint: ``models/student/`` is the ``train``
stage's output, and changing a file in it would make DVC see that output as modified (and rerun
``train``). A split without depth has nothing to score: it is refused in one line (with DVC, name
the eval stages of the datasets that have depth: ``dvc repro train eval@<dataset>``).

Outputs: every file is written whole (:mod:`leve.atomic`) and all of one evaluation's files are
replaced together once all are written, so a failure (a full disk) leaves the previous ones as they
were. One evaluation writes a set of outputs at a time: a second one on the same ``metrics/<dataset>.json``
is refused in one line while the first runs (the lock ``metrics/<dataset>.json.lock``).

Scoring another checkpoint leaves the pipeline alone: the pipeline's ``metrics/`` and ``reports/``
(the DVC outputs of ``eval@<dataset>``) hold the scores of the params' ``eval.checkpoint`` only. A run
with another checkpoint (``leve eval --checkpoint other.pt``) writes to ``evals/<checkpoint>/metrics/`` and
``evals/<checkpoint>/reports/`` (``<checkpoint>``: its path with ``-`` for separators, e.g.
``evals/models-kd-best/``) and says so; ``--out DIR`` writes to ``DIR/metrics/`` and ``DIR/reports/``
instead, and an ``--out`` that would land in the pipeline's folders is refused in one line."""

from __future__ import annotations

import contextlib
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from leve.errors import LeveError
from leve.params import PARAMS_FILE, build_config, default, param, params_section, resolved_params, section, shared_keys
from leve.progress import console

SIDE_FOLDER = Path("evals")  # where the outputs of a checkpoint other than the params' go by default
# Config fields that are places shared with other stages (the paths.* keys), not among the stage's DVC
# params (leve/pipeline/stages.py).
RESULT_INDEPENDENT: tuple[str, ...] = ("data_dir", "teacher_dir", "read_cache_bytes", "read_prefetch")
BEST_CHECKPOINT = "best.pt"  # the file the train stage keeps its best checkpoint in, under train.out_dir


@params_section("eval", keys={"data_dir": "paths.stores", "teacher_dir": "paths.teacher_cache",
                              "read_cache_bytes": "paths.read_cache_bytes", "read_prefetch": "paths.read_prefetch"})
@dataclass
class Config:
    """The ``eval`` section of params.yaml."""

    checkpoint: Path | None = param(url=True)  # None: <train.out_dir>/best.pt, the train stage's best (config() fills it)
    protocol: str = param()  # leve2024 (the thesis) | standard (the literature) | densedepth (DenseDepth's, pooled)
    split: str = param()
    crop: str | None = param()  # None: the protocol's default (nyu: leve2024|eigen; kitti: leve2024|garg)
    align: str = param()  # standard only: none | median | lstsq (scale and shift in disparity space)
    flip: bool = param()  # standard only: average with the prediction of the flipped image
    min_depth: float | None = param()  # standard only: valid mask min (default 1e-3)
    max_depth: float | None = param()  # default: the store's max_depth
    aggregation: str | None = param()  # None: the protocol's own | per_image | per_image_mse (eq. 8.1) | pooled
    rmse_log: str | None = param()  # None: the protocol's own (ln) | ln | log10 (the thesis code's RMSE_log)
    teacher: bool = param()  # add teacher rows when the teacher cache has the split
    batch_size: int = param()
    device: str = param()  # auto | cpu | cuda | cuda:N
    examples: int = param()  # images in the qualitative grid
    depth_bins: int = param()  # bins of the error-vs-depth plot
    data_dir: Path = param(url=True)  # paths.stores: a folder, or a bucket prefix (s3://bucket/prefix)
    read_cache_bytes: int | None = param()  # paths.read_cache_bytes: a bucket store's local read-through cache
    read_prefetch: int = param()  # paths.read_prefetch: shard files fetched ahead of the reads, with that cache (0: none)
    teacher_dir: Path = param(url=True)  # paths.teacher_cache: a folder, or a bucket prefix (s3://bucket/prefix)
    metrics_dir: Path = param()
    reports_dir: Path = param()

    def __post_init__(self) -> None:
        if self.read_prefetch < 0:
            raise LeveError(f"eval: paths.read_prefetch must be >= 0, got {self.read_prefetch}")


def config(dataset: str, overrides: dict[str, Any] | None = None, params_file: Path = PARAMS_FILE) -> Config:
    """Defaults < ``eval`` < ``eval.datasets.<dataset>`` < overrides (``paths.*`` for the places)."""
    params = resolved_params(params_file)
    values = section(params, "eval")
    per_dataset = values.pop("datasets", None) or {}
    values.update(per_dataset.get(dataset) or {})
    values = shared_keys(Config, values, params, "eval")
    given = values.get("checkpoint")
    if given is not None and _same_path(Path(str(given)), student_checkpoint(params)):
        _warn_once(f"warning: eval.checkpoint: {given} is deprecated; leave it null, <train.out_dir>/{BEST_CHECKPOINT} "
                   "by rule (train.out_dir is the student's one key)")
    values.update(overrides or {})
    cfg = build_config(Config, values, "eval")
    return cfg if cfg.checkpoint is not None else replace(cfg, checkpoint=student_checkpoint(params))


def student_checkpoint(params: dict[str, Any]) -> Path:
    """The train stage's best checkpoint, ``<train.out_dir>/best.pt`` (``params``: the resolved tree): what
    ``eval.checkpoint: null`` scores, so the student's folder is one key (``train.out_dir``)."""
    out_dir = section(params, "train").get("out_dir")  # a params file without it: the default's
    return Path(str(out_dir if out_dir is not None else default("train.out_dir"))) / BEST_CHECKPOINT


_warned: set[str] = set()


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        print(message, file=sys.stderr)


def checkpoint_of(cfg: Config) -> Path:
    """``cfg.checkpoint``, filled by :func:`config` (None only in a Config made by hand: the train stage's best)."""
    return cfg.checkpoint if cfg.checkpoint is not None else student_checkpoint(resolved_params(PARAMS_FILE))


def _open_teacher(cfg: Config, dataset: str, store: Any) -> tuple[Any, dict[str, Any] | None]:
    """The teacher cache reader and its description, or (None, None) when off, or when a local cache lacks the
    split. A bucket cache (``paths.teacher_cache: s3://...``) is not looked for: its split must be published, and
    one that is missing or half-written is refused in one line (a wrong URL, an unfinished upload or denied access
    never quietly drops the teacher row)."""
    from leve.teacher.cache.read import cache_place, open_teacher_cache

    path = cfg.teacher_dir / f"{dataset}.zarr"
    place = cache_place(path)  # a local path as it is; a URL as the URL
    if not cfg.teacher or ("://" not in place and not (path / cfg.split).exists()):
        return None, None
    try:
        reader = open_teacher_cache(place, cfg.split, store, cache_bytes=cfg.read_cache_bytes)
    except LeveError as exc:
        if "://" not in place:
            raise
        raise LeveError(f"{exc} (eval.teacher: true scores the teacher row from this bucket cache; set "
                        "eval.teacher false to score the student alone)") from None
    t = reader.attrs.get("teacher", {})
    return reader, {"path": place, "model": t.get("model"), "revision": t.get("revision")}


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
        show_progress: bool = True, out: Path | None = None) -> dict[str, Any]:
    """Evaluate the checkpoint on ``dataset``; returns the metrics document written. ``out``: write
    ``<out>/metrics/<dataset>.json`` and ``<out>/reports/<dataset>/`` instead (see the module doc for where
    the outputs of a checkpoint other than the params' go). One writer at a time: the outputs are held
    by the lock ``<metrics file>.lock`` (:func:`leve.processes.exclusive_writer`) from start to end."""
    from leve.processes import exclusive_writer

    cfg = config(dataset, overrides, params_file)
    metrics_dir, reports_dir, note = output_folders(dataset, cfg, params_file, out)
    with contextlib.ExitStack() as held:
        def claim() -> None:
            """Once the inputs are read (a bad input is refused with nothing created): take the outputs' lock."""
            held.enter_context(exclusive_writer(metrics_dir / f"{dataset}.json"))
            if note:
                console.print(note, markup=False, highlight=False)

        return _score(dataset, {**(overrides or {}), "metrics_dir": metrics_dir, "reports_dir": reports_dir},
                      params_file, show_progress, claim)


def output_folders(dataset: str, cfg: Config, params_file: Path = PARAMS_FILE,
                   out: Path | None = None) -> tuple[Path, Path, str | None]:
    """The metrics and reports folders of this evaluation: ``out``'s ``metrics/`` and ``reports/`` when
    given, else ``cfg``'s. Those of a checkpoint other than the params' are kept out of the pipeline's:
    by default they go to ``evals/<checkpoint>/`` (:data:`SIDE_FOLDER`); an explicit ``out`` inside them is refused.
    The third value: the note saying so (None when the folders are the ones asked for)."""
    folders = (out / "metrics", out / "reports") if out is not None else (cfg.metrics_dir, cfg.reports_dir)
    pipeline = config(dataset, None, params_file)
    checkpoint, pipeline_checkpoint = checkpoint_of(cfg), checkpoint_of(pipeline)
    if _same_path(checkpoint, pipeline_checkpoint):
        return (*folders, None)
    if not (_same_path(folders[0], pipeline.metrics_dir) or _same_path(folders[1], pipeline.reports_dir)):
        return (*folders, None)
    if out is not None:
        raise LeveError(f"{out}: --out would put the scores of {checkpoint} into the pipeline's outputs "
                        f"({pipeline.metrics_dir}/, {pipeline.reports_dir}/), which belong to {pipeline_checkpoint}; "
                        "choose another folder")
    side = SIDE_FOLDER / checkpoint_slug(checkpoint)
    note = (f"note: {checkpoint} is not the params' eval.checkpoint ({pipeline_checkpoint}): its outputs go "
            f"to {side}/ (the pipeline's {pipeline.metrics_dir}/ and {pipeline.reports_dir}/ are left alone; "
            "--out DIR picks another folder)")
    return side / "metrics", side / "reports", note


def _same_path(a: Path, b: Path) -> bool:
    return Path(a).resolve() == Path(b).resolve()


def checkpoint_slug(checkpoint: Path) -> str:
    """A folder name for a checkpoint: its path (relative to here where it can be) without the suffix,
    separators as ``-``, characters other than letters, digits, ``.``, ``_``, ``-`` as ``_``, at most 100."""
    path = Path(checkpoint)
    with contextlib.suppress(ValueError):
        path = path.resolve().relative_to(Path.cwd().resolve())
    text = "-".join(path.with_suffix("").parts).lstrip("-") or "checkpoint"
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)[-100:].lstrip(".") or "checkpoint"


def _score(dataset: str, overrides: dict[str, Any] | None = None, params_file: Path = PARAMS_FILE,
           show_progress: bool = True, claim: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """The evaluation itself; :func:`run` chooses its output folders, and ``claim`` (called once the
    inputs are read, before the evaluation) takes their lock."""
    from leve.atomic import atomic_group
    from leve.device import resolve_device
    from leve.evaluation.baseline import train_median_depth
    from leve.evaluation.protocols import get_protocol, ground_truth_note
    from leve.evaluation.runner import evaluate
    from leve.models.card import CARD_NAME, write_model_card
    from leve.models.checkpoint import load_checkpoint
    from leve.report.figures import describe_run, save_error_vs_depth, save_grid
    from leve.report.metrics import metrics_document, write_tables
    from leve.report.tables import write_csv, write_json
    from leve.store.reader import open_store

    cfg = config(dataset, overrides, params_file)
    checkpoint = checkpoint_of(cfg)
    device = str(resolve_device(cfg.device, "eval.device"))  # refuses CUDA when torch sees none
    store = open_store(cfg.data_dir / f"{dataset}.zarr", cache_bytes=cfg.read_cache_bytes)
    split = scored_split(store, cfg.split)
    max_depth = cfg.max_depth or store.attrs.get("max_depth")
    if not max_depth:
        raise LeveError(f"{store.path}: no max_depth attribute; set eval.max_depth")
    protocol = get_protocol(cfg.protocol, dataset, max_depth, crop=cfg.crop, align=cfg.align,
                            flip=cfg.flip, min_depth=cfg.min_depth, aggregation=cfg.aggregation,
                            rmse_log=cfg.rmse_log)
    model, info = load_checkpoint(checkpoint, device=device)
    if info.depth_kind == "relative" and (protocol.name != "standard" or protocol.align == "none"):
        raise LeveError(f"{checkpoint}: the student predicts relative depth (distilled without depth): score it "
                        f"with eval.protocol standard and eval.align median or lstsq, not {protocol.name} "
                        f"with align {protocol.align}")
    model.eval()
    teacher, teacher_info = _open_teacher(cfg, dataset, store)
    picks = tuple(int(i) for i in np.linspace(0, len(split) - 1, min(cfg.examples, len(split))).round())
    constant = constant_source(train_median_depth(store, float(max_depth)), protocol.align)
    claim()
    result = evaluate(model, split, protocol, info.resolution, info.max_depth, teacher=teacher,
                      batch_size=cfg.batch_size, device=device, examples=picks, depth_bins=cfg.depth_bins,
                      show_progress=show_progress, constant=constant.get("depth"), read_prefetch=cfg.read_prefetch)
    if teacher is not None and result.protocol.flip == "average" and result.protocol.teacher_flip == "none":
        from leve.teacher.cache.read import cache_place

        console.print(f"note: the teacher row is not flip-averaged as the student's is: "
                      f"{cache_place(cfg.teacher_dir)}/{dataset}.zarr was cached without teacher.tta: flip")
    ckpt = {"path": info.path, "model": info.model, "max_depth": info.max_depth,
            "resolution": list(info.resolution)}
    if info.depth_kind != "metric":
        ckpt["depth_kind"] = info.depth_kind
    doc = metrics_document(result, cfg.split, ckpt, teacher_info, constant)
    note = ground_truth_note(protocol, store.attrs)
    if note:  # shown beside the numbers by the tables of `leve eval`, `leve tables` and `leve report`
        doc["note"] = note
    reports = cfg.reports_dir / dataset
    with atomic_group() as stage:  # every output of this evaluation, or (on any failure) none replaced
        write_csv(stage(reports / "per_image.csv"), [s.row() for s in result.scored])
        write_csv(stage(reports / "error_vs_depth.csv"), result.bins.rows())
        figure_title = describe_run(checkpoint, info.model, dataset, cfg.split, result.protocol)  # run, protocol
        units = store.attrs.get("units")  # the depth's units on the figures' colour bars and axes
        if result.examples:
            save_grid(result.examples, stage(reports / "examples.png"), title=figure_title, units=units)
        save_error_vs_depth(result.bins.rows(), stage(reports / "error_vs_depth.png"), figure_title, units)
        write_tables([doc], stage(reports / "metrics.md"), stage(reports / "metrics.csv"))
        metrics = stage(cfg.metrics_dir / f"{dataset}.json")
        write_json(metrics, doc)
        write_model_card(checkpoint, stage(reports / CARD_NAME), [metrics], name=str(checkpoint),
                         metrics_shown_as=[cfg.metrics_dir / f"{dataset}.json"])
    console.print(summary_line(doc, f"{dataset}/{cfg.split}", cfg.metrics_dir / f"{dataset}.json"),
                  markup=False, highlight=False)  # "[standard]" is text, not a rich markup tag
    warning = constant_warning(doc, f"{dataset}/{cfg.split}")
    if warning:
        console.print(warning, markup=False, highlight=False)
    return doc


def constant_source(median: dict[str, Any] | None, align: str) -> dict[str, Any]:
    """What the ``constant`` row scores (the metrics document's ``constant_source``): the train median
    (:func:`leve.evaluation.baseline.train_median_depth`) scored under the protocol's alignment; under an
    alignment any positive depth scores the same, so a store without train depth still gets the row
    (depth 1); without alignment and without a median there is no row (``depth`` None, ``why``)."""
    if median is not None:
        return {**median, "align": align}
    if align != "none":
        return {"depth": 1.0, "align": align, "rule": f"any positive constant, scaled per image by align {align} "
                                                          "(the store has no train or val depth for a median)"}
    return {"depth": None, "align": align, "why": "the store has no train or val depth to take a median from"}


def summary_line(doc: dict[str, Any], where: str, path: Path) -> str:
    """The eval's console line: the student's rmse, abs_rel, d1 and spearman, the constant's rmse and
    abs_rel, and each aligned model's non-positive fits out of its fits."""
    s = doc["student"]
    line = (f"eval {where} [{doc['protocol']['name']}]: rmse {s['rmse']:.4f} abs_rel {s['abs_rel']:.4f} d1 {s['d1']:.4f} "
            f"({s['count']} samples)")
    if s.get("spearman") is not None:
        line += f" spearman {s['spearman']:.4f}"
    if isinstance(doc.get("constant"), dict):
        line += f"; constant rmse {doc['constant']['rmse']:.4f} abs_rel {doc['constant']['abs_rel']:.4f}"
    align = doc.get("alignment") or {}
    fitted = [m for m, n in (align.get("fits") or {}).items() if n]
    if fitted:
        line += "; non-positive fits " + " ".join(f"{m} {align['non_positive_fits'][m]}/{align['fits'][m]}" for m in fitted)
    return f"{line} -> {path}"


def constant_warning(doc: dict[str, Any], where: str) -> str | None:
    """``warning: ...`` when the student does not beat the constant predictor (both RMSE and REL strictly
    lower: :func:`leve.evaluation.baseline.beats_constant`), else None."""
    from leve.evaluation.baseline import beats_constant

    c = doc.get("constant")
    if not isinstance(c, dict) or beats_constant(doc["student"], c):
        return None
    s = doc["student"]
    return (f"warning: {where}: the student does not beat the constant predictor under the same protocol "
            f"(rmse {s['rmse']:.4f} vs {c['rmse']:.4f}, abs_rel {s['abs_rel']:.4f} vs {c['abs_rel']:.4f}); "
            "its numbers are not a result")
