"""``leve serve`` under load: no 5xx, slow clients do not block others, bounded result cache,
upload timeout; ``leve bench serve`` reports latencies that match its own raw numbers."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from pathlib import Path

import numpy as np
import pytest
import requests

from leve.bench.serve import LoadPlan, latency_summary, run_load
from leve.serve.app import ResultStore
from leve.serve.images import UploadError
from tests.serve.helpers import gradient_image, image_bytes


def naive_percentile(values: list[float], q: float) -> float:
    """Linear interpolation between the two closest ranks (numpy's default), written out."""
    v = sorted(values)
    pos = (len(v) - 1) * q / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (pos - lo)


def test_scaled_down_load_has_no_5xx_and_every_request_is_answered(served):
    plan = LoadPlan(clients=4, requests=4, height=60, width=80, slow=2, slow_seconds=0.6, oversized=2,
                    malformed=5, timeout_s=60)
    report = run_load(served, plan)
    assert report["server_errors_5xx"] == 0 and report["connection_errors"] == 0, report["errors"]
    assert report["predict"]["requests"] == 16 and report["predict"]["statuses"] == {"200": 16}
    assert report["downloads"] == {"200": 4}
    assert report["slow"]["statuses"] == {"200": 2} and min(report["slow"]["seconds"]) >= 0.6
    assert len(report["slow"]["fast_answered_meanwhile"]) == 2
    # oversized: declared and chunked -> 413; malformed: noise 415, truncated 400, empty 400, GIF 415, gigapixel 413
    assert report["abusive"]["statuses"] == {"400": 2, "413": 3, "415": 2} and report["abusive"]["unexpected"] == []
    raw = report["predict"]["latencies_ms"]
    assert len(raw) == 16
    for q in (50, 90, 99):
        assert report["predict"]["latency_ms"][f"p{q}"] == pytest.approx(naive_percentile(raw, q), abs=0.11)
    assert report["predict"]["latency_ms"]["max"] == pytest.approx(max(raw), abs=0.06)
    # 64 connections that never send a byte, held open while the 4 clients upload once each: all answered
    idle = report["idle_connections"]
    assert (idle["idle"], idle["clients"], idle["statuses"]) == (64, 4, {"200": 4}), idle


def test_latency_summary_of_known_values():
    # 0..100 ms in 101 steps: the q-th percentile is q ms exactly
    summary = latency_summary([i / 1000 for i in range(101)])
    assert (summary["p50"], summary["p90"], summary["p99"], summary["mean"]) == (50.0, 90.0, 99.0, 50.0)
    assert latency_summary([])["p50"] is None


def test_reported_peak_is_never_below_a_sample():
    """The kernel's VmHWM can lag a sampled VmRSS (CI saw 520.2 MB sampled, 520.1 MB peak): the report's peak
    is the larger of the two, so the two figures it prints never contradict each other."""
    import os

    from leve.bench.serve import MemorySampler, rss_bytes

    sampler = MemorySampler(os.getpid())
    sampler.samples = [10**13]  # far above this process's high-water mark
    report = sampler.report()
    assert report["rss_peak_mb"] == report["rss_max_sampled_mb"] == 1e7
    sampler.samples = [1000, 2000]
    hwm = rss_bytes(os.getpid(), "VmHWM")
    assert hwm is not None and sampler.report()["rss_peak_mb"] >= round(hwm / 1e6, 1)
    assert sampler.report()["rss_max_sampled_mb"] == 0.0


def test_fast_requests_counted_while_a_slow_one_is_in_flight():
    from leve.bench.serve import Outcome, _answered_during

    slow = Outcome("slow", 200, seconds=10.0, finished=20.0)  # in flight from t = 10 to t = 20
    fast = [Outcome("predict", 200, seconds=2.0, finished=11.0),   # sent before the slow one: no
            Outcome("predict", 200, seconds=1.0, finished=12.0),   # yes
            Outcome("predict", 200, seconds=7.5, finished=19.5),   # yes
            Outcome("predict", 200, seconds=2.0, finished=21.0)]   # answered after it: no
    assert _answered_during(fast, slow) == 2


def _partial_upload(url: str, body: bytes, release: threading.Event | None, result: dict) -> None:
    """Send the headers and half the body, wait for ``release`` and send the rest (with no
    ``release``, send nothing more); keep the status and body of the answer."""
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(f"POST /api/predict?name=slow.png HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len(body)}\r\n"
                     f"Connection: close\r\n\r\n".encode() + body[: len(body) // 2])
        result["sent_half"] = True
        if "half_sent" in result:
            result["half_sent"].set()
        if release is not None:
            release.wait(60)
            sock.sendall(body[len(body) // 2 :])
        response = http.client.HTTPResponse(sock)
        response.begin()
        result["status"], result["body"] = response.status, response.read()


def test_a_stalled_upload_does_not_block_other_clients(serve_with):
    """With one request allowed to decode and predict at a time, a client stuck mid-upload still
    lets ten others through: bodies are read before a request takes its turn."""
    url = serve_with(max_active=1)
    release, half_sent = threading.Event(), threading.Event()
    result: dict = {"half_sent": half_sent}
    body = image_bytes(gradient_image(40, 60))
    stalled = threading.Thread(target=_partial_upload, args=(url, body, release, result))
    stalled.start()
    try:
        # the stalled head is in the server's socket before the others connect (not left to thread scheduling);
        # the server reads it no later than the first of them
        assert half_sent.wait(60)
        for i in range(10):
            res = requests.post(f"{url}/api/predict", params={"name": f"f{i}.png"}, data=body, timeout=60)
            assert res.status_code == 200
        assert result.get("sent_half") and "status" not in result  # still waiting, mid-upload
    finally:
        release.set()
        stalled.join(60)
    assert result["status"] == 200 and json.loads(result["body"])["width"] == 60


def test_upload_slower_than_the_timeout_gets_408(serve_with):
    url = serve_with(upload_timeout_s=0.5)
    result: dict = {}
    _partial_upload(url, image_bytes(gradient_image(40, 60)), None, result)  # half the body, then silence
    assert result["status"] == 408
    assert json.loads(result["body"]) == {"error": "slow.png: upload not received within 0.5 s"}


def test_result_cache_keeps_the_newest_under_its_byte_cap():
    one = np.zeros((10, 25), np.float32)  # 1,000 bytes
    store = ResultStore(size=10, max_bytes=3_500)
    keys = [store.put(f"r{i}", one + i) for i in range(6)]
    assert store.stats() == {"results": 3, "bytes": 3_000, "max_results": 10, "max_bytes": 3_500}
    for i, key in enumerate(keys):
        if i < 3:
            with pytest.raises(UploadError, match="expired or unknown"):
                store.get(key)
        else:
            stem, depth = store.get(key)
            assert stem == f"r{i}" and depth[0, 0] == i
    big = store.put("big", np.zeros(1_000, np.float32))  # 4,000 bytes: more than the cap, not kept
    with pytest.raises(UploadError):
        store.get(big)
    assert store.stats()["bytes"] == 3_000
    counted = ResultStore(size=2, max_bytes=10**9)
    for i in range(5):
        counted.put(f"r{i}", one)
    assert counted.stats()["results"] == 2 and counted.stats()["bytes"] == 2_000


def test_live_server_holds_no_more_result_bytes_than_its_cap(serve_with):
    # a 30x40 float32 map is 4,800 bytes, its RGB kept for the point cloud 3,600: two fit
    url = serve_with(max_result_bytes=20_000)
    ids = []
    for i in range(5):
        res = requests.post(f"{url}/api/predict", params={"name": f"r{i}.png"},
                            data=image_bytes(gradient_image(30, 40)), timeout=60)
        ids.append(res.json()["downloads"]["npy"])
    cache = requests.get(f"{url}/api/info", timeout=30).json()["result_cache"]
    assert cache == {"results": 2, "bytes": 16_800, "max_results": 8, "max_bytes": 20_000}
    statuses = [requests.get(f"{url}/{link}", timeout=30).status_code for link in ids]
    assert statuses == [404, 404, 404, 200, 200]


def test_serve_limits_are_checked():
    from leve.errors import LeveError
    from leve.serve.config import load_config

    with pytest.raises(LeveError, match="serve.max_result_bytes must be >= 1, got 0"):
        load_config({"max_result_bytes": 0}, params_file=Path("/nonexistent.yaml"))
    with pytest.raises(LeveError, match="serve.upload_timeout_s must be > 0"):
        load_config({"upload_timeout_s": -1.0}, params_file=Path("/nonexistent.yaml"))


@pytest.mark.slow
def test_bench_serve_cli_reports_its_own_numbers(run_cli, serve_checkpoint, tmp_path):
    """`leve bench serve` starts a real `leve serve` child, loads it and stops it (about 10 s)."""
    out = tmp_path / "bench.json"
    res = run_cli("bench", "serve", "--checkpoint", serve_checkpoint, "--device", "cpu", "--clients", "2",
                  "--requests", "3", "--height", "48", "--width", "64", "--slow", "1", "--slow-seconds", "0.3",
                  "--oversized", "2", "--malformed", "5", "--params", tmp_path / "none.yaml",
                  "--set", "max_upload_bytes=300000", "--out", out)
    assert res.code == 0, res.stderr
    printed, saved = json.loads(res.stdout), json.loads(out.read_text())
    assert "latencies_ms" not in printed["predict"] and len(saved["predict"]["latencies_ms"]) == 6
    assert saved["bench"] == "serve" and saved["server"]["checkpoint"] == str(serve_checkpoint)
    assert saved["server"]["max_upload_bytes"] == 300_000
    assert saved["predict"]["statuses"] == {"200": 6} and saved["server_errors_5xx"] == 0
    assert saved["abusive"]["unexpected"] == [] and saved["slow"]["statuses"] == {"200": 1}
    raw = saved["predict"]["latencies_ms"]
    assert saved["predict"]["latency_ms"]["p50"] == pytest.approx(naive_percentile(raw, 50), abs=0.11)
    assert saved["predict"]["latency_ms"]["p99"] == pytest.approx(naive_percentile(raw, 99), abs=0.11)
    assert saved["idle_connections"]["statuses"] == {"200": 2}  # 64 silent connections keep nobody out
    # The samples are one series (its first <= its largest); the peak is reported as never below a sample
    # (the kernel's VmHWM alone can be: it is raised lazily). No comparison of two racing measurements.
    memory = saved["memory"]
    assert memory["samples"] > 0 and 50 < memory["rss_start_mb"] <= memory["rss_max_sampled_mb"] <= memory["rss_peak_mb"]
