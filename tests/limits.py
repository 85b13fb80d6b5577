"""Real kernel limits for real commands: a file-size limit that makes every write beyond it fail.

``RLIMIT_FSIZE`` (setrlimit(2)) caps the size any file of the process may grow to; with SIGXFSZ
ignored (the disposition survives exec), a write past the cap fails with EFBIG, exactly as a full
disk fails one with ENOSPC: the program sees the error from write(2) and must cope with it.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LEVE = [sys.executable, "-m", "leve"]


def _limit(max_bytes: int) -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))


def run_limited(args: list[str], max_file_bytes: int | None, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``args`` (a list; ``leve`` for the leve CLI) in ``cwd`` with files capped at ``max_file_bytes``."""
    argv = [*LEVE, *args[1:]] if args and args[0] == "leve" else list(args)
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONDONTWRITEBYTECODE": "1", "COLUMNS": "200"}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
                          preexec_fn=None if max_file_bytes is None else (lambda: _limit(max_file_bytes)))


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative name -> bytes)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def temporaries(folder: Path) -> list[str]:
    """Files left under ``folder`` by an interrupted atomic write (``.<name>.tmp-<pid>-<token>...``)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if ".tmp" in p.name)
