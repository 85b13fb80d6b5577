"""KITTI Eigen-split store: a tiny raw tree in the real layout and formats, LiDAR ground truth
checked against an independent computation written here."""

from __future__ import annotations

import math
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from leve.cli import app
from leve.datasets import kitti
from leve.errors import LeveError
from leve.sources.archive import close_all
from leve.store.format import PARTIAL_SUFFIX
from leve.store.images import encode_png
from leve.store.reader import is_complete, open_split

DATES = {"2011_09_26": (40, 12), "2011_10_03": (38, 13)}  # date -> (width, height) of S_rect_02
DRIVES = {"2011_09_26_drive_0002_sync": [69, 54], "2011_10_03_drive_0027_sync": [0]}
SPLIT = (
    "2011_09_26/2011_09_26_drive_0002_sync 0000000069 l\n"
    "2011_09_26/2011_09_26_drive_0002_sync 0000000054 l\n"
    "2011_10_03/2011_10_03_drive_0027_sync 0000000000 l\n"
)


def e(x: float) -> float:
    """A value as it survives the calibration files' ``%e`` text format."""
    return float(f"{x:e}")


def rot(ax: float, ay: float, az: float) -> np.ndarray:
    cx, sx, cy, sy, cz, sz = math.cos(ax), math.sin(ax), math.cos(ay), math.sin(ay), math.cos(az), math.sin(az)
    rx = np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rz = np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]])
    return rz @ ry @ rx


def make_calib(date: str, seed: int) -> dict[str, np.ndarray]:
    """A realistic calibration: velodyne (x fwd, y left, z up) -> camera (x right, y down, z fwd)."""
    w, h = DATES[date]
    rng = np.random.default_rng(seed)
    axes = np.array([[0, -1, 0], [0, 0, -1], [1, 0, 0]], dtype=float)
    c = {
        "R": np.vectorize(e)(rot(*rng.normal(0, 0.01, 3)) @ axes),
        "T": np.vectorize(e)(np.array([-0.004, -0.076, -0.27]) + rng.normal(0, 0.01, 3)),
        "R_rect_00": np.vectorize(e)(rot(*rng.normal(0, 0.005, 3))),
        "P_rect_02": np.vectorize(e)(
            np.array([[30.0 + seed, 0, w / 2 + 0.3, 1.5], [0, 30.0 + seed, h / 2 - 0.2, 0.02], [0, 0, 1, 0.003]])
        ),
        "S_rect_02": np.array([float(w), float(h)]),
    }
    return c


def calib_texts(c: dict[str, np.ndarray]) -> tuple[str, str]:
    fmt = lambda a: " ".join(f"{x:e}" for x in np.ravel(a))  # noqa: E731
    cam = [
        "calib_time: 09-Jan-2012 13:57:47",
        "corner_dist: 9.950000e-02",
        f"S_00: {fmt([1392, 512])}",
        f"K_00: {fmt(np.eye(3))}",
        f"R_rect_00: {fmt(c['R_rect_00'])}",
        f"P_rect_00: {fmt(np.eye(3, 4))}",
        f"S_02: {fmt([1392, 512])}",
        f"S_rect_02: {fmt(c['S_rect_02'])}",
        f"R_rect_02: {fmt(np.eye(3))}",
        f"P_rect_02: {fmt(c['P_rect_02'])}",
    ]
    velo = ["calib_time: 15-Mar-2012 11:37:16", f"R: {fmt(c['R'])}", f"T: {fmt(c['T'])}",
            "delta_f: 0.000000e+00 0.000000e+00", "delta_c: 0.000000e+00 0.000000e+00"]
    return "\n".join(cam) + "\n", "\n".join(velo) + "\n"


# ----------------------------------------------------------------- independent reference


