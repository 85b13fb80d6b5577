"""Training killed with SIGKILL at a random moment and rerun ends exactly where an uninterrupted
run ends: same weights, whole checkpoints, each DVCLive step once; one writer per output."""

from __future__ import annotations

import random
import signal
import sys
import time
from pathlib import Path

import pytest
import torch

from leve.models.checkpoint import read_checkpoint
from leve.train.logging import drop_rows_after
from leve.train.loop import train
from leve.train.stage import KDConfig, TrainConfig
from tests.processes import Job, lock_holder, resume_group, run_leve, start, stop_group, wait_until
from tests.train.conftest import TRAIN_SIZE

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="signals, flock")

ONE_THREAD = {"OMP_NUM_THREADS": "1"}  # both runs round alike (and share 2 cores politely)


def _params(path: Path, data: tuple[Path, Path], out: Path, extra: str = "") -> Path:
    store, cache = data
    path.write_text(
        f"paths:\n  stores: {store.parent}\n  teacher_cache: {cache.parent}\n"
        f"train:\n  dataset: synthetic\n  resolution: {list(TRAIN_SIZE)}\n  workers: 0\n"
        f"  epochs: 2\n  max_steps: 12\n  batch_size: 8\n  lr: 1.0e-3\n  val_every: 0\n  log_every: 1\n"
        f"  checkpoint_every: 1\n{extra}"
        f"  out_dir: {out / 'models'}\n  log_dir: {out / 'dvclive'}\n  kd:\n    eps: 0.25\n    loss: l1\n"
        "  labels:\n    fraction: 1.0\n"
        "teacher:\n  datasets:\n    synthetic:\n      model: tiny-random\n"
    )
    return path


def _tables(log_dir: Path) -> dict[str, list[list[str]]]:
    """Every DVCLive metric table: name -> rows (samples/s, a timing, reduced to its steps)."""
    plots, tables = log_dir / "plots/metrics", {}
    for tsv in sorted(plots.rglob("*.tsv")):
        rows = [line.split("\t") for line in tsv.read_text().splitlines()]
        tables[tsv.relative_to(plots).as_posix()] = [r[:1] for r in rows] if tsv.stem == "samples_per_s" else rows
    return tables


def _same_checkpoints(a: Path, b: Path) -> None:
    for name in ("last.pt", "best.pt"):
        wa, wb = read_checkpoint(a / name)[0], read_checkpoint(b / name)[0]
        assert wa.keys() == wb.keys()
        for key in wa:
            assert torch.equal(wa[key], wb[key]), f"{name}: {key}"
    sa, sb = (read_checkpoint(d / "last.pt")[1].extra["train_state"] for d in (a, b))
    assert sa["position"] == sb["position"] and sa["scheduler"] == sb["scheduler"]


@pytest.mark.slow
def test_sigkill_at_a_random_moment_then_rerun_equals_uninterrupted(synthetic_with_teacher, tmp_path: Path) -> None:
    whole = _params(tmp_path / "whole.yaml", synthetic_with_teacher, tmp_path / "whole")
    parts = _params(tmp_path / "parts.yaml", synthetic_with_teacher, tmp_path / "parts")
    ref = start(["train", "--params", str(whole)], tmp_path, tmp_path / "whole.log", ONE_THREAD)
    assert ref.finish() == 0, ref.output()[-3000:]

    job = start(["train", "--params", str(parts)], tmp_path, tmp_path / "killed.log", ONE_THREAD)
    last = tmp_path / "parts/models/last.pt"
    wait_until(lambda: last.exists() or job.proc.poll() is not None, 300, "the first checkpoint")
    delay = random.uniform(0.0, 1.5)  # somewhere in the next steps: mid-step, mid-save or mid-log
    time.sleep(delay)
    job.proc.send_signal(signal.SIGKILL)
    assert job.finish() == -signal.SIGKILL, f"not killed (delay {delay:.2f} s):\n{job.output()[-3000:]}"
    killed_at = read_checkpoint(last)[1].extra["train_state"]["position"]["step"]  # whole, whatever the moment
    print(f"killed {delay:.2f} s after the first checkpoint; last.pt at step {killed_at}")

    rerun = start(["train", "--params", str(parts)], tmp_path, tmp_path / "rerun.log", ONE_THREAD)
    assert rerun.finish() == 0, rerun.output()[-3000:]
    assert f"resumed at step {killed_at}" in rerun.output(), f"delay {delay:.2f} s:\n{rerun.output()[-3000:]}"
    assert not [p.name for p in (tmp_path / "parts/models").iterdir() if ".tmp" in p.name]  # old and leve.atomic names
    _same_checkpoints(tmp_path / "whole/models", tmp_path / "parts/models")
    tables = _tables(tmp_path / "parts/dvclive")
    assert tables == _tables(tmp_path / "whole/dvclive"), f"killed at step {killed_at} (delay {delay:.2f} s)"
    assert [int(r[0]) for r in tables["train/loss.tsv"][1:]] == list(range(1, 13))
    assert [int(r[0]) for r in tables["val/rmse.tsv"][1:]] == [6, 12]


