"""``leve eval``: score a checkpoint on a dataset split (see ``leve/evaluation/stage.py``)."""

from __future__ import annotations

from pathlib import Path

import typer

from leve.cli import app
from leve.cli.options import (
    batch_size_option,
    command,
    dataset_option,
    default_dataset,
    device_option,
    from_params,
    params_option,
    set_option,
)
from leve.params import merge_options


def _eval(key: str) -> str:
    return from_params(f"eval.{key}")


@app.command("eval", cls=command())
def eval_command(
    dataset: str = dataset_option("Dataset to score"),
    checkpoint: Path = typer.Option(None, "--checkpoint", help=f"Checkpoint {_eval('checkpoint')}."),
    protocol: str = typer.Option(None, "--protocol", help="leve2024 (the thesis) | standard (the literature) | "
                                 "densedepth (DenseDepth's own evaluation: flip-averaged, metrics pooled over pixels) "
                                 f"{_eval('protocol')}."),
    split: str = typer.Option(None, "--split", help=f"Split to score {_eval('split')}."),
    crop: str = typer.Option(None, "--crop", help="Crop name (nyu: leve2024|eigen|full; kitti: leve2024|garg|eigen|full) "
                             f"{_eval('crop')}; none: the protocol's."),
    align: str = typer.Option(None, "--align", help="standard: none | median | median_disparity (monodepth2) | lstsq "
                              f"(disparity scale and shift) {_eval('align')}."),
    flip: bool = typer.Option(None, "--flip/--no-flip", show_default=False,
                              help=f"standard: average with the flipped prediction {_eval('flip')}."),
    aggregation: str = typer.Option(None, "--aggregation", help="Over the split: per_image (means) | per_image_mse "
                                    "(RMSE as the thesis's eq. 8.1) | pooled (every pixel) "
                                    f"{_eval('aggregation')}; none: the protocol's."),
    batch_size: int = batch_size_option("eval.batch_size"),
    device: str = device_option("eval.device"),
    teacher: bool = typer.Option(None, "--teacher/--no-teacher", show_default=False,
                                 help=f"Add teacher rows from the teacher cache {_eval('teacher')}."),
    sets: list[str] = set_option("eval"),
    params: Path = params_option("eval"),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    out: Path = typer.Option(None, "--out", help="Write DIR/metrics/<dataset>.json and DIR/reports/<dataset>/ "
                             f"instead of {_eval('metrics_dir')} and {_eval('reports_dir')}."),
) -> None:
    """Evaluate a checkpoint: metrics/<dataset>.json and reports/<dataset>/ (tables, per-image CSV, grid,
    MODEL_CARD.md).

    The pipeline's metrics/ and reports/ hold the params' eval.checkpoint only: another --checkpoint
    writes to evals/<checkpoint path, '-' for '/'>/metrics/ and .../reports/ (printed), or to --out DIR;
    an --out inside the pipeline's folders is then refused. All outputs of a run are replaced together
    once all are written; a second eval on the same outputs is refused while one runs.

    A key of params eval.datasets.<dataset> overrides the same key of eval for that dataset."""
    from leve.evaluation import stage

    options = {"checkpoint": checkpoint, "protocol": protocol, "split": split, "crop": crop, "align": align,
               "flip": flip, "aggregation": aggregation, "batch_size": batch_size, "device": device, "teacher": teacher}
    overrides = merge_options(sets, options)
    stage.run(dataset or default_dataset(params), overrides, params_file=params, show_progress=not quiet, out=out)