def full_matrix(c: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """P (3x4) split as (3x3 part, translation column) of P_rect_02 R_rect_00 [R|T]."""
    r_rect = c["R_rect_00"].reshape(3, 3)
    R, T = c["R"].reshape(3, 3), c["T"]
    P = c["P_rect_02"].reshape(3, 4)
    M = P[:, :3] @ r_rect @ R
    t = P[:, :3] @ r_rect @ T + P[:, 3]
    return M, t


def point_at(c: dict[str, np.ndarray], u: float, v: float, s: float) -> np.ndarray:
    """The LiDAR point that lands on (1-based, unrounded) image coordinates (u, v) at scale s,
    found by inverting the projection: M X + t = s (u, v, 1)."""
    M, t = full_matrix(c)
    return np.linalg.solve(M, s * np.array([u, v, 1.0]) - t)


def reference_depth(points: np.ndarray, c: dict[str, np.ndarray]) -> np.ndarray:
    """Scalar, point-by-point projection with a dict of nearest depths (a second implementation)."""
    w, h = (int(x) for x in c["S_rect_02"])
    M, t = full_matrix(c)
    best: dict[tuple[int, int], float] = {}
    for x, y, z, _ in points.astype(float):
        if x < 0:
            continue
        a = [sum(M[r][k] * p for k, p in enumerate((x, y, z))) + t[r] for r in range(3)]
        col, row = int(np.round(a[0] / a[2])) - 1, int(np.round(a[1] / a[2])) - 1
        if 0 <= col < w and 0 <= row < h:
            best[(row, col)] = min(best.get((row, col), math.inf), x)
    out = np.zeros((h, w), dtype=np.float32)
    for (row, col), d in best.items():
        out[row, col] = d
    return out


# ----------------------------------------------------------------- fixture


def scan_for(c: dict[str, np.ndarray], seed: int) -> tuple[np.ndarray, dict[tuple[int, int], float]]:
    """Hand-placed points with known pixels and depths, plus a random cloud."""
    w, h = (int(x) for x in c["S_rect_02"])
    pts, known = [], {}
    # single points at known pixels (sub-pixel offsets below 0.5 round back to the pixel)
    for col, row, s, du, dv in [(3, 2, 7.0, 0.3, -0.2), (10, 5, 20.0, -0.45, 0.4), (w - 1, h - 1, 60.0, 0.1, 0.1)]:
        p = point_at(c, col + 1 + du, row + 1 + dv, s)
        pts.append(p)
        known[(row, col)] = p[0]
    # a collision: three points on one pixel, the nearest (smallest LiDAR x) must win
    near = [point_at(c, 6 + 1 + d, 8 + 1 - d, s) for d, s in [(0.2, 30.0), (-0.3, 12.0), (0.0, 45.0)]]
    pts += near
    known[(8, 6)] = min(p[0] for p in near)
    # behind the sensor: projects onto pixel (1, 1) through the negative branch, must be dropped
    behind = point_at(c, 1 + 1, 1 + 1, -5.0)
    assert behind[0] < 0
    pts.append(behind)
    known[(1, 1)] = 0.0
    # outside the image: u = round(u) - 1 = -1 and u = w
    pts += [point_at(c, 0.2, 4.0, 10.0), point_at(c, w + 1.2, 4.0, 10.0)]
    rng = np.random.default_rng(seed)
    cloud = np.stack([rng.uniform(-20, 80, 400), rng.uniform(-30, 30, 400), rng.uniform(-3, 2, 400)], 1)
    arr = np.concatenate([np.array(pts), cloud])
    arr = np.concatenate([arr, rng.uniform(0, 1, (len(arr), 1))], 1).astype(np.float32)
    return arr, known


def build_raw(root: Path) -> dict[str, object]:
    """Write the raw tree: ``<date>/calib_*.txt``, ``<date>/<drive>/image_02/data/*.png``, velodyne bins."""
    truth: dict[str, object] = {}
    for k, (date, _) in enumerate(DATES.items()):
        c = make_calib(date, k)
        cam, velo = calib_texts(c)
        (root / date).mkdir(parents=True, exist_ok=True)
        (root / date / "calib_cam_to_cam.txt").write_text(cam)
        (root / date / "calib_velo_to_cam.txt").write_text(velo)
        truth[date] = c
    for drive, frames in DRIVES.items():
        date = drive[:10]
        w, h = DATES[date]
        for n, frame in enumerate(frames):
            img_dir = root / date / drive / "image_02" / "data"
            velo_dir = root / date / drive / "velodyne_points" / "data"
            img_dir.mkdir(parents=True, exist_ok=True)
            velo_dir.mkdir(parents=True, exist_ok=True)
            rgb = np.random.default_rng(frame + n).integers(0, 256, (h, w, 3), dtype=np.uint8)
            (img_dir / f"{frame:010d}.png").write_bytes(encode_png(rgb))
            scan, known = scan_for(truth[date], frame)  # type: ignore[arg-type]
            (velo_dir / f"{frame:010d}.bin").write_bytes(scan.tobytes())
            truth[f"{drive}/{frame}"] = (rgb, scan, known)
    return truth


@pytest.fixture()
def raw(tmp_path: Path) -> tuple[Path, dict[str, object]]:
    root = tmp_path / "raw"
    truth = build_raw(root)
    (tmp_path / "split.txt").write_text(SPLIT)
    yield root, truth
    close_all()


def cfg_for(tmp_path: Path, source: Path, **kw: object) -> kitti.Config:
    args = {"out": tmp_path / "kitti.zarr", "raw": tmp_path / "cache", "source": source,
            "split_file": tmp_path / "split.txt", "block_size": 2, **kw}
    return kitti.Config(**args)  # type: ignore[arg-type]


def split_frames() -> list[tuple[str, int]]:
    return [(ln.split()[0].split("/")[1], int(ln.split()[1])) for ln in SPLIT.splitlines()]


# ----------------------------------------------------------------- tests


def test_projection_matches_independent_reference(raw):
    _, truth = raw
    for drive, frames in DRIVES.items():
        c = truth[drive[:10]]
        text_cam, text_velo = calib_texts(c)
        cal = kitti.velo_to_image(text_cam, text_velo, "02", ("cam", "velo"))
        for frame in frames:
            _, scan, known = truth[f"{drive}/{frame}"]
            got = kitti.project_velodyne(scan, cal.P, cal.height, cal.width)
            np.testing.assert_allclose(got, reference_depth(scan, c), rtol=1e-6)
            for (row, col), d in known.items():
                assert got[row, col] == pytest.approx(d, rel=1e-6), (row, col)
            assert (got > 0).sum() > len(known)  # the random cloud also lands


def test_store_from_raw_tree(raw, tmp_path):
    root, truth = raw
    res = kitti.prepare(cfg_for(tmp_path, root), show_progress=False)
    assert res.samples == 3 and is_complete(tmp_path / "kitti.zarr")
    s = open_split(tmp_path / "kitti.zarr", "test")
    assert s.group["rgb"].shape == (3, 13, 40, 3)  # padded to the largest date
    for i, (drive, frame) in enumerate(split_frames()):
        rgb, scan, known = truth[f"{drive}/{frame}"]
        c = truth[drive[:10]]
        sample = s[i]
        np.testing.assert_array_equal(sample.rgb, rgb)
        np.testing.assert_allclose(sample.depth, reference_depth(scan, c), rtol=1e-6)
        assert sample.meta["drive"] == drive and sample.meta["frame"] == frame
        assert (sample.meta["height"], sample.meta["width"]) == DATES[drive[:10]][::-1]
        assert sample.meta["source"] == f"{drive[:10]}/{drive}/image_02/data/{frame:010d}.png"
    attrs = s.attrs | dict(__import__("zarr").open_group(str(tmp_path / "kitti.zarr")).attrs)
    assert attrs["units"] == "metres" and attrs["max_depth"] == 80.0 and attrs["min_depth"] == 1e-3
    # crops and caps belong to the evaluation protocol, not to the store
    assert not [k for k in attrs if "crop" in k or k == "depth_caps"]
    from leve.evaluation.protocols import CROPS, Crop

    assert CROPS["kitti"]["leve2024"] == Crop("leve2024", (128, 381), (45, 1196), "pixels")
    assert CROPS["kitti"]["garg"] == Crop("garg", (0.40810811, 0.99189189), (0.03594771, 0.96405229), "fraction")
    assert CROPS["kitti"]["eigen"] == Crop("eigen", (0.3324324, 0.91351351), (0.03594771, 0.96405229), "fraction")
    assert attrs["split_file"]["frames"] == 3 and len(attrs["split_file"]["sha256"]) == 64
    assert all(len(r["sha256"]) == 64 and r["size"] > 0 for r in attrs["sources"] if "size" in r)
    assert sum("size" in r for r in attrs["sources"]) == 4  # the calibration files


def test_folder_of_zips_gives_same_store(raw, tmp_path):
    root, _ = raw
    zips = tmp_path / "zips"
    zips.mkdir()
    for date in DATES:
        with zipfile.ZipFile(zips / f"{date}_calib.zip", "w") as z:
            for f in ("calib_cam_to_cam.txt", "calib_velo_to_cam.txt"):
                z.write(root / date / f, f"{date}/{f}")
    for drive in DRIVES:
        with zipfile.ZipFile(zips / f"{drive}.zip", "w", zipfile.ZIP_DEFLATED) as z:
            for p in sorted((root / drive[:10] / drive).rglob("*")):
                if p.is_file():
                    z.write(p, p.relative_to(root).as_posix())
    kitti.prepare(cfg_for(tmp_path, root), show_progress=False)
    a = open_split(tmp_path / "kitti.zarr", "test")
    kitti.prepare(cfg_for(tmp_path, zips, out=tmp_path / "z.zarr"), show_progress=False)
    b = open_split(tmp_path / "z.zarr", "test")
    for i in range(3):
        np.testing.assert_array_equal(a.rgb(i), b.rgb(i))
        np.testing.assert_array_equal(a.depth(i), b.depth(i))


def test_annotated_ground_truth_and_missing_frames(raw, tmp_path):
    root, _ = raw
    ann = tmp_path / "annotated"
    values = {}
    for (drive, frame), part in zip(split_frames()[:2], ("train", "val"), strict=True):
        w, h = DATES[drive[:10]]
        v = np.random.default_rng(frame).integers(0, 65536, (h, w), dtype=np.uint16)
        d = ann / part / drive / "proj_depth" / "groundtruth" / "image_02"
        d.mkdir(parents=True)
        (d / f"{frame:010d}.png").write_bytes(encode_png(v))
        values[(drive, frame)] = v
    cfg = cfg_for(tmp_path, root, gt="annotated", annotated_source=ann)
    res = kitti.prepare(cfg, show_progress=False)
    assert res.samples == 2
    s = open_split(tmp_path / "kitti.zarr", "test")
    for i, key in enumerate(split_frames()[:2]):
        np.testing.assert_array_equal(s.depth(i), values[key].astype(np.float64) / 256.0)
    import zarr

    assert zarr.open_group(str(tmp_path / "kitti.zarr")).attrs["missing_gt"] == [
        "2011_10_03_drive_0027_sync/image_02/0000000000"
    ]
    assert s.meta["frame"].tolist() == [69, 54]


def test_split_parsing_formats_and_errors(tmp_path):
    frames = kitti.parse_split(
        "2011_09_26/2011_09_26_drive_0002_sync 0000000069 l\n"
        "2011_09_26/2011_09_26_drive_0002_sync/image_02/data/0000000054.png "
        "2011_09_26/2011_09_26_drive_0002_sync/image_03/data/0000000054.png\n"
        "2011_09_26/2011_09_26_drive_0009_sync 0000000016 r\n",
        "s",
    )
    assert [(f.drive, f.frame, f.camera) for f in frames] == [
        ("2011_09_26_drive_0002_sync", 69, "02"),
        ("2011_09_26_drive_0002_sync", 54, "02"),
        ("2011_09_26_drive_0009_sync", 16, "03"),
    ]
    with pytest.raises(LeveError, match=r"^s:2: cannot parse split line"):
        kitti.parse_split("2011_09_26/2011_09_26_drive_0002_sync 0000000069 l\ngarbage line\n", "s")
    with pytest.raises(LeveError, match="missing 'P_rect_02'"):
        kitti.velo_to_image("S_rect_02: 10 10\nR_rect_00: 1 0 0 0 1 0 0 0 1\n", "R: 1 0 0 0 1 0 0 0 1\nT: 0 0 0\n",
                            "02", ("cam.txt", "velo.txt"))


def _cli(tmp_path: Path, source: Path, *extra: str):
    args = ["prepare", "kitti", "--source", str(source), "--split-file", str(tmp_path / "split.txt"),
            "--out", str(tmp_path / "kitti.zarr"), "--params", str(tmp_path / "none.yaml"),
            "--set", "block_size=1", "--set", f"raw={tmp_path / 'cache'}", *extra]
    return CliRunner().invoke(app, args)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda r: (r / "2011_09_26/2011_09_26_drive_0002_sync/velodyne_points/data/0000000054.bin").write_bytes(b"x" * 20),
         "0000000054.bin: 20 bytes is not a whole number"),
        (lambda r: (r / "2011_10_03/2011_10_03_drive_0027_sync/image_02/data/0000000000.png").write_bytes(b"\x89PNG junk"),
         "0000000000.png: cannot decode image"),
        (lambda r: (r / "2011_10_03/2011_10_03_drive_0027_sync/image_02/data/0000000000.png").unlink(),
         "0000000000.png: cannot read"),
        (lambda r: (r / "2011_09_26/calib_velo_to_cam.txt").write_text("calib_time: x\nR: 1 0 0\n"),
         "calib_velo_to_cam.txt: 'R' has 3 values, expected 9"),
        (lambda r: shutil.rmtree(r / "2011_10_03/2011_10_03_drive_0027_sync"),
         "has neither 2011_10_03/2011_10_03_drive_0027_sync nor 2011_10_03_drive_0027_sync.zip"),
    ],
)
def test_bad_input_is_one_line_error_and_nothing_complete(raw, tmp_path, damage, message):
    root, _ = raw
    damage(root)
    result = _cli(tmp_path, root)
    assert result.exit_code != 0
    assert isinstance(result.exception, LeveError)
    text = str(result.exception)
    assert message in text and "\n" not in text
    assert not (tmp_path / "kitti.zarr").exists()
    partial = tmp_path / ("kitti.zarr" + PARTIAL_SUFFIX)
    assert not partial.exists() or not is_complete(partial)


