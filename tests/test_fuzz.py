"""Fuzzing the parsers for a bounded time (hypothesis, derandomised so CI runs the same inputs).

Each target gets random and mutated-valid inputs: the split file, the KITTI calibration and
LiDAR files, DenseDepth's CSV, the ``.mat`` files (MATLAB v5 and 7.3/HDF5), zip archives and
their members (nested zips included), the image decoders (dataset sources and ``leve serve``
uploads) and the params loader. A parser may accept an input or refuse it with
:class:`LeveError` (one line naming the file); any other exception fails the test.
"""

from __future__ import annotations

import functools
import io
import itertools
import string
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from leve.errors import LeveError

_COUNTER = itertools.count()


def fuzz(examples: int) -> Callable:
    """A bounded, reproducible hypothesis run (a few seconds per target on a 2-core CPU)."""
    return settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                           HealthCheck.data_too_large])


def only_leve_errors(call: Callable[[], Any]) -> Any:
    """Run ``call``: a result or a one-line LeveError are fine; anything else propagates (fails)."""
    try:
        return call()
    except LeveError as exc:
        assert "\n" not in str(exc), str(exc)
        return None


@st.composite
def mutated(draw: st.DrawFn, valid: bytes) -> bytes:
    """``valid`` with a few bytes overwritten, a slice removed or duplicated, or truncated."""
    data = bytearray(valid)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["set", "cut", "dup", "truncate"]))
        if not data:
            break
        i = draw(st.integers(0, len(data) - 1))
        if op == "set":
            data[i : i + 4] = draw(st.binary(min_size=1, max_size=4))
        elif op == "cut":
            del data[i : i + draw(st.integers(1, 64))]
        elif op == "dup":
            data[i:i] = data[i : i + draw(st.integers(1, 64))]
        else:
            del data[i:]
    return bytes(data)


def unique(tmp_path: Path, suffix: str) -> Path:
    """A new file name per example (archives are cached per path)."""
    return tmp_path / f"f{next(_COUNTER)}{suffix}"


# --------------------------------------------------------------------------- KITTI text and LiDAR files

SPLIT_LINE = st.builds(
    lambda date, drive, frame, side, sep: f"{date}/{date}_drive_{drive}_sync{sep}{frame}{sep}{side}",
    st.sampled_from(["2011_09_26", "2011_10_03", "2011_9_26", "x"]), st.text("0123456789", min_size=1, max_size=5),
    st.text("0123456789", min_size=0, max_size=11), st.sampled_from(["l", "r", "c", ""]), st.sampled_from([" ", "\t", "  ", ""]))


@fuzz(300)
@given(st.lists(st.one_of(SPLIT_LINE, st.text(max_size=60)), max_size=6).map("\n".join))
def test_split_file_parser(text):
    from leve.datasets.kitti import parse_split

    frames = only_leve_errors(lambda: parse_split(text, "split.txt"))
    for f in frames or []:
        assert f.frame >= 0 and f.camera in ("02", "03")


NUMBER = st.one_of(st.floats(allow_nan=True, allow_infinity=True).map(repr), st.integers(-10**6, 10**6).map(str),
                   st.sampled_from(["nan", "inf", "-inf", "1e400", "x", "", "0", "-5"]))
SIZES = {"P_rect_02": 12, "R_rect_00": 9, "S_rect_02": 2, "R": 9, "T": 3}


@st.composite
def calib_text(draw: st.DrawFn, keys: tuple[str, ...]) -> str:
    """Calibration lines: each key with the right number of values (or not), plus stray lines."""
    lines = []
    for key in keys:
        count = draw(st.one_of(st.just(SIZES[key]), st.integers(0, 13)))
        lines.append(f"{key}: {' '.join(draw(st.lists(NUMBER, min_size=count, max_size=count)))}")
    lines += draw(st.lists(st.text(max_size=30), max_size=2))
    return "\n".join(draw(st.permutations(lines)))


@fuzz(300)
@given(calib_text(("P_rect_02", "R_rect_00", "S_rect_02")), calib_text(("R", "T")))
def test_kitti_calibration_parser(cam_to_cam, velo_to_cam):
    from leve.datasets.kitti import velo_to_image

    cal = only_leve_errors(lambda: velo_to_image(cam_to_cam, velo_to_cam, "02", ("cam.txt", "velo.txt")))
    if cal is not None:
        assert cal.height > 0 and cal.width > 0 and np.isfinite(cal.P).all()


@fuzz(200)
@given(st.binary(max_size=256))
def test_velodyne_reader(data):
    from leve.datasets.kitti import read_velodyne

    pts = only_leve_errors(lambda: read_velodyne(data, "scan.bin"))
    if pts is not None:
        assert pts.shape[1] == 4 and np.isfinite(pts[:, :3]).all()


