"""``leve predict --pointcloud``: PLY read back with plyfile against a naive back-projection;
intrinsics given, from a store, from EXIF; lying EXIF and relative checkpoints refused."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from leve.outputs.intrinsics import Intrinsics
from leve.outputs.pointcloud import cloud_bytes
from tests.factories import synthetic_store
from tests.outputs.conftest import moving_square, naive_cloud, read_ply


def jpeg_with_focal(path: Path, rgb: np.ndarray, focal_35mm: object | None) -> Path:
    exif = Image.Exif()
    if focal_35mm is not None:
        exif.get_ifd(0x8769)[0xA405] = focal_35mm
    Image.fromarray(rgb).save(path, "JPEG", quality=95, exif=exif)
    return path


def predict_cloud(run_cli, tmp_path: Path, image: Path, checkpoint: Path, *extra: object) -> tuple[np.ndarray, np.ndarray]:
    """Run predict --pointcloud with metric depth as .npy; return (PLY rows, depth map)."""
    out = tmp_path / "o"
    res = run_cli("predict", image, "--checkpoint", checkpoint, "--out", out, "--depth-format", "npy",
                  "--pointcloud", *extra)
    assert res.code == 0, res.stderr
    return read_ply(out / f"{image.stem}.ply"), np.load(out / f"{image.stem}_depth.npy")


def test_ply_matches_naive_back_projection_and_drops_invalid_pixels():
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.3, 8.0, (7, 9)).astype(np.float32)
    depth[1, 2], depth[4, 4], depth[6, 0] = 0.0, np.nan, -1.0
    rgb = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    got = read_ply(cloud_bytes(depth, rgb, Intrinsics(11.0, 13.0, 4.2, 3.1)))
    want = naive_cloud(depth, rgb, 11.0, 13.0, 4.2, 3.1)
    assert got.shape == (60, 6)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_given_intrinsics(tmp_path, metric_checkpoint, run_cli):
    rgb = moving_square(1, 40, 60)[0]
    Image.fromarray(rgb).save(tmp_path / "room.png")
    got, depth = predict_cloud(run_cli, tmp_path, tmp_path / "room.png", metric_checkpoint,
                               "--fx", 50, "--fy", 55, "--cx", 30, "--cy", 18)
    np.testing.assert_allclose(got, naive_cloud(depth, rgb, 50, 55, 30, 18), rtol=1e-6, atol=1e-6)
    assert len(got) == 40 * 60


def test_field_of_view_sets_the_focal_length(tmp_path, metric_checkpoint, run_cli):
    rgb = moving_square(1, 40, 60)[0]
    Image.fromarray(rgb).save(tmp_path / "room.png")
    got, depth = predict_cloud(run_cli, tmp_path, tmp_path / "room.png", metric_checkpoint, "--fov", 90)
    # 90 degrees across 60 pixels: f = 30 / tan(45 deg) = 30; principal point at the centre (29.5, 19.5)
    np.testing.assert_allclose(got, naive_cloud(depth, rgb, 30, 30, 29.5, 19.5), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("h", "w", "f"), [
    (40, 60, 28 * 60 / 36),  # the 36x24 mm frame's shape: 28 mm across 36 mm is 28 * 60 / 36 px across 60
    (48, 64, 28 * 80 / math.sqrt(36**2 + 24**2)),  # 4:3 (diagonal 80 px): by the diagonal, not the width
    (64, 48, 28 * 80 / math.sqrt(36**2 + 24**2)),  # portrait: the same lens
])
def test_exif_35mm_focal_length(tmp_path, metric_checkpoint, run_cli, h, w, f):
    rgb = moving_square(1, h, w)[0]
    image = jpeg_with_focal(tmp_path / "phone.jpg", rgb, 28)
    decoded = np.asarray(Image.open(image).convert("RGB"))
    got, depth = predict_cloud(run_cli, tmp_path, image, metric_checkpoint)
    want = naive_cloud(depth, decoded, f, f, (w - 1) / 2, (h - 1) / 2)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


def test_store_intrinsics_are_scaled_to_the_image(tmp_path, metric_checkpoint, run_cli):
    store = synthetic_store(tmp_path / "syn.zarr", 24, 32, 1, 1, 1, 4)
    rgb = moving_square(1, 48, 64)[0]
    Image.fromarray(rgb).save(tmp_path / "room.png")
    got, depth = predict_cloud(run_cli, tmp_path, tmp_path / "room.png", metric_checkpoint, "--intrinsics", store)
    # NYU's (518.8579, 519.4696, 325.5824, 253.7362) at 640x480, rendered at 32x24, seen at 64x48
    s = 64 / 640
    want = naive_cloud(depth, rgb, 518.8579 * s, 519.4696 * s, 325.5824 * s, 253.7362 * s)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    Image.fromarray(moving_square(1, 48, 80)[0]).save(tmp_path / "wide.png")
    res = run_cli("predict", tmp_path / "wide.png", "--checkpoint", metric_checkpoint, "--out", tmp_path / "w",
                  "--pointcloud", "--intrinsics", store)
    assert res.code == 1 and "a different aspect ratio from 48x80" in res.stderr


def _one_error(res) -> str:
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert res.code == 1 and len(errors) == 1 and "Traceback" not in res.stderr, res.stderr
    return errors[0]


@pytest.mark.parametrize(("focal", "message"), [
    (0, "lie.jpg: EXIF FocalLengthIn35mmFilm is 0 mm, not a plausible focal length"),
    (9000, "lie.jpg: EXIF FocalLengthIn35mmFilm is 9000 mm, not a plausible focal length"),
    (None, "lie.jpg: no intrinsics for the point cloud (no EXIF FocalLengthIn35mmFilm)"),
])
def test_lying_or_missing_exif_is_one_line_and_nothing_is_written(tmp_path, metric_checkpoint, run_cli, focal, message):
    image = jpeg_with_focal(tmp_path / "lie.jpg", moving_square(1, 40, 60)[0], focal)
    res = run_cli("predict", image, "--checkpoint", metric_checkpoint, "--out", tmp_path / "o", "--pointcloud")
    assert message in _one_error(res)
    assert not (tmp_path / "o").exists()
    ok = run_cli("predict", image, "--checkpoint", metric_checkpoint, "--out", tmp_path / "o", "--pointcloud",
                 "--fov", 60)  # given intrinsics win over EXIF
    assert ok.code == 0 and (tmp_path / "o" / "lie.ply").is_file()


@pytest.mark.parametrize(("args", "message"), [
    (("--fov", 0), "--fov must be between 0 and 180 degrees, got 0"),
    (("--fx", -3), "--fx must be a positive number of pixels, got -3"),
    (("--fx", 50, "--fov", 60), "--fx and --fov both given"),
    (("--fx", 50, "--scale", 0), "--scale must be a positive number of metres per unit, got 0"),
])
def test_bad_given_values_are_one_line(tmp_path, metric_checkpoint, run_cli, args, message):
    Image.fromarray(moving_square(1, 40, 60)[0]).save(tmp_path / "a.png")
    res = run_cli("predict", tmp_path / "a.png", "--checkpoint", metric_checkpoint, "--out", tmp_path / "o",
                  "--pointcloud", *args)
    assert message in _one_error(res)


def test_relative_checkpoint_needs_a_scale(tmp_path, relative_checkpoint, run_cli):
    rgb = moving_square(1, 40, 60)[0]
    Image.fromarray(rgb).save(tmp_path / "a.png")
    res = run_cli("predict", tmp_path / "a.png", "--checkpoint", relative_checkpoint, "--out", tmp_path / "o",
                  "--pointcloud", "--fov", 90)
    assert "relative.safetensors: relative depth (distilled without depth) has no metres for --pointcloud; " \
           "give --scale S" in _one_error(res)
    got, metres = predict_cloud(run_cli, tmp_path, tmp_path / "a.png", relative_checkpoint, "--fov", 90, "--scale", 2.5)
    # --scale makes the maps metric as well (2.5 x the relative depth: tests/models/test_predict_export.py)
    np.testing.assert_allclose(got, naive_cloud(metres.astype(np.float64), rgb, 30, 30, 29.5, 19.5),
                               rtol=1e-5, atol=1e-6)