def test_cli_main_prints_one_line(raw, tmp_path, capsys, monkeypatch):
    import sys

    from leve.cli import main

    root, _ = raw
    (root / "2011_09_26/2011_09_26_drive_0002_sync/velodyne_points/data/0000000069.bin").write_bytes(b"123")
    monkeypatch.setattr(sys, "argv", ["leve", "prepare", "kitti", "--source", str(root), "--split-file",
                                      str(tmp_path / "split.txt"), "--out", str(tmp_path / "k.zarr"),
                                      "--params", str(tmp_path / "none.yaml")])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    errors = [ln for ln in err if ln.startswith("error: ")]
    assert len(errors) == 1 and errors[0] == err[-1] and "0000000069.bin" in errors[0]


def test_resumes_after_a_failure_midway(raw, tmp_path):
    root, truth = raw
    img = root / "2011_10_03/2011_10_03_drive_0027_sync/image_02/data/0000000000.png"
    good = img.read_bytes()
    img.write_bytes(b"broken")
    result = _cli(tmp_path, root)
    assert result.exit_code != 0 and "0000000000.png" in str(result.exception)
    assert not (tmp_path / "kitti.zarr").exists()
    img.write_bytes(good)
    result = _cli(tmp_path, root)
    assert result.exit_code == 0, result.output
    assert "resuming" in result.output or "(resumed)" in result.output
    assert "wrote 1 in" in result.output  # only the unfinished block
    s = open_split(tmp_path / "kitti.zarr", "test")
    rgb, scan, _ = truth["2011_10_03_drive_0027_sync/0"]
    np.testing.assert_array_equal(s.rgb(2), rgb)
    np.testing.assert_allclose(s.depth(2), reference_depth(scan, truth["2011_10_03"]), rtol=1e-6)


