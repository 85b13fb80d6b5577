"""``leve bench io``: store vs source-archive read throughput and bytes (JSON out)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from leve.cli import bench_app
from leve.cli.options import command
from leve.progress import console


def write_json(result: dict, out: Path | None) -> None:
    """Print the JSON and, with ``--out``, write it to a file too."""
    text = json.dumps(result, indent=2)
    typer.echo(text)
    if out is not None:
        from leve.atomic import write_text

        write_text(out, text + "\n")
        console.print(f"wrote {out}")


@bench_app.command("io", cls=command(no_params=""))
def bench_io(
    samples: int = typer.Option(48, "--samples", help="Samples to read (the synthetic archive is built with this many)."),
    workers: int = typer.Option(2, "--workers", help="DataLoader workers."),
    repeats: int = typer.Option(2, "--repeats", help="Passes over the samples."),
    archive: Path = typer.Option(None, "--archive", help="A real nyu_data.zip to measure instead of a synthetic one."),
    quality: int = typer.Option(90, "--quality", help="JPEG quality of the synthetic archive."),
    out: Path = typer.Option(None, "--out", help="Also write the JSON here."),
) -> None:
    """Random-access read throughput: store (raw, jpeg) vs decoding the source zip."""
    from leve.bench import io

    write_json(io.run(samples, workers, repeats, archive, quality=quality), out)
