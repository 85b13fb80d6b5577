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
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

console = Console(stderr=True, soft_wrap=True)  # long paths stay on one line in logs


class _PlainProgress:
    """Minimal stand-in for rich.Progress that prints a line every few seconds."""

    def __init__(self, every: float = 5.0) -> None:
        self.tasks: dict[int, dict[str, Any]] = {}
        self.every = every

    def add_task(self, description: str, total: float | None = None, completed: float = 0, **_: Any) -> int:
        tid = len(self.tasks)
        self.tasks[tid] = {"desc": description, "total": total, "done": completed, "start": completed,
                           "t0": time.perf_counter(), "last": 0.0}
        return tid

    def advance(self, task: int, n: float = 1) -> None:
        t = self.tasks[task]
        t["done"] += n
        now = time.perf_counter()
        if now - t["last"] >= self.every or (t["total"] and t["done"] >= t["total"]):
            t["last"] = now
            rate = (t["done"] - t["start"]) / max(now - t["t0"], 1e-9)
            total = f"/{t['total']:.0f}" if t["total"] else ""
            print(f"{t['desc']}: {t['done']:.0f}{total} ({rate:.1f}/s)", file=sys.stderr, flush=True)


class _NoProgress(_PlainProgress):
    def advance(self, task: int, n: float = 1) -> None:
        self.tasks[task]["done"] += n


@contextmanager
def progress_bar(show: bool = True) -> Iterator[Any]:
    """A progress object with ``add_task`` and ``advance``; rich when stderr is a terminal."""
    if not show:
        yield _NoProgress()
    elif console.is_terminal:
        columns = (
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TaskProgressColumn(),
            TextColumn("[cyan]{task.fields[rate]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
        )
        with _RateProgress(*columns, console=console) as bar:
            yield bar
    else:
        yield _PlainProgress()


class _RateProgress(Progress):
    """rich Progress that shows items/s in a ``rate`` field."""

    def add_task(self, description: str, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        kwargs.setdefault("rate", "")
        return super().add_task(description, *args, **kwargs)

    def advance(self, task_id: Any, advance: float = 1) -> None:
        super().advance(task_id, advance)
        task = self._tasks[task_id]
        speed = task.speed
        self.update(task_id, rate=f"{speed:.1f}/s" if speed else "")
