"""Progress bars: rich on a terminal, plain periodic lines elsewhere (CI logs)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

console = Console(stderr=True, soft_wrap=True)  # long paths stay on one line in logs


class RateColumn(ProgressColumn):
    """Items per second: rich's estimate over the last ``speed_estimate_period`` seconds."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:.1f}/s" if speed else "", style="cyan")


class _PlainLines(Progress):
    """Not a terminal (CI, log files): rich's task bookkeeping without its live display, and a
    plain ``description: done/total (rate/s)`` line per task every ``every`` seconds and when the
    task completes (none with ``quiet``). Only rich's public API: ``Progress.tasks``, ``Task``."""

    def __init__(self, every: float = 5.0, quiet: bool = False) -> None:
        super().__init__(console=console, disable=True)
        self.every, self.quiet = every, quiet
        self._lines: dict[TaskID, tuple[float, float]] = {}  # task -> (completed at add_task, last line time)

    def add_task(self, description: str, start: bool = True, total: float | None = None,
                 completed: float = 0, visible: bool = True, **fields: Any) -> TaskID:
        task_id = super().add_task(description, start, total, completed, visible, **fields)
        self._lines[task_id] = (completed, 0.0)
        return task_id

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        if self.quiet:
            return
        first, last = self._lines[task_id]
        task = next(t for t in self.tasks if t.id == task_id)
        now = time.perf_counter()
        if now - last >= self.every or task.finished:
            self._lines[task_id] = (first, now)
            rate = (task.completed - first) / max(task.elapsed or 0.0, 1e-9)
            total = f"/{task.total:.0f}" if task.total else ""
            print(f"{task.description}: {task.completed:.0f}{total} ({rate:.1f}/s)", file=sys.stderr, flush=True)


@contextmanager
def progress_bar(show: bool = True) -> Iterator[Progress]:
    """A rich ``Progress`` (``add_task``, ``advance``): live bars with rates when stderr is a
    terminal, periodic plain lines when it is not, nothing without ``show``."""
    if show and console.is_terminal:
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            RateColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with Progress(*columns, console=console) as bar:
            yield bar
    else:
        with _PlainLines(quiet=not show) as bar:
            yield bar
