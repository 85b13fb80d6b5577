"""``leve train`` (see ``leve/train/stage.py``) and ``leve bench train``."""

from __future__ import annotations

from pathlib import Path

import typer

from leve.cli import app, bench_app
from leve.cli.bench_io import write_json
from leve.params import PARAMS_FILE, parse_overrides
from leve.progress import console


@app.command("train")
def train(
    sets: list[str] = typer.Option([], "--set", help="Override a param: key=value, e.g. kd.eps=0.25 (repeatable)."),
    params: Path = typer.Option(PARAMS_FILE, "--params", help="Params file (section train)."),
    restart: bool = typer.Option(False, "--restart", help="Start over even if last.pt could be continued."),
    stop_after: int = typer.Option(None, "--stop-after", help="Save and stop after this many steps in all (continue later)."),
) -> None:
    """Distil the student from a store split and its cached teacher (torchrun for several GPUs)."""
    from leve.train import stage

    result = stage.run(parse_overrides(sets), params_file=params, restart=restart, stop_after=stop_after)
    if result.rank == 0:
        console.print(result.summary())


@bench_app.command("train")
def bench_train(
    out: Path = typer.Option(None, help="Also write the JSON here."),
    steps: int = typer.Option(3, help="Timed steps per variant."),
    batch_size: int = typer.Option(8, "--batch-size", help="Student batch size."),
    height: int = typer.Option(240, help="Training height."),
    width: int = typer.Option(320, help="Training width."),
    workers: int = typer.Option(2, help="DataLoader processes for the loader-throughput part."),
    device: str = typer.Option("auto", help="auto | cpu | cuda."),
) -> None:
    """Seconds per training step: plain, KD from the cache, KD with the teacher online; loader rate."""
    from leve.bench.train import run_bench

    result = run_bench(steps=steps, batch_size=batch_size, size=(height, width), workers=workers, device=device)
    write_json(result, out)
