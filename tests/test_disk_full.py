"""A full disk in ``leve train``: the checkpoint write fails for real (RLIMIT_FSIZE: write(2) returns EFBIG,
as it returns ENOSPC on a full disk) in a real process; one line, exit 1, the previous checkpoints byte
for byte, no temporary file. (``leve eval``: tests/evaluation/test_eval_outputs.py.)"""

from __future__ import annotations

import pytest

from tests.factories import synthetic_store
from tests.limits import run_limited, snapshot, temporaries

PARAMS = """\
train:
  dataset: synthetic
  model: leve-mobilenetv3
  resolution: [64, 64]
  epochs: 1
  max_steps: 2
  batch_size: 2
  workers: 0
  val_every: 0
  checkpoint_minutes: 0
  kd: {eps: 0.0}
"""


@pytest.mark.slow
def test_train_on_a_full_disk_is_one_line_and_keeps_the_checkpoints(tmp_path):
    synthetic_store(tmp_path / "data/zarr/synthetic.zarr", height=48, width=64, train=4, val=2, test=2, block_size=4)
    (tmp_path / "params.yaml").write_text(PARAMS)
    first = run_limited(["leve", "train", "--stop-after", "1"], None, tmp_path)  # step 1 of 2, saved in last.pt
    assert first.returncode == 0, first.stderr[-3000:]
    models = tmp_path / "models/student"
    before = {k: v for k, v in snapshot(models).items() if not k.endswith(".lock")}
    assert len(before["last.pt"]) > 1_000_000
    # the same run continued: it resumes, trains step 2 and saves, into files capped at 256 KB
    failed = run_limited(["leve", "train"], 256 * 1024, tmp_path)
    assert failed.returncode == 1, failed.stderr[-3000:]
    errors = [line for line in failed.stderr.splitlines() if "rror" in line or "Traceback" in line]
    assert len(errors) == 1 and errors[0].startswith("error: models/student/"), failed.stderr[-3000:]
    assert ".pt: cannot write: " in errors[0] and "the previous file (if any) is unchanged" in errors[0]
    assert {k: v for k, v in snapshot(models).items() if not k.endswith(".lock")} == before
    assert temporaries(models) == []
    # without the cap the same command finishes: step 2 in last.pt, and best.pt
    assert run_limited(["leve", "train"], None, tmp_path).returncode == 0
    after = snapshot(models)
    assert after["last.pt"] != before["last.pt"] and len(after["best.pt"]) > 1_000_000
