"""``leve prepare <dataset>``: build a dataset store (see ``leve/datasets/stage.py``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import typer
from typer.core import TyperGroup

from leve.cli import app
from leve.params import PARAMS_FILE, merge_options
from leve.progress import console


class PrepareGroup(TyperGroup):
    """``leve prepare NAME`` for a dataset that is not built in: runs ``prepare.NAME`` of the
    params file through the adapter it names (``adapter: folder``), as dvc.yaml's foreach does."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, cmd_name) or _named_command(cmd_name)


def _named_command(name: str) -> click.Command:
    def callback(sets: tuple[str, ...], params: Path, force: bool) -> None:
        run_prepare(name, {}, list(sets), params, force)

    return click.Command(
        name,
        callback=callback,
        help=f"Build data/zarr/{name}.zarr from prepare.{name} of the params file.",
        params=[
            click.Option(["--set", "sets"], multiple=True, help="Override a param: key=value (repeatable)."),
            click.Option(["--params"], type=click.Path(path_type=Path), default=PARAMS_FILE, help="Params file."),
            click.Option(["--force"], is_flag=True, help="Rebuild even if an up-to-date store exists."),
        ],
    )


prepare_app = typer.Typer(
    cls=PrepareGroup,
    help="Build a dataset's Zarr store under data/zarr/. `leve prepare NAME` builds a dataset of your own "
    "declared in params.yaml (prepare.NAME with adapter: folder).",
    no_args_is_help=True,
)
app.add_typer(prepare_app, name="prepare")

SetOpt = typer.Option([], "--set", help="Override a param: key=value (repeatable).")
ForceOpt = typer.Option(False, "--force", help="Rebuild even if an up-to-date store exists.")
ParamsOpt = typer.Option(PARAMS_FILE, "--params", help="Params file (section prepare.<dataset>).")


def run_prepare(
    dataset: str, options: dict[str, Any], sets: list[str], params: Path, force: bool, adapter: str | None = None
) -> None:
    """Merge explicit options over --set overrides, run the stage and print its summary."""
    from leve.datasets import stage

    overrides = merge_options(sets, options)
    result = stage.run(dataset, overrides, params_file=params, force=force, adapter=adapter)
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
    source: Path = typer.Option(None, help="Folder with the extracted raw tree or the raw zips (skips the download); "
                                "with --gt guideddecoding, GuidedDecoding's KITTI test zip or folder."),
    split_file: Path = typer.Option(None, help="Eigen test split file you already have (697 lines)."),
    gt: str = typer.Option(None, help="Ground truth: 'velodyne' (LiDAR projection), 'annotated' (16-bit PNGs) or "
                       "'guideddecoding' (its prepared test .npz files, the thesis's Table 9.7)."),
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
    """EndoSLAM UnityCam (Colon, Small Intestine, Stomach): RGB and relative depth (R/255; `--set depth=thesis`:
    R/255 + 1e-6 at every pixel, as the thesis scored it)."""
    options = {
        "source": source,
        "per_organ": per_organ,
        "selection": selection,
        "raw": raw,
        "out": out,
        "workers": workers,
    }
    run_prepare("endoslam", options, sets, params, force)


@prepare_app.command("folder")
def folder(
    name: str = typer.Argument(..., help="Dataset name: the store is data/zarr/NAME.zarr, its params prepare.NAME."),
    source: Path = typer.Option(None, help="Folder of images (+ depth maps) and/or videos, searched recursively; or one video."),
    pairs_csv: Path = typer.Option(
        None, "--csv", help="CSV of pairs: header rgb,depth[,split][,scene]; paths relative to --source."),
    depth_scale: float = typer.Option(None, help="Units per stored depth value (PNG: required, e.g. 0.001 for mm)."),
    depth: str = typer.Option(None, help="auto (pair the depth maps found) or none (images only)."),
    split: str = typer.Option(None, help="Split rule: fraction, scenes (whole sub-folders) or lists."),
    sizes: str = typer.Option(None, help="Mixed image sizes in a split: refuse (default), pad, or HxW (resize)."),
    video_every: int = typer.Option(None, help="Keep every k-th video frame."),
    video_fps: float = typer.Option(None, help="Keep one video frame per 1/fps seconds instead."),
    out: Path = typer.Option(None, help="Store path (default data/zarr/NAME.zarr)."),
    workers: int = typer.Option(None, help="Parallel decode processes."),
    sets: list[str] = SetOpt,
    params: Path = ParamsOpt,
    force: bool = ForceOpt,
) -> None:
    """Your own RGB(-D) folder or video(s): images with optional depth maps, or video frames."""
    options = {
        "source": source,
        "pairs_csv": pairs_csv,
        "depth_scale": depth_scale,
        "depth": depth,
        "split": split,
        "sizes": sizes,
        "video_every": video_every,
        "video_fps": video_fps,
        "out": out,
        "workers": workers,
    }
    run_prepare(name, options, sets, params, force, adapter="folder")
