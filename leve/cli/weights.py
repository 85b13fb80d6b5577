"""``leve weights fetch NAME`` and ``leve weights list``: pretrained checkpoints in data/raw/weights/."""

from __future__ import annotations

from pathlib import Path

import typer

from leve.cli import app
from leve.cli.options import LeveGroup, command
from leve.progress import console

weights_app = typer.Typer(help="Pretrained weight files (encoders, DDRNet-23-slim).", no_args_is_help=True,
                          cls=LeveGroup)
app.add_typer(weights_app, name="weights")

OUT_HELP = "Folder for weight files (default data/raw/weights)."
RENAMED = {"--dest": "--out"}


@weights_app.command("fetch", cls=command(RENAMED, no_params=""))
def fetch(
    name: str = typer.Argument(..., help="Entry of 'leve weights list' (or its file name)."),
    source: Path = typer.Option(None, "--source", help="A copy you already have: verified, then linked or copied."),
    out: Path = typer.Option(None, "--out", help=OUT_HELP),
    url: str = typer.Option(None, "--url", help="Download from this mirror instead (same sha256 check)."),
) -> None:
    """Download (with resume) or install a checkpoint, checking its sha256; prints its path."""
    from leve.sources.weights import DEFAULT_DEST, fetch_weights

    path = fetch_weights(name, out or DEFAULT_DEST, source=source, url=url)
    console.print(f"{name}: {path} verified")
    typer.echo(str(path))


@weights_app.command("list", cls=command(RENAMED, no_params=""))
def list_(out: Path = typer.Option(None, "--out", help=OUT_HELP)) -> None:
    """Name, file, URL (or 'manual'), licence and whether the file is present locally."""
    from leve.sources.weights import DEFAULT_DEST, list_weights

    folder = out or DEFAULT_DEST
    rows = [("name", "file", "url", "licence", "present")]
    rows += [(s.name, s.file, s.url or "manual", s.licence, "yes" if (folder / s.file).is_file() else "no")
             for s in list_weights()]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1])
