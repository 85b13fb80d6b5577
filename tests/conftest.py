"""Shared test helpers."""

from __future__ import annotations

import http.server
import os
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as leve/cli/__init__.py sets it, before any test module imports torch
# Each pytest-xdist worker gets its share of the cores for torch's intra-op threads (and so do the leve
# processes a test starts, which inherit it): with `-n 2` on 2 cores, two workers of 2 threads each kept
# every parallel region waiting for a core the other worker held. Set OMP_NUM_THREADS to override.
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    os.environ.setdefault("OMP_NUM_THREADS",
                          str(max(1, (os.cpu_count() or 1) // int(os.environ["PYTEST_XDIST_WORKER_COUNT"]))))


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


@pytest.fixture
def run_cli(capsys, monkeypatch):
    """Run ``leve ARGS`` in-process through the real entry point (errors -> exit 1)."""
    from leve.cli import main

    def run(*args: str) -> CliResult:
        monkeypatch.setattr(sys, "argv", ["leve", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out = capsys.readouterr()
        return CliResult(code, out.out, out.err)

    return run


# --------------------------------------------------------------------------- loopback HTTP


class _RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files; honours ``Range: bytes=a-b`` unless the server says otherwise; counts bytes sent."""

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:  # noqa: N802
        path = Path(self.server.root) / self.path.lstrip("/")  # type: ignore[attr-defined]
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        rng = self.headers.get("Range")
        if rng and self.server.ranges:  # type: ignore[attr-defined]
            a, _, b = rng.removeprefix("bytes=").partition("-")
            first, last = int(a), min(int(b) if b else len(data) - 1, len(data) - 1)
            body = data[first : last + 1]
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {first}-{last}/{len(data)}")
        else:
            body = data
            self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        # counted before the write: the client may check the count as soon as it has the last byte
        self.server.sent += len(body)  # type: ignore[attr-defined]
        try:
            self.wfile.write(body)
        except BrokenPipeError:  # the client stopped reading (e.g. a size check): not sent
            self.server.sent -= len(body)  # type: ignore[attr-defined]


@pytest.fixture()
def server_for():
    """Start loopback static-file servers: ``start(root, ranges) -> (server, base_url)``."""
    servers = []

    def start(root: Path, ranges: bool):
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _RangeHandler)
        srv.root, srv.ranges, srv.sent = root, ranges, 0  # type: ignore[attr-defined]
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return srv, f"http://127.0.0.1:{srv.server_address[1]}"

    yield start
    for srv in servers:
        srv.shutdown()
        srv.server_close()


# --------------------------------------------------------------------------- scheduling

# `make test` runs the files on two pytest-xdist workers (--dist loadfile), each taking the next file as it
# finishes one. Files run longest first (the greedy LPT order), so that no long file starts last while the
# other worker idles: tests/durations.json holds each file's seconds, measured by a run with
# LEVE_WRITE_DURATIONS=tests/durations.json (unknown files run after the measured ones; the order of tests
# inside a file is kept).
DURATIONS = Path(__file__).with_name("durations.json")


def _test_file(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    import json

    seconds = json.loads(DURATIONS.read_text()) if DURATIONS.is_file() else {}
    first = {}  # a file's first position: its tests stay together and in order
    for i, item in enumerate(items):
        first.setdefault(_test_file(item.nodeid), i)
    items.sort(key=lambda item: (-seconds.get(_test_file(item.nodeid), 0.0), first[_test_file(item.nodeid)]))


_measured: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if os.environ.get("LEVE_WRITE_DURATIONS"):
        _measured[_test_file(report.nodeid)] = _measured.get(_test_file(report.nodeid), 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    target = os.environ.get("LEVE_WRITE_DURATIONS")
    if target and _measured and not hasattr(session.config, "workerinput"):  # the controller (or a run without xdist)
        import json

        Path(target).write_text(json.dumps({k: round(v, 1) for k, v in sorted(_measured.items())}, indent=1) + "\n")
