"""``leve prepare <dataset>``: build a dataset store (see ``leve/datasets/stage.py``)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import typer
import typer.main

from leve.cli import app
from leve.cli.options import LeveGroup, command, from_params, params_option, set_option
from leve.params import merge_options
from leve.progress import console


class PrepareGroup(LeveGroup):
    """``leve prepare NAME`` for a dataset that is not built in: runs ``prepare.NAME`` of the
    params file through the adapter it names (``adapter: folder``), as dvc.yaml's foreach does."""

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        return super().get_command(ctx, cmd_name) or _named_command(cmd_name)


_named_app = typer.Typer(add_completion=False)


@_named_app.command("NAME", cls=command())
def _named(
    ctx: typer.Context,
    sets: list[str] = set_option("prepare.NAME"),
    params: Path = params_option("prepare.NAME"),
    force: bool = typer.Option(False, "--force", help="Rebuild even if an up-to-date store exists."),
) -> None:
    """Build data/zarr/NAME.zarr from prepare.NAME of the params file."""
    run_prepare(str(ctx.info_name), {}, list(sets), params, force)


def _named_command(name: str) -> Any:
    cmd = copy.copy(typer.main.get_command(_named_app))
    cmd.name = name
    cmd.help = (cmd.help or "").replace("NAME", name)
    cmd.params = [copy.copy(p) for p in cmd.params]
    for param in cmd.params:
        if param.help:
            param.help = param.help.replace("prepare.NAME", f"prepare.{name}")
    return cmd


prepare_app = typer.Typer(
    cls=PrepareGroup,
    help="Build a dataset's Zarr store under data/zarr/. `leve prepare NAME` builds a dataset of your own "
    "declared in params.yaml (prepare.NAME with adapter: folder).",
    no_args_is_help=True,
)
app.add_typer(prepare_app, name="prepare")

ForceOpt = typer.Option(False, "--force", help="Rebuild even if an up-to-date store exists.")


def _out(name: str) -> Any:
    return typer.Option(None, "--out", help=f"Store path {from_params(f'prepare.{name}.out')}; none: data/zarr/{name}.zarr.")


def _folder(key: str) -> str:
    return from_params(f"prepare.NAME.{key}")


def _workers(name: str, what: str) -> Any:
    return typer.Option(None, "--workers", help=f"Parallel {what} processes {from_params(f'prepare.{name}.workers')}.")


def run_prepare(
    dataset: str, options: dict[str, Any], sets: list[str], params: Path, force: bool, adapter: str | None = None
) -> None:
    """Merge explicit options over --set overrides, run the stage and print its summary."""
    from leve.datasets import stage

    overrides = merge_options(sets, options)
    result = stage.run(dataset, overrides, params_file=params, force=force, adapter=adapter)
    console.print(result.summary())


@prepare_app.command("synthetic", cls=command())
def synthetic(
    out: Path = _out("synthetic"),
    seed: int = typer.Option(None, "--seed", help=f"Random seed {from_params('prepare.synthetic.seed')}."),
    workers: int = _workers("synthetic", "render"),
    sets: list[str] = set_option("prepare.synthetic"),
    params: Path = params_option("prepare.synthetic"),
    force: bool = ForceOpt,
) -> None:
    """Render the seeded procedural RGB-D rooms (exact metric depth)."""
    run_prepare("synthetic", {"out": out, "seed": seed, "workers": workers}, sets, params, force)


