"""leve.atomic: outputs written whole or not at all, under real kernel limits and real processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from leve.atomic import NAME_MAX, atomic_group, atomic_path, check_name, plain_os_error, temporary_name, write_bytes, write_text
from leve.errors import LeveError
from tests.limits import run_limited, temporaries

WRITER = textwrap.dedent("""
    import sys
    from leve.atomic import write_bytes
    from leve.errors import LeveError
    try:
        write_bytes(sys.argv[1], bytes([int(sys.argv[2])]) * int(sys.argv[3]))
    except LeveError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
""")


def test_write_replaces_the_whole_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "sub" / "out.json"
    write_text(target, "first\n")
    write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["out.json"]


def test_a_failing_writer_leaves_the_previous_file_and_no_temporary(tmp_path):
    target = tmp_path / "grid.png"
    target.write_bytes(b"previous")
    with pytest.raises(ZeroDivisionError), atomic_path(target) as tmp:
        tmp.write_bytes(b"half of the new")
        1 / 0  # noqa: B018
    assert target.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]


def test_temporary_names_are_unique_beside_the_target_and_keep_the_suffix(tmp_path):
    target = tmp_path / "examples.png"
    names = {temporary_name(target) for _ in range(50)}
    assert len(names) == 50
    for name in names:
        assert name.parent == tmp_path and name.suffix == ".png" and f"-{os.getpid()}-" in name.name
        assert name != target


@pytest.mark.parametrize("name", ["x" * NAME_MAX, "é" * (NAME_MAX // 2), "a." + "s" * (NAME_MAX - 2), "b" * 200 + ".safetensors"])
def test_the_temporary_name_fits_even_beside_a_longest_name(tmp_path, name):
    target = tmp_path / name
    tmp = temporary_name(target)
    assert len(os.fsencode(tmp.name)) <= NAME_MAX
    write_text(target, "ok")  # the file system takes both names
    assert target.read_text() == "ok" and len(list(tmp_path.iterdir())) == 1


def test_a_name_too_long_is_refused_in_one_line_before_anything_is_written(tmp_path):
    target = tmp_path / ("n" * 300 + ".png")
    with pytest.raises(LeveError) as err:
        write_bytes(target, b"data")
    message = str(err.value)
    assert "\n" not in message and "file name too long (304 bytes; at most 255)" in message and len(message) < 400
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(LeveError):
        check_name(Path("é" * 128))  # 256 bytes in UTF-8


def test_a_folder_name_too_long_is_one_line(tmp_path):
    with pytest.raises(LeveError, match="cannot write: file name too long"):
        write_text(tmp_path / ("d" * 300) / "out.txt", "x")


def test_a_group_replaces_every_target_only_when_all_succeed(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "r" / "b.csv"
    write_text(a, "old a")
    with pytest.raises(RuntimeError), atomic_group() as stage:
        write_text(stage(a), "new a")
        stage(b).write_text("new b")
        raise RuntimeError("the third output failed")
    assert a.read_text() == "old a" and not b.exists()
    assert temporaries(tmp_path) == []
    with atomic_group() as stage:
        write_text(stage(a), "new a")
        write_text(stage(b), "new b")
        assert a.read_text() == "old a"  # nothing is replaced before the block ends
    assert (a.read_text(), b.read_text()) == ("new a", "new b") and temporaries(tmp_path) == []


def test_library_write_failures_are_one_line():
    torch_message = RuntimeError("[enforce fail at inline_container.cc:603] . PytorchStreamWriter failed writing file "
                                 "data/0: file write failed")
    err = plain_os_error(torch_message, Path("m/best.pt"))
    assert err is not None and str(err).startswith("m/best.pt: cannot write:")
    assert plain_os_error(RuntimeError("shape mismatch"), Path("x")) is None
    assert plain_os_error(OSError(28, "No space left on device"), Path("x")) is not None


def test_disk_full_in_a_real_process_is_one_line_and_keeps_the_previous_file(tmp_path):
    """A real write(2) failure: the file-size limit of the process (EFBIG, as ENOSPC on a full disk)."""
    target = tmp_path / "metrics.json"
    target.write_bytes(b"p" * 100)
    (tmp_path / "writer.py").write_text(WRITER)
    done = run_limited([sys.executable, "writer.py", str(target), "65", "1000000"], 65536, tmp_path)
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {target}: cannot write: file too large"), done.stderr
    assert target.read_bytes() == b"p" * 100
    assert temporaries(tmp_path) == []
    # the same write under the limit succeeds: the limit, not the program, made the difference
    assert run_limited([sys.executable, "writer.py", str(target), "65", "1000"], 65536, tmp_path).returncode == 0
    assert target.read_bytes() == b"A" * 1000


def test_concurrent_writers_never_leave_a_mixed_file(tmp_path):
    """Two real processes replace one file 200 times each: every read sees one writer's whole content."""
    target = tmp_path / "card.md"
    loop = textwrap.dedent("""
        import sys
        from leve.atomic import write_bytes
        for _ in range(200):
            write_bytes(sys.argv[1], bytes([int(sys.argv[2])]) * 200_000)
    """)
    (tmp_path / "loop.py").write_text(loop)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    procs = [subprocess.Popen([sys.executable, "loop.py", str(target), str(v)], cwd=tmp_path, env=env) for v in (65, 66)]
    while any(p.poll() is None for p in procs):
        if target.exists():
            data = target.read_bytes()
            assert len(data) == 200_000 and len(set(data)) == 1, "a reader saw a partly written file"
    assert [p.wait(timeout=120) for p in procs] == [0, 0]
    assert target.read_bytes() in (b"A" * 200_000, b"B" * 200_000)
    assert temporaries(tmp_path) == []


def test_stale_temporaries_are_what_a_killed_writer_leaves(tmp_path):
    """A real writer process killed (SIGKILL) while its temporary file is open: the file is found, the outputs are not."""
    from leve.atomic import stale_temporaries

    (tmp_path / "best.pt").write_bytes(b"kept")
    (tmp_path / "notes.tmp").write_bytes(b"not ours")
    script = textwrap.dedent("""
        import os, signal, sys
        from leve.atomic import atomic_path
        with atomic_path(sys.argv[1]) as tmp:
            tmp.write_bytes(b"half")
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path / "last.pt")], env=env, timeout=60)
    assert done.returncode == -9
    left = stale_temporaries(tmp_path)
    assert [p.read_bytes() for p in left] == [b"half"] and left[0].name.startswith(".last.pt.tmp-")
    assert not (tmp_path / "last.pt").exists()
