"""leve's MATLAB v5 reader against scipy's (the independent implementation), and what it refuses."""

from __future__ import annotations

import io

import numpy as np
import pytest
import scipy.io

from leve.errors import LeveError
from leve.sources.matfile import read_numeric


def saved(tmp_path, variables: dict, compress: bool, name: str = "m.mat"):
    path = tmp_path / name
    scipy.io.savemat(path, variables, do_compression=compress)
    return path


@pytest.mark.parametrize("compress", [False, True])
@pytest.mark.parametrize("values", [
    np.asarray([[1.0], [5.0], [4.0]]),                       # splits.mat's testNdxs: a double column
    np.arange(12, dtype=np.uint8).reshape(3, 4),             # stored as miUINT8
    np.asarray([[-3, 7, 30000]], dtype=np.int16),
    np.asarray([[0.5, -2.25]], dtype=np.float32),
    np.arange(24, dtype=np.int32).reshape(2, 3, 4),          # three dimensions, column-major on disk
    np.asarray([[2.0]]),                                     # one value: a small data element
])
def test_reads_what_scipy_reads(tmp_path, values, compress):
    path = saved(tmp_path, {"trainNdxs": np.asarray([[9.0]]), "testNdxs": values, "label": "text"}, compress)
    expected = scipy.io.loadmat(path)["testNdxs"]
    got = read_numeric(path, "testNdxs")
    assert got.dtype == np.float64 and got.shape == expected.shape
    np.testing.assert_array_equal(got, expected.astype(np.float64))


def test_known_bytes_of_an_uncompressed_file(tmp_path):
    """Hand-checked layout: 128-byte header, then one miMATRIX element holding [[1], [3]]."""
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"x": np.asarray([[1.0], [3.0]])})
    data = buf.getvalue()
    assert data[126:128] == b"IM" and data[128:132] == (14).to_bytes(4, "little")
    path = tmp_path / "x.mat"
    path.write_bytes(data)
    np.testing.assert_array_equal(read_numeric(path, "x"), [[1.0], [3.0]])


@pytest.mark.parametrize(("blob", "message"), [
    (b"", "no MATLAB 5 header"),
    (b"MATLAB 7.3 MAT-file" + bytes(200), "a MATLAB 7.3 / HDF5 file?"),
    (b"x" * 300, "no MATLAB 5 header"),
])
def test_refuses_other_files(tmp_path, blob, message):
    path = tmp_path / "bad.mat"
    path.write_bytes(blob)
    with pytest.raises(LeveError, match=message):
        read_numeric(path, "testNdxs")


def test_refuses_missing_non_numeric_and_damaged(tmp_path):
    path = saved(tmp_path, {"testNdxs": "not numbers", "other": np.eye(2)}, compress=False)
    with pytest.raises(LeveError, match="'testNdxs' is not a real numeric matrix"):
        read_numeric(path, "testNdxs")
    with pytest.raises(LeveError, match="'nope' not found"):
        read_numeric(path, "nope")
    good = saved(tmp_path, {"testNdxs": np.asarray([[1.0], [2.0]])}, compress=False, name="g.mat").read_bytes()
    damaged = tmp_path / "d.mat"
    damaged.write_bytes(good[:185] + b"\x7f" + good[186:])  # an unknown data type: crashes scipy 1.x
    with pytest.raises(LeveError):
        read_numeric(damaged, "testNdxs")
    damaged.write_bytes(good[:-5])
    with pytest.raises(LeveError, match="runs past the end"):
        read_numeric(damaged, "testNdxs")
