"""``leve pipeline-deps``: each DVC stage's code deps and params, derived from the code
(leve/pipeline/stages.py); ``--check`` compares them with dvc.yaml, ``--write`` rewrites it."""

from __future__ import annotations

from pathlib import Path

import typer

from leve.cli import app
from leve.cli.options import command
from leve.errors import LeveError


@app.command("pipeline-deps", cls=command(no_params=""))
def pipeline_deps(
    check: bool = typer.Option(False, "--check", help="Exit 1 when dvc.yaml's deps/params differ from the derived ones."),
    write: bool = typer.Option(False, "--write", help="Rewrite dvc.yaml's code deps and params (comments kept)."),
    dvc_file: Path = typer.Option(None, "--dvc-file", help="dvc.yaml to check or rewrite (default: the checkout's)."),
) -> None:
    """Print each stage's code deps (its import closure in leve/) and params (its Config's fields)."""
    from leve.pipeline import stages as st

    if check and write:
        raise LeveError("--check and --write exclude each other")
    path = dvc_file or st.DVC_FILE
    if write:
        changed = st.write_dvc_yaml(path)
        typer.echo(f"{path}: rewrote {', '.join(changed)}" if changed else f"{path}: up to date")
        return
    if check:
        diffs = st.differences(path)
        for line in diffs:
            typer.echo(line)
        if diffs:
            raise LeveError(f"{path}: deps/params differ from the code; run `leve pipeline-deps --write`")
        typer.echo(f"{path}: deps and params match the code")
        return
    for name, spec in st.STAGES.items():
        typer.echo(f"{name} ({spec.entry})")
        typer.echo("  deps:   " + "\n          ".join(st.stage_deps(name)))
        typer.echo("  params: " + ("\n          ".join(st.stage_params(name)) or "-"))
