"""``leve predict``, ``leve export``, ``leve model-card`` and ``leve bench model``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from leve.cli import app, bench_app
from leve.cli.options import (
    batch_size_option,
    command,
    device_option,
    from_params,
    params_option,
    resolution_option,
    set_option,
)
from leve.params import merge_options
from leve.progress import console


def _bench(key: str) -> str:
    return from_params(f"bench.model.{key}")


def _split(values: list[str] | None) -> list[str]:
    """Accept repeated options and comma-separated lists alike."""
    return [v for item in values or [] for v in item.split(",") if v]


@app.command("predict", cls=command(no_params="the checkpoint carries its settings"))
def predict(
    inputs: list[Path] = typer.Argument(..., help="Images (JPEG/PNG), videos, or folders of them."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A leve checkpoint (.safetensors or .pt)."),
    out: Path = typer.Option(Path("predictions"), "--out", help="Output folder."),
    depth_format: str = typer.Option("png16", "--depth-format", help="Depth as 'png16' or 'npy': metric depth in mm "
                                     "(<image>_depth16.png) or m (<image>_depth.npy); a relative checkpoint's "
                                     "inverse depth r as round(65535 r) (<image>_disp16.png) or r (<image>_disp.npy)."),
    flip: bool = typer.Option(False, "--flip", help="Average with the prediction on the mirrored image."),
    cmap: str = typer.Option("magma", "--cmap", help="Matplotlib colour map for the preview PNG."),
    device: str = device_option(None),
    runtime: str = typer.Option("auto", "--runtime", help="auto (onnx on the CPU when onnxruntime is installed, "
                                "else torch), torch (batch norm folded, channels-last), compiled (torch.compile), "
                                "onnx (onnxruntime, CPU), openvino (OpenVINO, CPU) or eager, each checked against "
                                "eager; onnx-int8 runs the checkpoint's int8 export <checkpoint>.int8.onnx (leve "
                                "export --format onnx --quantize int8), checked there."),
    every: int = typer.Option(1, "--every", min=1, help="Videos: predict every k-th frame."),
    pointcloud: bool = typer.Option(False, "--pointcloud", help="Also write a coloured PLY point cloud per image "
                                    "(intrinsics: --fx/--fov, --intrinsics STORE, or the image's EXIF focal length)."),
    fx: float = typer.Option(None, "--fx", help="Point cloud: focal length in pixels (x)."),
    fy: float = typer.Option(None, "--fy", help="Point cloud: focal length in pixels (y; default --fx)."),
    cx: float = typer.Option(None, "--cx", help="Point cloud: principal point x in pixels (default the centre)."),
    cy: float = typer.Option(None, "--cy", help="Point cloud: principal point y in pixels (default the centre)."),
    fov: float = typer.Option(None, "--fov", help="Point cloud: horizontal field of view in degrees."),
    intrinsics: Path = typer.Option(None, "--intrinsics", help="Point cloud: a leve store whose recorded "
                                    "intrinsics describe the camera (scaled to each image's size)."),
    scale: float = typer.Option(None, "--scale", help="Metres per unit of a relative-depth checkpoint's depth "
                                "(max_depth/100 / r): the maps are then metric (mm / m) and so is the point cloud."),
) -> None:
    """Predict depth maps: a colour PNG and the depth per image (metric in mm or m; a relative checkpoint's
    scaled inverse depth unless --scale); for a video, per-frame maps, a depth video and its temporal
    stability; with --pointcloud, a PLY per image."""
    from leve.device import resolve_device
    from leve.outputs.intrinsics import CameraOptions
    from leve.outputs.pointcloud import CloudOptions
    from leve.predict import PredictOptions, run_predict
    from leve.store.remote import url_of

    cloud = CloudOptions(CameraOptions(fx, fy, cx, cy, fov, intrinsics), scale) if pointcloud else None
    device = str(resolve_device(device))  # auto: the GPU when torch sees one, else the CPU
    opts = PredictOptions(out_dir=out, depth_format=depth_format, flip=flip, cmap=cmap, device=device, runtime=runtime,
                          every=every, pointcloud=cloud, scale=scale)
    written = run_predict(list(inputs), url_of(checkpoint) or checkpoint, opts)  # a URL: s3://..., not s3:/...
    console.print(f"wrote {len(written)} files to {out}")


@app.command("export", cls=command(no_params=""))
def export(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A leve checkpoint (.safetensors or .pt)."),
    fmt: str = typer.Option("onnx", "--format", help="onnx, torchscript, openvino (an IR: .xml + .bin), hf (a "
                            "Hugging Face layout folder), tflite (LiteRT) or coreml (an ML Program .mlpackage)."),
    out: Path = typer.Option(None, "--out", help="Output file (openvino: the .xml), hf folder or .mlpackage "
                             "(default next to the checkpoint; of a checkpoint at a URL, in the working folder)."),
    resolution: str = resolution_option("Size to trace at (default: the checkpoint's)"),
    opset: int = typer.Option(17, "--opset", help="ONNX opset."),
    metrics: list[Path] = typer.Option([], "--metrics", help="hf: `leve eval` metrics JSON for the card (repeatable)."),
    push: str = typer.Option(None, "--push", help="hf: upload the folder to this Hub repository (owner/name)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="With --push: list what would be uploaded, send nothing."),
    quantize: str = typer.Option(None, "--quantize", help="onnx: int8 (onnxruntime static quantization, QDQ, "
                                 "calibrated on store images; default out <checkpoint>.int8.onnx)."),
    calibration_store: Path = typer.Option(None, "--calibration-store", help="--quantize: the store whose images "
                                           f"calibrate the int8 ranges {_bench('int8_store')}."),
    calibration_split: str = typer.Option(None, "--calibration-split",
                                          help=f"--quantize: its split {_bench('int8_calibration_split')}."),
    calibration_images: int = typer.Option(None, "--calibration-images", min=1, help="--quantize: how many images "
                                           f"(evenly spaced over the split) {_bench('int8_calibration_images')}."),
    accept_noncommercial: bool = typer.Option(False, "--accept-noncommercial", help="Export (or --push) a student "
                                              "of a non-commercial teacher (e.g. CC-BY-NC-4.0), under its terms; "
                                              "refused without."),
) -> None:
    """Export to ONNX (dynamic batch and size; --quantize int8: statically quantized), TorchScript, an OpenVINO
    IR, a Hugging Face folder, LiteRT/TFLite or Core ML (fixed input size), verified against PyTorch (Core ML:
    its features and metadata only, off macOS); the model's lineage (teacher, licence, data) and the
    checkpoint's digest go with it."""
    from leve.bench.model import parse_resolution
    from leve.errors import LeveError
    from leve.export import Calibration, export_checkpoint
    from leve.store.remote import location

    if (push or dry_run) and (fmt != "hf" or not push):
        raise LeveError("--push REPO (and --dry-run with it) needs --format hf")
    if isinstance(location(checkpoint), str):  # at a URL: its checked local copy; the export goes here by default
        from leve.export import SUFFIX
        from leve.models.checkpoint import local_checkpoint

        checkpoint = local_checkpoint(checkpoint)
        suffix = SUFFIX.get(quantize or fmt, ".out")
        out = out or (Path(f"{checkpoint.stem}-hf") if fmt == "hf" else Path(checkpoint.name).with_suffix(suffix))
    size = parse_resolution(resolution) if resolution else None
    calibration = Calibration.from_params(calibration_store, calibration_split, calibration_images)
    result = export_checkpoint(checkpoint, fmt, out, size, opset, tuple(metrics), quantize, calibration,
                               accept_noncommercial)
    console.print(f"wrote {result.path}; " + (f"max abs diff vs PyTorch {result.max_abs_diff:.3g}" if result.checks
                                             else result.note))
    if push:
        from leve.models.hf import push_hf_folder

        files = push_hf_folder(result.path, push, dry_run)
        verb = "would upload" if dry_run else "uploaded"
        console.print(f"{verb} to {push}: {', '.join(files)}", markup=False, highlight=False)
    typer.echo(json.dumps(result.to_dict(), indent=2))


