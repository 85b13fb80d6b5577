"""`leve prepare nyu` on miniature sources built here in the exact real layouts."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io
import zarr
from PIL import Image

from leve.store.reader import open_split, open_store

H, W = 480, 640
TRAIN_SCENES = {"bedroom_0001": 3, "kitchen_0002": 2, "office_0003": 2}


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _image(rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W]
    base = np.stack([x * 255 // W, y * 255 // H, (x + y) * 255 // (H + W)], -1)
    return np.clip(base + rng.integers(-20, 20, (H, W, 3)), 0, 255).astype(np.uint8)


def build_nyu_zip(path: Path, rng: np.random.Generator, n_test: int = 3) -> dict:
    """DenseDepth's layout: CSVs without header, JPEG + 8-bit PNG train, PNG + 16-bit mm test."""
    expected: dict = {"train": [], "test": []}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        rows = []
        for scene, n in TRAIN_SCENES.items():
            for k in range(n):
                rgb_name = f"data/nyu2_train/{scene}_out/{k + 1}.jpg"
                depth_name = f"data/nyu2_train/{scene}_out/{k + 1}.png"
                jpeg = _jpeg(_image(rng))
                d8 = rng.integers(0, 256, (H, W)).astype(np.uint8)
                zf.writestr(rgb_name, jpeg)
                zf.writestr(depth_name, _png(d8))
                rows.append(f"{rgb_name},{depth_name}")
                rgb_decoded = np.asarray(Image.open(io.BytesIO(jpeg)).convert("RGB"))
                expected["train"].append((scene, rgb_decoded, d8.astype(np.float64) / 255 * 10))
        zf.writestr("data/nyu2_train.csv", "\n".join(rows) + "\n")
        rows = []
        for i in range(n_test):
            rgb = _image(rng)
            mm = rng.integers(0, 10000, (H, W)).astype(np.uint16)
            zf.writestr(f"data/nyu2_test/{i:05d}_colors.png", _png(rgb))
            zf.writestr(f"data/nyu2_test/{i:05d}_depth.png", _png(mm))
            rows.append(f"data/nyu2_test/{i:05d}_colors.png,data/nyu2_test/{i:05d}_depth.png")
            expected["test"].append((rgb, mm.astype(np.float64) / 1000))
        zf.writestr("data/nyu2_test.csv", "\n".join(rows) + "\n")
    return expected


@pytest.fixture
def nyu_zip(tmp_path):
    path = tmp_path / "nyu_data.zip"
    return path, build_nyu_zip(path, np.random.default_rng(0))


def _prepare_args(zip_path: Path, out: Path, *extra: str) -> list[str]:
    # val_scenes fixed so the split sizes are known; --params points to no file: code defaults
    return ["prepare", "nyu", "--source", zip_path, "--out", out, "--workers", "1",
            "--params", out.parent / "none.yaml", "--set", "val_scenes=[kitchen_0002]", "--set", "block_size=2", *extra]


