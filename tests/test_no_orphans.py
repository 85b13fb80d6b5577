"""Nothing lingers: every command that starts processes leaves none behind when it is killed,
by SIGKILL too. Real commands in their own process groups, real signals, /proc."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import sys
from pathlib import Path

import pytest

from tests.factories import synthetic_store
from tests.processes import Job, alive, cmdline, kill_all, kill_and_survivors, parent_of, start, tree, wait_until

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
    assert job.proc.returncode != 0, job.output()[-500:]  # stopped by the signal, not run to its end


@pytest.mark.slow
def test_teacher_cache_workers_die_with_it(store: Path, tmp_path: Path) -> None:
    args = ["teacher-cache", "--dataset", "synthetic", "--model", "tiny-random", "--split", "train", "--workers", "2",
            "--batch-size", "1", f"--set=data_dir={store.parent}", f"--set=out_dir={tmp_path / 'teacher'}"]
    _killed_leaves_nothing(start(args, tmp_path, tmp_path / "log"), 2)


def _train_params(path: Path, store: Path, out: Path, workers: int) -> Path:
    path.write_text(
        f"paths:\n  stores: {store.parent}\n"
        f"train:\n  dataset: synthetic\n  resolution: [72, 96]\n  workers: {workers}\n"
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


# --------------------------------------------------------------------------- a command ends with its driver

# A stand-in for a `leve` command: ties itself to its driver as the CLI's entry point does, says how, waits.
# After its driver is gone it says so (if it is still running), so that "it kept running" is seen, not assumed.
_COMMAND = ("import os, sys, time; from leve.processes import end_with_driver; parent = os.getppid(); "
            "print('tied:', end_with_driver(), flush=True)\n"
            "while os.getppid() == parent: time.sleep(0.05)\n"
            "print('outlived its driver', flush=True); time.sleep(120)")


def _driver_script(how: str) -> str:
    """A Python driver that starts the command ``how`` and waits (killed by the test meanwhile)."""
    command = [sys.executable, "-c", _COMMAND]
    if how == "sh -c":  # dash (/bin/sh here) keeps running as the command's parent, as under dvc repro
        command = ["/bin/sh", "-c", shlex.join(command) + "; echo after"]
    spawn = f"import subprocess, threading, time; subprocess.Popen({command!r})"
    if how == "runner ignores SIGHUP":  # as some CI runners and daemons start everything: no user's nohup
        spawn = ("import signal, subprocess, threading, time; signal.signal(signal.SIGHUP, signal.SIG_IGN); "
                 f"subprocess.Popen({command!r})")
    if how == "threaded":  # a second thread alive: the kernel's parent-death signal is per thread, so leve polls
        spawn = ("import subprocess, threading, time; threading.Thread(target=time.sleep, args=(600,), daemon=True).start(); "
                 f"subprocess.Popen({command!r})")
    return spawn + "; time.sleep(600)"


def _command_of(job: Job) -> int:
    """The pid of the stand-in command under the driver."""
    pids = [pid for pid, _ in tree(job.pid) if cmdline(pid)[-1:] == [_COMMAND] and cmdline(pid)[0] == sys.executable]
    assert len(pids) == 1, pids
    return pids[0]


@pytest.mark.parametrize(("how", "tied"), [("direct", "pdeathsig"), ("sh -c", "watch"), ("threaded", "watch"),
                                         ("runner ignores SIGHUP", "pdeathsig")])
def test_a_command_dies_with_its_killed_driver(tmp_path: Path, how: str, tied: str) -> None:
    """SIGKILL of the process that started a leve command (directly, through a lingering `sh -c`, from a
    multi-threaded driver, or from one that ignores SIGHUP) ends the command within seconds."""
    job = start(["-c", _driver_script(how)], tmp_path, tmp_path / "log", cmd=[sys.executable])
    try:
        wait_until(lambda: "tied:" in job.output() or job.proc.poll() is not None, 60, "the command to start")
        assert f"tied: {tied}\n" in job.output(), job.output()
        _command_of(job)
        left = kill_and_survivors(job)
    finally:
        kill_all(tree(job.pid))  # nothing of a failed test stays
    assert not left, f"{len(left)} process(es) outlived the driver ({how}): {sorted(left)}"


@pytest.mark.parametrize(("how", "env", "tied"), [("nohup", {}, "nohup"), ("direct", {"LEVE_KEEP_ALIVE": "1"}, "keep-alive")],
                         ids=["nohup in a shell script", "LEVE_KEEP_ALIVE"])
def test_nohup_and_keep_alive_outlive_the_driver(tmp_path: Path, how: str, env: dict[str, str], tied: str) -> None:
    """What a user asked to outlive its terminal keeps running when its driver (a shell script running
    `nohup ...`, or any process with LEVE_KEEP_ALIVE=1) dies."""
    if how == "nohup":
        script = tmp_path / "start.sh"
        script.write_text(f"nohup {shlex.join([sys.executable, '-c', _COMMAND])}\necho after\n")
        job = start([str(script)], tmp_path, tmp_path / "log", env, cmd=["/bin/sh"])
    else:
        job = start(["-c", _driver_script(how)], tmp_path, tmp_path / "log", env, cmd=[sys.executable])
    log = job.log  # not a terminal: nohup leaves the output where it goes
    try:
        wait_until(lambda: "tied:" in log.read_text(), 60, "the command to start")
        assert f"tied: {tied}\n" in log.read_text(), log.read_text()
        command = _command_of(job)
        os.kill(job.pid, signal.SIGKILL)
        job.proc.wait(60)
        wait_until(lambda: "outlived its driver" in log.read_text(), 60, "the command to see its driver gone")
        assert parent_of(command) not in (None, job.pid)
    finally:
        kill_all(tree(job.pid))  # the command too: it is in the driver's process group


def test_a_session_leader_keeps_running(tmp_path: Path) -> None:
    """``setsid leve ...``: the user detached the command from its session; leve does not tie it."""
    job = start(["-c", _COMMAND], tmp_path, tmp_path / "log", cmd=[sys.executable])  # start() makes a session leader
    try:
        wait_until(lambda: "tied:" in job.output(), 60, "the command to start")
        assert "tied: session leader" in job.output()
    finally:
        kill_and_survivors(job)


def test_guard_leaves_nothing_when_its_command_ends(tmp_path: Path) -> None:
    """A command that ends leaving a background process: the guard kills what it left, and exits with
    the command's status."""
    job = start(["-m", "leve.processes", str(os.getpid()), "/bin/sh", "-c", "sleep 600 & echo started; exit 3"],
                tmp_path, tmp_path / "log", cmd=[sys.executable])
    procs = set()
    wait_until(lambda: bool(procs.update(tree(job.pid)) or "started" in job.output()), 60, "the command")
    assert job.finish(60) == 3
    wait_until(lambda: not alive(procs | tree(job.pid)), 10, "what the command left to end")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_guard_kills_the_whole_tree_when_its_parent_dies(tmp_path: Path, sig: int) -> None:
    """The guard's parent killed while the command runs a child and a grandchild that would ignore it all
    (a process whose parent dies comes back to the guard, a subreaper, instead of escaping)."""
    script = ("import subprocess, sys, time; "
              "subprocess.Popen([sys.executable, '-m', 'leve.processes', str(__import__('os').getpid()), '/bin/sh', '-c', "
              "'(trap \"\" TERM HUP; sleep 600) & sleep 600; echo never']); time.sleep(600)")
    job = start(["-c", script], tmp_path, tmp_path / "log", cmd=[sys.executable])
    job.wait_for("the command's two sleeps", lambda pids: sum(cmdline(p)[:1] == ["sleep"] for p in pids) == 2, 60)
    left = kill_and_survivors(job, sig)
    assert not left, f"{len(left)} process(es) outlived the guard's parent: {[(p, cmdline(p)) for p, _ in sorted(left)]}"


