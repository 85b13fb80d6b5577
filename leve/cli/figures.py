"""``leve figures``: static PNG figures that open anywhere, offline (``dvc plots show``'s HTML loads
Vega from a CDN and is blank without a network)."""

from __future__ import annotations

from pathlib import Path

import typer

from leve.cli import app
from leve.cli.options import command
from leve.progress import console


@app.command("figures", cls=command(no_params=""))
def figures(
    log_dir: Path = typer.Option(Path("dvclive/train"), "--dvclive", help="DVCLive folder of the training run."),
    out: Path = typer.Option(Path("reports/training_curves.png"), "--out", help="Training curves PNG."),
    title: str = typer.Option("", "--title", help="Figure title (default: the folder and the run's model, "
                              "dataset, KD weight and seed from DVCLive's params.yaml)."),
) -> None:
    """Training curves (losses, learning rate, validation metrics against the step) from DVCLive's
    TSV files as a static PNG. `leve eval` writes the others: reports/<dataset>/examples.png and
    reports/<dataset>/error_vs_depth.png."""
    from leve.report.figures import save_training_curves

    console.print(f"wrote {save_training_curves(log_dir, out, title)}", markup=False, highlight=False)