def test_zip_values_match_source(nyu_zip, tmp_path, run_cli):
    zip_path, expected = nyu_zip
    out = tmp_path / "nyu.zarr"
    res = run_cli(*_prepare_args(zip_path, out))
    assert res.code == 0, res.stderr
    store = open_store(out)
    assert store.attrs["dataset"] == "nyu" and store.attrs["units"] == "metres"
    assert store.attrs["val_scenes"] == ["kitchen_0002"] and store.attrs["max_depth"] == 10.0
    # crops belong to the evaluation protocol (two different published boxes), not to the store
    assert not [k for k in store.attrs if "crop" in k]
    from leve.evaluation.protocols import CROPS, Crop

    assert CROPS["nyu"]["leve2024"] == Crop("leve2024", (20, 460), (24, 616))
    assert CROPS["nyu"]["eigen"] == Crop("eigen", (45, 471), (41, 601))
    assert store.attrs["sources"][0]["sha256"] == __import__("hashlib").sha256(zip_path.read_bytes()).hexdigest()
    train, val, test = (open_split(out, s) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (5, 2, 3)
    train_exp = [e for e in expected["train"] if e[0] != "kitchen_0002"]
    val_exp = [e for e in expected["train"] if e[0] == "kitchen_0002"]
    for split, exp in ((train, train_exp), (val, val_exp)):
        for i, (scene, rgb, metres) in enumerate(exp):
            s = split[i]
            assert s.meta["scene"] == scene
            np.testing.assert_array_equal(s.rgb, rgb)  # bit for bit
            np.testing.assert_array_equal(s.depth, metres.astype(np.float32))
    for i, (rgb, metres) in enumerate(expected["test"]):
        np.testing.assert_array_equal(test.rgb(i), rgb)
        np.testing.assert_array_equal(test.depth(i), metres.astype(np.float32))
    assert test.depth(0).dtype == np.float32 and train.rgb(0).dtype == np.uint8
    # rerun: up to date, nothing rebuilt
    res = run_cli(*_prepare_args(zip_path, out))
    assert res.code == 0 and "up to date" in res.stderr


def test_jpeg_codec_keeps_source_bytes(nyu_zip, tmp_path, run_cli):
    zip_path, expected = nyu_zip
    out = tmp_path / "nyu.zarr"
    assert run_cli(*_prepare_args(zip_path, out, "--set", "rgb_codec=jpeg")).code == 0
    train = open_split(out, "train")
    assert train.rgb_codec == "jpeg"
    with zipfile.ZipFile(zip_path) as zf:
        src = zf.read(train.meta["source"].iat[0])
    assert train.rgb_bytes(0) == src
    np.testing.assert_array_equal(train.rgb(0), expected["train"][0][1])


def test_val_scenes_by_fraction_are_whole_and_deterministic():
    from leve.datasets.nyu import choose_val_scenes

    scenes = [f"s{i}" for i in range(20) for _ in range(i + 1)]
    a = choose_val_scenes(scenes, 0.1, seed=0)
    assert a == choose_val_scenes(scenes, 0.1, seed=0)
    assert a != choose_val_scenes(scenes, 0.1, seed=1)
    frames = sum(scenes.count(s) for s in a)
    assert frames >= 0.1 * len(scenes)
    # the last scene added crossed the target: without it the fraction is not reached
    assert frames - min(scenes.count(s) for s in a) < 0.1 * len(scenes) + max(scenes.count(s) for s in a)


def build_labeled(tmp_path: Path, rng: np.random.Generator, n: int = 5, test_ndxs=(2, 5, 4)):
    """The official files: HDF5 .mat with MATLAB's transposed axes, and a v5 splits.mat."""
    images = rng.integers(0, 256, (n, 3, W, H)).astype(np.uint8)  # (N, 3, 640, 480) as h5py sees it
    depths = rng.uniform(0.5, 9.9, (n, W, H)).astype(np.float32)
    raw = np.where(rng.random((n, W, H)) < 0.2, 0, depths).astype(np.float32)
    mat = tmp_path / "nyu_depth_v2_labeled.mat"
    with h5py.File(mat, "w") as f:
        f["images"], f["depths"], f["rawDepths"] = images, depths, raw
    splits = tmp_path / "splits.mat"
    scipy.io.savemat(splits, {"testNdxs": np.asarray(test_ndxs, dtype=np.float64).reshape(-1, 1),
                              "trainNdxs": np.asarray([1, 3], dtype=np.float64).reshape(-1, 1)})
    return mat, splits, images, depths, raw


@pytest.mark.parametrize("depth_key", ["depths", "rawDepths"])
def test_labeled_mat_test_split(nyu_zip, tmp_path, run_cli, depth_key):
    zip_path, _ = nyu_zip
    mat, splits, images, depths, raw = build_labeled(tmp_path, np.random.default_rng(1))
    out = tmp_path / "nyu.zarr"
    res = run_cli(*_prepare_args(zip_path, out, "--test-source", "labeled", "--labeled-mat", mat,
                                 "--splits-mat", splits, "--set", f"labeled_depth={depth_key}"))
    assert res.code == 0, res.stderr
    test = open_split(out, "test")
    assert len(test) == 3
    ref = depths if depth_key == "depths" else raw
    for i, one_based in enumerate((2, 5, 4)):
        # independent read of MATLAB's column-major layout: pixel (row r, col c) = data[k, :, c, r]
        expected_rgb = np.stack([images[one_based - 1, ch].T for ch in range(3)], axis=-1)
        np.testing.assert_array_equal(test.rgb(i), expected_rgb)
        np.testing.assert_array_equal(test.depth(i), ref[one_based - 1].T)
        assert test.rgb(i).shape == (H, W, 3)


# --------------------------------------------------------------------------- bad input


def _rewrite_zip(src: Path, dst: Path, change: dict[str, bytes | None]) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for name in zin.namelist():
            if name in change:
                if change[name] is not None:
                    zout.writestr(name, change[name])
            else:
                zout.writestr(name, zin.read(name))


def _assert_failed(res, *needles: str) -> None:
    assert res.code == 1
    lines = [line for line in res.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, res.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def test_corrupt_png(nyu_zip, tmp_path, run_cli):
    zip_path, _ = nyu_zip
    bad = tmp_path / "bad.zip"
    member = "data/nyu2_train/office_0003_out/2.png"
    _rewrite_zip(zip_path, bad, {member: b"\x89PNG\r\n\x1a\n garbage"})
    out = tmp_path / "nyu.zarr"
    _assert_failed(run_cli(*_prepare_args(bad, out)), member, "cannot decode")
    assert not out.exists()


def test_csv_row_naming_missing_member(nyu_zip, tmp_path, run_cli):
    zip_path, _ = nyu_zip
    bad = tmp_path / "bad.zip"
    member = "data/nyu2_train/bedroom_0001_out/2.jpg"
    _rewrite_zip(zip_path, bad, {member: None})
    out = tmp_path / "nyu.zarr"
    _assert_failed(run_cli(*_prepare_args(bad, out)), "nyu2_train.csv row 2", member)
    assert not out.exists()


def test_truncated_zip(nyu_zip, tmp_path, run_cli):
    zip_path, _ = nyu_zip
    bad = tmp_path / "truncated.zip"
    bad.write_bytes(zip_path.read_bytes()[: zip_path.stat().st_size // 2])
    out = tmp_path / "nyu.zarr"
    _assert_failed(run_cli(*_prepare_args(bad, out)), "truncated.zip", "not a readable zip")
    assert not out.exists()


def test_wrong_sha256(nyu_zip, tmp_path, run_cli):
    zip_path, _ = nyu_zip
    out = tmp_path / "nyu.zarr"
    _assert_failed(run_cli(*_prepare_args(zip_path, out, "--set", "sha256=" + "0" * 64)), "nyu_data.zip", "sha256 mismatch")
    assert not out.exists()


def test_write_failure_midway_then_resume(nyu_zip, tmp_path, run_cli, monkeypatch):
    zip_path, expected = nyu_zip
    out = tmp_path / "nyu.zarr"
    real_setitem = zarr.Array.__setitem__
    calls = {"n": 0}

    def failing_setitem(self, key, value):
        calls["n"] += 1
        if calls["n"] == 3:  # block 0 writes rgb + depth, then the 2nd block fails
            raise OSError(28, "No space left on device")
        return real_setitem(self, key, value)

    monkeypatch.setattr(zarr.Array, "__setitem__", failing_setitem)
    _assert_failed(run_cli(*_prepare_args(zip_path, out)), "write failed", "No space left")
    assert not out.exists()
    assert (tmp_path / "nyu.zarr.partial").exists()
    monkeypatch.setattr(zarr.Array, "__setitem__", real_setitem)

    loaded = []
    from leve.datasets import nyu

    real_call = nyu.ZipLoader.__call__
    monkeypatch.setattr(nyu.ZipLoader, "__call__", lambda self, i: loaded.append(i) or real_call(self, i))
    res = run_cli(*_prepare_args(zip_path, out))
    assert res.code == 0, res.stderr
    assert "resuming" in res.stderr
    assert len(loaded) == 10 - 2  # the first block (2 samples) was not decoded again
    train = open_split(out, "train")
    for i, (_, rgb, metres) in enumerate(e for e in expected["train"] if e[0] != "kitchen_0002"):
        np.testing.assert_array_equal(train.rgb(i), rgb)
        np.testing.assert_array_equal(train.depth(i), metres.astype(np.float32))
    assert open_store(out).attrs["complete"] is True


def test_parallel_workers_equal_serial(nyu_zip, tmp_path, run_cli):
    zip_path, _ = nyu_zip
    a, b = tmp_path / "a.zarr", tmp_path / "b.zarr"
    assert run_cli(*_prepare_args(zip_path, a)).code == 0
    args = _prepare_args(zip_path, b)
    args[args.index("--workers") + 1] = "2"
    assert run_cli(*args).code == 0
    for s in ("train", "val", "test"):
        x, y = open_split(a, s), open_split(b, s)
        for i in range(len(x)):
            np.testing.assert_array_equal(x.rgb(i), y.rgb(i))
            np.testing.assert_array_equal(x.depth(i), y.depth(i))
