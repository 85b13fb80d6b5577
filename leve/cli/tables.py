"""``leve tables`` (stage ``tables``): the combined evaluation tables of every ``metrics/*.json``."""

from __future__ import annotations

from pathlib import Path

import typer

from leve.cli import app
from leve.cli.options import command
from leve.progress import console


@app.command("tables", cls=command(no_params=""))
def tables_command(
    metrics_dir: Path = typer.Option(Path("metrics"), "--metrics", help="Folder of the eval metrics JSON files."),
    reports_dir: Path = typer.Option(Path("reports"), "--reports", help="Folder of metrics.md and metrics.csv."),
) -> None:
    """One table of every evaluated dataset: reports/metrics.md and reports/metrics.csv."""
    from leve.report.metrics import combined_tables

    md, csv = combined_tables(metrics_dir, reports_dir)
    console.print(f"wrote {md} and {csv}")
