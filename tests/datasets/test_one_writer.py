"""Two ``leve prepare`` on the same store at once: the second is refused with one line naming
the store; the first finishes a whole store; a SIGKILLed writer leaves no stale lock."""

from __future__ import annotations

import multiprocessing
import signal
import sys
import time
from pathlib import Path

import pytest

from leve.errors import LeveError
from leve.processes import exclusive_writer
from leve.store.reader import open_store
from tests.processes import Job, lock_holder, resume_group, run_leve, start, stop_group, wait_until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="flock, SIGSTOP")

SMALL = ["--set=val=4", "--set=test=4", "--set=height=48", "--set=width=64", "--set=block_size=16"]


def _prepare(out: Path, seed: int, train: int) -> list[str]:
    return ["prepare", "synthetic", "--out", str(out), "--seed", str(seed), f"--set=train={train}", *SMALL]


def _holding(job: Job, out: Path) -> None:
    """Wait until ``job`` holds the store's lock, then freeze it there (it keeps the lock)."""
    def holds() -> bool:
        if job.proc.poll() is not None:
            raise AssertionError(f"ended before it was seen holding the lock:\n{job.output()[-3000:]}")
        return lock_holder(out) == str(job.pid)

    wait_until(holds, 120, f"{out} locked by {job.pid}")
    stop_group(job)


@pytest.mark.parametrize("first, second", [(0, 1), (1, 0)], ids=["seed0-then-seed1", "seed1-then-seed0"])
def test_second_prepare_is_refused_and_the_first_finishes(tmp_path: Path, first: int, second: int) -> None:
    out = tmp_path / "synthetic.zarr"
    job = start(_prepare(out, first, 96), tmp_path, tmp_path / "first.log")
    try:
        _holding(job, out)
        refused = run_leve(_prepare(out, second, 8), tmp_path)
    finally:
        resume_group(job)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [f"error: {out}: another leve process is writing it (pid {job.pid})"]
    assert job.finish() == 0, job.output()[-3000:]
    assert open_store(out).attrs["params"]["seed"] == first and len(open_store(out).split("train")) == 96
    again = run_leve(_prepare(out, second, 8), tmp_path)  # the lock went with its holder
    assert again.returncode == 0, again.stderr[-3000:]
    assert open_store(out).attrs["params"]["seed"] == second
    up_to_date = run_leve(_prepare(out, second, 8), tmp_path)
    assert up_to_date.returncode == 0 and "up to date" in up_to_date.stdout + up_to_date.stderr
    assert sorted(p.name for p in tmp_path.glob("synthetic.zarr*")) == ["synthetic.zarr", "synthetic.zarr.lock"]


def test_a_killed_writer_leaves_no_stale_lock(tmp_path: Path) -> None:
    out = tmp_path / "synthetic.zarr"
    job = start(_prepare(out, 0, 2000), tmp_path, tmp_path / "log")
    wait_until(lambda: lock_holder(out) == str(job.pid), 120, "the lock")
    job.proc.send_signal(signal.SIGKILL)
    job.proc.wait(60)
    done = run_leve(_prepare(out, 0, 8), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert len(open_store(out).split("train")) == 8


def test_lock_is_released_for_the_next_writer_in_the_same_process(tmp_path: Path) -> None:
    out = tmp_path / "x.zarr"
    with exclusive_writer(out), pytest.raises(LeveError, match=r"another leve process is writing it \(pid \d+\)"):
        with exclusive_writer(out):
            pass
    with exclusive_writer(out):
        pass


def test_forked_workers_do_not_keep_the_lock(tmp_path: Path) -> None:
    """DataLoader workers are forked while the lock is held: the writer's release must still free it."""
    out = tmp_path / "x.zarr"
    with exclusive_writer(out):
        child = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,))
        child.start()
    try:
        with exclusive_writer(out):
            pass
    finally:
        child.kill()
        child.join()
