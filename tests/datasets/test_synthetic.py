"""The synthetic generator: exact ray-cast depth, determinism, and its store."""

from __future__ import annotations

import numpy as np

from leve.datasets.synthetic import (
    Box,
    Camera,
    Config,
    Material,
    Plane,
    Scene,
    Sphere,
    prepare,
    render,
    render_sample,
)
from leve.store.reader import open_split, open_store

GREY = Material((0.5, 0.5, 0.5))
H, W = 48, 64


def test_back_wall_depth_is_exact():
    cam = Camera.nyu_like(H, W)
    _, depth = render(Scene(planes=[Plane(2, 5.0, GREY)]), cam, H, W)
    assert np.all(depth == np.float32(5.0))  # z-depth of a fronto-parallel plane is its distance


def test_floor_depth_matches_closed_form():
    cam = Camera.nyu_like(H, W)
    _, depth = render(Scene(planes=[Plane(1, -1.5, GREY)]), cam, H, W)
    for v in range(H):
        if v > cam.cy:  # rows below the horizon see the floor at z = h * fy / (v - cy)
            np.testing.assert_allclose(depth[v], 1.5 * cam.fy / (v - cam.cy), rtol=1e-6)
        else:
            assert np.all(depth[v] == 0)  # no hit above the horizon


def test_sphere_and_box_occlusion():
    cam = Camera(fx=50.0, fy=50.0, cx=32.0, cy=24.0)
    sphere = Sphere((0.0, 0.0, 4.0), 1.0, GREY)
    box = Box((-0.25, -0.25, 2.0), (0.25, 0.25, 2.5), GREY)
    _, depth = render(Scene(planes=[Plane(2, 9.0, GREY)], spheres=[sphere]), cam, H, W)
    assert depth[24, 32] == np.float32(3.0)  # the central ray meets the sphere at z = 4 - 1
    # a ray at pixel offset (du, 0): x = z*du/fx; hits the sphere surface (x^2 + (z-4)^2 = 1)
    du = 10.0
    k = du / 50.0
    z = (8 - np.sqrt(64 - 4 * (1 + k * k) * 15)) / (2 * (1 + k * k))
    np.testing.assert_allclose(depth[24, 32 + 10], z, rtol=1e-6)
    _, depth2 = render(Scene(planes=[Plane(2, 9.0, GREY)], boxes=[box], spheres=[sphere]), cam, H, W)
    assert depth2[24, 32] == np.float32(2.0)  # the box's front face occludes the sphere
    assert depth2[0, 0] == np.float32(9.0)


def test_rotation_keeps_z_depth():
    yaw = 0.3
    c, s = np.cos(yaw), np.sin(yaw)
    # world-from-camera yaw about y; a plane perpendicular to the rotated optical axis at distance 4
    cam = Camera(fx=40.0, fy=40.0, cx=32.0, cy=24.0, rotation=((c, 0, s), (0, 1, 0), (-s, 0, c)))
    # the central ray points along (s, 0, c); a wall x = 4*s + ... is simpler: use a plane z = 4 and check
    _, depth = render(Scene(planes=[Plane(2, 4.0, GREY)]), cam, H, W)
    # camera-space z of the hit: t where t*(d_world.z) = 4 with d_world = R d_cam, d_cam = (x, y, 1)
    u = np.arange(W)
    x = (u - 32.0) / 40.0
    expected = 4.0 / (-s * x + c)
    np.testing.assert_allclose(depth[10], expected, rtol=1e-6)


def test_same_seed_same_bytes():
    a = render_sample(3, "train", 7, H, W)
    b = render_sample(3, "train", 7, H, W)
    c = render_sample(4, "train", 7, H, W)
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()
    assert a[0].tobytes() != c[0].tobytes()


def test_rooms_have_nyu_like_depth_range():
    depths = np.concatenate([render_sample(0, "train", i, H, W)[1].ravel() for i in range(12)])
    assert depths.min() > 0.4 and depths.max() < 10.0
    assert depths.max() > 4.0  # rooms reach several metres


def _chunk_bytes(path):
    return {p.relative_to(path): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file() and "/c/" in str(p)}


def test_store_is_deterministic_and_readable(tmp_path):
    cfg = dict(height=H, width=W, train=6, val=2, test=2, block_size=4)
    a = prepare(Config(out=tmp_path / "a.zarr", workers=1, **cfg), show_progress=False)
    b = prepare(Config(out=tmp_path / "b.zarr", workers=2, **cfg), show_progress=False)
    assert a.samples == 10 and b.samples == 10
    assert _chunk_bytes(tmp_path / "a.zarr") == _chunk_bytes(tmp_path / "b.zarr")
    store = open_store(tmp_path / "a.zarr")
    assert store.splits == ["train", "val", "test"]
    assert store.attrs["units"] == "metres" and store.attrs["max_depth"] == 10.0
    assert not [k for k in store.attrs if "crop" in k]  # evaluation scores it in full (protocols.CROPS)
    s = open_split(tmp_path / "a.zarr", "val")
    rgb, depth = render_sample(0, "val", 1, H, W)
    np.testing.assert_array_equal(s.rgb(1), rgb)
    np.testing.assert_array_equal(s.depth(1), depth)
    starts = [start for start, _, _ in open_split(tmp_path / "a.zarr", "train").iter_chunks(4)]
    assert starts == [0, 4]
