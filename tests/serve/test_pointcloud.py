"""``leve serve`` offers the point cloud: PLY read with plyfile against a naive back-projection of
the served depth, with the synthetic camera, EXIF focal length or the assumed field of view."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image
from starlette.testclient import TestClient

from leve.serve.app import create_app
from leve.serve.config import Config
from tests.outputs.conftest import naive_cloud, read_ply
from tests.serve.helpers import gradient_image, image_bytes


def served_cloud(client: TestClient, body: dict) -> tuple[np.ndarray, np.ndarray]:
    """(PLY rows read by plyfile, the served .npy depth) of one result."""
    res = client.get(body["downloads"]["ply"])
    assert res.status_code == 200, res.text
    assert res.headers["content-disposition"] == f'attachment; filename="{body["name"]}.ply"'
    return read_ply(res.content), np.load(io.BytesIO(client.get(body["downloads"]["npy"]).content))


@pytest.fixture(scope="module")
def client(serve_config: Config) -> TestClient:
    return TestClient(create_app(serve_config))


def test_sample_cloud_uses_the_synthetic_camera(client, serve_config):
    body = client.post("/api/samples/1/predict").json()
    assert body["intrinsics"].endswith("(the synthetic room's camera)")
    rows, depth = served_cloud(client, body)
    rgb = np.asarray(Image.open(io.BytesIO(client.get("/api/samples/1.png").content)).convert("RGB"))
    # NYU's (518.8579, 519.4696, 325.5824, 253.7362) at 640x480, scaled to the 64x48 samples
    sx, sy = serve_config.sample_width / 640, serve_config.sample_height / 480
    want = naive_cloud(depth, rgb, 518.8579 * sx, 519.4696 * sy, 325.5824 * sx, 253.7362 * sy)
    np.testing.assert_allclose(rows, want, rtol=1e-5, atol=1e-5)


def _jpeg(rgb: np.ndarray, focal: int | None) -> bytes:
    exif = Image.Exif()
    if focal is not None:
        exif.get_ifd(0x8769)[0xA405] = focal
    return image_bytes(rgb, "JPEG", quality=95, exif=exif)


@pytest.mark.parametrize(("focal", "f", "says"), [
    (28, 28 * 60 / 36, "EXIF FocalLengthIn35mmFilm 28 mm"),
    (None, 30 / math.tan(math.radians(30)), "assumed 60 deg horizontal field of view (no EXIF focal length)"),
    (0, 30 / math.tan(math.radians(30)), "assumed 60 deg horizontal field of view (up.jpg: EXIF FocalLengthIn35mmFilm "
                                         "is 0 mm, not a plausible focal length"),
])
def test_upload_cloud_from_exif_or_the_assumed_field_of_view(client, focal, f, says):
    data = _jpeg(gradient_image(40, 60), focal)
    body = client.post("/api/predict", params={"name": "up.jpg"}, content=data).json()
    assert says in body["intrinsics"]
    rows, depth = served_cloud(client, body)
    rgb = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    np.testing.assert_allclose(rows, naive_cloud(depth, rgb, f, f, 29.5, 19.5), rtol=1e-5, atol=1e-5)


def test_relative_model_offers_no_point_cloud(tmp_path):
    from leve.models.checkpoint import save_checkpoint
    from leve.models.registry import create_model

    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "rel.safetensors", create_model("leve", max_depth=10.0), "leve", 10.0,
                           extra={"depth_kind": "relative", "relative_affine": [0.5, 0.1]}, resolution=(64, 64))
    cfg = Config(checkpoint=path, device="cpu", samples=1, sample_height=48, sample_width=64, warmup=False)
    client = TestClient(create_app(cfg))
    body = client.post("/api/predict", params={"name": "a.png"}, content=image_bytes(gradient_image(20, 30))).json()
    assert set(body["downloads"]) == {"png16", "npy"} and "intrinsics" not in body
    res = client.get(f"api/results/{body['id']}/pointcloud.ply")
    assert res.status_code == 409 and res.json() == {
        "error": "a: no point cloud: relative depth (distilled without depth) has no metres"}
