"""What ``leve serve`` shows follows the checkpoint's ``depth_kind``: a relative model (distilled
without depth) gets "relative depth, near = bright", no metres, no unaligned metric numbers; a metric
one keeps its metres. Through the page and the JSON API, with downloads read back and checked."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from starlette.testclient import TestClient

from leve.datasets.synthetic import render_sample
from leve.serve.app import create_app
from leve.serve.config import Config
from tests.serve.conftest import small_student
from tests.serve.helpers import gradient_image, image_bytes

METRES = re.compile(r"\d\s*m\b|metre|millimetre|metric", re.IGNORECASE)


def metres_in(text: str) -> re.Match | None:
    """A metre value, unit or "metric" in ``text``; saying "no metres" is allowed."""
    return METRES.search(text.replace("no metres", ""))


@pytest.fixture(scope="module")
def relative_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_student(tmp_path_factory.mktemp("rel") / "rel.safetensors",
                         extra={"depth_kind": "relative", "relative_affine": [0.05, 0.02]})


@pytest.fixture(scope="module")
def relative(relative_checkpoint: Path) -> TestClient:
    cfg = Config(checkpoint=relative_checkpoint, device="cpu", samples=2, sample_height=48, sample_width=64, warmup=False)
    return TestClient(create_app(cfg))


def test_cli_says_the_model_is_relative(run_cli, relative_checkpoint, tmp_path, monkeypatch):
    import uvicorn

    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: None)
    res = run_cli("serve", "--checkpoint", relative_checkpoint, "--params", tmp_path / "none.yaml", "--set", "samples=0",
                  "--set", "warmup=false")
    assert res.code == 0, res.stderr
    assert "relative depth (distilled without depth): the page shows near = bright, no metres" in " ".join(res.stderr.split())


def _visible_text(page: str) -> str:
    return re.sub(r"<[^>]+>", " ", page)


def test_relative_page_says_relative_and_no_metres(relative):
    page = relative.get("/").text
    text = _visible_text(page)
    assert "relative depth, near = bright" in text
    assert not metres_in(text), metres_in(text)
    assert 'data-depth-kind="relative"' in page and "colour bar from far to near" in page
    assert "Download the relative depth at full resolution (no metres):" in text


def test_relative_prediction_has_no_metres(relative):
    body = relative.post("/api/predict", params={"name": "room.png"}, content=image_bytes(gradient_image(30, 40))).json()
    assert body["depth_kind"] == "relative"
    assert not {"depth_min_m", "depth_max_m", "reference", "intrinsics"} & set(body)
    assert body["ticks"] == [{"pos": 0.0, "label": "far"}, {"pos": 1.0, "label": "near"}]
    assert body["range_text"] == "Relative depth, near = bright: right up to an unknown scale, no metres."
    labels = body["labels"]
    shown = " ".join([body["range_text"], labels["heading"], *(v[0] for k, v in labels.items() if k != "heading")])
    assert not metres_in(shown), shown
    assert set(body["downloads"]) == {"png16", "npy"}
    assert relative.get("/api/info").json()["depth_kind"] == "relative"
    assert "max_depth" not in relative.get("/api/info").json()

    npy = relative.get(body["downloads"]["npy"])
    assert npy.headers["content-disposition"] == 'attachment; filename="room_relative.npy"'
    depth = np.load(io.BytesIO(npy.content))
    png = relative.get(body["downloads"]["png16"])
    assert png.headers["content-disposition"] == 'attachment; filename="room_inverse16.png"'
    inverse = np.asarray(Image.open(io.BytesIO(png.content)))
    # independent: 1/depth scaled to the image's own range, near (small depth) = 65535, far = 0
    inv = 1.0 / depth.astype(np.float64)
    want = np.rint((inv - inv.min()) / (inv.max() - inv.min()) * 65535).astype(np.uint16)
    assert inverse.dtype == np.uint16 and inverse.shape == (30, 40)
    np.testing.assert_array_equal(inverse, want)
    assert inverse[np.unravel_index(np.argmin(depth), depth.shape)] == 65535


def test_relative_sample_is_scored_only_after_median_scaling(relative):
    body = relative.post("/api/samples/1/predict").json()
    ref = body["reference"]
    assert ref["alignment"] == "median"
    depth = np.load(io.BytesIO(relative.get(body["downloads"]["npy"]).content)).astype(np.float64)
    _, gt = render_sample(0, "test", 1, 48, 64)
    valid = gt > 0
    p, g = depth[valid], gt[valid].astype(np.float64)
    p = p * np.median(g) / np.median(p)  # monodepth2's median scaling, written out
    assert ref["abs_rel"] == pytest.approx(float(np.mean(np.abs(p - g) / g)), rel=1e-9)
    assert ref["rmse_m"] == pytest.approx(float(np.sqrt(np.mean((p - g) ** 2))), rel=1e-9)
    assert body["reference_text"].startswith("Against the exact synthetic depth, after median scaling (relative depth "
                                             "has no metres): AbsRel ")


def test_metric_model_keeps_its_metres(serve_config):
    client = TestClient(create_app(serve_config))
    page = _visible_text(client.get("/").text)
    assert "max depth 10 m" in page and "Download the metric depth at full resolution:" in page
    body = client.post("/api/samples/0/predict").json()
    assert body["depth_kind"] == "metric" and body["reference"]["alignment"] == "none"
    assert all(t["label"].endswith(" m") for t in body["ticks"]) and len(body["ticks"]) >= 2
    assert body["range_text"] == f"Depth range {body['depth_min_m']:.2f}\u2013{body['depth_max_m']:.2f} m."
    assert body["labels"]["npy"] == [".npy (float32 metres)", "sample0_depth.npy"]
    assert set(body["downloads"]) == {"png16", "npy", "ply"}


def test_page_script_fills_labels_from_the_response():
    """The script shows the server's labels (no metre formatting of its own)."""
    js = (Path(__file__).resolve().parents[2] / "leve" / "serve" / "static" / "app.js").read_text()
    assert "t.label" in js and "r.labels" in js and "r.range_text" in js
    assert " m\"" not in js and "metres" not in js.replace("metres for a metric model", "")
