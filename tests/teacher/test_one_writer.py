"""Two ``leve teacher-cache`` for the same split and shard at once: the second is refused with one
line naming the split; the first completes it. (Different shards share a split by design.)"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from leve.store.reader import open_store
from leve.teacher.cache.read import check_cache_matches
from tests.factories import synthetic_store
from tests.processes import lock_holder, resume_group, run_leve, start, stop_group, wait_until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="flock, SIGSTOP")


@pytest.mark.slow
def test_second_teacher_cache_on_the_same_split_is_refused(tmp_path: Path) -> None:
    store = synthetic_store(tmp_path / "zarr" / "synthetic.zarr", height=48, width=64, train=16, val=4, test=4, block_size=8)
    out = tmp_path / "teacher" / "synthetic.zarr"
    args = ["teacher-cache", "--dataset", "synthetic", "--model", "tiny-random", "--split", "train", "--workers", "0",
            f"--set=data_dir={store.parent}", f"--set=out_dir={out.parent}"]
    job = start(args, tmp_path, tmp_path / "first.log")
    shard_lock = out.with_name(f"{out.name}.train.0-of-1")
    try:
        wait_until(lambda: lock_holder(shard_lock) == str(job.pid) or job.proc.poll() is not None, 180, "the lock")
        assert job.proc.poll() is None, job.output()[-3000:]
        stop_group(job)
        refused = run_leve([*args, "--force"], tmp_path)  # --force would have deleted the first's blocks
    finally:
        resume_group(job)
    assert refused.returncode == 1
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]  # after the teacher's line
    assert errors == [f"error: {out / 'train'}: another leve process is writing it (pid {job.pid})"]
    assert job.finish() == 0, job.output()[-3000:]
    check_cache_matches(out, "train", open_store(store))
    assert not list(out.parent.glob("*.partial"))
