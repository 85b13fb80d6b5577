"""Stage ``teacher@<dataset>``: params ``teacher`` (+ ``teacher.datasets.<dataset>``) ->
``data/teacher/<dataset>.zarr`` (one group per cached split)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leve.params import PARAMS_FILE, build_config, param, params_section, resolved_params, section, shared_keys
from leve.progress import console

# Config fields that do not change the cache (speed, places: the paths.* keys): not among the stage's
# DVC params (leve/pipeline/stages.py).
RESULT_INDEPENDENT: tuple[str, ...] = ("workers", "data_dir", "out_dir")


@params_section("teacher", keys={"data_dir": "paths.stores", "out_dir": "paths.teacher_cache"})
@dataclass
class Config:
    """The ``teacher`` section of params.yaml."""

    model: str = param()  # registry name, hub id, or a save_pretrained folder
    revision: str | None = param()  # hub commit to pin (None: the registry's pin, else main)
    splits: tuple[str, ...] = param()
    batch_size: int = param()
    device: str = param()  # auto | cpu | cuda | cuda:N
    amp: str = param()  # autocast dtype on CUDA: float16 | bfloat16 | float32 (CPU runs float32)
    tta: str = param()  # none | flip
    workers: int = param()  # DataLoader processes decoding and resizing images
    block_size: int = param()  # samples per shard file / resumption unit
    crops: int = param()  # local crops per image cached beside the global map (cross-context distillation; 0: none)
    data_dir: Path = param(url=True)  # paths.stores: a folder, or a bucket prefix (s3://bucket/prefix)
    out_dir: Path = param(url=True)  # paths.teacher_cache: a folder, or a bucket prefix


def config(dataset: str, overrides: dict[str, Any] | None = None, params_file: Path = PARAMS_FILE) -> Config:
    """Defaults < ``teacher`` < ``teacher.datasets.<dataset>`` < overrides (``paths.*`` for the places)."""
    params = resolved_params(params_file)
    values = section(params, "teacher")
    per_dataset = values.pop("datasets", None) or {}
    values.update(per_dataset.get(dataset) or {})
    values = shared_keys(Config, values, params, "teacher")
    values.update(overrides or {})
    if isinstance(values.get("splits"), str):
        values["splits"] = [values["splits"]]
    return build_config(Config, values, "teacher")


def run(
    dataset: str,
    overrides: dict[str, Any] | None = None,
    params_file: Path = PARAMS_FILE,
    shard: str | None = None,
    force: bool = False,
    show_progress: bool = True,
    out: str | Path | None = None,
) -> list[Any]:
    """Cache the teacher for each configured split of ``dataset``; returns one result per split. ``out``: the
    cache (a folder or a URL) instead of ``<out_dir>/<dataset>.zarr``."""
    from leve.teacher.cache.build import build_teacher_cache, parse_shard
    from leve.teacher.loading import load_teacher

    cfg = config(dataset, overrides, params_file)
    shard_index = parse_shard(shard)
    teacher = load_teacher(cfg.model, cfg.revision)
    kind = f"metric depth (m, up to {teacher.max_depth:g} m)" if teacher.depth_kind == "metric" else "relative depth"
    console.print(f"teacher {teacher.model_id} @ {teacher.revision}: {kind}, licence {teacher.licence}")
    if "non-commercial" in teacher.licence:
        console.print("[yellow]note: this checkpoint is licensed for non-commercial use only[/yellow]")
    warning = embedded_misuse(teacher.model_id, cfg.data_dir / f"{dataset}.zarr")
    if warning:
        console.print(warning, markup=False, highlight=False)
    results = []
    for split in cfg.splits:
        results.append(
            build_teacher_cache(
                cfg.data_dir / f"{dataset}.zarr",
                cfg.out_dir / f"{dataset}.zarr" if out is None else out,
                split,
                teacher,
                batch_size=cfg.batch_size,
                device=cfg.device,
                amp=cfg.amp,
                tta=cfg.tta,
                workers=cfg.workers,
                block_size=cfg.block_size,
                crops=cfg.crops,
                shard=shard_index,
                force=force,
                show_progress=show_progress,
            )
        )
    return results


def rendered_by_leve(attrs: dict[str, Any]) -> bool:
    """Whether a store's attributes are those leve's synthetic adapter writes (``leve prepare synthetic``,
    leve/datasets/synthetic.py: dataset ``synthetic``, no other adapter, the camera's intrinsics and the
    renderer's seed among its params); a folder of yours named ``synthetic`` records ``adapter: folder``."""
    params = attrs.get("params")
    return (attrs.get("dataset") == "synthetic" and attrs.get("adapter") in (None, "synthetic")
            and "intrinsics" in attrs and isinstance(params, dict) and "seed" in params)


def embedded_misuse(model_id: str, store_path: Path) -> str | None:
    """The one ``warning:`` line for the ``embedded`` teacher on a store leve's synthetic adapter did not
    render (it knows only those rooms: on real photos it follows a room-box prior, faces come out far);
    None for another teacher, a rendered store, or a store that does not open (the cache build says why)."""
    if model_id != "embedded":
        return None
    from leve.errors import LeveError
    from leve.store.reader import open_store

    try:
        attrs = dict(open_store(store_path).attrs)
    except LeveError:
        return None
    if rendered_by_leve(attrs):
        return None
    return (f"warning: {store_path}: the embedded teacher knows only leve's synthetic rooms and this store was not "
            f"rendered by them (dataset {attrs.get('dataset')}); on real photos its maps follow a room-box prior "
            "(faces come out far). Use a real teacher: teacher.model v2-small, v1-small, or the path of a local "
            "save_pretrained folder (docs/own-data.md)")
