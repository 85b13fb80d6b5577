"""``leve serve`` over real HTTP: predictions match the library, downloads, bad inputs refused."""

from __future__ import annotations

import io

import numpy as np
import pytest
import requests
from PIL import Image

from leve.datasets.synthetic import render_sample
from leve.models.checkpoint import load_checkpoint
from leve.predict import predict_depth
from tests.serve.conftest import LIMITS
from tests.serve.helpers import bomb_png, gradient_image, image_bytes


def post_image(url: str, data: bytes, name: str, **params: object) -> requests.Response:
    return requests.post(f"{url}/api/predict", params={"name": name, **params}, data=data, timeout=60)


def download(url: str, link: str) -> requests.Response:
    res = requests.get(f"{url}/{link}", timeout=30)
    assert res.status_code == 200, res.text
    return res


def test_page_names_model_and_checkpoint(served, serve_checkpoint):
    page = requests.get(served, timeout=30).text
    assert '<b id="model-name">leve</b>' in page
    assert str(serve_checkpoint) in page
    assert "randomly initialised" not in page
    assert requests.get(f"{served}/static/app.js", timeout=30).status_code == 200


@pytest.mark.parametrize("flip", [False, True])
def test_prediction_and_downloads_match_library(served, serve_checkpoint, flip):
    rgb = gradient_image(50, 70)  # not the model's 64x96: resized there and back
    res = post_image(served, image_bytes(rgb), "my room.png", flip=flip)
    assert res.status_code == 200, res.text
    body = res.json()
    assert (body["width"], body["height"], body["flip"], body["random"]) == (70, 50, flip, False)
    assert body["model"] == "leve" and body["checkpoint"] == str(serve_checkpoint)
    assert body["inference_ms"] > 0

    npy = download(served, body["downloads"]["npy"])
    assert 'filename="my_room_depth.npy"' in npy.headers["content-disposition"]
    depth = np.load(io.BytesIO(npy.content))
    model, info = load_checkpoint(serve_checkpoint)
    expected = predict_depth(model, rgb, info.resolution, info.max_depth, flip=flip)
    assert depth.dtype == np.float32 and depth.shape == (50, 70)
    np.testing.assert_allclose(depth, expected, rtol=1e-5, atol=1e-6)
    assert body["depth_min_m"] == pytest.approx(float(depth.min())) and body["depth_max_m"] == pytest.approx(float(depth.max()))

    png = download(served, body["downloads"]["png16"])
    assert 'filename="my_room_depth16.png"' in png.headers["content-disposition"]
    mm = np.asarray(Image.open(io.BytesIO(png.content)))
    assert mm.dtype == np.uint16 and mm.shape == (50, 70)
    np.testing.assert_array_equal(mm, np.rint(depth.astype(np.float64) * 1000).astype(np.uint16))

    shown = Image.open(io.BytesIO(_data_url_bytes(body["depth"])))
    assert shown.size == (70, 50) and shown.mode == "RGB"


def _data_url_bytes(url: str) -> bytes:
    import base64

    head, _, payload = url.partition(",")
    assert head.startswith("data:image/") and head.endswith(";base64")
    return base64.b64decode(payload)


def test_jpeg_exif_orientation_is_applied(served):
    """A phone photo stored landscape with 'rotate 90' in EXIF is predicted upright (portrait)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    data = image_bytes(gradient_image(40, 60), "JPEG", quality=90, exif=exif.tobytes())
    body = post_image(served, data, "phone.jpg").json()
    assert (body["width"], body["height"]) == (40, 60)


def test_sample_prediction_reports_metrics_against_exact_depth(served, serve_config):
    body = requests.post(f"{served}/api/samples/1/predict", timeout=60).json()
    rgb, gt = render_sample(0, "test", 1, serve_config.sample_height, serve_config.sample_width)
    sample_png = requests.get(f"{served}/api/samples/1.png", timeout=30).content
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(sample_png))), rgb)
    depth = np.load(io.BytesIO(download(served, body["downloads"]["npy"]).content)).astype(np.float64)
    valid = gt > 0
    abs_rel = np.mean(np.abs(depth[valid] - gt[valid]) / gt[valid])
    rmse = np.sqrt(np.mean((depth[valid] - gt[valid]) ** 2))
    assert body["reference"]["abs_rel"] == pytest.approx(abs_rel, rel=1e-6)
    assert body["reference"]["rmse_m"] == pytest.approx(rmse, rel=1e-6)
    missing = requests.post(f"{served}/api/samples/9/predict", timeout=30)
    assert missing.status_code == 404 and "no sample 9" in missing.json()["error"]


def _truncated_png() -> bytes:
    data = image_bytes(gradient_image(60, 80))
    return data[: len(data) // 2]


BAD_INPUTS = [
    ("notes.png", b"this is not an image at all", 415, "notes.png: not a JPEG or PNG image"),
    ("anim.gif", image_bytes(gradient_image(8, 8), "GIF"), 415, "anim.gif: not a JPEG or PNG image"),
    ("half.png", _truncated_png(), 400, "half.png: cannot decode image"),
    ("empty.jpg", b"", 400, "empty.jpg: empty upload"),
    ("big.png", b"\x89PNG" + bytes(LIMITS["max_upload_bytes"]), 413, "larger than the upload limit of 200,000 bytes"),
    ("wide.png", image_bytes(np.zeros((500, 700, 3), np.uint8)), 413, "image is 500x700 = 350,000 pixels, over the limit"),
    ("bomb.png", bomb_png(4_000, 3_000), 413, "image is 3000x4000 = 12,000,000 pixels, over the limit"),
    ("huge-bomb.png", bomb_png(60_000, 60_000), 413, "huge-bomb.png: refused as a decompression bomb"),
]


@pytest.mark.parametrize(("name", "data", "status", "message"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_uploads_are_refused_with_a_message(served, name, data, status, message):
    res = post_image(served, data, name)
    assert res.status_code == status
    assert message in res.json()["error"]
    assert "\n" not in res.json()["error"]
    ok = post_image(served, image_bytes(gradient_image(20, 30)), "fine.png")  # the server carries on
    assert ok.status_code == 200


def test_streamed_body_over_the_limit_is_refused(served):
    """Without a Content-Length the body is counted while it arrives."""
    def chunks():
        for _ in range(8):
            yield bytes(40_000)

    res = requests.post(f"{served}/api/predict", params={"name": "stream.png"}, data=chunks(), timeout=30)
    assert res.status_code == 413 and "upload limit" in res.json()["error"]


def test_unknown_result_is_a_clear_404(served):
    res = requests.get(f"{served}/api/results/nope/depth.npy", timeout=30)
    assert res.status_code == 404 and "expired or unknown" in res.json()["error"]
