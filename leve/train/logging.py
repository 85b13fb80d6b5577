"""Run logging through DVCLive (process 0 only): scalars per step, summary metrics at the end.

DVCLive writes ``<log_dir>/metrics.json`` (the latest values) and
``<log_dir>/plots/metrics/<name>.tsv`` (one row per logged step), which dvc.yaml declares
so that ``dvc plots show`` draws the curves and ``dvc metrics show`` lists the summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class RunLog:
    """DVCLive on the main process, nothing elsewhere."""

    def __init__(self, log_dir: Path, enabled: bool, resume: bool, params: dict[str, Any]) -> None:
        self.live = None
        if not enabled:
            return
        from dvclive import Live

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
