"""``leve serve`` cannot be locked by idle or slow clients: real sockets on 127.0.0.1 against uvicorn
run with the settings of ``leve serve`` (:func:`leve.serve.server.uvicorn_options`).

Every loop is bounded and every socket has a timeout; no assertion depends on how fast anything runs:
where a timeout is the subject, the test waits for the server's own close or answer, with a guard."""

from __future__ import annotations

import http.client
import json
import socket
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from leve.serve.app import SECURITY_HEADERS
from tests.serve.helpers import gradient_image, image_bytes

PNG = image_bytes(gradient_image(30, 40))
GUARD_S = 60  # a socket timeout that only a broken server reaches


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=GUARD_S)


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()


def is_open(sock: socket.socket) -> bool:
    """The server has not closed it (nothing to read and no EOF), checked without blocking."""
    sock.setblocking(False)
    try:
        return bool(sock.recv(1)) or False
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        sock.settimeout(GUARD_S)


def assert_security_headers(headers: dict[str, str]) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, (name, headers)


def test_idle_connections_keep_no_client_out(serve_with):
    """64 connections that send nothing (as many as serve.max_connections) and 16 clients uploading at
    once: every upload is answered 200, and the idle connections were still open meanwhile."""
    url = serve_with(idle_timeout_s=600.0)  # the idle ones stay for the whole test
    port = port_of(url)
    idle = [connect(port) for _ in range(64)]
    try:
        start = threading.Barrier(16)

        def upload(i: int) -> int:
            start.wait(GUARD_S)
            return requests.post(f"{url}/api/predict", params={"name": f"c{i}.png"}, data=PNG, timeout=GUARD_S).status_code

        with ThreadPoolExecutor(16) as pool:
            statuses = list(pool.map(upload, range(16)))
        assert statuses == [200] * 16
        assert all(is_open(s) for s in idle)
    finally:
        for s in idle:
            s.close()


@pytest.mark.parametrize("sent", [b"", b"GET / HTTP/1.1\r\nHost: x\r\n"], ids=["nothing", "half a request head"])
def test_a_connection_without_a_request_is_closed(serve_with, sent):
    port = port_of(serve_with(idle_timeout_s=0.2))
    with connect(port) as sock:
        sock.sendall(sent)
        assert sock.recv(1024) == b""  # the server closes it (EOF), without an answer; not the guard's timeout


def test_keep_alive_connection_is_closed_once_idle(serve_with):
    port = port_of(serve_with(idle_timeout_s=1.0))  # longer than any pause between connecting and sending the request
    with connect(port) as sock:
        sock.sendall(b"GET /api/info HTTP/1.1\r\nHost: x\r\n\r\n")
        status, headers, _ = read_response(sock)
        assert status == 200 and headers.get("connection") != "close"
        assert sock.recv(1024) == b""  # idle after its answer: closed


def test_a_request_in_progress_is_not_cut_by_the_idle_timeout(serve_with):
    """A body still arriving is the upload timeout's business: the client gets its 408, not a bare close
    at the (shorter) idle timeout. The idle timeout is far longer than the pause between connecting and
    sending the head, so the request is in progress when it fires."""
    port = port_of(serve_with(idle_timeout_s=1.0, upload_timeout_s=2.0))
    with connect(port) as sock:
        sock.sendall(f"POST /api/predict?name=slow.png HTTP/1.1\r\nHost: x\r\nContent-Length: {len(PNG)}\r\n\r\n".encode()
                     + PNG[:100])
        status, headers, body = read_response(sock)
    assert status == 408 and json.loads(body) == {"error": "slow.png: upload not received within 2 s"}
    assert_security_headers(headers)


def _raw(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    with connect(port) as sock:
        sock.sendall(request)
        return read_response(sock)


def test_responses_of_the_server_stack_carry_the_security_headers(serve_with):
    """h11's 400 (malformed request line or header), the app's 413 and 415, the 503 beyond
    serve.max_connections: every one with the headers."""
    url = serve_with(max_connections=1, upload_timeout_s=60.0)
    port = port_of(url)
    status, headers, body = _raw(port, b"NOT A REQUEST LINE\r\n\r\n")
    assert status == 400 and body == b"Invalid HTTP request received."
    assert_security_headers(headers)
    status, headers, _ = _raw(port, b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
    assert status == 400
    assert_security_headers(headers)

    status, headers, body = _raw(port, b"POST /api/predict?name=big.png HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n"
                                       b"Connection: close\r\n\r\n")
    assert status == 413 and "larger than the upload limit" in json.loads(body)["error"]
    assert_security_headers(headers)
    res = requests.post(f"{url}/api/predict", params={"name": "a.txt"}, data=b"not an image", timeout=GUARD_S)
    assert res.status_code == 415
    assert_security_headers({k.lower(): v for k, v in res.headers.items()})

    # one request in progress (its body half sent) fills max_connections=1: the next is answered 503
    with connect(port) as busy:
        busy.sendall(f"POST /api/predict?name=p.png HTTP/1.1\r\nHost: x\r\nContent-Length: {len(PNG)}\r\n\r\n".encode()
                     + PNG[:100])
        for _ in range(100):  # until the server has taken the request (a bounded retry, not a sleep)
            res = requests.get(f"{url}/api/info", timeout=GUARD_S)
            if res.status_code == 503:
                break
        assert res.status_code == 503 and res.headers["retry-after"] == "1"
        assert "server busy" in res.json()["error"]
        assert_security_headers({k.lower(): v for k, v in res.headers.items()})
        busy.sendall(PNG[100:])
        status, _, _ = read_response(busy)
        assert status == 200
    assert requests.get(f"{url}/api/info", timeout=GUARD_S).status_code == 200  # free again


def test_an_unexpected_500_carries_the_security_headers(serve_with, serve_model, monkeypatch):
    url = serve_with()
    monkeypatch.setattr(serve_model, "predict", lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    res = requests.post(f"{url}/api/predict", params={"name": "a.png"}, data=PNG, timeout=GUARD_S)
    assert res.status_code == 500 and res.json() == {"error": "internal error (RuntimeError); see the server log"}
    assert_security_headers({k.lower(): v for k, v in res.headers.items()})


def test_idle_timeout_must_be_positive():
    from pathlib import Path

    from leve.errors import LeveError
    from leve.serve.config import load_config

    with pytest.raises(LeveError, match="serve.idle_timeout_s must be > 0, got 0"):
        load_config({"idle_timeout_s": 0}, params_file=Path("/nonexistent.yaml"))