@prepare_app.command("nyu", cls=command())
def nyu(
    source: Path = typer.Option(None, "--source", help="nyu_data.zip you already have (skips the download) "
                                f"{from_params('prepare.nyu.source')}."),
    test_source: str = typer.Option(None, "--test-source", help="Test split from 'densedepth' (the zip) or 'labeled' "
                                    f"(.mat) {from_params('prepare.nyu.test_source')}."),
    labeled_mat: Path = typer.Option(None, "--labeled-mat", help="nyu_depth_v2_labeled.mat you already have "
                                     f"{from_params('prepare.nyu.labeled_mat')}."),
    splits_mat: Path = typer.Option(None, "--splits-mat",
                                    help=f"splits.mat you already have {from_params('prepare.nyu.splits_mat')}."),
    out: Path = _out("nyu"),
    workers: int = _workers("nyu", "decode"),
    sets: list[str] = set_option("prepare.nyu"),
    params: Path = params_option("prepare.nyu"),
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


@prepare_app.command("kitti", cls=command())
def kitti(
    source: Path = typer.Option(None, "--source", help="Folder with the extracted raw tree or the raw zips (skips the "
                                "download); with --gt guideddecoding, GuidedDecoding's KITTI test zip or folder "
                                f"{from_params('prepare.kitti.source')}."),
    split_file: Path = typer.Option(None, "--split-file", help="Eigen test split file you already have "
                                    f"{from_params('prepare.kitti.split_file')}."),
    gt: str = typer.Option(None, "--gt", help="Ground truth: 'velodyne' (LiDAR projection), 'annotated' (16-bit PNGs) "
                           "or 'guideddecoding' (its prepared test .npz files, the thesis's Table 9.7) "
                           f"{from_params('prepare.kitti.gt')}."),
    annotated_source: Path = typer.Option(None, "--annotated-source", help="data_depth_annotated folder or zip you "
                                          f"already have {from_params('prepare.kitti.annotated_source')}."),
    raw: Path = typer.Option(None, "--raw", help=f"Folder for downloads {from_params('prepare.kitti.raw')}."),
    out: Path = _out("kitti"),
    workers: int = _workers("kitti", "decode"),
    sets: list[str] = set_option("prepare.kitti"),
    params: Path = params_option("prepare.kitti"),
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


@prepare_app.command("endoslam", cls=command())
def endoslam(
    source: Path = typer.Option(None, "--source", help="EndoSLAM archive (zip, nested zips allowed) or folder with "
                                f"UnityCam/ {from_params('prepare.endoslam.source')}."),
    per_organ: int = typer.Option(None, "--per-organ",
                                  help=f"Frames per organ {from_params('prepare.endoslam.per_organ')}."),
    selection: str = typer.Option(None, "--selection", help="Frame rule: 'even' (evenly spaced) or 'first' "
                                  f"{from_params('prepare.endoslam.selection')}."),
    raw: Path = typer.Option(None, "--raw", help="Folder for downloads and unpacked inner zips "
                             f"{from_params('prepare.endoslam.raw')}."),
    out: Path = _out("endoslam"),
    workers: int = _workers("endoslam", "decode"),
    sets: list[str] = set_option("prepare.endoslam"),
    params: Path = params_option("prepare.endoslam"),
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


@prepare_app.command("folder", cls=command({"--split": "--split-rule", "--video-every": "--every"}))
def folder(
    name: str = typer.Argument(..., help="Dataset name: the store is data/zarr/NAME.zarr, its params prepare.NAME."),
    source: Path = typer.Option(None, "--source", help="Folder of images (+ depth maps) and/or videos, searched "
                                f"recursively; or one video {_folder('source')}."),
    pairs_csv: Path = typer.Option(None, "--csv", help="CSV of pairs: header rgb,depth[,split][,scene]; paths "
                                   f"relative to --source {_folder('pairs_csv')}."),
    depth_scale: float = typer.Option(None, "--depth-scale", help="Units per stored depth value (PNG: required; mm: "
                                      f"0.001) {_folder('depth_scale')}."),
    depth: str = typer.Option(None, "--depth", help="auto (pair the depth maps found) or none (images only) "
                              f"{_folder('depth')}."),
    split_rule: str = typer.Option(None, "--split-rule", help="How samples are split: fraction, scenes (whole "
                                   f"sub-folders) or lists {_folder('split')}."),
    sizes: str = typer.Option(None, "--sizes", help="Mixed image sizes in a split: refuse, pad, or HxW (resize to "
                              f"height x width) {_folder('sizes')}."),
    every: int = typer.Option(None, "--every", help=f"Videos: keep every k-th frame {_folder('video_every')}."),
    video_fps: float = typer.Option(None, "--video-fps", help="Videos: keep one frame per 1/fps seconds instead "
                                    f"{_folder('video_fps')}."),
    out: Path = typer.Option(None, "--out", help=f"Store path {_folder('out')}; none: data/zarr/NAME.zarr."),
    workers: int = typer.Option(None, "--workers", help=f"Parallel decode processes {_folder('workers')}."),
    sets: list[str] = set_option("prepare.NAME"),
    params: Path = params_option("prepare.NAME"),
    force: bool = ForceOpt,
) -> None:
    """Your own RGB(-D) folder or video(s): images with optional depth maps, or video frames."""
    options = {
        "source": source,
        "pairs_csv": pairs_csv,
        "depth_scale": depth_scale,
        "depth": depth,
        "split": split_rule,
        "sizes": sizes,
        "video_every": every,
        "video_fps": video_fps,
        "out": out,
        "workers": workers,
    }
    run_prepare(name, options, sets, params, force, adapter="folder")
