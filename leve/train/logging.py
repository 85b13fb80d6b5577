"""Run logging through DVCLive (process 0 only): scalars per step, summary metrics at the end.

DVCLive writes ``<log_dir>/metrics.json`` (the latest values) and
``<log_dir>/plots/metrics/<name>.tsv`` (one row per logged step), which dvc.yaml declares
so that ``dvc plots show`` draws the curves and ``dvc metrics show`` lists the summary.

A resumed run continues the same files: the rows a killed run logged after the checkpoint it
resumes from are dropped first (the resumed run logs those steps again), so each step appears
once, and a summary the kill left half-written is dropped (the next log rewrites it).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from leve.atomic import write_text


class RunLog:
    """DVCLive on the main process, nothing elsewhere; ``resume_step``: the step a resumed run
    continues from (None: a new run, the log starts empty)."""

    def __init__(self, log_dir: Path, enabled: bool, resume_step: int | None, params: dict[str, Any]) -> None:
        self.live = None
        if not enabled:
            return
        from dvclive import Live

        resume = resume_step is not None
        if resume_step is not None:
            drop_rows_after(Path(log_dir) / "plots" / "metrics", resume_step)
            _drop_unreadable(Path(log_dir) / "metrics.json")
        self.live = Live(dir=str(log_dir), resume=resume, save_dvc_exp=False, dvcyaml=False, report=None)
        if not resume:
            self.live.log_params(params)

    def log(self, step: int, values: dict[str, float]) -> None:
        """Log scalars at optimiser step ``step``."""
        if self.live is None:
            return
        self.live.step = step
        for name, value in values.items():
            self.live.log_metric(name, float(value), plot=True)
        self.live.make_summary()

    def close(self) -> None:
        if self.live is not None:
            self.live.end()
            self.live = None


def drop_rows_after(plots: Path, step: int) -> None:
    """Keep only the whole rows up to ``step`` in every ``<plots>/**/*.tsv`` (rewritten atomically)."""
    for tsv in sorted(plots.rglob("*.tsv")):
        lines = tsv.read_text().splitlines(keepends=True)
        if not lines or not lines[0].endswith("\n"):  # cut short before its header was whole
            tsv.unlink()
            continue
        header = lines[0].rstrip("\r\n").split("\t")
        if "step" not in header:
            continue
        kept = [lines[0], *(row for row in lines[1:] if _row_at_or_before(row, header, step))]
        if kept != lines:
            write_text(tsv, "".join(kept))


def _row_at_or_before(row: str, header: list[str], step: int) -> bool:
    """A whole row (not one a kill cut short) logged at ``step`` or before."""
    fields = row.rstrip("\r\n").split("\t")
    if not row.endswith("\n") or len(fields) != len(header):
        return False
    try:
        return int(fields[header.index("step")]) <= step
    except ValueError:
        return False


def _drop_unreadable(path: Path) -> None:
    try:
        json.loads(path.read_text())
    except FileNotFoundError:
        return
    except ValueError:
        path.unlink()