def _cfg(data: tuple[Path, Path], out: Path, **kw: object) -> TrainConfig:
    base: dict[str, object] = dict(dataset="synthetic", data_dir=data[0].parent, resolution=TRAIN_SIZE, batch_size=8,
                                   epochs=1, workers=0, log_every=1, val_every=0, out_dir=out / "models",
                                   log_dir=out / "dvclive")
    return TrainConfig(**{**base, "kd": KDConfig(eps=0.0, teacher_dir=out), **kw})  # type: ignore[arg-type]


def test_checkpoint_minutes_saves_last_inside_the_epoch(synthetic_store, tmp_path: Path, monkeypatch) -> None:
    from leve.train import loop

    saved: list[int] = []
    original = loop.Trainer._write_last

    def record(self: loop.Trainer) -> None:
        saved.append(self.position.step)
        original(self)

    monkeypatch.setattr(loop.Trainer, "_write_last", record)
    train(_cfg((synthetic_store, synthetic_store), tmp_path / "often", max_steps=4, checkpoint_minutes=1e-9),
          show_progress=False)
    assert saved == [1, 2, 3, 4]  # every step by time; the last one after the final validation only
    saved.clear()
    train(_cfg((synthetic_store, synthetic_store), tmp_path / "never", max_steps=4, checkpoint_minutes=0), show_progress=False)
    assert saved == [4]


def test_resumed_log_drops_the_rows_logged_after_the_checkpoint(tmp_path: Path) -> None:
    loss = tmp_path / "train/loss.tsv"
    loss.parent.mkdir()
    loss.write_text("step\tloss\n1\t0.5\n2\t0.4\n3\t0.3\n4\t0.")  # the kill cut the last row short
    cut = tmp_path / "val/rmse.tsv"
    cut.parent.mkdir()
    cut.write_text("st")  # killed while writing its header
    drop_rows_after(tmp_path, 2)
    assert loss.read_text() == "step\tloss\n1\t0.5\n2\t0.4\n"
    assert not cut.exists()


def _holding(job: Job, out_dir: Path) -> None:
    def holds() -> bool:
        if job.proc.poll() is not None:
            raise AssertionError(f"ended before it was seen holding the lock:\n{job.output()[-3000:]}")
        return lock_holder(out_dir) == str(job.pid)

    wait_until(holds, 300, f"{out_dir} locked by {job.pid}")
    stop_group(job)


@pytest.mark.slow
@pytest.mark.parametrize("first, second", [("a", "b"), ("b", "a")])
def test_second_train_on_the_same_output_is_refused(synthetic_with_teacher, tmp_path: Path, first: str, second: str) -> None:
    """a and b differ in their schedule: b would start a's run over (best.pt removed) and vice versa."""
    extra = {"a": "  max_steps: 3\n", "b": "  max_steps: 3\n  schedule:\n    name: constant\n"}
    params = {k: _params(tmp_path / f"{k}.yaml", synthetic_with_teacher, tmp_path / "run", v) for k, v in extra.items()}
    out_dir = tmp_path / "run/models"
    job = start(["train", "--params", str(params[first])], tmp_path, tmp_path / "first.log", ONE_THREAD)
    try:
        _holding(job, out_dir)
        refused = run_leve(["train", "--params", str(params[second])], tmp_path)
    finally:
        resume_group(job)
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [f"error: {out_dir}: another leve process is writing it (pid {job.pid})"]
    assert job.finish() == 0, job.output()[-3000:]
    assert "trained to step 3" in job.output()
    for name in ("last.pt", "best.pt"):
        read_checkpoint(out_dir / name)  # whole
