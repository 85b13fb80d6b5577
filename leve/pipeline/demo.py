"""``leve demo [DIR]``: from nothing to a metric table, figures and a metrics diff.

Creates a workspace (a copy of the pipeline: dvc.yaml, params.yaml, profiles/ and
the leve package it tracks as dependencies), makes it a git + DVC repository (offline,
analytics off), and tells the story of distillation where it matters, on the embedded default
(few labelled images, many unlabelled, the embedded teacher): the baseline is the pipeline
without distillation (``train.kd.eps: 0`` in the workspace's params.yaml; the student sees
the depth of ``train.labels.fraction`` of the training images and nothing else), committed;
the experiment distils the teacher cache on every training image (``dvc exp run -S
train.kd.eps=E``, E the embedded default's). Then it prints ``leve report`` (with the
aligned teacher row), ``dvc metrics diff`` between the two and the figures. Rerunning
continues: DVC skips what is up to date. Killed, by SIGKILL too, it leaves nothing running: each
command runs under a guard that kills the command's whole tree when the demo dies
(:func:`leve.processes.guard`).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import leve
from leve.errors import LeveError
from leve.processes import guarded
from leve.progress import console

MARKER = ".leve-demo"
COPY = ["dvc.yaml", "params.yaml", "profiles", "leve", ".gitignore", ".dvcignore"]


def source_root() -> Path:
    """The checkout leve runs from (it holds dvc.yaml and params.yaml)."""
    root = Path(leve.__file__).resolve().parents[1]
    if not (root / "dvc.yaml").is_file() or not (root / "profiles").is_dir():
        raise LeveError(f"{root}: no dvc.yaml beside the leve package; `leve demo` runs from a source checkout "
                        "(git clone the project and `pip install -e .`)")
    return root


@dataclass
class Demo:
    """A demo workspace and the commands run in it."""

    workspace: Path
    quiet: bool = False
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        bin_dir = str(Path(sys.executable).parent)
        return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
                "PYTHONPATH": str(self.workspace), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
                "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "leve demo", "GIT_AUTHOR_EMAIL": "demo@leve.invalid",
                "GIT_COMMITTER_NAME": "leve demo", "GIT_COMMITTER_EMAIL": "demo@leve.invalid"}

    def run(self, *cmd: str, capture: bool = False) -> str:
        """Run a command in the workspace; its output streams unless captured or quiet."""
        if not self.quiet:
            console.print(f"[dim]$ {shlex.join(cmd)}[/dim]")
        stream = subprocess.PIPE if (capture or self.quiet) else None
        # Under a guard tied to this process: however the demo ends (SIGKILL too), the guard kills the command
        # and everything it started (a `dvc repro`, its stage, the stage's workers); leve.processes.guard.
        done = subprocess.run(guarded(list(cmd)), cwd=self.workspace, env=self.env, text=True, stdout=stream,
                              stderr=subprocess.STDOUT if stream else None)
        if done.returncode:
            tail = (done.stdout or "").strip().splitlines()[-5:]
            raise LeveError(f"{self.workspace}: `{shlex.join(cmd)}` failed with exit {done.returncode}"
                            + (f": {' | '.join(tail)}" if tail else ""))
        return done.stdout or ""

    def step(self, n: int, total: int, title: str) -> float:
        console.print(f"\n[bold cyan][{n}/{total}] {title}[/bold cyan]")
        return time.perf_counter()

    def done(self, name: str, t0: float) -> None:
        self.timings[name] = round(time.perf_counter() - t0, 1)


def create_workspace(workspace: Path, root: Path) -> bool:
    """Copy the pipeline into ``workspace``; False when it already holds a demo (continue)."""
    if (workspace / MARKER).exists():
        return False
    if workspace.exists() and any(workspace.iterdir()):
        raise LeveError(f"{workspace}: folder exists and is not empty (and not a leve demo); choose another")
    workspace.mkdir(parents=True, exist_ok=True)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in COPY:
        src = root / name
        if src.is_dir():
            shutil.copytree(src, workspace / name, ignore=ignore)
        elif src.is_file():
            shutil.copy2(src, workspace / name)
    return True


def init_repo(demo: Demo) -> None:
    demo.run("git", "init", "-q")
    demo.run("dvc", "init", "-q")
    demo.run("dvc", "config", "core.analytics", "false")
    demo.run("dvc", "config", "core.autostage", "true")
    (demo.workspace / MARKER).write_text("leve demo workspace\n")
    demo.run("git", "add", "-A")
    demo.run("git", "commit", "-q", "-m", "leve demo: the pipeline")


def has_commit(demo: Demo, message: str) -> bool:
    return message in demo.run("git", "log", "--format=%s", capture=True)


def demo_params(root: Path) -> tuple[float, float, str]:
    """The experiment's ``train.kd.eps``, ``train.labels.fraction`` and the synthetic teacher of the
    params.yaml in ``root``."""
    from leve.train import stage as train_stage

    cfg = train_stage.config(params_file=root / "params.yaml")
    return cfg.kd.eps, cfg.labels.fraction, train_stage.expected_teacher(cfg.dataset, root / "params.yaml")


def write_baseline_params(workspace: Path, overrides: dict[str, Any] | None = None) -> None:
    """The workspace's params.yaml without distillation (``train.kd.eps: 0``; comments kept), with
    ``overrides`` (dotted keys) set too."""
    from leve.pipeline.profiles import edit_yaml

    params = workspace / "params.yaml"
    params.write_text(edit_yaml(params.read_text(), {**(overrides or {}), "train.kd.eps": 0.0}, params)[0])


def run_demo(workspace: Path, eps: float | None = None, quiet: bool = False,
             overrides: dict[str, Any] | None = None) -> Demo:
    """The whole demo (``eps``: the experiment's ``train.kd.eps``, default the embedded default's);
    returns the workspace and the seconds each part took. ``overrides``: params (dotted keys) of the
    workspace's params.yaml, e.g. a smaller sample for a quick check of the whole story."""
    demo = Demo(workspace.resolve(), quiet)
    t_all = time.perf_counter()
    root = source_root()
    default_eps, fraction, teacher = demo_params(root)
    eps = default_eps if eps is None else eps
    if eps <= 0:
        raise LeveError(f"leve demo: the experiment distils, so its kd.eps must be > 0 (got {eps})")
    t0 = demo.step(1, 5, f"workspace {demo.workspace} (git + DVC, offline)")
    if create_workspace(demo.workspace, root):
        write_baseline_params(demo.workspace, overrides)
        init_repo(demo)
    demo.done("workspace", t0)
    t0 = demo.step(2, 5, f"baseline, no distillation: dvc repro (train.kd.eps=0; the student sees the depth of "
                         f"{fraction:.0%} of the training images): prepare -> teacher cache -> train -> eval -> bench")
    demo.run("dvc", "repro")
    baseline = "leve demo: baseline run"
    if not has_commit(demo, baseline):
        demo.run("git", "add", "-A")
        demo.run("git", "commit", "-q", "-m", baseline)
    demo.done("baseline", t0)
    t0 = demo.step(3, 5, f"experiment, distillation from the {teacher} teacher's cache on every training image: "
                         f"dvc exp run -S train.kd.eps={eps}")
    demo.run("dvc", "exp", "run", "-S", f"train.kd.eps={eps}")
    demo.done("experiment", t0)
    demo.step(4, 5, "results")
    show_results(demo)
    demo.step(5, 5, "figures")
    demo.run("dvc", "plots", "show", "-o", "reports/plots", capture=True)
    demo.run("leve", "figures", "--out", "reports/training_curves.png", capture=True)  # static: opens offline
    show_figures(demo)
    demo.timings["total"] = round(time.perf_counter() - t_all, 1)
    console.print(f"\n[bold green]done in {demo.timings['total']:.0f} s[/bold green] "
                  f"({', '.join(f'{k} {v:.0f} s' for k, v in demo.timings.items() if k != 'total')})")
    return demo


