"""``leve serve``: try a checkpoint in the browser (needs the ``app`` extra)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import typer

from leve.cli import app
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
    sets: list[str] = typer.Option([], "--set", help="Override a serve param: key=value (repeatable)."),
    params: Path = typer.Option(PARAMS_FILE, "--params", help="Params file (section serve)."),
) -> None:
    """Serve a web page: upload a photo, see and download its predicted depth."""
    from leve.serve.config import load_config

    options = {"checkpoint": checkpoint, "model": model, "host": host, "port": port, "device": device}
    cfg = load_config(merge_options(sets, options), params)
    uvicorn, create_app = _import_app()
    web = create_app(cfg)
    state = web.state.leve.model
    console.print(f"model {state.name} on {state.device}; checkpoint {state.checkpoint or 'none (random weights)'}")
    if not _is_loopback(cfg.host):
        console.print(f"[yellow]serving on {cfg.host}: anyone who can reach this port can upload images[/]")
    console.print(f"open http://{_url_host(cfg.host)}:{cfg.port}/  (Ctrl+C to stop)")
    uvicorn.run(web, host=cfg.host, port=cfg.port, log_level="warning")


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