STAGES = ("prepare", "teacher-cache", "train", "eval", "bench", "tables")


def _leve_stage(pids: set[int], name: str) -> list[int]:
    """The pids running the ``leve NAME`` command (the console script ``.../leve NAME`` or ``-m leve NAME``),
    not its forked workers (same command line, a parent that runs it too)."""
    def runs(pid: int | None) -> bool:
        args = cmdline(pid) if pid else []
        return any((arg == "leve" or arg.endswith("/leve")) and nxt == name for arg, nxt in zip(args, args[1:]))

    return [pid for pid in pids if runs(pid) and not runs(parent_of(pid))]


@pytest.mark.slow
def test_killed_dvc_repro_leaves_no_stage_running(store: Path, tmp_path: Path) -> None:
    """``dvc repro`` (through /bin/sh, which stays as the stage's parent) is killed while `leve train` runs
    with two loader workers: the stage and its workers end."""
    import shutil

    params = _train_params(tmp_path / "params.yaml", store, tmp_path, workers=2)
    leve = Path(sys.executable).parent / "leve"
    (tmp_path / "dvc.yaml").write_text(f"stages:\n  train:\n    cmd: {leve} train --params {params}\n")
    dvc = shutil.which("dvc", path=str(Path(sys.executable).parent)) or "dvc"
    env = {"SHELL": "/bin/sh", "DVC_NO_ANALYTICS": "1"}
    init = start(["init", "--no-scm", "-q"], tmp_path, tmp_path / "init.log", env, cmd=[dvc])
    assert init.finish(120) == 0, init.output()
    job = start(["repro"], tmp_path, tmp_path / "log", env, cmd=[dvc])

    def training_with_workers(pids: set[int]) -> bool:
        train = _leve_stage(pids, "train")
        return len(train) == 1 and sum(1 for p in pids if parent_of(p) == train[0]) >= 2

    job.wait_for("leve train and its 2 loader workers", training_with_workers)
    left = kill_and_survivors(job)
    assert not left, f"{len(left)} process(es) outlived dvc repro: {[(p, cmdline(p)[:3]) for p, _ in sorted(left)]}"


@pytest.mark.slow
def test_killed_demo_leaves_nothing(tmp_path: Path) -> None:
    """SIGKILL of `leve demo` while dvc runs a stage: dvc, the stage and its workers all end."""
    job = start(["demo", str(tmp_path / "ws"), "--quiet"], tmp_path, tmp_path / "log")

    def a_stage_runs(pids: set[int]) -> bool:
        dvc = [p for p in pids if any(a.endswith("/dvc") or a == "dvc" for a in cmdline(p)[:2])]
        return bool(dvc) and any(_leve_stage(pids, name) for name in STAGES)

    job.wait_for("dvc repro running a leve stage", a_stage_runs, deadline_s=300)
    left = kill_and_survivors(job)
    assert not left, f"{len(left)} process(es) outlived leve demo: {[(p, cmdline(p)[:3]) for p, _ in sorted(left)]}"
