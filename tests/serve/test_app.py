"""The colour bar agrees with the depth colours; the model loads once; random weights are announced; CLI."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from leve.predict import colorize
from leve.serve import render
from leve.serve.app import create_app
from leve.serve.config import Config
from tests.serve.helpers import gradient_image, image_bytes


def test_colour_bar_ticks_match_the_depth_colours():
    """A pixel of depth d has the bar's colour at the tick for d (colour linear in 1/depth)."""
    depth = np.linspace(0.4, 7.3, 4000, dtype=np.float32).reshape(40, 100)
    colours = colorize(depth)
    bar = np.asarray(Image.open(io.BytesIO(render.colour_bar("magma"))))[:, 0, :].astype(int)
    ticks = render.nice_ticks(float(depth.min()), float(depth.max()))
    # t(5 m) = (1/5 - 1/7.3) / (1/0.4 - 1/7.3) = 0.027: too close to the 7.3 m end to label
    assert [t["m"] for t in ticks] == [7.3, 2.0, 1.0, 0.5, 0.4]
    for tick in ticks:
        pixel = np.unravel_index(np.argmin(np.abs(depth - tick["m"])), depth.shape)
        row = round(tick["pos"] * (render.BAR_STEPS - 1))
        assert np.abs(colours[pixel].astype(int) - bar[row]).max() <= 3, tick
    positions = [t["pos"] for t in ticks]
    assert positions == sorted(positions) and positions[0] == 0.0 and positions[-1] == 1.0
    assert min(np.diff(positions)) >= render.MIN_TICK_GAP


def test_ticks_for_a_flat_map():
    assert render.nice_ticks(2.5, 2.5) == [{"m": 2.5, "pos": 0.0}]


def test_display_image_is_downscaled_for_the_page_only():
    shown = Image.open(io.BytesIO(render.display_image(gradient_image(300, 1200), 600)))
    assert shown.size == (600, 150)
    assert Image.open(io.BytesIO(render.display_image(gradient_image(30, 40), 600))).size == (40, 30)


def test_model_is_loaded_once_per_process(serve_config, monkeypatch):
    import leve.models.checkpoint as checkpoint

    calls = []
    real = checkpoint.load_checkpoint
    monkeypatch.setattr(checkpoint, "load_checkpoint", lambda *a, **k: calls.append(a) or real(*a, **k))
    client = TestClient(create_app(serve_config))
    for name in ("a.png", "b.png"):
        res = client.post("/api/predict", params={"name": name}, content=image_bytes(gradient_image(20, 30)))
        assert res.status_code == 200
    assert len(calls) == 1


def test_unexpected_failure_is_a_json_500_and_the_server_carries_on(serve_config, monkeypatch):
    app = create_app(serve_config)
    lm = app.state.leve.model
    real = lm.predict
    monkeypatch.setattr(lm, "predict", lambda *a: (_ for _ in ()).throw(RuntimeError("boom")))
    client = TestClient(app, raise_server_exceptions=False)
    data = image_bytes(gradient_image(20, 30))
    res = client.post("/api/predict", params={"name": "a.png"}, content=data)
    assert res.status_code == 500 and res.json() == {"error": "internal error (RuntimeError); see the server log"}
    monkeypatch.setattr(lm, "predict", real)
    assert client.post("/api/predict", params={"name": "a.png"}, content=data).status_code == 200


def test_random_model_is_announced():
    cfg = Config(model="leve-dw", device="cpu", samples=1, sample_height=24, sample_width=32)
    client = TestClient(create_app(cfg))
    page = client.get("/").text
    assert "randomly initialised" in page and 'id="random-warning"' in page
    assert "none (random weights)" in page
    info = client.get("/api/info").json()
    assert info["random"] is True and info["model"] == "leve-dw" and info["checkpoint"] is None


def test_checkpoint_and_model_must_agree(serve_checkpoint):
    from leve.errors import LeveError

    with pytest.raises(LeveError, match="holds model 'leve', not 'leve-dw'"):
        create_app(Config(checkpoint=serve_checkpoint, model="leve-dw", device="cpu", samples=0))


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def fake_uvicorn(monkeypatch):
    """Capture what ``leve serve`` would hand to uvicorn instead of serving forever."""
    import uvicorn

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: seen.update(app=app, **kw))
    return seen


def test_cli_serves_loopback_by_default(run_cli, fake_uvicorn, serve_checkpoint, tmp_path):
    res = run_cli("serve", "--checkpoint", serve_checkpoint, "--params", tmp_path / "none.yaml",
                  "--set", "samples=1")
    assert res.code == 0, res.stderr
    assert (fake_uvicorn["host"], fake_uvicorn["port"]) == ("127.0.0.1", 8000)
    assert fake_uvicorn["app"].state.leve.model.checkpoint == str(serve_checkpoint)
    from leve.serve.server import GuardedH11Protocol

    # the connection guard of leve.serve.server (tests/serve/test_connections.py), uvicorn's own limit off
    assert issubclass(fake_uvicorn["http"], GuardedH11Protocol) and fake_uvicorn["http"].idle_timeout_s == 5.0
    assert fake_uvicorn["limit_concurrency"] is None and fake_uvicorn["timeout_keep_alive"] == 5.0
    assert "http://127.0.0.1:8000/" in res.stderr and "anyone" not in res.stderr


def test_cli_warns_when_serving_the_network(run_cli, fake_uvicorn, serve_checkpoint, tmp_path):
    res = run_cli("serve", "--checkpoint", serve_checkpoint, "--host", "0.0.0.0", "--port", "9001",
                  "--params", tmp_path / "none.yaml", "--set", "samples=0")
    assert res.code == 0, res.stderr
    assert (fake_uvicorn["host"], fake_uvicorn["port"]) == ("0.0.0.0", 9001)
    assert "anyone who can reach this port can upload images" in " ".join(res.stderr.split())


def test_cli_missing_checkpoint_is_one_line(run_cli, fake_uvicorn, tmp_path):
    res = run_cli("serve", "--checkpoint", tmp_path / "nope.pt", "--params", tmp_path / "none.yaml")
    assert res.code == 1 and res.stderr.strip() == f"error: {tmp_path / 'nope.pt'}: checkpoint not found"
    assert not fake_uvicorn