def show_results(demo: Demo) -> None:
    console.print("[bold]leve report[/bold] (the baseline and every experiment, thesis-style tables):")
    console.print(demo.run("leve", "report", capture=True), markup=False, highlight=False)
    console.print("[bold]dvc metrics diff[/bold] (baseline commit -> this experiment):")
    console.print(demo.run("dvc", "metrics", "diff", "--md", "--targets", "metrics", capture=True),
                  markup=False, highlight=False)
    console.print("[bold]dvc exp show[/bold] (val RMSE from training, test metrics from eval):")
    keep = r"Experiment|train\.kd\.eps|val\.rmse|student\.(rmse|abs_rel|d1)$"
    console.print(demo.run("dvc", "exp", "show", "--md", "--no-pager", "--drop", ".*", "--keep", keep, capture=True),
                  markup=False, highlight=False)


def show_figures(demo: Demo) -> None:
    reports = demo.workspace / "reports"
    figures = (sorted(reports.glob("*/examples.png")) + sorted(reports.glob("*/error_vs_depth.png"))
               + [reports / "training_curves.png", reports / "plots" / "index.html"])
    for path in figures:
        if path.exists():
            console.print(f"  {path}")
    console.print(f"  the PNGs open offline; {reports / 'plots' / 'index.html'} (dvc plots show) draws its "
                  "interactive charts with Vega from a CDN: it needs a network")
