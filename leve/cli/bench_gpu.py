"""``leve bench gpu``: the GPU figures of issue 16 in one JSON (``make gpu-check``)."""

from __future__ import annotations

from pathlib import Path

import typer

from leve.cli import bench_app
from leve.cli.bench_io import write_json
from leve.cli.options import command
from leve.params import merge_options
from leve.progress import console


@bench_app.command("gpu", cls=command(no_params="--set changes the benchmark's own plan"))
def bench_gpu(
    out: Path = typer.Option(None, "--out", help="Also write the JSON here."),
    tiny: bool = typer.Option(False, "--tiny", help="Tiny sizes (seconds on a CPU; what the tests run)."),
    device: str = typer.Option(None, "--device", show_default=False,
                               help="auto | cpu | cuda | cuda:N (default: the plan's device, auto; also --set device=...)."),
    models: str = typer.Option(None, "--models", help="Inference models, comma-separated (default: all)."),
    no_compile: bool = typer.Option(False, "--no-compile", help="Skip the torch.compile timings."),
    sets: list[str] = typer.Option([], "--set", "-S", metavar="KEY=VALUE", help="Override a field of the "
                                   "benchmark's plan (leve/bench/gpu.py Plan; repeatable), e.g. train_sizes=[[H,W]]."),
) -> None:
    """Teacher-cache images/s, student training samples/s (KD ratio, data waits), inference FPS
    (eager vs compiled) and peak GPU memory; minutes on an H200, nothing downloaded."""
    from leve.bench.gpu import plan_from, run_bench

    options = {"device": device, "infer_models": models.split(",") if models else None,
               "compile": False if no_compile else None}
    plan = plan_from(merge_options(sets, options), tiny=tiny)
    write_json(run_bench(plan, progress=lambda m: console.print(m)), out)
