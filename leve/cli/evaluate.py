"""``leve eval``: score a checkpoint on a dataset split (see ``leve/evaluation/stage.py``)."""

from __future__ import annotations

from pathlib import Path

import typer

from leve.cli import app
from leve.params import PARAMS_FILE, merge_options


@app.command("eval")
def eval_command(
    dataset: str = typer.Option("synthetic", help="Dataset store data/zarr/<dataset>.zarr."),
    checkpoint: Path = typer.Option(None, help="Checkpoint (default params eval.checkpoint: models/student/best.pt)."),
    protocol: str = typer.Option(None, help="leve2024 (the thesis) | standard (the literature) | densedepth "
                                             "(DenseDepth's own evaluation: flip-averaged, metrics pooled over pixels)."),
    split: str = typer.Option(None, help="Split to score (default test)."),
    crop: str = typer.Option(None, help="Crop name (nyu: leve2024|eigen|full; kitti: leve2024|garg|eigen|full)."),
    align: str = typer.Option(None, help="standard: none | median | median_disparity (monodepth2) | lstsq "
                                         "(disparity scale >= 0 and shift)."),
    flip: bool = typer.Option(None, "--flip/--no-flip", help="standard: average with the flipped prediction."),
    aggregation: str = typer.Option(None, help="Over the split: per_image (means) | per_image_mse (RMSE as the "
                                               "thesis's eq. 8.1) | pooled (every pixel) (default: the protocol's)."),
    batch_size: int = typer.Option(None, "--batch-size", help="Images per forward pass."),
    device: str = typer.Option(None, help="auto | cpu | cuda | cuda:N."),
    teacher: bool = typer.Option(None, "--teacher/--no-teacher", help="Add teacher rows from the teacher cache."),
    sets: list[str] = typer.Option([], "--set", help="Override a param: key=value (repeatable)."),
    params: Path = typer.Option(PARAMS_FILE, "--params", help="Params file (section eval)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    out: Path = typer.Option(None, "--out", help="Write DIR/metrics/<dataset>.json and DIR/reports/<dataset>/ "
                                                  "instead of the params' metrics_dir and reports_dir."),
) -> None:
    """Evaluate a checkpoint: metrics/<dataset>.json and reports/<dataset>/ (tables, per-image CSV, grid,
    MODEL_CARD.md).

    The pipeline's metrics/ and reports/ hold the params' eval.checkpoint only: another --checkpoint
    writes to evals/<checkpoint path, '-' for '/'>/metrics/ and .../reports/ (printed), or to --out DIR;
    an --out inside the pipeline's folders is then refused. All outputs of a run are replaced together
    once all are written; a second eval on the same outputs is refused while one runs."""
    from leve.evaluation import stage

    options = {"checkpoint": checkpoint, "protocol": protocol, "split": split, "crop": crop, "align": align,
               "flip": flip, "aggregation": aggregation, "batch_size": batch_size, "device": device, "teacher": teacher}
    overrides = merge_options(sets, options)
    stage.run(dataset, overrides, params_file=params, show_progress=not quiet, out=out)
