"""Reading DVC's experiments: the JSON that ``dvc exp show --json`` prints, from the command or from a
saved file. The one module of the experiment report that runs dvc; the shaping
(:mod:`leve.report.exp_records`, :mod:`leve.report.exp_rows`) and the rendering
(:mod:`leve.report.exp_render`) work on the plain JSON it returns.

Why the command and not dvc's Python API: ``Repo.experiments.show`` and ``ExpState.dumpd`` are dvc
internals (not documented, free to change in any release), and pinning them would have meant an
upper bound on dvc plus a contract test that keeps it in step. ``dvc exp show --json`` is dvc's
public output, the same text ``leve report --from-json`` reads from a saved file, so one parser
serves both and the captured fixture (tests/report/data/exp_show.json) is the contract. It costs one
process: measured on a git + DVC workspace of tests/report/exp_repo.py with 4 finished experiments
and 1 queued (DVC 3.67.1, 2 shared CPU cores, each way in a fresh process, 3 runs):
``python -m dvc exp show --json`` 1.02-1.13 s; ``Repo.experiments.show`` + ``dumpd`` in the process
0.69-0.76 s (dvc's import included; 0.17-0.20 s once imported); identical JSON. About 0.4 s more
for a command run once per report. dvc runs as ``python -m dvc`` of leve's own interpreter, so it is
the dvc installed with leve, whatever ``dvc`` is first on PATH.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from leve.errors import LeveError


def exp_show_command(all_commits: bool = False) -> list[str]:
    """``python -m dvc exp show --json [--all-commits]`` with leve's interpreter."""
    return [sys.executable, "-m", "dvc", "exp", "show", "--json", *(["--all-commits"] if all_commits else [])]


def exp_show_json(repo: Path, all_commits: bool = False) -> Any:
    """What ``dvc exp show --json [--all-commits]`` prints for ``repo``, parsed; a failure is one line
    (dvc's last error line)."""
    if not (repo / ".dvc").is_dir():
        raise LeveError(f"{repo.resolve()}: not a DVC repository (no .dvc/); run `leve report` in the project")
    proc = subprocess.run(exp_show_command(all_commits), cwd=repo, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        lines = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
        why = next((line for line in reversed(lines) if line.startswith("ERROR")), lines[-1] if lines else "")
        raise LeveError(f"{repo.resolve()}: `dvc exp show --json` failed (exit status {proc.returncode})"
                        + (f": {why}" if why else ""))
    return parse_json_text(proc.stdout, "`dvc exp show --json`")


def parse_json_text(text: str, source: str) -> Any:
    """JSON from ``source``; the first '[' starts it (dvc may print notices before)."""
    start = text.find("[")
    try:
        return json.loads(text[start:] if start >= 0 else text)
    except json.JSONDecodeError as exc:
        raise LeveError(f"{source}: not the JSON of `dvc exp show --json` ({exc.msg} at line {exc.lineno})") from exc


def load_exp_show_file(path: Path) -> Any:
    """A saved ``dvc exp show --json`` output."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise LeveError(f"{path}: cannot read ({exc.strerror or exc.__class__.__name__})") from exc
    return parse_json_text(text, str(path))