# --------------------------------------------------------------------------- DenseDepth's CSV inside its zip

MEMBERS = ["data/a.jpg", "data/a.png", "data/b.jpg", "data/b.png"]
CSV_FIELD = st.one_of(st.sampled_from(MEMBERS + ["../x.jpg", "/abs.png", "", '"data/a.jpg"', "data/missing.png"]),
                      st.text(max_size=12))


@fuzz(250)
@given(st.one_of(
    st.lists(st.lists(CSV_FIELD, max_size=3).map(",".join), max_size=5).map("\n".join).map(str.encode),
    st.binary(max_size=200)))
def test_nyu_csv_reader(csv_bytes):
    from leve.datasets.nyu import read_pairs

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in MEMBERS:
            zf.writestr(name, b"x")
        zf.writestr("data/train.csv", csv_bytes)
    with zipfile.ZipFile(buf) as zf:
        pairs = only_leve_errors(lambda: read_pairs(zf, "data/train.csv", "nyu_data.zip"))
    for pair in pairs or []:
        assert pair.rgb in MEMBERS and pair.depth in MEMBERS


# --------------------------------------------------------------------------- .mat files


def _splits_mat(values: Any, compress: bool = False) -> bytes:
    import scipy.io

    buf = io.BytesIO()
    scipy.io.savemat(buf, {"trainNdxs": np.asarray([[4.0]]), "testNdxs": values}, do_compression=compress)
    return buf.getvalue()


VALID_SPLITS = _splits_mat(np.asarray([[1.0], [3.0], [2.0]]))
VALID_SPLITS_COMPRESSED = _splits_mat(np.asarray([[1.0], [3.0], [2.0]]), compress=True)


@fuzz(250)
@given(st.one_of(
    mutated(VALID_SPLITS),
    mutated(VALID_SPLITS_COMPRESSED),
    st.binary(max_size=300),
    st.one_of(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=4),
              st.text(min_size=1, max_size=4), st.lists(st.integers(-3, 10**12), min_size=1, max_size=3))
    .map(lambda v: _splits_mat(np.asarray(v)))))
def test_splits_mat_reader(tmp_path_factory, data):
    from leve.datasets.nyu import read_test_indices

    path = unique(tmp_path_factory.getbasetemp(), ".mat")
    path.write_bytes(data)
    indices = only_leve_errors(lambda: read_test_indices(path))
    path.unlink()
    for i in indices or []:
        assert isinstance(i, int) and i >= 0


@functools.cache
def labeled_bytes() -> bytes:
    """A small nyu_depth_v2_labeled.mat (HDF5) in the layout open_labeled checks."""
    import h5py

    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        f["images"] = np.zeros((1, 3, 640, 480), np.uint8)
        f["depths"] = np.ones((1, 640, 480), np.float32)
    return buf.getvalue()


@st.composite
def damaged_hdf5(draw: st.DrawFn) -> bytes:
    """The labeled file cut short, with a damaged superblock (its first 512 bytes), or random bytes."""
    valid = labeled_bytes()
    return draw(st.one_of(st.integers(0, len(valid)).map(lambda n: valid[:n]),
                          mutated(valid[:512]).map(lambda head: head + valid[512:]),
                          st.binary(max_size=600)))


@fuzz(60)
@given(damaged_hdf5())
def test_labeled_mat_reader(tmp_path_factory, blob):
    from leve.datasets.nyu import open_labeled

    path = unique(tmp_path_factory.getbasetemp(), ".mat")
    path.write_bytes(blob)
    handle = only_leve_errors(lambda: open_labeled(path, "depths"))
    if handle is not None:
        handle.close()
    path.unlink()


# --------------------------------------------------------------------------- zip archives and members


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


VALID_ZIP = _zip({"UnityCam/a.png": b"a" * 300, "inner.zip": _zip({"b/c.png": b"c" * 200}), "d/e.txt": b"e" * 50})


@fuzz(250)
@given(mutated(VALID_ZIP))
def test_zip_listing_and_member_reads(tmp_path_factory, data):
    """List a damaged zip (nested zips copied out to a cache) and read every member."""
    from leve.sources.archive import close_all, list_tree

    base = tmp_path_factory.getbasetemp()
    path = unique(base, ".zip")
    path.write_bytes(data)
    cache = unique(base, ".cache")
    try:
        members = only_leve_errors(lambda: list_tree(path, cache))
        for m in members or []:
            only_leve_errors(m.read)
            assert cache.resolve() in Path(m.container or path).resolve().parents or m.container == str(path)
    finally:
        close_all()


@fuzz(300)
@given(st.one_of(st.text(max_size=30), st.lists(st.sampled_from(["..", ".", "", "a", "/", "\\", "C:", "~"]),
                                                  max_size=6).map("/".join)))
