"""``leve prepare <dataset>``: build a dataset store (see ``stages/prepare.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from leve.cli import app
from leve.params import PARAMS_FILE, parse_overrides
from leve.progress import console

prepare_app = typer.Typer(help="Build a dataset's Zarr store under data/zarr/.", no_args_is_help=True)
app.add_typer(prepare_app, name="prepare")

SetOpt = typer.Option([], "--set", help="Override a param: key=value (repeatable).")
ForceOpt = typer.Option(False, "--force", help="Rebuild even if an up-to-date store exists.")
ParamsOpt = typer.Option(PARAMS_FILE, "--params", help="Params file (section prepare.<dataset>).")


def run_prepare(dataset: str, options: dict[str, Any], sets: list[str], params: Path, force: bool) -> None:
    """Merge explicit options over --set overrides, run the stage and print its summary."""
    from stages import prepare as stage

    overrides = {**parse_overrides(sets), **{k: v for k, v in options.items() if v is not None}}
    result = stage.run(dataset, overrides, params_file=params, force=force)
    console.print(result.summary())


@prepare_app.command("synthetic")
def synthetic(
    out: Path = typer.Option(None, help="Store path (default data/zarr/synthetic.zarr)."),
    seed: int = typer.Option(None, help="Random seed."),
    workers: int = typer.Option(None, help="Parallel render processes."),
    sets: list[str] = SetOpt,
    params: Path = ParamsOpt,
    force: bool = ForceOpt,
) -> None:
    """Render the seeded procedural RGB-D rooms (exact metric depth)."""
    run_prepare("synthetic", {"out": out, "seed": seed, "workers": workers}, sets, params, force)


@prepare_app.command("nyu")
def nyu(
    source: Path = typer.Option(None, help="nyu_data.zip you already have (skips the download)."),
    test_source: str = typer.Option(None, help="Test split from 'densedepth' (the zip) or 'labeled' (.mat)."),
    labeled_mat: Path = typer.Option(None, help="nyu_depth_v2_labeled.mat you already have."),
    splits_mat: Path = typer.Option(None, help="splits.mat you already have."),
    out: Path = typer.Option(None, help="Store path (default data/zarr/nyu.zarr)."),
    workers: int = typer.Option(None, help="Parallel decode processes."),
    sets: list[str] = SetOpt,
    params: Path = ParamsOpt,
    force: bool = ForceOpt,
) -> None:
    """NYU-Depth V2: train/val from DenseDepth's nyu_data.zip, test from the zip or the labeled .mat."""
    options = {
        "source": source,
        "test_source": test_source,
        "labeled_mat": labeled_mat,
        "splits_mat": splits_mat,
        "out": out,
        "workers": workers,
    }
    run_prepare("nyu", options, sets, params, force)
