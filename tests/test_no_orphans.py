"""Nothing lingers: every command that starts processes leaves none behind when it is killed,
by SIGKILL too. Real commands in their own process groups, real signals, /proc."""

from __future__ import annotations

import signal
import socket
import sys
from pathlib import Path

import pytest

from tests.factories import synthetic_store
from tests.processes import Job, kill_and_survivors, start, wait_until

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("orphans") / "zarr" / "synthetic.zarr"
    return synthetic_store(out, height=96, width=128, train=48, val=8, test=8, block_size=16)


def _killed_leaves_nothing(job: Job, workers: int, sig: int = signal.SIGKILL) -> None:
    job.wait_for_others(workers)
    left = kill_and_survivors(job, sig)
    assert not left, f"{len(left)} process(es) outlived {job.proc.args} ({signal.Signals(sig).name}): {sorted(left)}"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT], ids=["SIGKILL", "SIGTERM", "SIGINT"])
def test_prepare_pool_dies_with_prepare(tmp_path: Path, sig: int) -> None:
    sets = ["train=4000", "val=8", "test=8", "height=48", "width=64", "block_size=16"]
    args = ["prepare", "synthetic", "--out", str(tmp_path / "s.zarr"), "--workers", "2", *[f"--set={s}" for s in sets]]
    job = start(args, tmp_path, tmp_path / "log")
    _killed_leaves_nothing(job, 3, sig)  # 2 decoding processes + multiprocessing's resource tracker


@pytest.mark.slow
def test_teacher_cache_workers_die_with_it(store: Path, tmp_path: Path) -> None:
    args = ["teacher-cache", "--dataset", "synthetic", "--model", "tiny-random", "--split", "train", "--workers", "2",
            "--batch-size", "1", f"--set=data_dir={store.parent}", f"--set=out_dir={tmp_path / 'teacher'}"]
    _killed_leaves_nothing(start(args, tmp_path, tmp_path / "log"), 2)


def _train_params(path: Path, store: Path, out: Path, workers: int) -> Path:
    path.write_text(
        f"train:\n  dataset: synthetic\n  data_dir: {store.parent}\n  resolution: [72, 96]\n  workers: {workers}\n"
        f"  epochs: 100\n  val_every: 0\n  out_dir: {out / 'models'}\n  log_dir: {out / 'dvclive'}\n"
        "  kd:\n    eps: 0.0\n"
    )
    return path


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_train_loader_workers_die_with_train(store: Path, tmp_path: Path, sig: int) -> None:
    params = _train_params(tmp_path / "params.yaml", store, tmp_path, workers=2)
    _killed_leaves_nothing(start(["train", "--params", str(params)], tmp_path, tmp_path / "log"), 2, sig)


@pytest.mark.slow
def test_torchrun_workers_die_with_torchrun(store: Path, tmp_path: Path) -> None:
    """torchrun starts each worker in a session of its own: they are followed as its descendants."""
    params = _train_params(tmp_path / "params.yaml", store, tmp_path, workers=1)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "leve"]
    job = start(["train", "--params", str(params)], tmp_path, tmp_path / "log", {"OMP_NUM_THREADS": "1"}, cmd=cmd)
    _killed_leaves_nothing(job, 4)  # 2 training processes, each with its DataLoader process


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _accepts(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_serve_leaves_nothing(tmp_path: Path) -> None:
    """``leve serve`` runs in one process (uvicorn without workers); killed, nothing stays."""
    port = _free_port()
    job = start(["serve", "--model", "leve", "--port", str(port), "--device", "cpu"], tmp_path, tmp_path / "log")
    wait_until(lambda: _accepts(port) or job.proc.poll() is not None, 180, "the server")
    assert job.proc.poll() is None, job.output()[-3000:]
    assert not kill_and_survivors(job)
