"""``leve bench serve``: ``leve serve`` under load from a generator on loopback (JSON out).

One run, bounded in count and time: ``clients`` threads each send ``requests`` JPEG uploads
(``height`` x ``width``) back to back, while ``slow`` clients trickle a whole upload over
``slow_seconds`` and one more thread sends oversized bodies (declared and chunked) and malformed
ones (noise, truncated JPEG, empty, GIF, a PNG header claiming gigapixels). The report gives the
latency of the uploads (p50/p90/p99 from the client's side, request sent to answer read), the
HTTP statuses of every kind of request, 5xx and connection errors, how many fast uploads were sent
and answered while each slow one was in flight (slow clients must not block others), the server's
memory (resident set sampled while it runs, and the kernel's peak) and its result cache.

Then the idle-connection case: ``idle`` sockets connect and send nothing (never a byte), and while
they are open ``clients`` clients send one upload each at once; the report gives their statuses
(every one should be 200: connections that have not asked anything do not count against
``serve.max_connections``), their latency, and how many of the idle sockets the server had closed
by the end (``serve.idle_timeout_s``).

:func:`run` starts ``leve serve`` in a child process (which dies with this one) on a free port;
:func:`run_load` drives any running server, which is what the tests do.
"""

from __future__ import annotations

import http.client
import io
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import requests
from PIL import Image

from leve.errors import LeveError

# The child: die with the bench process (whatever kills it), then run the leve CLI.
_LAUNCH = ("import sys; from leve.processes import die_with_parent; die_with_parent(int(sys.argv[1])); "
           "from leve.cli import main; sys.argv = ['leve', *sys.argv[2:]]; main()")


@dataclass(frozen=True)
class LoadPlan:
    """How much load, of which kinds."""

    clients: int = 16            # concurrent uploaders (and the clients of the idle-connection case)
    requests: int = 25           # uploads per client, back to back
    height: int = 480            # of the uploaded JPEGs
    width: int = 640
    slow: int = 2                # clients trickling one upload each
    slow_seconds: float = 5.0    # how long each trickle lasts
    oversized: int = 2           # bodies over the upload limit (alternately declared and chunked)
    malformed: int = 5           # broken bodies (noise, truncated, empty, GIF, gigapixel header)
    timeout_s: float = 600.0     # per request, client side
    idle: int = 64               # connections that send nothing, held open while `clients` upload once each


@dataclass
class Outcome:
    """One request as the client saw it."""

    kind: str
    status: int | None  # None: no HTTP answer (connection error)
    seconds: float
    finished: float     # time.monotonic() when the answer was read
    error: str = ""


# --------------------------------------------------------------------------- bodies


def jpeg_images(height: int, width: int, count: int = 4, seed: int = 0) -> list[bytes]:
    """``count`` distinct photo-like JPEGs (smooth gradients plus noise)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    out = []
    for _ in range(count):
        planes = [np.sin(rng.uniform(2, 9) * xx + rng.uniform(1, 7) * yy + rng.uniform(0, 6)) for _ in range(3)]
        rgb = np.clip(np.stack(planes, -1) * 90 + 128 + rng.normal(0, 10, (height, width, 3)), 0, 255)
        buf = io.BytesIO()
        Image.fromarray(rgb.astype(np.uint8)).save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def gigapixel_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A few hundred bytes of PNG whose header claims ``width`` x ``height`` pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(bytes(width + 1))) + chunk(b"IEND", b"")


def malformed_bodies(jpeg: bytes) -> list[tuple[str, bytes, int]]:
    """(file name, body, expected status) of broken uploads."""
    gif = io.BytesIO()
    Image.new("RGB", (8, 8)).save(gif, format="GIF")
    noise = np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes()
    return [("noise.jpg", noise, 415), ("half.jpg", jpeg[: len(jpeg) // 2], 400), ("empty.jpg", b"", 400),
            ("anim.gif", gif.getvalue(), 415), ("gigapixel.png", gigapixel_png(), 413)]


# --------------------------------------------------------------------------- clients


def raw_post(url: str, target: str, head: dict[str, str], chunks: Iterable[bytes], pause: float, timeout: float) -> int:
    """POST over a plain socket, sending ``chunks`` with ``pause`` seconds between them; the status.

    Sending stops early when the server has answered and closed (an early 413, a 408)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 80), timeout=timeout) as sock:
        lines = [f"POST {target} HTTP/1.1", f"Host: {parts.netloc}", *(f"{k}: {v}" for k, v in head.items())]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        try:
            for piece in chunks:
                sock.sendall(piece)
                if pause:
                    time.sleep(pause)
        except (BrokenPipeError, ConnectionResetError):
            pass
        response = http.client.HTTPResponse(sock)
        response.begin()
        response.read()
        return response.status


