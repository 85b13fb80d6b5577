"""Real commands under real signals: start ``leve ...`` in its own process group, find its
processes through /proc (psutil is not a dependency), kill it, see what is left.

Every helper that waits has a deadline so that a broken command fails its test instead of
hanging it; only :func:`kill_and_survivors` makes a claim about time (everything the command
started is gone within ``within`` seconds), the other deadlines are guards.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LEVE = [sys.executable, "-m", "leve"]

# a process, told apart from a later one that reuses its pid by its start time
Proc = tuple[int, int]


@dataclass(frozen=True)
class Stat:
    state: str
    ppid: int
    pgrp: int
    start: int


def _stat(pid: int) -> Stat | None:
    """/proc/<pid>/stat, or None when the process is gone or a zombie."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    stat = Stat(fields[0], int(fields[1]), int(fields[2]), int(fields[19]))
    return None if stat.state in ("Z", "X") else stat


def _all() -> dict[int, Stat]:
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            found[int(entry)] = stat
    return found


def tree(root: int) -> set[Proc]:
    """The live processes of ``root``'s process group and all its descendants (torchrun puts each
    worker in a session of its own)."""
    procs = _all()
    found = {pid for pid, s in procs.items() if s.pgrp == root}
    grew = True
    while grew:
        more = {pid for pid, s in procs.items() if s.ppid in found | {root}} - found
        found |= more
        grew = bool(more)
    return {(pid, procs[pid].start) for pid in found}


def cmdline(pid: int) -> list[str]:
    """The arguments of a live process ([] when it is gone)."""
    try:
        return [a.decode(errors="replace") for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
    except OSError:
        return []


def parent_of(pid: int) -> int | None:
    stat = _stat(pid)
    return None if stat is None else stat.ppid


def alive(procs: set[Proc]) -> set[Proc]:
    return {(pid, start) for pid, start in procs if (s := _stat(pid)) is not None and s.start == start}


def wait_until(condition: Callable[[], bool], deadline_s: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` once ``deadline_s`` has passed."""
    end = time.monotonic() + deadline_s
    while not condition():
        if time.monotonic() > end:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


@dataclass
class Job:
    """A ``leve`` command running as the leader of its own session and process group."""

    proc: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def others(self) -> set[Proc]:
        """Its live processes besides the command itself (workers, helpers)."""
        return {p for p in tree(self.pid) if p[0] != self.pid}

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_others(self, count: int, deadline_s: float = 180) -> None:
        """Wait until the command has started ``count`` processes (failing if it ends first)."""
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"ended (status {self.proc.returncode}) before its workers were seen:\n"
                                     f"{self.output()[-3000:]}")
            return len(self.others()) >= count

        wait_until(ready, deadline_s, f"{count} processes of {self.proc.args}")

    def wait_for(self, what: str, condition: Callable[[set[int]], bool], deadline_s: float = 180) -> None:
        """Wait until ``condition`` holds of the pids of its live processes (failing if it ends first)."""
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"ended (status {self.proc.returncode}) before {what}:\n{self.output()[-3000:]}")
            return condition({pid for pid, _ in tree(self.pid)})

        wait_until(ready, deadline_s, what)

    def finish(self, deadline_s: float = 300) -> int:
        """Wait for the command to end by itself; its exit status."""
        try:
            return self.proc.wait(deadline_s)
        except subprocess.TimeoutExpired:
            kill_all(tree(self.pid))
            raise AssertionError(f"{self.proc.args} still running after {deadline_s} s:\n{self.output()[-3000:]}") from None


def start(args: list[str], cwd: Path, log: Path, env: dict[str, str] | None = None, cmd: list[str] = LEVE) -> Job:
    """Start ``leve ARGS`` (or ``cmd ARGS``) in a new session; output to ``log``, not a pipe (a pipe
    held by orphans would never close)."""
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", **(env or {})}
    with log.open("wb") as out:
        proc = subprocess.Popen([*cmd, *args], cwd=cwd, env=full_env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_interruptible)
    return Job(proc, log)


def _interruptible() -> None:
    """In the child before exec: SIGINT back to its default, as a terminal's Ctrl-C finds it. A pytest worker
    can hold SIGINT ignored after an earlier test (seen in the full suite), and an ignored SIGINT is inherited
    through exec: the command then ran to its end and a test of Ctrl-C tested nothing."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def kill_all(procs: set[Proc]) -> None:
    """SIGKILL what is left of processes a test started (so that no test leaves orphans)."""
    for pid, _ in alive(procs):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def kill_and_survivors(job: Job, sig: int = signal.SIGKILL, within: float = 30.0) -> set[Proc]:
    """Send ``sig`` to the command alone and give everything it started ``within`` seconds to end;
    the processes still alive then (killed before returning). The wait ends as soon as none is left:
    ``within`` is a generous bound for a loaded machine, not a claim about speed."""
    procs = tree(job.pid)
    os.kill(job.pid, sig)
    job.proc.wait(120)
    end = time.monotonic() + within
    while (left := alive(procs) | tree(job.pid)) and time.monotonic() < end:
        time.sleep(0.1)
    kill_all(left)
    return left


def run_leve(args: list[str], cwd: Path, deadline_s: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``leve ARGS`` to its end, output captured (for commands that start no processes)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([*LEVE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=deadline_s)


def lock_holder(output: Path) -> str:
    """The pid written into ``<output>.lock`` by the process holding it ('' when none wrote it)."""
    try:
        return output.with_name(output.name + ".lock").read_text().strip()
    except FileNotFoundError:
        return ""


def stop_group(job: Job) -> None:
    """SIGSTOP the command and its workers: it keeps what it holds (its lock) but does nothing."""
    os.killpg(job.pid, signal.SIGSTOP)


def resume_group(job: Job) -> None:
    os.killpg(job.pid, signal.SIGCONT)
