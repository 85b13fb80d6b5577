"""``leve info PATH``: what a store holds."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.table import Table

from leve.cli import app
from leve.cli.options import command
from leve.progress import console


@app.command("info", cls=command(no_params=""))
def info(
    path: str = typer.Argument(..., help="Store path or URL (e.g. data/zarr/nyu.zarr)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Show a store's splits, shapes, dtypes, units, attributes and size on disk."""
    from leve.store.info import store_info  # here, not at the top: zarr and pandas took 0.49 s of every command's start

    data = store_info(path)
    if as_json:
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    a = data["attrs"]
    status = "[green]complete[/]" if data["complete"] else "[red]incomplete[/]"
    console.print(f"[bold]{path}[/]  {status}  dataset={a.get('dataset')}  units={a.get('units')}  "
                  f"max_depth={a.get('max_depth')}  leve={a.get('leve_version')}")
    if "bytes" in data:
        console.print(f"size on disk: {data['bytes'] / 1e6:.1f} MB in {data['files']} files")
    table = Table("split", "samples", "array", "shape", "dtype", "meta")
    for name, s in data["splits"].items():
        for i, (arr, d) in enumerate(s["arrays"].items()):
            table.add_row(name if i == 0 else "", str(s["length"]) if i == 0 else "", arr,
                          "×".join(map(str, d["shape"])), d["dtype"], ", ".join(s["meta"]) if i == 0 else "")
    console.print(table)
    skip = {"sources", "params"}
    for k, v in a.items():
        if k not in skip:
            console.print(f"  {k}: {json.dumps(v, default=str)}")
    for k in skip & a.keys():
        console.print(f"  {k}: {json.dumps(a[k], default=str)}")


@app.command("preview", cls=command(no_params=""))
def preview(
    path: str = typer.Argument(..., help="Store path (e.g. data/zarr/synthetic.zarr)."),
    split: str = typer.Option("train", "--split", help="Split to show."),
    count: int = typer.Option(8, "--count", help="Number of samples (evenly spaced)."),
    columns: int = typer.Option(2, "--columns", help="Samples per row."),
    out: Path = typer.Option(Path("reports/preview.png"), "--out", help="PNG to write."),
) -> None:
    """Write a picture grid: RGB beside colour-mapped depth (fixed scale from zero to the store's max depth)."""
    from leve.report.preview import save_grid

    console.print(f"wrote {save_grid(path, split, out, count, columns)}")
