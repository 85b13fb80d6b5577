"""Security headers on every response, a page that needs nothing the CSP forbids, unguessable
result ids, and no client file name reaching the disk or a header."""

from __future__ import annotations

import builtins
import os
import re
from html.parser import HTMLParser

import pytest
import requests
from starlette.testclient import TestClient

from leve.serve.app import KEY_BYTES, SECURITY_HEADERS, STATIC, ResultStore, create_app, safe_stem
from tests.serve.helpers import gradient_image, image_bytes

PNG = image_bytes(gradient_image(20, 30))


def csp_directives(value: str) -> dict[str, set[str]]:
    out = {}
    for part in value.split(";"):
        name, *sources = part.split()
        out[name] = set(sources)
    return out


@pytest.mark.parametrize(("method", "path", "body", "status"), [
    ("GET", "/", None, 200),
    ("GET", "/static/app.js", None, 200),
    ("GET", "/api/info", None, 200),
    ("POST", "/api/predict?name=a.png", PNG, 200),
    ("POST", "/api/predict?name=a.txt", b"not an image", 415),
    ("GET", "/api/results/nope/depth.npy", None, 404),
    ("GET", "/no/such/page", None, 404),
])
def test_every_response_carries_the_security_headers(served, method, path, body, status):
    res = requests.request(method, served + path, data=body, timeout=60)
    assert res.status_code == status
    assert res.headers["x-content-type-options"] == "nosniff"
    assert res.headers["x-frame-options"] == "DENY"
    assert res.headers["referrer-policy"] == "no-referrer"
    csp = csp_directives(res.headers["content-security-policy"])
    assert csp["default-src"] == {"'none'"} and csp["frame-ancestors"] == {"'none'"}
    assert csp["script-src"] == {"'self'"} and "object-src" not in csp  # default-src 'none' covers plugins
    assert res.headers.get("cache-control") == ("no-store" if path.startswith("/api/") else None)


class _PageParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict] = []
        self.inline: list[str] = []
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "script":
            self.scripts.append(a)
        self.inline += [k for k in a if k == "style" or k.startswith("on")]
        self.urls += [v for k, v in a.items() if k in ("src", "href") and v]

    def handle_data(self, data: str) -> None:
        if self.lasttag in ("script", "style") and data.strip():
            self.inline.append(f"<{self.lasttag}> body")


def test_page_needs_nothing_the_policy_forbids(served):
    """'self' scripts and styles only: no inline script, style or handler; images as data: URLs."""
    res = requests.get(served, timeout=30)
    parser = _PageParser()
    parser.feed(res.text)
    assert parser.scripts == [{"src": "static/app.js"}]
    assert parser.inline == []
    assert all(not re.match(r"^[a-z]+:|^//", u) for u in parser.urls), parser.urls  # relative: same origin
    csp = csp_directives(SECURITY_HEADERS["content-security-policy"])
    assert csp["img-src"] == {"'self'", "data:"} and csp["style-src"] == {"'self'"}
    body = requests.post(f"{served}/api/predict", params={"name": "a.png"}, data=PNG, timeout=60).json()
    assert body["input"].startswith("data:image/jpeg;base64,") and body["depth"].startswith("data:image/png;base64,")
    js = (STATIC / "app.js").read_text()
    assert "eval(" not in js and "innerHTML" not in js and "setAttribute(\"style\"" not in js


def test_result_ids_are_random_and_unguessable():
    store = ResultStore(size=4, max_bytes=10**6)
    import numpy as np

    keys = [store.put("same name", np.zeros(1, np.float32)) for _ in range(500)]
    assert len(set(keys)) == 500
    assert KEY_BYTES >= 16  # 128 random bits
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{22}", k) for k in keys)  # token_urlsafe(16): 22 characters
    # no shared prefix or counter: the characters at each position vary across ids
    assert all(len({k[i] for k in keys}) > 20 for i in range(21))


def test_two_uploads_of_the_same_name_get_different_ids(served):
    ids = {requests.post(f"{served}/api/predict", params={"name": "x.png"}, data=PNG, timeout=60).json()["id"]
           for _ in range(3)}
    assert len(ids) == 3


HOSTILE_NAMES = ["../../evil.png", "/tmp/evil.png", "..\\..\\evil.png", "evil\r\nSet-Cookie: a=b.png",
                 'evil"; filename="x.sh.png', "..", ".evil.png", "ünïcode evil.png"]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_safe_stem_is_a_plain_file_name(name):
    stem = safe_stem(name)
    assert re.fullmatch(r"[A-Za-z0-9_-][A-Za-z0-9_.-]*", stem), stem
    assert ".." not in stem and not stem.startswith(".")


def test_client_file_names_never_reach_the_disk_or_headers(serve_config, tmp_path, monkeypatch):
    """Uploads with hostile names: the server opens no file for writing and every download
    name is a sanitised one."""
    client = TestClient(create_app(serve_config))
    monkeypatch.chdir(tmp_path)
    writes: list[str] = []
    real_open, real_os_open = builtins.open, os.open

    def watch_open(file, mode="r", *a, **k):
        if any(c in mode for c in "wax+"):
            writes.append(str(file))
        return real_open(file, mode, *a, **k)

    def watch_os_open(path, flags, *a, **k):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            writes.append(str(path))
        return real_os_open(path, flags, *a, **k)

    monkeypatch.setattr(builtins, "open", watch_open)
    monkeypatch.setattr(os, "open", watch_os_open)
    dispositions = []
    for name in HOSTILE_NAMES:
        body = client.post("/api/predict", params={"name": name}, content=PNG).json()
        for suffix, link in (("_depth16.png", body["downloads"]["png16"]), ("_depth.npy", body["downloads"]["npy"])):
            dispositions.append((safe_stem(name) + suffix, client.get("/" + link).headers["content-disposition"]))
    monkeypatch.undo()
    assert writes == []
    assert list(tmp_path.iterdir()) == []
    assert len(dispositions) == 2 * len(HOSTILE_NAMES)
    for expected, header in dispositions:
        assert header == f'attachment; filename="{expected}"'
        assert "/" not in expected and "\\" not in expected and ".." not in expected
