"""``leve teacher-cache`` (see ``leve/teacher/stage.py``) and ``leve bench teacher``."""

from __future__ import annotations

from pathlib import Path

import typer

from leve.cli import app, bench_app
from leve.cli.bench_io import write_json
from leve.params import PARAMS_FILE, merge_options
from leve.progress import console


@app.command("teacher-cache")
def teacher_cache(
    split: list[str] = typer.Option(None, "--split", help="Split to cache (repeatable; default params teacher.splits)."),
    dataset: str = typer.Option("nyu", help="Dataset store data/zarr/<dataset>.zarr."),
    model: str = typer.Option(None, help="Registry name (v1-small, v2-small, tiny-random...), hub id or folder."),
    revision: str = typer.Option(None, help="Hub commit to pin."),
    batch_size: int = typer.Option(None, "--batch-size", help="Images per teacher forward pass."),
    device: str = typer.Option(None, help="auto | cpu | cuda | cuda:N."),
    amp: str = typer.Option(None, help="Autocast dtype on CUDA: float16 | bfloat16 | float32."),
    tta: str = typer.Option(None, help="none | flip (average with the mirrored map of the flipped image)."),
    workers: int = typer.Option(None, help="DataLoader processes decoding and resizing images."),
    shard: str = typer.Option(None, help="I/N: this process takes blocks b with b % N == I (default: torchrun RANK/WORLD_SIZE)."),
    sets: list[str] = typer.Option([], "--set", help="Override a param: key=value (repeatable)."),
    params: Path = typer.Option(PARAMS_FILE, "--params", help="Params file (section teacher)."),
    force: bool = typer.Option(False, "--force", help="Recompute even if an up-to-date cache exists."),
) -> None:
    """Run the Depth-Anything teacher once over a dataset split and store normalised maps."""
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
    for result in stage.run(dataset, overrides, params_file=params, shard=shard, force=force):
        console.print(result.summary())


@bench_app.command("teacher")
def bench_teacher(
    out: Path = typer.Option(None, help="Also write the JSON here."),
    images: int = typer.Option(4, help="Images per throughput measurement."),
    batch_size: int = typer.Option(2, "--batch-size", help="Teacher batch size."),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
) -> None:
    """Teacher-cache throughput (images/s) on NYU-sized images; step costs are `leve bench train`."""
    from leve.bench.teacher import run_bench

    result = run_bench(images=images, batch_size=batch_size, device=device)
    write_json(result, out)
