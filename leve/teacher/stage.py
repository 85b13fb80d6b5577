"""Stage ``teacher@<dataset>``: params ``teacher`` (+ ``teacher.datasets.<dataset>``) ->
``data/teacher/<dataset>.zarr`` (one group per cached split)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leve.params import PARAMS_FILE, build_config, load_params, section
from leve.progress import console
from leve.teacher.registry import DEFAULT_TEACHER

# Config fields that do not change the cache (speed): not among the stage's DVC params
# (leve/pipeline/stages.py).
RESULT_INDEPENDENT: tuple[str, ...] = ("workers",)


@dataclass
class Config:
    """The ``teacher`` section of params.yaml."""

    model: str = DEFAULT_TEACHER  # registry name, hub id, or a save_pretrained folder
    revision: str | None = None  # hub commit to pin (None: the registry's pin, else main)
    splits: tuple[str, ...] = ("train",)
    batch_size: int = 4
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: str = "float16"  # autocast dtype on CUDA: float16 | bfloat16 | float32 (CPU runs float32)
    tta: str = "none"  # none | flip
    workers: int = 2  # DataLoader processes decoding and resizing images
    block_size: int = 64  # samples per shard file / resumption unit
    data_dir: Path = Path("data/zarr")
    out_dir: Path = Path("data/teacher")


def config(dataset: str, overrides: dict[str, Any] | None = None, params_file: Path = PARAMS_FILE) -> Config:
    """Code defaults < ``teacher`` < ``teacher.datasets.<dataset>`` < overrides."""
    values = section(load_params(params_file), "teacher")
    per_dataset = values.pop("datasets", None) or {}
    values.update(per_dataset.get(dataset) or {})
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
) -> list[Any]:
    """Cache the teacher for each configured split of ``dataset``; returns one result per split."""
    from leve.teacher import build_teacher_cache, load_teacher, parse_shard

    cfg = config(dataset, overrides, params_file)
    shard_index = parse_shard(shard)
    teacher = load_teacher(cfg.model, cfg.revision)
    console.print(f"teacher {teacher.model_id} @ {teacher.revision}: licence {teacher.licence}")
    if "non-commercial" in teacher.licence:
        console.print("[yellow]note: this checkpoint is licensed for non-commercial use only[/yellow]")
    results = []
    for split in cfg.splits:
        results.append(
            build_teacher_cache(
                cfg.data_dir / f"{dataset}.zarr",
                cfg.out_dir / f"{dataset}.zarr",
                split,
                teacher,
                batch_size=cfg.batch_size,
                device=cfg.device,
                amp=cfg.amp,
                tta=cfg.tta,
                workers=cfg.workers,
                block_size=cfg.block_size,
                shard=shard_index,
                force=force,
                show_progress=show_progress,
            )
        )
    return results
