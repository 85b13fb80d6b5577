"""``leve report`` (thesis tables from DVC experiments) and ``leve experiments queue`` (the grid)."""

from __future__ import annotations

from pathlib import Path

import typer

from leve.cli import app
from leve.cli.options import LeveGroup, command
from leve.errors import LeveError

experiments_app = typer.Typer(help="The thesis experiment grid as DVC experiments.", no_args_is_help=True,
                              cls=LeveGroup)
app.add_typer(experiments_app, name="experiments")


@app.command("report", cls=command(no_params="each run's params come with its metrics"))
def report_command(
    repo: Path = typer.Option(Path("."), "--repo", help="The DVC project (its experiments, as `dvc exp show --json`)."),
    from_json: Path = typer.Option(None, "--from-json", help="Read a saved `dvc exp show --json` output instead."),
    all_commits: bool = typer.Option(False, "--all-commits", help="Experiments of every commit, not only HEAD."),
    workspace: bool = typer.Option(False, "--workspace", help="Add the workspace's results (unless an experiment has them)."),
    dataset: str = typer.Option(None, help="Test set of Tables 9.1-9.4 and Table I (default: the training dataset)."),
    out_md: Path = typer.Option(Path("reports/experiments.md"), "--md", help="Markdown output (under --repo)."),
    out_csv: Path = typer.Option(Path("reports/experiments.csv"), "--csv", help="CSV output (under --repo)."),
) -> None:
    """Thesis Tables 9.1-9.8 and seed 002's Table I from the DVC experiments' metrics (the workspace when
    there are none), the published figures beside the runs."""
    from leve.report import experiments as ex
    from leve.report.tables import write_csv, write_text

    payload = ex.load_exp_show_file(from_json) if from_json else ex.exp_show_json(repo, all_commits)
    records = ex.parse_exp_show(payload)
    chosen = ex.select_records(records, workspace)
    tables = ex.build_tables(chosen, dataset)
    source = str(from_json) if from_json else "`dvc exp show --json`" + (" --all-commits" if all_commits else "")
    text = ex.markdown(tables, ex.pending(records), source)
    md, csv = write_text(repo / out_md, text), write_csv(repo / out_csv, ex.csv_rows(tables), ex.CSV_FIELDS)
    typer.echo(text)
    typer.echo(f"wrote {md} and {csv} ({len(chosen)} runs, {len(tables)} tables)")


@experiments_app.command("queue", cls=command(no_params="each experiment runs on the DVC project's, with the grid's -S"))
def queue_command(
    grid_name: str = typer.Option("all", "--grid", help="kd (ε 0/0.10/0.25/0.50) | lcb | skips | encoders | all."),
    sets: list[str] = typer.Option([], "--set", "-S", metavar="KEY=VALUE", help="Extra param for every experiment: "
                                   "section.key=value, as `dvc exp run -S` takes it (repeatable)."),
    targets: list[str] = typer.Option([], "--target", help="dvc stages to reproduce (default: the whole pipeline)."),
    prefix: str = typer.Option("", help="Prefix of the experiment names (run the grid again under new names)."),
    seeds: int = typer.Option(0, "--seeds", min=0, help="Run each configuration with seeds train.seed=0..N-1 "
                                                         "(names <name>-seed<k>); `leve report` shows mean ± sd "
                                                         "and the 95 % interval over them (0: the params' seed)."),
    run: bool = typer.Option(False, "--run", help="Then run the queue in the foreground (dvc exp run --run-all)."),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, help="Experiments run in parallel by --run."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the dvc commands, run nothing."),
    repo: Path = typer.Option(Path("."), "--repo", help="The DVC project."),
) -> None:
    """Queue the thesis grid: one `dvc exp run --queue` per configuration (and seed), then compare with
    `leve report`."""
    from leve.experiments import grid as g

    if seeds and any(item.partition("=")[0].strip() == g.SEED_PARAM for item in sets):
        raise LeveError(f"--set {g.SEED_PARAM}=... conflicts with --seeds {seeds}; use one of them")
    points = g.grid(grid_name, g.metric_teacher(repo / "params.yaml", sets))  # kd.loss metric points: a metric teacher
    commands = g.queue_commands(g.with_seeds(points, seeds), sets, targets, prefix)
    if run:
        commands.append(g.run_command(jobs))
    if dry_run:
        typer.echo("\n".join(g.format_command(c) for c in commands))
        return
    g.check_dvc_repo(repo)
    for cmd in commands:
        typer.echo(f"$ {g.format_command(cmd)}", err=True)
        g.run_dvc(cmd, repo)
    if not run:
        typer.echo("queued; run them with `dvc exp run --run-all` (foreground) or `dvc queue start` (background), "
                   "then `leve report`", err=True)


@experiments_app.command("list", cls=command(no_params=""))
def list_command(grid_name: str = typer.Option("all", "--grid", help="kd | lcb | skips | encoders | all.")) -> None:
    """The grid's experiments and the params each sets."""
    from leve.experiments import grid as g

    for point in g.grid(grid_name, g.metric_teacher(Path("params.yaml"))):
        typer.echo(f"{point.name}: " + " ".join(f"{k}={v}" for k, v in point.params))
