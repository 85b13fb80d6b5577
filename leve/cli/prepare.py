"""``leve prepare <dataset>``: build a dataset store (see ``leve/datasets/stage.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from leve.cli import app
from leve.params import PARAMS_FILE, merge_options
from leve.progress import console

prepare_app = typer.Typer(help="Build a dataset's Zarr store under data/zarr/.", no_args_is_help=True)
app.add_typer(prepare_app, name="prepare")

SetOpt = typer.Option([], "--set", help="Override a param: key=value (repeatable).")
ForceOpt = typer.Option(False, "--force", help="Rebuild even if an up-to-date store exists.")
ParamsOpt = typer.Option(PARAMS_FILE, "--params", help="Params file (section prepare.<dataset>).")


def run_prepare(dataset: str, options: dict[str, Any], sets: list[str], params: Path, force: bool) -> None:
    """Merge explicit options over --set overrides, run the stage and print its summary."""
    from leve.datasets import stage

    overrides = merge_options(sets, options)
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


@prepare_app.command("kitti")
def kitti(
    source: Path = typer.Option(None, help="Folder with the extracted raw tree or the raw zips (skips the download)."),
    split_file: Path = typer.Option(None, help="Eigen test split file you already have (697 lines)."),
    gt: str = typer.Option(None, help="Ground truth: 'velodyne' (LiDAR projection) or 'annotated' (16-bit PNGs)."),
    annotated_source: Path = typer.Option(None, help="data_depth_annotated folder or zip you already have."),
    raw: Path = typer.Option(None, help="Folder for downloads (default data/raw/kitti)."),
    out: Path = typer.Option(None, help="Store path (default data/zarr/kitti.zarr)."),
    workers: int = typer.Option(None, help="Parallel decode processes."),
    sets: list[str] = SetOpt,
    params: Path = ParamsOpt,
    force: bool = ForceOpt,
) -> None:
    """KITTI Eigen test split (697 frames): left image and LiDAR or annotated depth, metres."""
    options = {
        "source": source,
        "split_file": split_file,
        "gt": gt,
        "annotated_source": annotated_source,
        "raw": raw,
        "out": out,
        "workers": workers,
    }
    run_prepare("kitti", options, sets, params, force)


@prepare_app.command("endoslam")
def endoslam(
    source: Path = typer.Option(None, help="EndoSLAM archive (zip, nested zips allowed) or folder with UnityCam/."),
    per_organ: int = typer.Option(None, help="Frames per organ (default 200)."),
    selection: str = typer.Option(None, help="Frame rule: 'even' (evenly spaced) or 'first'."),
    raw: Path = typer.Option(None, help="Folder for downloads and unpacked inner zips (default data/raw/endoslam)."),
    out: Path = typer.Option(None, help="Store path (default data/zarr/endoslam.zarr)."),
    workers: int = typer.Option(None, help="Parallel decode processes."),
    sets: list[str] = SetOpt,
    params: Path = ParamsOpt,
    force: bool = ForceOpt,
) -> None:
    """EndoSLAM UnityCam (Colon, Small Intestine, Stomach): RGB and relative depth (R/255)."""
    options = {
        "source": source,
        "per_organ": per_organ,
        "selection": selection,
        "raw": raw,
        "out": out,
        "workers": workers,
    }
    run_prepare("endoslam", options, sets, params, force)