def _timed(kind: str, call: Callable[[], int]) -> Outcome:
    start = time.monotonic()
    try:
        status: int | None = call()
        error = ""
    except (OSError, http.client.HTTPException, requests.RequestException) as exc:
        status, error = None, f"{exc.__class__.__name__}: {exc}"
    end = time.monotonic()
    return Outcome(kind, status, end - start, end, error)


def fast_client(url: str, images: list[bytes], plan: LoadPlan, index: int, start: threading.Barrier) -> list[Outcome]:
    """``plan.requests`` uploads back to back, then one download of the last result."""
    out = []
    last: dict[str, Any] = {}
    with requests.Session() as session:
        start.wait()
        for i in range(plan.requests):
            def call(i: int = i) -> int:
                res = session.post(f"{url}/api/predict", params={"name": f"client{index}_{i}.jpg"},
                                   data=images[(index + i) % len(images)], timeout=plan.timeout_s)
                if res.status_code == 200:
                    last.update(res.json())
                return res.status_code
            out.append(_timed("predict", call))
        if "downloads" in last:
            out.append(_timed("download", lambda: session.get(f"{url}/{last['downloads']['npy']}",
                                                              timeout=plan.timeout_s).status_code))
    return out


def slow_client(url: str, body: bytes, plan: LoadPlan, index: int, start: threading.Barrier) -> list[Outcome]:
    """One valid upload trickled in small pieces over ``plan.slow_seconds``."""
    steps = max(1, int(plan.slow_seconds / 0.05))
    size = -(-len(body) // steps)
    pieces = [body[i : i + size] for i in range(0, len(body), size)]
    head = {"Content-Type": "image/jpeg", "Content-Length": str(len(body)), "Connection": "close"}
    start.wait()
    return [_timed("slow", lambda: raw_post(url, f"/api/predict?name=slow{index}.jpg", head, pieces,
                                            plan.slow_seconds / len(pieces), plan.timeout_s))]


def abusive_client(url: str, jpeg: bytes, plan: LoadPlan, limit: int, start: threading.Barrier) -> list[Outcome]:
    """Oversized bodies (declared, then chunked without a length) and malformed ones, one after another."""
    out = []
    start.wait()
    for i in range(plan.oversized):
        if i % 2 == 0:
            head = {"Content-Length": str(limit + 1), "Connection": "close"}
            chunks: Iterable[bytes] = [bytes(min(limit, 65536))]
        else:
            head = {"Transfer-Encoding": "chunked", "Connection": "close"}
            piece = 65536
            chunks = (f"{piece:x}\r\n".encode() + bytes(piece) + b"\r\n" for _ in range(limit // piece + 2))
        out.append(_timed("oversized", partial(raw_post, url, f"/api/predict?name=big{i}.jpg", head, chunks, 0.0,
                                               plan.timeout_s)))
    bodies = malformed_bodies(jpeg)
    with requests.Session() as session:
        for i in range(plan.malformed):
            name, body, _ = bodies[i % len(bodies)]
            out.append(_timed(f"malformed:{name}", partial(_post, session, url, name, body, plan.timeout_s)))
    return out


def _post(session: requests.Session, url: str, name: str, body: bytes, timeout: float) -> int:
    return session.post(f"{url}/api/predict", params={"name": name}, data=body, timeout=timeout).status_code


# --------------------------------------------------------------------------- memory


def rss_bytes(pid: int, field: str = "VmRSS") -> int | None:
    """A memory field of ``/proc/<pid>/status`` in bytes (VmRSS now, VmHWM the peak); None elsewhere."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        return None
    return None


class MemorySampler:
    """Samples a process's resident set every ``interval`` seconds in a thread."""

    def __init__(self, pid: int | None, interval: float = 0.05) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="leve-bench-rss")

    def _run(self) -> None:
        while self.pid is not None and not self._stop.is_set():
            value = rss_bytes(self.pid)
            if value is not None:
                self.samples.append(value)
            self._stop.wait(self.interval)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def report(self) -> dict[str, float | None]:
        """Start, largest sample, end and peak in MB. The peak is the kernel's high-water mark (VmHWM) or
        the largest sample where that is higher: the kernel raises VmHWM lazily (memory glibc hands back
        with ``madvise`` never updates it), so a sample can exceed it; the peak is never below a sample."""
        mb = 1e6
        hwm = rss_bytes(self.pid, "VmHWM") if self.pid is not None else None
        s = self.samples
        peak = max([hwm, *s]) if hwm is not None else None
        return {"rss_start_mb": round(s[0] / mb, 1) if s else None,
                "rss_max_sampled_mb": round(max(s) / mb, 1) if s else None,
                "rss_end_mb": round(s[-1] / mb, 1) if s else None,
                "rss_peak_mb": round(peak / mb, 1) if peak is not None else None,
                "samples": len(s)}


# --------------------------------------------------------------------------- the run


def latency_summary(seconds: list[float]) -> dict[str, float | None]:
    """p50/p90/p99 (numpy's linear interpolation), mean, min and max in milliseconds."""
    if not seconds:
        return {k: None for k in ("p50", "p90", "p99", "mean", "min", "max")}
    ms = np.asarray(seconds) * 1000.0
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {"p50": round(float(p50), 1), "p90": round(float(p90), 1), "p99": round(float(p99), 1),
            "mean": round(float(ms.mean()), 1), "min": round(float(ms.min()), 1), "max": round(float(ms.max()), 1)}


def run_load(url: str, plan: LoadPlan, server_pid: int | None = None) -> dict[str, Any]:
    """Drive the server at ``url`` with ``plan``; the report (see the module docstring)."""
    info = requests.get(f"{url}/api/info", timeout=30).json()
    images = jpeg_images(plan.height, plan.width)
    start = threading.Barrier(plan.clients + plan.slow + 1)
    with MemorySampler(server_pid) as memory, ThreadPoolExecutor(plan.clients + plan.slow + 1) as pool:
        began = time.monotonic()
        jobs = [pool.submit(fast_client, url, images, plan, c, start) for c in range(plan.clients)]
        jobs += [pool.submit(slow_client, url, images[s % len(images)], plan, s, start) for s in range(plan.slow)]
        jobs.append(pool.submit(abusive_client, url, images[0], plan, int(info["max_upload_bytes"]), start))
        outcomes = [o for job in jobs for o in job.result()]
        wall = time.monotonic() - began
        idle = idle_case(url, images[0], plan) if plan.idle else None
    after = requests.get(f"{url}/api/info", timeout=30).json()
    return {**summarise(outcomes, plan, info, after, wall, memory.report()), "idle_connections": idle}


def idle_case(url: str, jpeg: bytes, plan: LoadPlan) -> dict[str, Any]:
    """``plan.idle`` silent connections open, then ``plan.clients`` uploads at once (one each)."""
    parts = urlsplit(url)
    address = (parts.hostname or "127.0.0.1", parts.port or 80)
    silent = [socket.create_connection(address, timeout=plan.timeout_s) for _ in range(plan.idle)]
    try:
        start = threading.Barrier(plan.clients)

        def one(index: int) -> Outcome:
            with requests.Session() as session:
                start.wait()
                return _timed("idle:predict", partial(_post, session, url, f"idle{index}.jpg", jpeg, plan.timeout_s))

        with ThreadPoolExecutor(plan.clients) as pool:
            outcomes = list(pool.map(one, range(plan.clients)))
        closed = sum(1 for s in silent if _closed_by_peer(s))
    finally:
        for s in silent:
            s.close()
    ok = [o for o in outcomes if o.status == 200]
    return {"idle": plan.idle, "clients": plan.clients, "statuses": _statuses(outcomes),
            "latency_ms": latency_summary([o.seconds for o in ok]), "idle_closed_by_server": closed,
            "errors": sorted({o.error for o in outcomes if o.error})[:5]}


def _closed_by_peer(sock: socket.socket) -> bool:
    """True when the server has closed this connection (EOF or reset waiting), without blocking."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def summarise(outcomes: list[Outcome], plan: LoadPlan, info: dict[str, Any], after: dict[str, Any],
              wall: float, memory: dict[str, Any]) -> dict[str, Any]:
    """The JSON report of one load run."""
    predict = [o for o in outcomes if o.kind == "predict"]
    slow = [o for o in outcomes if o.kind == "slow"]
    abusive = [o for o in outcomes if o.kind == "oversized" or o.kind.startswith("malformed")]
    expected = {f"malformed:{n}": s for n, _, s in malformed_bodies(b"\xff\xd8")} | {"oversized": 413}
    fast_ok = [o for o in predict if o.status == 200]
    return {
        "server": {k: info.get(k) for k in ("model", "checkpoint", "device", "resolution", "max_upload_bytes",
                                            "max_pixels")},
        "plan": asdict(plan),
        "wall_s": round(wall, 2),
        "predict": {"requests": len(predict), "ok": len(fast_ok), "statuses": _statuses(predict),
                    "latency_ms": latency_summary([o.seconds for o in fast_ok]),
                    "throughput_per_s": round(len(fast_ok) / wall, 2) if wall > 0 else None,
                    "latencies_ms": sorted(round(o.seconds * 1000.0, 1) for o in fast_ok)},
        "downloads": _statuses([o for o in outcomes if o.kind == "download"]),
        "slow": {"requests": len(slow), "statuses": _statuses(slow), "seconds": [round(o.seconds, 2) for o in slow],
                 "fast_answered_meanwhile": [_answered_during(fast_ok, o) for o in slow]},
        "abusive": {"requests": len(abusive), "statuses": _statuses(abusive),
                    "unexpected": sorted({o.kind for o in abusive if o.status != expected.get(o.kind)})},
        "server_errors_5xx": sum(1 for o in outcomes if o.status is not None and o.status >= 500),
        "connection_errors": sum(1 for o in outcomes if o.status is None),
        "errors": sorted({o.error for o in outcomes if o.error})[:5],
        "memory": memory,
        "result_cache": after.get("result_cache"),
    }


def _answered_during(fast: list[Outcome], slow: Outcome) -> int:
    """How many fast requests were both sent and answered while ``slow`` was in flight (none if it blocked them)."""
    start = slow.finished - slow.seconds
    return sum(1 for o in fast if o.finished - o.seconds >= start and o.finished <= slow.finished)


def _statuses(outcomes: list[Outcome]) -> dict[str, int]:
    counts = Counter("error" if o.status is None else str(o.status) for o in outcomes)
    return dict(sorted(counts.items()))


# --------------------------------------------------------------------------- a server of its own


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(serve_args: list[str], startup_s: float = 300.0) -> tuple[subprocess.Popen[bytes], str, Path]:
    """``leve serve SERVE_ARGS`` on a free loopback port in a child that dies with this process;
    returns it, its URL and its log file once ``api/info`` answers."""
    port = free_port()
    log = Path(tempfile.mkstemp(prefix="leve-bench-serve-", suffix=".log")[1])
    cmd = [sys.executable, "-c", _LAUNCH, str(os.getpid()), "serve", *serve_args,
           "--host", "127.0.0.1", "--port", str(port)]
    with open(log, "wb") as sink:
        proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + startup_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise LeveError(f"leve serve exited with status {proc.returncode}: {_last_line(log)}")
        try:
            if requests.get(f"{url}/api/info", timeout=5).status_code == 200:
                return proc, url, log
        except requests.RequestException:
            pass
        time.sleep(0.2)
    stop_server(proc)
    raise LeveError(f"leve serve did not answer on {url} within {startup_s:g} s: {_last_line(log)}")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, then SIGKILL after 10 s."""
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _last_line(log: Path) -> str:
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "no output"


def run(plan: LoadPlan, serve_args: list[str], progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Start ``leve serve`` with ``serve_args``, load it with ``plan``, stop it; the JSON report."""
    import torch

    from leve.bench import report_header

    progress("starting leve serve ...")
    proc, url, log = start_server(serve_args)
    try:
        progress(f"serving on {url} (pid {proc.pid}); {plan.clients} clients x {plan.requests} uploads "
                 f"of {plan.height}x{plan.width}, {plan.slow} slow, {plan.oversized} oversized, {plan.malformed} malformed")
        result = run_load(url, plan, proc.pid)
    finally:
        stop_server(proc)
        log.unlink(missing_ok=True)
    device = str(result["server"].get("device") or "cpu")
    return {**report_header("serve", torch.device(device)), **result}
