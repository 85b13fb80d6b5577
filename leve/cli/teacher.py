"""``leve teacher-cache`` (see ``leve/teacher/stage.py``) and ``leve bench teacher``."""

from __future__ import annotations

from pathlib import Path

import typer

from leve.cli import app, bench_app
from leve.cli.bench_io import write_json
from leve.cli.options import (
    batch_size_option,
    command,
    dataset_option,
    default_dataset,
    device_option,
    from_params,
    params_option,
    set_option,
)
from leve.params import merge_options
from leve.progress import console


def _teacher(key: str) -> str:
    return from_params(f"teacher.{key}")


@app.command("teacher-cache", cls=command())
def teacher_cache(
    split: list[str] = typer.Option(None, "--split", show_default=False,
                                    help=f"Split to cache (repeatable) {_teacher('splits')}."),
    dataset: str = dataset_option("Dataset to cache"),
    model: str = typer.Option(None, "--model", help="Registry name (v1-small, v2-small, tiny-random...), hub id or "
                              f"folder {_teacher('model')}."),
    revision: str = typer.Option(None, "--revision", help=f"Hub commit to pin {_teacher('revision')}."),
    batch_size: int = batch_size_option("teacher.batch_size", "Images per teacher forward pass"),
    device: str = device_option("teacher.device"),
    amp: str = typer.Option(None, "--amp", help=f"Autocast dtype on CUDA: float16 | bfloat16 | float32 {_teacher('amp')}."),
    tta: str = typer.Option(None, "--tta", help="none | flip (average with the mirrored map of the flipped image) "
                            f"{_teacher('tta')}."),
    workers: int = typer.Option(None, "--workers",
                                help=f"DataLoader processes decoding and resizing images {_teacher('workers')}."),
    shard: str = typer.Option(None, "--shard", help="I/N: this process takes blocks b with b % N == I "
                              "(default: torchrun's RANK/WORLD_SIZE)."),
    sets: list[str] = set_option("teacher"),
    params: Path = params_option("teacher"),
    force: bool = typer.Option(False, "--force", help="Recompute even if an up-to-date cache exists."),
    out: str = typer.Option(None, "--out", help="The cache: a folder or a bucket URL such as "
                            "s3://bucket/prefix/<dataset>.zarr (default: <paths.teacher_cache>/<dataset>.zarr)."),
) -> None:
    """Run the Depth-Anything teacher once over a dataset split and store normalised maps.

    A key of params teacher.datasets.<dataset> overrides the same key of teacher for that dataset."""
    from leve.teacher import stage

    options = {
        "splits": list(split) if split else None,
        "model": model,
        "revision": revision,
        "batch_size": batch_size,
        "device": device,
        "amp": amp,
        "tta": tta,
        "workers": workers,
    }
    overrides = merge_options(sets, options)
    for result in stage.run(dataset or default_dataset(params), overrides, params_file=params, shard=shard, force=force,
                            out=out):
        console.print(result.summary())


@bench_app.command("teacher", cls=command(no_params="the sizes are the options'"))
def bench_teacher(
    out: Path = typer.Option(None, "--out", help="Also write the JSON here."),
    images: int = typer.Option(4, "--images", help="Images per throughput measurement."),
    batch_size: int = batch_size_option(None, "Teacher batch size", default=2),
    device: str = device_option(None),
) -> None:
    """Teacher-cache throughput (images/s) on NYU-sized images; step costs are `leve bench train`."""
    from leve.bench.teacher import run_bench

    result = run_bench(images=images, batch_size=batch_size, device=device)
    write_json(result, out)
