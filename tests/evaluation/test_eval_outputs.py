"""``leve eval``'s outputs: replaced together or not at all (a real write failure in a real process), one
writer at a time (two real processes), and another checkpoint's scores kept out of the pipeline's outputs."""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.limits import LEVE, REPO, run_limited, snapshot, temporaries

PIPELINE = ("metrics", "reports")


def _pipeline_outputs(ws: Path) -> dict[str, bytes]:
    return {f"{folder}/{name}": data for folder in PIPELINE for name, data in snapshot(ws / folder).items()
            if not name.endswith(".lock")}


@pytest.mark.slow
def test_a_failed_write_leaves_every_previous_output_and_no_temporary(workspace):
    """RLIMIT_FSIZE makes the first write beyond 4 KB fail with EFBIG (as a full disk fails it with ENOSPC)."""
    first = run_limited(["leve", "eval", "--dataset", "synthetic", "--quiet"], None, workspace)
    assert first.returncode == 0, first.stderr
    before = _pipeline_outputs(workspace)
    assert {"metrics/synthetic.json", "reports/synthetic/examples.png", "reports/synthetic/MODEL_CARD.md",
            "reports/synthetic/per_image.csv"} <= set(before)
    # another protocol: every output would change
    args = ["leve", "eval", "--dataset", "synthetic", "--quiet", "--protocol", "standard", "--align", "median"]
    failed = run_limited(args, 4096, workspace)
    assert failed.returncode == 1, failed.stderr
    lines = [line for line in failed.stderr.splitlines() if "rror" in line or "Traceback" in line]
    assert len(lines) == 1 and re.fullmatch(r"error: reports/synthetic/[a-z_]+\.(png|csv|md): cannot write: file too large "
                                            r"for this file system or its limits; the previous file \(if any\) is unchanged",
                                            lines[0]), failed.stderr
    assert _pipeline_outputs(workspace) == before
    assert temporaries(workspace / "metrics") == [] and temporaries(workspace / "reports") == []
    # without the limit the same command replaces them all
    assert run_limited(args, None, workspace).returncode == 0
    assert json.loads((workspace / "metrics/synthetic.json").read_text())["protocol"]["name"] == "standard"


def _held(lock: Path) -> bool:
    """True while another process holds the flock of ``lock``."""
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def _stopped_holding_the_lock(ws: Path, env: dict[str, str]) -> subprocess.Popen[str] | None:
    """A real ``leve eval`` stopped (SIGSTOP) while it holds the outputs' lock; None if it finished first."""
    lock = ws / "metrics/synthetic.json.lock"
    proc = subprocess.Popen([*LEVE, "eval", "--dataset", "synthetic", "--quiet"], cwd=ws, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120  # a guard, not a claim about speed
    while proc.poll() is None and time.monotonic() < deadline:
        if lock.exists() and lock.read_text().strip() == str(proc.pid):
            proc.send_signal(signal.SIGSTOP)
            if _held(lock):
                return proc
            proc.send_signal(signal.SIGCONT)
            break
        time.sleep(0.01)
    proc.communicate(timeout=300)
    return None


@pytest.mark.slow
def test_a_second_eval_on_the_same_outputs_is_refused_while_the_first_runs(workspace):
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    for _ in range(3):
        first = _stopped_holding_the_lock(workspace, env)
        if first is not None:
            break
    else:
        pytest.fail("the first eval never held the lock while running")
    try:
        second = subprocess.run([*LEVE, "eval", "--dataset", "synthetic", "--quiet", "--protocol", "standard"],
                                cwd=workspace, env=env, capture_output=True, text=True, timeout=300)
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 1
    assert second.stderr.strip() == f"error: metrics/synthetic.json: another leve process is writing it (pid {first.pid})"
    out, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert json.loads((workspace / "metrics/synthetic.json").read_text())["protocol"]["name"] == "leve2024"


@pytest.mark.slow
def test_another_checkpoint_goes_to_a_side_folder_or_out(workspace, run_cli):
    assert run_cli("eval", "--dataset", "synthetic", "--quiet").code == 0
    before = _pipeline_outputs(workspace)
    shutil.copy(workspace / "models/student/best.pt", workspace / "models/other.pt")
    res = run_cli("eval", "--dataset", "synthetic", "--quiet", "--checkpoint", "models/other.pt")
    assert res.code == 0, res.stderr
    assert "models/other.pt is not the params' eval.checkpoint" in res.stderr and "evals/models-other/" in res.stderr
    side = workspace / "evals/models-other"
    doc = json.loads((side / "metrics/synthetic.json").read_text())
    assert doc["checkpoint"]["path"] == "models/other.pt"
    assert (side / "reports/synthetic/MODEL_CARD.md").is_file() and (side / "reports/synthetic/examples.png").is_file()
    assert _pipeline_outputs(workspace) == before
    # --out: where the user says
    res = run_cli("eval", "--dataset", "synthetic", "--quiet", "--checkpoint", "models/other.pt", "--out", "scored")
    assert res.code == 0, res.stderr
    assert json.loads((workspace / "scored/metrics/synthetic.json").read_text())["checkpoint"]["path"] == "models/other.pt"
    # an --out that lands in the pipeline's folders: refused in one line, nothing written
    res = run_cli("eval", "--dataset", "synthetic", "--quiet", "--checkpoint", "models/other.pt", "--out", ".")
    assert res.code == 1
    assert res.stderr.strip().splitlines() == [
        "error: .: --out would put the scores of models/other.pt into the pipeline's outputs (metrics/, reports/), "
        "which belong to models/student/best.pt; choose another folder"]
    assert _pipeline_outputs(workspace) == before
    # the params' checkpoint named explicitly is the pipeline's: it writes there
    res = run_cli("eval", "--dataset", "synthetic", "--quiet", "--checkpoint", "./models/student/best.pt", "--protocol",
                  "standard")
    assert res.code == 0 and "not the params'" not in res.stderr
    assert json.loads((workspace / "metrics/synthetic.json").read_text())["protocol"]["name"] == "standard"
