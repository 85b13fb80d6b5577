"""Streamed downloads (the same bytes as the whole-file writers, a block of rows at a time) and a real
``leve serve`` process: a client that disconnects mid-body is one log line, and three concurrent
point-cloud downloads of a 24-megapixel result take no more memory than one (the kernel's peak
resident set, reset between the two with ``/proc/<pid>/clear_refs``)."""

from __future__ import annotations

import io
import socket
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests

from leve.bench.serve import rss_bytes, start_server, stop_server
from leve.outputs.intrinsics import Intrinsics
from leve.outputs.pointcloud import cloud_bytes
from leve.predict import depth_npy
from leve.serve import pointcloud
from leve.serve.pointcloud import cloud_chunks, npy_chunks
from tests.serve.helpers import gradient_image, image_bytes


def _depth_with_holes(h: int, w: int) -> np.ndarray:
    rng = np.random.default_rng(3)
    depth = rng.uniform(0.3, 9.0, (h, w)).astype(np.float32)
    depth[rng.random((h, w)) < 0.1] = 0.0
    depth[0, :5] = np.nan
    depth[-1, -3:] = -1.0
    return depth


@pytest.mark.parametrize("chunk_bytes", [1, 5_000, 4_000_000], ids=["a row a chunk", "a few rows", "whole"])
def test_streamed_downloads_are_the_bytes_of_the_whole_file_writers(monkeypatch, chunk_bytes):
    monkeypatch.setattr(pointcloud, "CHUNK_BYTES", chunk_bytes)
    depth = _depth_with_holes(37, 53)
    rgb = np.random.default_rng(4).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    k = Intrinsics(41.5, 40.25, 26.3, 18.1, "test")
    chunks, size = cloud_chunks(depth, rgb, k)
    streamed = list(chunks)
    assert b"".join(streamed) == cloud_bytes(depth, rgb, k) and size == len(b"".join(streamed))
    if chunk_bytes == 1:
        assert len(streamed) == 1 + 37  # the header, then one block per row
    chunks, size = npy_chunks(depth)
    streamed = list(chunks)
    assert b"".join(streamed) == depth_npy(depth) and size == len(b"".join(streamed))
    np.testing.assert_array_equal(np.load(io.BytesIO(b"".join(streamed))), depth)


# --------------------------------------------------------------------------- a real leve serve process


@pytest.fixture(scope="module")
def real_server(serve_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int, Path]]:
    """``leve serve`` in a child process on a free port: its URL, pid and log file."""
    params = tmp_path_factory.mktemp("real") / "none.yaml"
    proc, url, log = start_server(["--checkpoint", str(serve_checkpoint), "--device", "cpu", "--params", str(params),
                                   "--set", "samples=0", "--set", "warmup=false", "--set", "max_pixels=24000000",
                                   "--set", "max_upload_bytes=20000000", "--set", "max_result_bytes=400000000"])
    try:
        yield url, proc.pid, log
    finally:
        stop_server(proc)
        log.unlink(missing_ok=True)


def _lines(log: Path) -> list[str]:
    return [line for line in log.read_text(errors="replace").splitlines() if line.strip()]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_client_gone_mid_body_is_one_log_line(real_server):
    url, _, log = real_server
    port = int(url.rsplit(":", 1)[1])
    body = image_bytes(gradient_image(40, 60))
    before = len(_lines(log))
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(f"POST /api/predict?name=gone.png HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                     + body[:100])
        ok = requests.post(f"{url}/api/predict", params={"name": "ok.png"}, data=body, timeout=60)  # it is being read
        assert ok.status_code == 200
    for _ in range(600):  # the server notices the close on its own; a bounded wait for its line
        if len(_lines(log)) > before:
            break
        requests.get(f"{url}/api/info", timeout=60)
    # a request after the line: anything the disconnect logs (a traceback) is written before it ends
    assert requests.post(f"{url}/api/predict", params={"name": "ok.png"}, data=body, timeout=60).status_code == 200
    new = _lines(log)[before:]
    assert len(new) == 1, new
    assert new[0].startswith("leve serve: 127.0.0.1:") and new[0].endswith(
        f"disconnected during the upload of gone (100 of {len(body):,} bytes received)")


def _peak_after_reset(pid: int, work) -> int:
    """Reset the kernel's peak resident set of ``pid`` to its current size, run ``work``, read the peak."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    work()
    peak = rss_bytes(pid, "VmHWM")
    assert peak is not None
    return peak


def _download(url: str) -> int:
    with requests.get(url, stream=True, timeout=300) as res:
        assert res.status_code == 200
        return sum(len(chunk) for chunk in res.iter_content(1 << 20))


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_three_point_cloud_downloads_take_no_more_memory_than_one(real_server):
    """A 24-megapixel upload (6000x4000); the PLY is 24 M points x 15 bytes = 360 MB. Peak RSS of the
    server while one download runs, then while three run at once: within 1.5x (here: about equal;
    built whole, three clouds at once took 6 GB)."""
    url, pid, _ = real_server
    yy, xx = np.mgrid[0:4000, 0:6000]
    rgb = np.stack([xx % 256, yy % 256, (xx // 24 + yy // 16) % 256], -1).astype(np.uint8)
    jpeg = image_bytes(rgb, "JPEG", quality=80)
    del rgb, yy, xx
    res = requests.post(f"{url}/api/predict", params={"name": "big.jpg"}, data=jpeg, timeout=600)
    assert res.status_code == 200, res.text
    link = f"{url}/{res.json()['downloads']['ply']}"
    sizes: list[int] = []
    one = _peak_after_reset(pid, lambda: sizes.append(_download(link)))
    with ThreadPoolExecutor(3) as pool:
        three = _peak_after_reset(pid, lambda: sizes.extend(pool.map(_download, [link] * 3)))
    assert len(sizes) == 4 and len(set(sizes)) == 1 and 24_000_000 * 15 < sizes[0] < 24_000_000 * 15 + 1000
    print(f"\nserver peak RSS: one PLY download {one / 1e6:.1f} MB, three at once {three / 1e6:.1f} MB "
          f"({three / one:.3f}x); each download {sizes[0]:,} bytes")
    assert three <= 1.5 * one