@app.command("model-card", cls=command(no_params=""))
def model_card(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A leve checkpoint (or hf folder)."),
    metrics: list[Path] = typer.Option([], "--metrics", help="`leve eval` metrics JSON to include (repeatable)."),
    out: Path = typer.Option(None, "--out", help="Card path (default MODEL_CARD.md beside the checkpoint)."),
) -> None:
    """(Re)write a checkpoint's model card: architecture, parameters, data, teacher, metrics, licence."""
    from leve.models.card import write_model_card

    console.print(f"wrote {write_model_card(checkpoint, out, metrics)}")


@bench_app.command("model", cls=command({"--batch": "--batch-size"}))
def bench_model(
    models: list[str] = typer.Option(None, "--models", show_default=False,
                                     help=f"Models (repeat or comma-separate; empty: every one) {_bench('models')}."),
    resolution: str = resolution_option("Input size", key="bench.model.resolution"),
    device: str = device_option("bench.model.device", "auto | cpu | cuda"),
    repeats: int = typer.Option(None, "--repeats", help=f"Timed runs per mode {_bench('repeats')}."),
    warmup: int = typer.Option(None, "--warmup", help=f"Untimed runs first {_bench('warmup')}."),
    batch_size: int = batch_size_option("bench.model.batch", "Images per forward pass"),
    modes: list[str] = typer.Option(None, "--modes", show_default=False, help="eager, channels_last, torch, compiled, "
                                    "onnx, onnx-int8 (adds onnx; bench.model.int8_* keys), openvino (eager always) "
                                    f"{_bench('modes')}."),
    compile_models: list[str] = typer.Option(None, "--compile-models", show_default=False,
                                             help=f"Models to time compiled (torch.compile) {_bench('compile_models')}."),
    threads: int = typer.Option(None, "--threads",
                                help=f"torch (and onnxruntime) threads; 0 keeps torch's default {_bench('threads')}."),
    protocol: str = typer.Option(None, "--protocol", help="leve | thesis (the thesis code's timing: its batch, size, "
                                 f"warm-up and run count; FPS = 1 / time per batch) {_bench('protocol')}."),
    out: str = typer.Option(None, "--out", help=f"JSON report path ('' for none) {_bench('out')}."),
    sets: list[str] = set_option("bench.model"),
    params: Path = params_option("bench.model"),
) -> None:
    """Parameters, MACs, latency and FPS of every model variant and runtime side by side (JSON out)."""
    from leve.bench import model as stage

    if device == "auto":  # the library takes cpu or cuda
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    options = {"resolution": resolution, "device": device, "repeats": repeats, "warmup": warmup, "batch": batch_size,
               "out": out, "models": _split(models) or None, "modes": _split(modes) or None,
               "compile_models": _split(compile_models) or None, "threads": threads,
               "protocol": protocol}
    overrides = merge_options(sets, options)
    report = stage.run(overrides, params_file=params, progress=lambda m: console.print(m))
    if "runtimes" in report:  # one table across the modes: ratio to eager and difference from eager
        for line in stage.runtime_lines(report["runtimes"]):
            console.print(line, markup=False, highlight=False)
    typer.echo(json.dumps(report, indent=2))
