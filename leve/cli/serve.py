"""``leve serve``: try a checkpoint in the browser (needs the ``app`` extra); ``leve bench serve``."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import typer

from leve.cli import app, bench_app
from leve.cli.options import (
    command,
    device_option,
    from_params,
    params_option,
    parse_size,
    resolution_option,
    set_option,
    size_text,
)
from leve.errors import LeveError
from leve.params import merge_options
from leve.progress import console

UPLOAD_SIZE = (480, 640)  # bench serve's default upload size (height, width)


def _serve(key: str) -> str:
    return from_params(f"serve.{key}")


@app.command("serve", cls=command())
def serve(
    checkpoint: Path = typer.Option(None, "--checkpoint",
                                    help=f"A leve checkpoint; none = random weights {_serve('checkpoint')}."),
    model: str = typer.Option(None, "--model", help=f"Model name without a checkpoint {_serve('model')}."),
    host: str = typer.Option(None, "--host", help=f"Address to bind {_serve('host')}; 0.0.0.0 = every interface."),
    port: int = typer.Option(None, "--port", help=f"TCP port {_serve('port')}."),
    device: str = device_option("serve.device"),
    runtime: str = typer.Option(None, "--runtime", help="auto (onnx on a CPU, else torch) | torch (batch norm folded, "
                                "channels-last) | compiled | onnx (CPU) | openvino (CPU) | onnx-int8 (the checkpoint's "
                                f"int8 export, leve export --quantize int8) | eager {_serve('runtime')}."),
    sets: list[str] = set_option("serve"),
    params: Path = params_option("serve"),
) -> None:
    """Serve a web page: upload a photo, see and download its predicted depth."""
    from leve.serve.config import load_config

    options = {"checkpoint": checkpoint, "model": model, "host": host, "port": port, "device": device,
               "runtime": runtime}
    cfg = load_config(merge_options(sets, options), params)
    uvicorn, create_app = _import_app()
    web = create_app(cfg)
    state = web.state.leve.model
    console.print(f"model {state.name} on {state.device} (runtime {getattr(state.model, 'runtime', cfg.runtime)}); "
                  f"checkpoint {state.checkpoint or 'none (random weights)'}")
    if state.depth_kind == "relative":
        console.print("relative depth (distilled without depth): the page shows near = bright, no metres")
    if not _is_loopback(cfg.host):
        console.print(f"[yellow]serving on {cfg.host}: anyone who can reach this port can upload images[/]")
    console.print(f"open http://{_url_host(cfg.host)}:{cfg.port}/  (Ctrl+C to stop)")
    from leve.serve.server import uvicorn_options

    uvicorn.run(web, host=cfg.host, port=cfg.port, **uvicorn_options(cfg))


def _import_app():
    try:
        import uvicorn

        from leve.serve.app import create_app
    except ImportError as exc:
        raise LeveError(f"leve serve needs the app extra ({exc.name} missing): pip install 'leve[app]'") from exc
    return uvicorn, create_app


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::"):
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


@bench_app.command("serve", cls=command(size_fallback=UPLOAD_SIZE))
def bench_serve(
    checkpoint: Path = typer.Option(None, "--checkpoint",
                                    help=f"Checkpoint to serve; none = random weights {_serve('checkpoint')}."),
    model: str = typer.Option(None, "--model", help=f"Model name without a checkpoint {_serve('model')}."),
    device: str = device_option("serve.device"),
    clients: int = typer.Option(16, "--clients", help="Concurrent uploaders."),
    requests: int = typer.Option(25, "--requests", help="Uploads per client, back to back."),
    resolution: str = resolution_option("Size of the uploaded JPEGs", default=size_text(UPLOAD_SIZE)),
    slow: int = typer.Option(2, "--slow", help="Clients trickling one upload each."),
    slow_seconds: float = typer.Option(5.0, "--slow-seconds", help="How long each trickle lasts."),
    oversized: int = typer.Option(2, "--oversized", help="Bodies over the upload limit."),
    malformed: int = typer.Option(5, "--malformed", help="Broken bodies (noise, truncated, empty, GIF, gigapixel header)."),
    idle: int = typer.Option(64, "--idle", help="Connections that send nothing, held open while --clients upload once each."),
    sets: list[str] = set_option("serve"),
    params: Path = params_option("serve"),
    out: Path = typer.Option(None, "--out", help="Also write the JSON here (with every latency)."),
) -> None:
    """Latency (p50/p99), statuses and memory of `leve serve` under load on loopback (JSON out)."""
    from leve.bench.serve import LoadPlan, run

    height, width = parse_size(resolution)
    plan = LoadPlan(clients, requests, height, width, slow, slow_seconds, oversized, malformed, idle=idle)
    if min(clients, requests, height, width) < 1 or min(slow, oversized, malformed, idle) < 0 or slow_seconds < 0:
        raise LeveError("bench serve: counts and sizes must be positive")
    args = ["--params", str(params), "--set", "samples=0"]
    for key, value in (("--checkpoint", checkpoint), ("--model", model), ("--device", device)):
        if value is not None:
            args += [key, str(value)]
    for item in sets:
        args += ["--set", item]
    report = run(plan, args, progress=lambda m: console.print(m))
    text = json.dumps(report, indent=2)
    if out is not None:
        from leve.atomic import write_text

        write_text(out, text + "\n")
        console.print(f"wrote {out}")
    shown = {**report, "predict": {k: v for k, v in report["predict"].items() if k != "latencies_ms"}}
    typer.echo(json.dumps(shown, indent=2))
