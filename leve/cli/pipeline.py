"""``leve demo`` (the whole product in one command) and ``leve profile`` (switch params sets)."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from leve.cli import app
from leve.cli.options import command
from leve.params import PARAMS_FILE
from leve.progress import console


@app.command("demo", cls=command(no_params="the workspace gets its own"))
def demo(
    workspace: Path = typer.Argument(Path("leve-demo"), help="Folder to create (or continue)."),
    eps: float | None = typer.Option(None, "--eps", help="kd.eps of the distillation experiment (default: params.yaml's; "
                              "the baseline uses 0)."),
    quiet: bool = typer.Option(False, "--quiet", help="Hide the commands' own output."),
) -> None:
    """Create a git + DVC workspace, run the pipeline on the embedded default without distillation
    (the baseline), then distil the teacher as an experiment, print the metric tables and
    `dvc metrics diff`, and show where the figures are."""
    from leve.pipeline.demo import run_demo

    run_demo(workspace, eps=eps, quiet=quiet)


@app.command("profile", cls=command())
def profile(
    name: str = typer.Argument(..., help="embedded | thesis (files in profiles/)."),
    print_only: bool = typer.Option(False, "--print", help="Print the equivalent `dvc exp run -S ...` instead."),
    params: Path = typer.Option(PARAMS_FILE, "--params", help="Params file to rewrite (no --set: the profile is the change)."),
) -> None:
    """Switch params.yaml to a profile (only the profile's keys change; comments kept)."""
    from leve.pipeline.profiles import apply_profile, dvc_set_args

    if print_only:
        typer.echo(shlex.join(["dvc", "exp", "run", *dvc_set_args(name)]))
        return
    changed = apply_profile(name, params)
    console.print(f"{params}: profile {name}; changed {', '.join(changed) if changed else 'nothing'}")
    console.print("run `dvc status` to see what will rerun, `dvc repro` to run it")
