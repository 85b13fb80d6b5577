"""An S3 server on loopback for the store tests: moto's server (``ThreadedMotoServer``) on 127.0.0.1,
reached by s3fs (and DVC's S3 remote) with fake credentials from the standard ``AWS_*`` variables.

Import the fixtures into a test module (``from tests.store.loopback import endpoint_fixture, s3_fixture``):
they are the fixtures ``endpoint`` (the server's URL, one server per module) and ``s3``."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from leve.datasets import stage
from leve.params import Override

SIZES = {"height": 24, "width": 32, "train": 3, "val": 2, "test": 5, "block_size": 2}
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module", name="endpoint")
def endpoint_fixture():
    moto_server = pytest.importorskip("moto.server")
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture(name="s3")
def s3_fixture(endpoint, monkeypatch, tmp_path):
    """An s3fs filesystem on the loopback server, bucket ``bkt`` created, the credentials fake."""
    s3fs = pytest.importorskip("s3fs")
    for key, value in {**CREDENTIALS, "AWS_ENDPOINT_URL_S3": endpoint, "AWS_MAX_ATTEMPTS": "1",
                       "LEVE_STAGING": str(tmp_path / "staging")}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem()
    if fs.exists("bkt"):
        fs.rm("bkt", recursive=True)
    fs.mkdir("bkt")
    fs.invalidate_cache()
    yield fs
    s3fs.S3FileSystem.clear_instance_cache()


def prepare(url: str, **over: int) -> Any:
    """`leve prepare synthetic --out URL` with small sizes, through the stage (as the CLI calls it)."""
    sizes = {**SIZES, **over}
    overrides = {"out": Override(url), **{k: Override(str(v)) for k, v in sizes.items()}, "workers": Override("1")}
    return stage.run("synthetic", overrides, show_progress=False)
