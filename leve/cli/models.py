"""``leve predict``, ``leve export`` and ``leve bench model``."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from leve.cli import app, bench_app
from leve.params import PARAMS_FILE, merge_options
from leve.progress import console


def _split(values: list[str] | None) -> list[str]:
    """Accept repeated options and comma-separated lists alike."""
    return [v for item in values or [] for v in item.split(",") if v]


@app.command("predict")
def predict(
    inputs: list[Path] = typer.Argument(..., help="Images (JPEG/PNG) or folders of images."),
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A leve checkpoint (.safetensors or .pt)."),
    out: Path = typer.Option(Path("predictions"), "--out", help="Output folder."),
    depth_format: str = typer.Option("png16", "--depth-format", help="Metric depth as 'png16' (mm) or 'npy' (m)."),
    flip: bool = typer.Option(False, "--flip", help="Average with the prediction on the mirrored image."),
    cmap: str = typer.Option("magma", "--cmap", help="Matplotlib colour map for the preview PNG."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
) -> None:
    """Predict depth maps: a colour PNG and the metric depth per image."""
    from leve.predict import PredictOptions, run_predict

    opts = PredictOptions(out_dir=out, depth_format=depth_format, flip=flip, cmap=cmap, device=device)
    written = run_predict(list(inputs), checkpoint, opts)
    console.print(f"wrote {len(written)} files for {len(written) // 2} images to {out}")


@app.command("export")
def export(
    checkpoint: Path = typer.Option(..., "--checkpoint", help="A leve checkpoint (.safetensors or .pt)."),
    fmt: str = typer.Option("onnx", "--format", help="onnx or torchscript."),
    out: Path = typer.Option(None, "--out", help="Output file (default next to the checkpoint)."),
    resolution: str = typer.Option(None, "--resolution", help="HxW to trace at (default: the checkpoint's)."),
    opset: int = typer.Option(17, "--opset", help="ONNX opset."),
) -> None:
    """Export to ONNX (dynamic batch and size) or TorchScript, verified against PyTorch."""
    from leve.bench.model import parse_resolution
    from leve.export import export_checkpoint

    size = parse_resolution(resolution) if resolution else None
    result = export_checkpoint(checkpoint, fmt, out, size, opset)
    console.print(f"wrote {result.path}; max abs diff vs PyTorch {result.max_abs_diff:.3g}")
    typer.echo(json.dumps(result.to_dict(), indent=2))


@bench_app.command("model")
def bench_model(
    models: list[str] = typer.Option(None, "--models", help="Models (repeat or comma-separate; default all)."),
    resolution: str = typer.Option(None, "--resolution", help="HxW, e.g. 480x640."),
    device: str = typer.Option(None, "--device", help="cpu or cuda."),
    repeats: int = typer.Option(None, "--repeats", help="Timed runs per mode."),
    warmup: int = typer.Option(None, "--warmup", help="Untimed runs first."),
    batch: int = typer.Option(None, "--batch", help="Batch size (default 1)."),
    modes: list[str] = typer.Option(None, "--modes", help="eager, channels_last, compile."),
    compile_models: list[str] = typer.Option(None, "--compile-models", help="Models to time with torch.compile."),
    out: str = typer.Option(None, "--out", help="JSON report path ('' for none)."),
    sets: list[str] = typer.Option([], "--set", help="Override a param: key=value (repeatable)."),
    params: Path = typer.Option(PARAMS_FILE, "--params", help="Params file (section bench.model)."),
) -> None:
    """Parameters, MACs, latency and FPS of every model variant side by side (JSON out)."""
    from leve.bench import model as stage

    options = {"resolution": resolution, "device": device, "repeats": repeats, "warmup": warmup, "batch": batch,
               "out": out, "models": _split(models) or None, "modes": _split(modes) or None,
               "compile_models": _split(compile_models) or None}
    overrides = merge_options(sets, options)
    report = stage.run(overrides, params_file=params, progress=lambda m: console.print(m))
    typer.echo(json.dumps(report, indent=2))
