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
    source: str = typer.Option(None, "--source", help="A store in a bucket (s3://bucket/prefix/x.zarr): its loader "
                               "samples/s through the read-through cache / its local copy's, per epoch (--repeats "
                               "epochs, the first reported apart)."),
    cache_bytes: int = typer.Option(None, "--cache-bytes", help="With --source: the read-through cache's bound in "
                                    "bytes; none: twice the store's size."),
    out: Path = typer.Option(None, "--out", help="Also write the JSON here."),
) -> None:
    """Random-access read throughput: store (raw, jpeg) vs decoding the source zip; with --source, a bucket
    store vs its local copy."""
    if source is not None:
        from leve.bench import bucket_io

        write_json(bucket_io.run(source, samples, workers, repeats, cache_bytes=cache_bytes), out)
        return
    from leve.bench import io

    write_json(io.run(samples, workers, repeats, archive, quality=quality), out)
