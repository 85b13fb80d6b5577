"""``leve serve``: try a checkpoint in the browser (needs the ``app`` extra); ``leve bench serve``."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import typer

from leve.cli import app, bench_app
from leve.errors import LeveError
from leve.params import PARAMS_FILE, merge_options
from leve.progress import console


@app.command("serve")
def serve(
    checkpoint: Path = typer.Option(None, "--checkpoint", help="A leve checkpoint; none = random weights."),
    model: str = typer.Option(None, "--model", help="Model name without a checkpoint (default leve)."),
    host: str = typer.Option(None, "--host", help="Address to bind (default 127.0.0.1; 0.0.0.0 = every interface)."),
    port: int = typer.Option(None, "--port", help="TCP port (default 8000)."),
    device: str = typer.Option(None, "--device", help="auto, cpu or cuda."),
    runtime: str = typer.Option(None, "--runtime", help="auto (default: onnx on a CPU, else torch), torch "
                                "(batch norm folded, channels-last), compiled, onnx (CPU) or eager."),
    sets: list[str] = typer.Option([], "--set", help="Override a serve param: key=value (repeatable)."),
    params: Path = typer.Option(PARAMS_FILE, "--params", help="Params file (section serve)."),
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


@bench_app.command("serve")
def bench_serve(
    checkpoint: Path = typer.Option(None, "--checkpoint", help="Checkpoint to serve; none = random weights."),
    model: str = typer.Option(None, "--model", help="Model name without a checkpoint (default leve)."),
    device: str = typer.Option(None, "--device", help="auto, cpu or cuda (the server's)."),
    clients: int = typer.Option(16, help="Concurrent uploaders."),
    requests: int = typer.Option(25, help="Uploads per client, back to back."),
    height: int = typer.Option(480, help="Height of the uploaded JPEGs."),
    width: int = typer.Option(640, help="Width of the uploaded JPEGs."),
    slow: int = typer.Option(2, help="Clients trickling one upload each."),
    slow_seconds: float = typer.Option(5.0, "--slow-seconds", help="How long each trickle lasts."),
    oversized: int = typer.Option(2, help="Bodies over the upload limit."),
    malformed: int = typer.Option(5, help="Broken bodies (noise, truncated, empty, GIF, gigapixel header)."),
    idle: int = typer.Option(64, help="Connections that send nothing, held open while --clients upload once each."),
    sets: list[str] = typer.Option([], "--set", help="Override a serve param: key=value (repeatable)."),
    params: Path = typer.Option(PARAMS_FILE, "--params", help="Params file (section serve)."),
    out: Path = typer.Option(None, "--out", help="Also write the JSON here (with every latency)."),
) -> None:
    """Latency (p50/p99), statuses and memory of `leve serve` under load on loopback (JSON out)."""
    from leve.bench.serve import LoadPlan, run

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