def test_member_names_stay_inside(tmp_path_factory, name):
    from leve.sources.archive import safe_join, safe_member

    root = tmp_path_factory.getbasetemp() / "root"
    clean = only_leve_errors(lambda: safe_member(name))
    if clean is not None:
        assert not clean.startswith("/") and ".." not in clean.split("/")
        target = only_leve_errors(lambda: safe_join(root, name))
        if target is not None:
            assert target.is_relative_to(root.resolve())


# --------------------------------------------------------------------------- images


def _image(fmt: str, mode: str) -> bytes:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


VALID_IMAGES = [_image("PNG", "RGB"), _image("JPEG", "RGB"), _image("PNG", "L"), _image("PNG", "RGBA"),
                _image("PNG", "I;16"), _image("PNG", "P")]


@fuzz(400)
@given(st.one_of(*[mutated(v) for v in VALID_IMAGES], st.binary(max_size=200)))
def test_image_decoders(data):
    from leve.store.images import decode_channel, decode_gray, decode_rgb

    for strict in (False, True):
        rgb = only_leve_errors(lambda s=strict: decode_rgb(data, "x.png", strict=s))
        if rgb is not None:
            assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3
    for bits in (8, 16):
        gray = only_leve_errors(lambda b=bits: decode_gray(data, "d.png", b))
        if gray is not None:
            assert gray.ndim == 2 and gray.dtype == (np.uint8 if bits == 8 else np.uint16)
    red = only_leve_errors(lambda: decode_channel(data, "d.png", 0))
    if red is not None:
        assert red.ndim == 2 and red.dtype == np.uint8


@fuzz(300)
@given(st.one_of(*[mutated(v) for v in VALID_IMAGES[:2]], st.binary(max_size=200)))
def test_upload_reader(data):
    from leve.serve.images import read_image

    rgb = only_leve_errors(lambda: read_image(data, "upload.jpg", 100_000, 10_000))
    if rgb is not None:
        assert rgb.dtype == np.uint8 and rgb.shape[2] == 3 and rgb.shape[0] * rgb.shape[1] <= 10_000


# --------------------------------------------------------------------------- params

SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True),
                    st.text(string.printable, max_size=8))
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.text(string.ascii_lowercase, max_size=6),
                                                                       inner, max_size=3)), max_leaves=8)


def _configs() -> list[tuple[str, type]]:
    from leve.datasets import synthetic
    from leve.evaluation.stage import Config as EvalConfig
    from leve.serve.config import Config as ServeConfig
    from leve.teacher.stage import Config as TeacherConfig
    from leve.train.config import TrainConfig

    return [("train", TrainConfig), ("eval", EvalConfig), ("teacher", TeacherConfig), ("serve", ServeConfig),
            ("prepare.synthetic", synthetic.Config)]


CONFIGS = _configs()


@st.composite
def config_values(draw: st.DrawFn) -> tuple[str, type, dict[str, Any]]:
    """A params section: mostly the config's own keys (with any values), sometimes an unknown one."""
    import dataclasses

    where, cls = draw(st.sampled_from(CONFIGS))
    names = [f.name for f in dataclasses.fields(cls)]
    key = st.one_of(st.sampled_from(names), st.sampled_from(names), st.text(max_size=5), st.integers(-2, 2))
    keys = draw(st.lists(key, max_size=4, unique=True))
    return where, cls, {k: draw(VALUES) for k in keys}


@fuzz(400)
@given(config_values())
def test_params_sections_are_typed_or_refused(section):
    from leve.params import build_config

    where, cls, values = section
    only_leve_errors(lambda: build_config(cls, values, where))


@fuzz(300)
@given(st.lists(st.builds(lambda k, v: f"{k}={v}", st.sampled_from(["epochs", "kd.eps", "resolution", "lr", "kd",
                                                                    "schedule.name", "max_steps", "x"]),
                          st.text(string.printable, max_size=10)), max_size=3))
def test_set_overrides(items):
    from leve.params import nest_overrides, parse_overrides
    from leve.train.config import TrainConfig

    def run() -> None:
        from leve.params import build_config

        build_config(TrainConfig, nest_overrides({}, parse_overrides(items)), "train")

    only_leve_errors(run)


@fuzz(300)
@given(st.one_of(st.binary(max_size=200), st.text(max_size=200).map(str.encode),
                 VALUES.map(lambda v: __import__("yaml").safe_dump({"train": v}).encode())))
def test_params_file_loader(tmp_path_factory, data):
    from leve.params import load_params, section

    path = unique(tmp_path_factory.getbasetemp(), ".yaml")
    path.write_bytes(data)
    params = only_leve_errors(lambda: load_params(path))
    if params is not None:
        assert isinstance(params, dict)
        only_leve_errors(lambda: section(params, "train.kd"))
    path.unlink()
