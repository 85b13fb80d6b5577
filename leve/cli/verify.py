"""``leve verify PATH``: check every chunk of a dataset store or a teacher cache."""

from __future__ import annotations

import time

import typer

from leve.cli import app
from leve.cli.options import command
from leve.errors import LeveError
from leve.progress import progress_bar


@app.command("verify", cls=command(no_params=""))
def verify(
    path: str = typer.Argument(..., help="A dataset store (data/zarr/NAME.zarr) or a teacher cache (data/teacher/NAME.zarr); "
                               "a path or an fsspec URL."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
) -> None:
    """Check every chunk of every array of every split against its crc32c, and that every chunk written at
    publish is there. Prints the bad chunks one per line and exits with status 1 when any is bad."""
    from leve.store.integrity import rebuild_hint, verify_store

    start = time.perf_counter()
    with progress_bar(not quiet) as bar:
        bad, counts = verify_store(path, bar)
    seconds = time.perf_counter() - start
    for problem in bad:
        typer.echo(f"{path}: {problem.line()}")
    if bad:
        splits = {p.array.split("/", 1)[0] for p in bad} - {""}
        raise LeveError(f"{path}: {len(bad)} damaged or missing part(s), listed above; rebuild it with "
                        f"{rebuild_hint(path, splits)}")
    mb = counts["bytes"] / 1e6
    typer.echo(f"{path}: every chunk of {counts['arrays']} arrays ({counts['chunk_files']} files, {mb:.1f} MB) is there "
               f"and matches its checksum; {seconds:.2f} s ({mb / max(seconds, 1e-9):.0f} MB/s)")
