"""The ``leve`` command line. Each sub-module adds its commands to :data:`app`."""

from __future__ import annotations

import os
import sys

import typer

from leve import __version__
from leve.cli.options import LeveGroup
from leve.errors import LeveError
from leve.processes import die_with_parent, end_with_driver, under_torchrun

# The command line's, not the library's (importing leve changes no environment): read by torch's OpenMP
# runtime when torch loads, so it is set here, before the command modules below (the imports above load
# no torch; tests/test_import_side_effects.py checks it is set when torch loads): idle OpenMP threads
# sleep at once instead of spinning. On a CPU shared with other processes (DataLoader workers, dvc, other
# jobs) spinning threads starve the thread that each parallel region waits for: on this 2-core machine
# under load a training step at 120x160 took 13-22 s with the default policy and 2.1 s with PASSIVE
# (1.6-2.5 s on one thread). Set the variable to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

app = typer.Typer(
    name="leve",
    help="Knowledge distillation for lightweight monocular depth estimation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    cls=LeveGroup,
)
bench_app = typer.Typer(help="Benchmarks (JSON out).", no_args_is_help=True, cls=LeveGroup)
app.add_typer(bench_app, name="bench")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"leve {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """leve: prepare data, cache the teacher, distil, evaluate."""


# Command modules register themselves on import.
from leve.cli import (  # noqa: E402,F401
    bench_gpu,
    bench_io,
    evaluate,
    figures,
    info,
    models,
    pipeline,
    pipeline_deps,
    prepare,
    report,
    serve,
    tables,
    teacher,
    train,
    verify,
    weights,
)


def main() -> None:
    """Console entry point: user errors become one line on stderr and exit status 1. The command
    ends with the process that started it (a killed ``dvc repro`` or ``leve demo`` leaves no stage
    running; ``nohup``/``setsid``/``LEVE_KEEP_ALIVE=1`` opt out: :func:`leve.processes.end_with_driver`)."""
    if under_torchrun():  # a torchrun worker ends with torchrun, even one killed by SIGKILL
        die_with_parent()
    else:
        end_with_driver()
    try:
        app()
    except LeveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to continue", file=sys.stderr)
        sys.exit(130)
