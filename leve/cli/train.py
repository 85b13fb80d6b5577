"""``leve train`` (see ``leve/train/stage.py``) and ``leve bench train``."""

from __future__ import annotations

from pathlib import Path

import typer

from leve.cli import app, bench_app
from leve.cli.bench_io import write_json
from leve.cli.options import (
    batch_size_option,
    command,
    dataset_option,
    device_option,
    from_params,
    params_option,
    parse_size,
    resolution_option,
    set_option,
    size_text,
)
from leve.params import merge_options
from leve.progress import console

BENCH_SIZE = (240, 320)  # bench train's default training size (height, width)


@app.command("train", cls=command())
def train(
    dataset: str = dataset_option("Dataset to train on"),
    resolution: str = resolution_option("Training size", key="train.resolution"),
    batch_size: int = batch_size_option("train.batch_size", "Global batch (split over torchrun processes)"),
    device: str = device_option("train.device"),
    out: Path = typer.Option(None, "--out", show_default=False,
                             help=f"Folder (or bucket prefix: s3://...) of best.pt and last.pt {from_params('train.out_dir')}."),
    sets: list[str] = set_option("train"),
    params: Path = params_option("train"),
    restart: bool = typer.Option(False, "--restart", help="Start over even if last.pt could be continued."),
    stop_after: int = typer.Option(None, "--stop-after", help="Save and stop after this many steps in all (continue later)."),
) -> None:
    """Distil the student from a store split and its cached teacher (torchrun for several GPUs)."""
    from leve.train import stage

    options = {"dataset": dataset, "resolution": parse_size(resolution) if resolution else None,
               "batch_size": batch_size, "device": device, "out_dir": out}
    result = stage.run(merge_options(sets, options), params_file=params, restart=restart, stop_after=stop_after)
    if result.rank == 0:
        console.print(result.summary())


@bench_app.command("train", cls=command(size_fallback=BENCH_SIZE, no_params="the sizes are the options'"))
def bench_train(
    out: Path = typer.Option(None, "--out", help="Also write the JSON here."),
    steps: int = typer.Option(3, "--steps", help="Timed steps per variant."),
    batch_size: int = batch_size_option(None, "Student batch size", default=8),
    resolution: str = resolution_option("Training size", default=size_text(BENCH_SIZE)),
    workers: int = typer.Option(2, "--workers", help="DataLoader processes for the loader-throughput part."),
    device: str = device_option(None),
    source: str = typer.Option(None, "--source", help="A store in a bucket (s3://bucket/prefix/x.zarr): instead, the "
                               "training loader's samples/s from it through the read-through cache / from its local "
                               "copy, per epoch, taking turns (the first epoch reported apart)."),
    epochs: int = typer.Option(3, "--epochs", help="With --source: epochs, the first reported apart from the later ones."),
    samples: int = typer.Option(64, "--samples", help="With --source: samples per epoch (at most the split's)."),
    cache_bytes: int = typer.Option(None, "--cache-bytes", help="With --source: the read-through cache's bound in "
                                    "bytes; none: twice the store's size."),
) -> None:
    """Seconds per training step: plain, KD from the cache, KD with the teacher online; loader rate. With
    --source: the training loader on a bucket store against its local copy."""
    if source is not None:
        from leve.bench.train import bucket_bench

        write_json(bucket_bench(source, samples, workers, epochs, batch_size, parse_size(resolution), cache_bytes), out)
        return
    from leve.bench.train import run_bench

    result = run_bench(steps=steps, batch_size=batch_size, size=parse_size(resolution), workers=workers, device=device)
    write_json(result, out)