# ----------------------------------------------------------------- remote archives


def _publish(root: Path, www: Path, tmp_path: Path) -> int:
    """Lay the raw zips out as on the KITTI server (plus unneeded bulk); returns their total size."""
    for date in DATES:
        d = www / "raw_data"
        d.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(d / f"{date}_calib.zip", "w") as z:
            for f in ("calib_cam_to_cam.txt", "calib_velo_to_cam.txt"):
                z.write(root / date / f, f"{date}/{f}")
    for drive in DRIVES:
        d = www / "raw_data" / drive[:-5]
        d.mkdir(parents=True)
        with zipfile.ZipFile(d / f"{drive}.zip", "w") as z:
            for p in sorted((root / drive[:10] / drive).rglob("*")):
                if p.is_file():
                    z.write(p, p.relative_to(root).as_posix())
            bulk = np.random.default_rng(0).integers(0, 256, 3 << 20, dtype=np.uint8).tobytes()
            z.writestr(f"{drive[:10]}/{drive}/image_03/data/bulk.bin", bulk)  # frames we never need
    (www / "test_files.txt").write_text(SPLIT)
    return sum(p.stat().st_size for p in www.rglob("*.zip"))


@pytest.mark.parametrize("ranges", [True, False])
def test_remote_archives_by_range_or_whole_download(raw, tmp_path, server_for, ranges):
    root, truth = raw
    total = _publish(root, tmp_path / "www", tmp_path)
    srv, url = server_for(tmp_path / "www", ranges)
    cfg = kitti.Config(out=tmp_path / "remote.zarr", raw=tmp_path / "cache", raw_url=f"{url}/raw_data",
                       split_url=f"{url}/test_files.txt", split_lines=3, block_size=2)
    kitti.prepare(cfg, show_progress=False)
    s = open_split(tmp_path / "remote.zarr", "test")
    for i, (drive, frame) in enumerate(split_frames()):
        rgb, scan, _ = truth[f"{drive}/{frame}"]
        np.testing.assert_array_equal(s.rgb(i), rgb)
        np.testing.assert_allclose(s.depth(i), reference_depth(scan, truth[drive[:10]]), rtol=1e-6)
    cached = sorted(p.name for p in (tmp_path / "cache").glob("*.zip"))
    if ranges:
        assert srv.sent < total / 2  # only the needed members crossed the wire
        assert cached == []
    else:
        assert srv.sent >= total
        assert cached == sorted([f"{d}_calib.zip" for d in DATES] + [f"{d}.zip" for d in DRIVES])
    import zarr

    records = zarr.open_group(str(tmp_path / "remote.zarr")).attrs["sources"]
    assert all(r["url"].startswith(url) for r in records)
    assert all(("sha256" in r) != ranges for r in records)


def test_remote_split_with_wrong_line_count_is_refused(raw, tmp_path, server_for):
    root, _ = raw
    _publish(root, tmp_path / "www", tmp_path)
    _, url = server_for(tmp_path / "www", True)
    cfg = kitti.Config(out=tmp_path / "r.zarr", raw=tmp_path / "cache", raw_url=f"{url}/raw_data",
                       split_url=f"{url}/test_files.txt")
    with pytest.raises(LeveError, match=r"eigen_test_files.txt: 3 frames, expected 697"):
        kitti.prepare(cfg, show_progress=False)
