"""A throw-away git + DVC repository whose stages are :mod:`fake_stages` (seconds, not minutes),
for testing the ``dvc exp`` plumbing of ``leve experiments`` and ``leve report``.

Re-capture the fixture ``data/exp_show.json`` (the output of a real ``dvc exp show --json``)::

    PYTHONPATH=. python -m tests.report.exp_repo /tmp/exp-capture tests/report/data/exp_show.json
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).parent / "data"
DATASETS = ("nyu", "kitti", "endoslam")

PARAMS = """\
train:
  dataset: synthetic
  model: leve
  resolution: [120, 160]
  epochs: 5
  seed: 0
  kd:
    eps: 0.25
    loss: l1
"""


def dvc_yaml(python: str, datasets: tuple[str, ...]) -> str:
    return f"""\
stages:
  bench-model:
    cmd: {python} fake_stages.py bench
    deps: [fake_stages.py]
    metrics:
      - metrics/bench_model.json:
          cache: false
  eval:
    foreach: [{", ".join(datasets)}]
    do:
      cmd: {python} fake_stages.py eval ${{item}}
      deps: [fake_stages.py]
      params: [train]
      metrics:
        - metrics/${{item}}.json:
            cache: false
"""


def dvc_env() -> dict[str, str]:
    """Environment for dvc subprocesses: the venv's dvc first on PATH, no analytics."""
    bindir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": bindir + os.pathsep + os.environ.get("PATH", ""), "DVC_NO_ANALYTICS": "1",
            "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
            "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"}


def sh(cmd: list[str], cwd: Path) -> str:
    proc = subprocess.run(cmd, check=False, cwd=cwd, env=dvc_env(), capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


def make_repo(root: Path, datasets: tuple[str, ...] = DATASETS) -> Path:
    """git init + dvc init + the fake pipeline, committed (no experiment run yet)."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(DATA / "fake_stages.py", root / "fake_stages.py")
    (root / "params.yaml").write_text(PARAMS)
    (root / "dvc.yaml").write_text(dvc_yaml(Path(sys.executable).as_posix(), datasets))
    sh(["git", "init", "-q", "-b", "main"], root)
    sh(["dvc", "init", "-q"], root)
    sh(["dvc", "config", "core.autostage", "true"], root)
    sh(["git", "add", "-A"], root)
    sh(["git", "commit", "-q", "-m", "fake pipeline"], root)
    return root


def capture(root: Path, out: Path) -> None:
    """Queue the whole thesis grid plus a failing experiment, run them, queue one more, save exp show."""
    from leve.experiments.grid import grid, queue_commands, run_command

    make_repo(root)
    for cmd in queue_commands(grid("all")) + [["dvc", "exp", "run", "--queue", "-n", "broken",
                                                "-S", "train.model=no-such-model"]]:
        sh(cmd, root)
    subprocess.run(run_command(), check=False, cwd=root, env=dvc_env(), capture_output=True)  # "broken" fails
    sh(queue_commands(grid("kd")[-1:], prefix="later-")[0], root)
    out.write_text(sh(["dvc", "exp", "show", "--json"], root))


if __name__ == "__main__":
    capture(Path(sys.argv[1]), Path(sys.argv[2]))
