"""The bad-input catalogue: every command over every kind of bad input.

Each case builds its bad input inside a fresh copy of a small workspace (a synthetic store, its
teacher cache, a student checkpoint, earlier predictions, metrics and a params file), runs
``leve ...`` in-process through the real entry point and checks that

- the exit status is 1 and stderr holds exactly one ``error:`` line, which names the file
  and the problem (the case's pattern);
- every file that existed before the command (the outputs of earlier runs and the bad
  input itself) is still there, byte for byte; nothing was written outside the workspace;
- no code from a pickle ran (the marker file the armed pickles would create is absent).

The docs' *Bad input* table (docs/bad-input.md) is generated from :data:`CASES`
(:func:`catalogue_table`) and checked here.
"""

from __future__ import annotations

import functools
import hashlib
import io
import pathlib
import re
import shutil
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tests import media
from tests.explicit import caching
from tests.store import damage

MARKER = "PWNED"  # what the armed pickles create when loaded unsafely
H, W = 480, 640  # NYU's image size


# --------------------------------------------------------------------------- inputs in real formats


def png(arr: np.ndarray, mode: str | None = None) -> bytes:
    img = Image.fromarray(arr)
    buf = io.BytesIO()
    (img.convert(mode) if mode else img).save(buf, format="PNG")
    return buf.getvalue()


def jpeg(arr: np.ndarray, mode: str = "RGB") -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).convert(mode).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def raw_png(width: int, height: int, bit_depth: int, colour: int, rows: bytes) -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit RGB or lie about its size)."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(rows)) + _chunk(b"IEND", b"")


def rgb16_png(h: int, w: int) -> bytes:
    row = b"\0" + np.full((w, 3), 40_000, ">u2").tobytes()
    return raw_png(w, h, 16, 2, row * h)


def gigapixel_png() -> bytes:
    """200 bytes whose header claims 100,000 x 100,000 RGB pixels (30 GB decoded)."""
    return raw_png(100_000, 100_000, 8, 2, b"\0" * (3 * 100_000 + 1) * 2)


def photo(seed: int = 0, h: int = H, w: int = W) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // w, yy * 255 // h, (xx + yy) * 255 // (h + w)], -1)
    return np.clip(base + rng.integers(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)


TRAIN_RGB = "data/nyu2_train/a_out/1.jpg"
TRAIN_DEPTH = "data/nyu2_train/a_out/1.png"
TEST_RGB = "data/nyu2_test/00000_colors.png"


@functools.cache
def _nyu_members() -> dict[str, bytes]:
    return {
        TRAIN_RGB: jpeg(photo(0)), TRAIN_DEPTH: png(np.full((H, W), 80, np.uint8)),
        "data/nyu2_train/b_out/1.jpg": jpeg(photo(1)), "data/nyu2_train/b_out/1.png": png(np.full((H, W), 90, np.uint8)),
        TEST_RGB: png(photo(2)), "data/nyu2_test/00000_depth.png": png(np.full((H, W), 3000, np.uint16)),
        "data/nyu2_test.csv": f"{TEST_RGB},data/nyu2_test/00000_depth.png\n".encode(),
        "data/nyu2_train.csv": (f"{TRAIN_RGB},{TRAIN_DEPTH}\n"
                                "data/nyu2_train/b_out/1.jpg,data/nyu2_train/b_out/1.png\n").encode(),
    }


def nyu_zip(path: Path, change: dict[str, bytes] | None = None, train_csv: str | None = None) -> Path:
    """DenseDepth's nyu_data.zip in miniature (two train scenes, one test pair), members replaced by ``change``."""
    members = dict(_nyu_members())
    if train_csv is not None:
        members["data/nyu2_train.csv"] = train_csv.encode()
    members.update(change or {})
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def nyu_args(source: Path, *extra: object) -> list[object]:
    return ["prepare", "nyu", "--source", source, "--out", "data/zarr/nyu.zarr", "--workers", "1",
            "--set", "val_scenes=[b]", "--set", "block_size=1", *extra]


def labeled_mat(path: Path, depth_value: float) -> Path:
    """nyu_depth_v2_labeled.mat (HDF5, MATLAB's transposed layout) with one image whose depth holds one bad value."""
    import h5py

    depth = np.full((1, W, H), 2.5, np.float32)
    depth[0, 10, 20] = depth_value
    with h5py.File(path, "w") as f:
        f["images"] = photo(3).transpose(2, 1, 0)[None]
        f["depths"] = depth
        f["rawDepths"] = depth
    return path


def splits_mat(path: Path) -> Path:
    import scipy.io

    scipy.io.savemat(path, {"testNdxs": np.asarray([[1.0]])})
    return path


def labeled_args(ws: Path, value: float) -> list[object]:
    return nyu_args(nyu_zip(ws / "in/nyu_data.zip"), "--test-source", "labeled",
                    "--labeled-mat", labeled_mat(ws / "in/labeled.mat", value), "--splits-mat", splits_mat(ws / "in/splits.mat"))


def zip_with(path: Path, members: list[tuple[str, bytes, int | None]]) -> Path:
    """A zip of (name, data, unix mode or None); a name is stored as given, ``../`` and ``/`` included."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for name, data, mode in members:
            info = zipfile.ZipInfo(name)
            if mode is not None:
                info.external_attr = mode << 16
            zf.writestr(info, data)
    return path


def endoslam_zip(path: Path, evil: tuple[str, bytes, int | None] | None = None, frame: bytes | None = None) -> Path:
    frames = "UnityCam/Colon/Frames/image_0001.png"
    depths = "UnityCam/Colon/Pixelwise Depths/aov_image_0001.png"
    members = [(frames, frame or png(photo(4, 32, 32)), None), (depths, png(photo(5, 32, 32), "RGBA"), None)]
    return zip_with(path, members + ([evil] if evil else []))


class Armed:
    """Unpickling this calls ``Path(target).touch()``: a stand-in for any code a pickle can carry."""

    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self) -> tuple:
        return (pathlib.Path.touch, (pathlib.Path(self.target),))


def armed_checkpoint(path: Path, ws: Path) -> Path:
    """A torch checkpoint in leve's layout whose pickle also carries :class:`Armed`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": "leve-checkpoint", "version": 1, "model": "leve-mobilenetv3",
                "config": {"max_depth": 10.0}, "state_dict": {}, "extra": {"x": Armed(ws / MARKER)}}, path)
    return path


def truncated(src: Path, dst: Path) -> Path:
    data = src.read_bytes()
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(data[: len(data) // 2])
    return dst


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def set_attr(store: Path, **attrs: object) -> Path:
    import zarr

    zarr.open_group(str(store), mode="r+").attrs.update(attrs)
    return store


def poison_depth(store: Path, split: str, value: float) -> Path:
    import zarr

    arr = zarr.open_group(str(store), mode="r+")[split]["depth"]
    first = arr[0]
    first[5, 7] = value
    arr[0] = first
    return store


def other_store(ws: Path) -> Path:
    """data/zarr/synthetic.zarr rebuilt with another seed: the teacher cache no longer belongs to it."""
    from leve.datasets import synthetic

    out = ws / "data/zarr/synthetic.zarr"
    shutil.rmtree(out)
    synthetic.prepare(synthetic.Config(out=out, seed=1, height=48, width=64, train=4, val=2, test=2, workers=1,
                                       block_size=4), show_progress=False)
    return out


# --------------------------------------------------------------------------- the catalogue


@dataclass(frozen=True)
class Case:
    """One bad input: the catalogue row, the command, how to make it, the error line expected."""

    kind: str
    command: str
    make: Callable[[Path], list[object]]
    expect: str  # regex searched in the one error line: the file and the problem

    @property
    def id(self) -> str:
        return f"{self.kind}-{self.command}".replace(" ", "_")


CKPT = "models/student/best.pt"
EVAL = ["eval", "--quiet", "--no-teacher"]
TRAIN_NO_KD = ["train", "--set", "kd.eps=0"]
TEACHER = ["teacher-cache", "--dataset", "synthetic", "--model", "tiny-random", "--split", "test", "--force"]
STORE, CACHE = "data/zarr/synthetic.zarr", "data/teacher/synthetic.zarr"


def _c(kind: str, command: str, expect: str) -> Callable[[Callable[[Path], list[object]]], Case]:
    return lambda make: Case(kind, command, make, expect)


CASES: list[Case] = [
    # ---- missing file
    _c("missing file", "prepare nyu", r"in/nyu_data\.zip: file not found")(
        lambda ws: nyu_args(ws / "in/nyu_data.zip")),
    _c("missing file", "prepare kitti", r"in/eigen_test_files\.txt: split file not found")(
        lambda ws: ["prepare", "kitti", "--source", ws, "--split-file", ws / "in/eigen_test_files.txt"]),
    _c("missing file", "prepare endoslam", r"in/EndoSLAM\.zip: EndoSLAM source not found")(
        lambda ws: ["prepare", "endoslam", "--source", ws / "in/EndoSLAM.zip"]),
    _c("missing file", "teacher-cache", r"data/zarr/nyu\.zarr: no store here")(
        lambda ws: ["teacher-cache", "--dataset", "nyu", "--model", "tiny-random"]),
    _c("missing file", "train", r"data/zarr/nyu\.zarr: no store here")(
        lambda ws: [*TRAIN_NO_KD, "--set", "dataset=nyu"]),
    _c("missing file", "train (teacher cache)", r"nowhere/synthetic\.zarr: no teacher cache here")(
        lambda ws: ["train", "--set", "kd.teacher_dir=nowhere"]),
    _c("missing file", "eval", r"in/gone\.pt: checkpoint not found")(
        lambda ws: [*EVAL, "--checkpoint", ws / "in/gone.pt"]),
    _c("missing file", "predict", r"in/gone\.png: no such file or folder")(
        lambda ws: ["predict", ws / "in/gone.png", "--checkpoint", CKPT]),
    _c("missing file", "info", r"in/gone\.zarr: no store here")(
        lambda ws: ["info", ws / "in/gone.zarr"]),
    _c("missing file", "export", r"in/gone\.pt: checkpoint not found")(
        lambda ws: ["export", "--checkpoint", ws / "in/gone.pt"]),
    _c("missing file", "serve", r"in/gone\.pt: checkpoint not found")(
        lambda ws: ["serve", "--checkpoint", ws / "in/gone.pt"]),
    # ---- empty file
    _c("empty file", "prepare nyu", r"in/nyu_data\.zip: not a readable zip")(
        lambda ws: nyu_args(write(ws / "in/nyu_data.zip", b""))),
    _c("empty file", "prepare nyu (labeled .mat)", r"in/labeled\.mat: not a readable MATLAB 7\.3")(
        lambda ws: nyu_args(nyu_zip(ws / "in/nyu_data.zip"), "--test-source", "labeled", "--labeled-mat",
                            write(ws / "in/labeled.mat", b""), "--splits-mat", splits_mat(ws / "in/splits.mat"))),
    _c("empty file", "prepare kitti", r"in/split\.txt: split file has no frames")(
        lambda ws: ["prepare", "kitti", "--source", ws, "--split-file", write(ws / "in/split.txt", b"")]),
    _c("empty file", "prepare endoslam", r"in/EndoSLAM\.zip: not a readable zip")(
        lambda ws: ["prepare", "endoslam", "--source", write(ws / "in/EndoSLAM.zip", b"")]),
    _c("empty file", "eval", r"in/empty\.pt: cannot read checkpoint safely")(
        lambda ws: [*EVAL, "--checkpoint", write(ws / "in/empty.pt", b"")]),
    _c("empty file", "predict", r"in/empty\.png: cannot decode image")(
        lambda ws: ["predict", write(ws / "in/empty.png", b""), "--checkpoint", CKPT]),
    _c("empty file", "serve", r"in/empty\.safetensors: cannot read safetensors checkpoint")(
        lambda ws: ["serve", "--checkpoint", write(ws / "in/empty.safetensors", b"")]),
    # ---- truncated file
    _c("truncated file", "prepare nyu", r"in/half\.zip: not a readable zip")(
        lambda ws: nyu_args(truncated(nyu_zip(ws / "in/nyu_data.zip"), ws / "in/half.zip"))),
    _c("truncated file", "prepare nyu (member)", r"nyu_data\.zip:data/nyu2_train/a_out/1\.jpg: cannot decode image")(
        lambda ws: nyu_args(nyu_zip(ws / "in/nyu_data.zip", {TRAIN_RGB: jpeg(photo(0))[:3000]}))),
    _c("truncated file", "prepare nyu (labeled .mat)", r"in/half\.mat: not a readable MATLAB 7\.3")(
        lambda ws: nyu_args(nyu_zip(ws / "in/nyu_data.zip"), "--test-source", "labeled", "--labeled-mat",
                            truncated(labeled_mat(ws / "in/labeled.mat", 1.0), ws / "in/half.mat"),
                            "--splits-mat", splits_mat(ws / "in/splits.mat"))),
    _c("truncated file", "prepare kitti", r"in/split\.txt:2: cannot parse split line")(
        lambda ws: ["prepare", "kitti", "--source", ws, "--split-file",
                    write(ws / "in/split.txt", "2011_09_26/2011_09_26_drive_0002_sync 0000000069 l\n2011_09_26/2011_09")]),
    _c("truncated file", "eval", r"in/half\.pt: cannot read checkpoint safely")(
        lambda ws: [*EVAL, "--checkpoint", truncated(ws / CKPT, ws / "in/half.pt")]),
    _c("truncated file", "predict", r"in/half\.png: cannot decode image")(
        lambda ws: ["predict", truncated(write(ws / "in/full.png", png(photo(6, 40, 60))), ws / "in/half.png"),
                    "--checkpoint", CKPT]),
    _c("truncated file", "export", r"in/half\.pt: cannot read checkpoint safely")(
        lambda ws: ["export", "--checkpoint", truncated(ws / CKPT, ws / "in/half.pt")]),
    # ---- wrong format
    _c("wrong format", "prepare nyu", r"in/nyu_data\.zip: not a readable zip")(
        lambda ws: nyu_args(write(ws / "in/nyu_data.zip", png(photo(7, 8, 8))))),
    _c("wrong format", "prepare nyu (splits .mat)", r"in/splits\.mat: not a readable MATLAB \.mat file")(
        lambda ws: nyu_args(nyu_zip(ws / "in/nyu_data.zip"), "--test-source", "labeled",
                            "--labeled-mat", labeled_mat(ws / "in/labeled.mat", 1.0),
                            "--splits-mat", write(ws / "in/splits.mat", "testNdxs = [1]\n"))),
    _c("wrong format", "prepare nyu (CSV)", r"nyu_data\.zip:data/nyu2_train\.csv row 1: expected 2 columns, got 3")(
        lambda ws: nyu_args(nyu_zip(ws / "in/nyu_data.zip", train_csv=f"{TRAIN_RGB},{TRAIN_DEPTH},extra\n"))),
    _c("wrong format", "eval", r"in/imagenet\.pt: not a leve checkpoint")(
        lambda ws: [*EVAL, "--checkpoint", _torch_file(ws / "in/imagenet.pt", {"conv1.weight": torch.zeros(1)})]),
    _c("wrong format", "predict", r"in/photo\.tiff: not a JPEG/PNG image")(
        lambda ws: ["predict", write(ws / "in/photo.tiff", b"II*\0"), "--checkpoint", CKPT]),
    _c("wrong format", "predict (text named .png)", r"in/notes\.png: cannot decode image")(
        lambda ws: ["predict", write(ws / "in/notes.png", "not an image\n"), "--checkpoint", CKPT]),
    _c("wrong format", "info", r"in: no store here")(
        lambda ws: ["info", write(ws / "in/readme.txt", "hello").parent]),
    _c("wrong format", "train (params not YAML)", r"in/params\.yaml: not valid YAML")(
        lambda ws: ["train", "--params", write(ws / "in/params.yaml", "train: [1, 2\n  epochs: {")]),
    # ---- wrong image mode (dataset sources are stored bit for bit: only 8-bit RGB is accepted)
    _c("wrong image mode", "prepare nyu (CMYK JPEG)", r"a_out/1\.jpg: expected an 8-bit RGB image, got CMYK")(
        lambda ws: nyu_args(nyu_zip(ws / "in/nyu_data.zip", {TRAIN_RGB: jpeg(photo(0), "CMYK")}))),
    _c("wrong image mode", "prepare nyu (16-bit RGB)", r"a_out/1\.jpg: expected an 8-bit RGB image, got 16-bit RGB")(
        lambda ws: nyu_args(nyu_zip(ws / "in/nyu_data.zip", {TRAIN_RGB: rgb16_png(H, W)}))),
    _c("wrong image mode", "prepare nyu (palette)", r"a_out/1\.jpg: expected an 8-bit RGB image, got a palette image")(
        lambda ws: nyu_args(nyu_zip(ws / "in/nyu_data.zip", {TRAIN_RGB: png(photo(0), "P")}))),
    _c("wrong image mode", "prepare nyu (alpha)", r"a_out/1\.jpg: expected an 8-bit RGB image, got RGB with alpha")(
        lambda ws: nyu_args(nyu_zip(ws / "in/nyu_data.zip", {TRAIN_RGB: png(photo(0), "RGBA")}))),
    _c("wrong image mode", "prepare nyu (palette depth)",
       r"a_out/1\.png: expected a single-channel 8-bit depth PNG, got a palette image")(
        lambda ws: nyu_args(nyu_zip(ws / "in/nyu_data.zip", {TRAIN_DEPTH: png(photo(0), "P")}))),
    _c("wrong image mode", "prepare nyu (RGB depth)", r"a_out/1\.png: expected a single-channel depth PNG, got mode RGB")(
        lambda ws: nyu_args(nyu_zip(ws / "in/nyu_data.zip", {TRAIN_DEPTH: rgb16_png(H, W)}))),
    # ---- NaN / inf / negative depth
    _c("NaN/inf/negative depth", "prepare nyu (labeled NaN)", r"in/labeled\.mat: depths\[1\] has 1 NaN, inf or negative")(
        lambda ws: labeled_args(ws, float("nan"))),
    _c("NaN/inf/negative depth", "prepare nyu (labeled inf)", r"in/labeled\.mat: depths\[1\] has 1 NaN, inf or negative")(
        lambda ws: labeled_args(ws, float("inf"))),
    _c("NaN/inf/negative depth", "prepare nyu (labeled negative)",
       r"in/labeled\.mat: depths\[1\] has 1 NaN, inf or negative")(lambda ws: labeled_args(ws, -1.0)),
    _c("NaN/inf/negative depth", "eval", r"synthetic\.zarr/test\[0\]: depth has 1 NaN, inf or negative")(
        lambda ws: [*EVAL, "--set", "flip=false"] if poison_depth(ws / "data/zarr/synthetic.zarr", "test", np.nan) else []),
    _c("NaN/inf/negative depth", "train", r"synthetic\.zarr/train\[0\]: depth has 1 NaN, inf or negative")(
        lambda ws: TRAIN_NO_KD if poison_depth(ws / "data/zarr/synthetic.zarr", "train", -np.inf) else []),
    _c("NaN/inf/negative depth", "train (DataLoader worker)",
       r"synthetic\.zarr/train\[0\]: depth has 1 NaN, inf or negative")(
        lambda ws: [*TRAIN_NO_KD, "--set", "workers=1"] if poison_depth(ws / "data/zarr/synthetic.zarr", "train", -1.0)
        else []),
    # ---- a store written by a newer leve, or another layout
    _c("newer or other store layout", "info", r"synthetic\.zarr: store format 99 was written by a newer leve")(
        lambda ws: ["info", set_attr(ws / "data/zarr/synthetic.zarr", store_format=99)]),
    _c("newer or other store layout", "eval", r"synthetic\.zarr: store format 99 was written by a newer leve")(
        lambda ws: EVAL if set_attr(ws / "data/zarr/synthetic.zarr", store_format=99) else []),
    _c("newer or other store layout", "train", r"synthetic\.zarr: store format 99 was written by a newer leve")(
        lambda ws: TRAIN_NO_KD if set_attr(ws / "data/zarr/synthetic.zarr", store_format=99) else []),
    _c("newer or other store layout", "teacher-cache", r"synthetic\.zarr: store format 99 was written by a newer leve")(
        lambda ws: TEACHER if set_attr(ws / "data/zarr/synthetic.zarr", store_format=99) else []),
    _c("newer or other store layout", "train (a teacher cache)",
       r"teacher/synthetic\.zarr: a teacher cache, not a dataset store")(
        lambda ws: [*TRAIN_NO_KD, "--set", "data_dir=data/teacher"]),
    _c("newer or other store layout", "teacher-cache (a teacher cache)",
       r"teacher/synthetic\.zarr: a teacher cache, not a dataset store")(
        lambda ws: [*TEACHER, "--set", "data_dir=data/teacher", "--set", "out_dir=data/teacher2"]),
    _c("newer or other store layout", "eval (plain Zarr group)", r"in/synthetic\.zarr: not a leve dataset store")(
        lambda ws: [*EVAL, "--set", "data_dir=in"] if _plain_group(ws / "in/synthetic.zarr") else []),
    # ---- stale teacher cache
    _c("stale teacher cache", "train", r"teacher/synthetic\.zarr/train: stale teacher cache, built from another dataset store")(
        lambda ws: ["train"] if other_store(ws) else []),
    _c("stale teacher cache", "eval", r"teacher/synthetic\.zarr/test: stale teacher cache, built from another dataset store")(
        lambda ws: ["eval", "--quiet"] if other_store(ws) else []),
    _c("stale teacher cache", "train (other teacher)",
       r"teacher/synthetic\.zarr/train: built with teacher model 'tiny-random', expected 'depth-anything/")(
        lambda ws: ["train", "--params", _params(ws, "teacher:\n  model: v2-small\n")]),
    # ---- params: unknown keys, wrong types
    _c("params: unknown key or wrong type", "train (unknown key)", r"train: unknown parameter\(s\) epochz")(
        lambda ws: ["train", "--params", _params(ws, "train:\n  epochz: 3\n")]),
    _c("params: unknown key or wrong type", "train (wrong type)", r"train\.epochs: expected int, got 'many'")(
        lambda ws: ["train", "--set", "epochs=many"]),
    _c("params: unknown key or wrong type", "train (section not a mapping)", r"params section 'train' must be a mapping")(
        lambda ws: ["train", "--params", _params(ws, "train: 3\n")]),
    _c("params: unknown key or wrong type", "eval (unknown key)", r"eval: unknown parameter\(s\) protocl")(
        lambda ws: [*EVAL, "--set", "protocl=standard"]),
    _c("params: unknown key or wrong type", "eval (wrong type)", r"eval\.batch_size: expected int, got 'big'")(
        lambda ws: ["eval", "--params", _params(ws, "eval:\n  batch_size: big\n")]),
    _c("params: unknown key or wrong type", "teacher-cache (unknown key)", r"teacher: unknown parameter\(s\) batchsize")(
        lambda ws: [*TEACHER, "--set", "batchsize=2"]),
    _c("params: unknown key or wrong type", "prepare synthetic (wrong type)", r"prepare\.synthetic\.train: expected int")(
        lambda ws: ["prepare", "synthetic", "--set", "train=[1, 2]"]),
    _c("params: unknown key or wrong type", "serve (unknown key)", r"serve: unknown parameter\(s\) max_uplod_bytes")(
        lambda ws: ["serve", "--set", "max_uplod_bytes=10"]),
    _c("params: unknown key or wrong type", "params file not a mapping", r"in/params\.yaml: expected a mapping at the top level")(
        lambda ws: ["train", "--params", write(ws / "in/params.yaml", "- train\n- eval\n")]),
    # ---- a pickled checkpoint carrying code
    _c("pickle carrying code", "eval", r"in/armed\.pt: refused to load: it would call")(
        lambda ws: [*EVAL, "--checkpoint", armed_checkpoint(ws / "in/armed.pt", ws)]),
    _c("pickle carrying code", "predict", r"in/armed\.pt: refused to load")(
        lambda ws: ["predict", write(ws / "in/a.png", png(photo(8, 20, 30))), "--checkpoint",
                    armed_checkpoint(ws / "in/armed.pt", ws)]),
    _c("pickle carrying code", "serve", r"in/armed\.pt: refused to load")(
        lambda ws: ["serve", "--checkpoint", armed_checkpoint(ws / "in/armed.pt", ws)]),
    _c("pickle carrying code", "export", r"in/armed\.pt: refused to load")(
        lambda ws: ["export", "--checkpoint", armed_checkpoint(ws / "in/armed.pt", ws)]),
    _c("pickle carrying code", "train (last.pt to resume)", r"models/student/last\.pt: refused to load")(
        lambda ws: TRAIN_NO_KD if armed_checkpoint(ws / "models/student/last.pt", ws) else []),
    _c("pickle carrying code", "train (encoder weights)", r"in/armed\.pth: .*weights-only")(
        lambda ws: [*TRAIN_NO_KD, "--set", f"encoder_weights={armed_checkpoint(ws / 'in/armed.pth', ws)}"]),
    # ---- archives with ../, absolute or symlink members
    _c("unsafe archive member", "prepare endoslam (../)", r"in/EndoSLAM\.zip: unsafe member path '\.\./escape\.png'")(
        lambda ws: ["prepare", "endoslam", "--source", endoslam_zip(ws / "in/EndoSLAM.zip", ("../escape.png", b"x", None))]),
    _c("unsafe archive member", "prepare endoslam (absolute)", r"in/EndoSLAM\.zip: unsafe member path '/tmp/escape\.png'")(
        lambda ws: ["prepare", "endoslam", "--source", endoslam_zip(ws / "in/EndoSLAM.zip", ("/tmp/escape.png", b"x", None))]),
    _c("unsafe archive member", "prepare endoslam (symlink)",
       r"in/EndoSLAM\.zip: member 'UnityCam/link\.png' is a symbolic link")(
        lambda ws: ["prepare", "endoslam", "--source",
                    endoslam_zip(ws / "in/EndoSLAM.zip", ("UnityCam/link.png", b"/etc/passwd", 0o120777))]),
    _c("unsafe archive member", "prepare endoslam (nested ../)", r"inner\.zip: unsafe member path '\.\./\.\./escape\.png'")(
        lambda ws: ["prepare", "endoslam", "--source", zip_with(ws / "in/EndoSLAM.zip", [
            ("inner.zip", zip_with(ws / "in/tmp/inner.zip", [("../../escape.png", b"x", None)]).read_bytes(), None)])]),
    _c("unsafe archive member", "prepare nyu (../ in the CSV)", r"data/nyu2_train\.csv row 1: unsafe member path '\.\./x\.jpg'")(
        lambda ws: nyu_args(nyu_zip(ws / "in/nyu_data.zip", {"../x.jpg": jpeg(photo(0))},
                                    train_csv=f"../x.jpg,{TRAIN_DEPTH}\n"))),
    _c("unsafe archive member", "prepare nyu (symlink)", r"row 1: member 'data/nyu2_train/a_out/1\.jpg' is a symbolic link")(
        lambda ws: nyu_args(_nyu_with_link(ws / "in/nyu_data.zip"))),
    # ---- an image header claiming gigapixels
    _c("gigapixel image header", "predict", r"in/giga\.png: image too large")(
        lambda ws: ["predict", write(ws / "in/giga.png", gigapixel_png()), "--checkpoint", CKPT]),
    _c("gigapixel image header", "prepare nyu", r"nyu_data\.zip:data/nyu2_train/a_out/1\.jpg: image too large")(
        lambda ws: nyu_args(nyu_zip(ws / "in/nyu_data.zip", {TRAIN_RGB: gigapixel_png()}))),
    _c("gigapixel image header", "prepare endoslam", r"image_0001\.png: image too large")(
        lambda ws: ["prepare", "endoslam", "--source", endoslam_zip(ws / "in/EndoSLAM.zip", frame=gigapixel_png())]),
    # ---- damaged store or teacher cache: bytes changed, files deleted or cut short on disk (store format 2: every
    # chunk's crc32c, every chunk written; tests/store/test_integrity.py tries each damage on every read path)
    _c("damaged store or teacher cache", "eval (RGB shard deleted)",
       r"zarr/synthetic\.zarr: test/rgb sample 0 \(file c/0/0/0/0\): file missing \(it was written.*`leve verify ")(
        lambda ws: EVAL if damage.delete(ws / f"{STORE}/test/rgb/c/0/0/0/0") else []),
    _c("damaged store or teacher cache", "train (teacher disparity shard deleted)",
       r"teacher/synthetic\.zarr: train/disparity sample \d \(file c/0/0/0\): file missing")(
        lambda ws: ["train"] if damage.delete(ws / f"{CACHE}/train/disparity/c/0/0/0") else []),
    _c("damaged store or teacher cache", "eval (16 bytes flipped in an RGB chunk)",
       r"zarr/synthetic\.zarr: test/rgb sample 0 \(file c/0/0/0/0\): checksum mismatch")(
        lambda ws: EVAL if damage.flip_in_first_chunk(ws / f"{STORE}/test/rgb/c/0/0/0/0", 2) else []),
    _c("damaged store or teacher cache", "eval (16 bytes flipped in a teacher chunk)",
       r"teacher/synthetic\.zarr: test/disparity sample 0 \(file c/0/0/0\): checksum mismatch.*--split test --force")(
        lambda ws: ["eval", "--quiet"] if damage.flip_in_first_chunk(ws / f"{CACHE}/test/disparity/c/0/0/0", 2) else []),
    _c("damaged store or teacher cache", "train (shard truncated)",
       r"zarr/synthetic\.zarr: train/depth sample \d \(file c/0/0/0\): the shard index fails its checksum")(
        lambda ws: TRAIN_NO_KD if damage.truncate(ws / f"{STORE}/train/depth/c/0/0/0") else []),
    _c("damaged store or teacher cache", "train (DataLoader worker, shard index byte flipped)",
       r"zarr/synthetic\.zarr: train/rgb sample \d \(file c/0/0/0/0\): the shard index fails its checksum")(
        lambda ws: [*TRAIN_NO_KD, "--set", "workers=1"] if damage.flip(ws / f"{STORE}/train/rgb/c/0/0/0/0", -10, 1)
        else []),
    _c("damaged store or teacher cache", "eval (zarr.json truncated)",
       r"zarr/synthetic\.zarr: test/rgb \(file zarr\.json\): not valid JSON")(
        lambda ws: EVAL if damage.truncate(ws / f"{STORE}/test/rgb/zarr.json") else []),
    _c("damaged store or teacher cache", "train (meta/height chunk deleted)",
       r"zarr/synthetic\.zarr: train/meta/height \(file c/0\): file missing")(
        lambda ws: TRAIN_NO_KD if damage.delete(ws / f"{STORE}/train/meta/height/c/0") else []),
    _c("damaged store or teacher cache", "verify (store)",
       r"zarr/synthetic\.zarr: 1 damaged or missing part\(s\), listed above; rebuild it with `leve prepare synthetic --force`")(
        lambda ws: ["verify", STORE] if damage.flip_in_first_chunk(ws / f"{STORE}/test/rgb/c/0/0/0/0", 2) else []),
    _c("damaged store or teacher cache", "verify (teacher cache)",
       r"teacher/synthetic\.zarr: 1 damaged or missing part\(s\), listed above; rebuild it with "
       r"`leve teacher-cache --dataset synthetic --split train --force`")(
        lambda ws: ["verify", CACHE] if damage.delete(ws / f"{CACHE}/train/disparity/c/0/0/0") else []),
    _c("newer or other store layout", "eval (format 1, without checksums)",
       r"synthetic\.zarr: store format 1 was written by an older leve, without chunk checksums")(
        lambda ws: EVAL if set_attr(ws / STORE, store_format=1) else []),
    _c("newer or other store layout", "train (teacher cache format 1)",
       r"teacher/synthetic\.zarr/train: teacher cache format 1 was written by an older leve")(
        lambda ws: ["train"] if set_attr(ws / CACHE / "train", format=1) else []),
    # ---- figures (leve figures: DVCLive's training curves as a static PNG)
    _c("missing file", "figures", r"in/none/plots/metrics: no DVCLive metrics \(\*\.tsv\) to draw")(
        lambda ws: ["figures", "--dvclive", ws / "in/none", "--out", ws / "in/curves.png"]),
    _c("wrong format", "figures (binary TSV)", r"in/log/plots/metrics/train/loss\.tsv: cannot read DVCLive series")(
        lambda ws: ["figures", "--dvclive", write(ws / "in/log/plots/metrics/train/loss.tsv",
                                                  b"step\tloss\n5\t\xff\xfe\x00\x81").parents[3],
                    "--out", ws / "in/curves.png"]),
    # issue 26: outputs and parsers
    _c("YAML alias (billion laughs)", "eval (eval.datasets.<ds>.crop)",
       r"in/params\.yaml: x\.a1\[0\]: YAML alias '\*a0' \(line 3\) refused")(
        lambda ws: ["eval", "--params", alias_bomb_params(ws, "eval:\n  datasets:\n    synthetic:\n      crop: *a9\n")]),
    _c("YAML alias (billion laughs)", "prepare (prepare.<ds>.split_lists)", r"in/params\.yaml: x\.a1\[0\]: YAML alias '\*a0'")(
        lambda ws: ["prepare", "synthetic", "--params",
                    alias_bomb_params(ws, "prepare:\n  mine:\n    split_lists: {test: *a9}\n")]),
    _c("YAML alias (billion laughs)", "train (train.epochs)", r"in/params\.yaml: x\.a1\[0\]: YAML alias '\*a0'")(
        lambda ws: ["train", "--params", alias_bomb_params(ws, "train:\n  epochs: *a9\n")]),
    _c("checkpoint header field of the wrong type or range", "predict (version 'abc')",
       r"in/bad\.pt: checkpoint version must be a whole number, got 'abc'")(
        lambda ws: ["predict", write(ws / "in/a.png", png(photo(8, 20, 30))), "--checkpoint",
                    bad_header(ws, "in/bad.pt", "version", "abc")]),
    _c("checkpoint header field of the wrong type or range", "predict (resolution 100000x100000)",
       r"in/bad\.safetensors: checkpoint resolution 100000x100000 is 10,000,000,000 pixels, over the cap")(
        lambda ws: ["predict", write(ws / "in/a.png", png(photo(8, 20, 30))), "--checkpoint",
                    bad_header(ws, "in/bad.safetensors", "config", "resolution", [100_000, 100_000])]),
    _c("checkpoint header field of the wrong type or range", "eval (resolution [-64, 64])",
       r"in/bad\.pt: checkpoint resolution must be two positive whole numbers \[H, W\], got \[-64, 64\]")(
        lambda ws: [*EVAL, "--checkpoint", bad_header(ws, "in/bad.pt", "config", "resolution", [-64, 64])]),
    _c("checkpoint header field of the wrong type or range", "eval (extra a list)",
       r"in/bad\.safetensors: checkpoint extra must be a mapping, got \[1, 2\]")(
        lambda ws: [*EVAL, "--checkpoint", bad_header(ws, "in/bad.safetensors", "extra", [1, 2])]),
    _c("checkpoint header field of the wrong type or range", "serve (relative_affine [1.0])",
       r"in/bad\.pt: checkpoint relative_affine must be two finite numbers \[scale, shift\], got \[1\.0\]")(
        lambda ws: ["serve", "--checkpoint",
                    bad_header(ws, "in/bad.pt", "extra", {"depth_kind": "relative", "relative_affine": [1.0]})]),
    _c("checkpoint header field of the wrong type or range", "serve (version 'abc')",
       r"in/bad\.safetensors: checkpoint version must be a whole number, got 'abc'")(
        lambda ws: ["serve", "--checkpoint", bad_header(ws, "in/bad.safetensors", "version", "abc")]),
    _c("output name too long (300 characters)", "predict --out", r"n{60}\.\.\.: file name too long \(\d+ bytes; at most 255\)|"
                                                                  r"n{300}/a_depth\.png: cannot write: file name too long")(
        lambda ws: ["predict", write(ws / "in/a.png", png(photo(8, 20, 30))), "--checkpoint", CKPT, "--out", "n" * 300]),
    _c("output name too long (300 characters)", "serve --checkpoint",
       r"n{100}.*: cannot open the checkpoint \(File name too long\)")(
        lambda ws: ["serve", "--checkpoint", "n" * 297 + ".pt"]),
    _c("output name too long (300 characters)", "eval --out",
       r"n{300}/metrics/synthetic\.json\.lock: cannot create the lock file")(
        lambda ws: [*EVAL, "--out", "n" * 300]),
    _c("oversized array or video frames (from the header)", "prepare folder (1.4 MB .npz of 9000x9000 zeros)",
       r"1_depth\.npz: depth array of shape \(9000, 9000\) \(float32\) is too large")(
        lambda ws: ["prepare", "folder", "bomb", "--source", npz_bomb_folder(ws / "in/bomb"), "--out", "data/zarr/bomb.zarr",
                    "--workers", "1", "--set", "test_fraction=0", "--set", "val_fraction=0"]),
    _c("oversized array or video frames (from the header)", "prepare folder (1 MB video of 9000x8000 frames)",
       r"in/clips/big\.mov: video frames over the cap of 64,000,000 pixels .*: refused before decoding")(
        lambda ws: ["prepare", "folder", "clips", "--source", media.huge_frame_video(ws / "in/clips/big.mov").parent,
                    "--out", "data/zarr/clips.zarr", "--workers", "1", "--set", "test_fraction=0", "--set", "val_fraction=0"]),
    _c("oversized array or video frames (from the header)", "predict (1 MB video of 9000x8000 frames)",
       r"in/big\.mov: video frames over the cap of 64,000,000 pixels")(
        lambda ws: ["predict", media.huge_frame_video(ws / "in/big.mov"), "--checkpoint", CKPT, "--out", ws / "in/out"]),
    # issue 27: evaluation options (the rmse_log base, monodepth2's median in disparity space)
    _c("params: unknown key or wrong type", "eval (rmse_log log2)", r"eval\.rmse_log: unknown log 'log2'; choose from ln, log10")(
        lambda ws: [*EVAL, "--set", "rmse_log=log2"]),
    _c("params: unknown key or wrong type", "eval (align median_depth)",
       r"eval\.align: unknown alignment 'median_depth'; choose from none, median, median_disparity, lstsq")(
        lambda ws: [*EVAL, "--set", "protocol=standard", "--set", "align=median_depth"]),
]


def alias_bomb_params(ws: Path, key_yaml: str) -> Path:
    """in/params.yaml: the workspace's params after anchors a0..a9 under ``x``, each nine aliases of the one before
    (9**9 leaves expanded), and ``key_yaml`` naming ``*a9``."""
    from tests.test_params_bounds import alias_bomb

    lines = "".join(f"  {line}\n" for line in alias_bomb())
    return write(ws / "in/params.yaml", f"x:\n{lines}{key_yaml}")


def bad_header(ws: Path, name: str, *keys_value: object) -> Path:
    """The workspace's student checkpoint (in the encoding ``name``'s suffix says) with one header field changed."""
    from leve.models.checkpoint import load_checkpoint, save_checkpoint

    src = ws / CKPT
    if name.endswith(".safetensors"):
        model, info = load_checkpoint(src)
        src = save_checkpoint(ws / "in/good.safetensors", model, info.model, info.max_depth, resolution=info.resolution)
    return media.rewrite_header(src, ws / name, media.set_field(*keys_value))


def npz_bomb_folder(folder: Path) -> Path:
    """Two photos with .npy depth, the second's depth a 1.4 MB .npz of 9000x9000 zeros instead."""
    for k in range(2):
        write(folder / f"{k}.png", png(photo(k, 24, 32)))
    np.save(folder / "0_depth.npy", np.full((24, 32), 2.0, np.float32))
    media.npz_bomb(folder / "1_depth.npz")
    return folder


def _torch_file(path: Path, obj: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(obj, path)
    return path


def _params(ws: Path, extra: str) -> Path:
    """The workspace's params.yaml with ``extra`` sections replacing its own."""
    import yaml

    params = yaml.safe_load((ws / "params.yaml").read_text())
    params.update(yaml.safe_load(extra))
    return write(ws / "in/params.yaml", yaml.safe_dump(params))


def _plain_group(path: Path) -> Path:
    import zarr

    group = zarr.open_group(str(path), mode="w")
    group.attrs["complete"] = True
    group.create_group("test")
    return path


def _nyu_with_link(path: Path) -> Path:
    nyu_zip(path)
    data = {i.filename: zipfile.ZipFile(path).read(i) for i in zipfile.ZipFile(path).infolist()}
    with zipfile.ZipFile(path, "w") as zf:
        for name, blob in data.items():
            info = zipfile.ZipInfo(name)
            if name == TRAIN_RGB:
                info.external_attr = 0o120777 << 16
                blob = b"../../../etc/passwd"
            zf.writestr(info, blob)
    return path


# --------------------------------------------------------------------------- the workspace


PARAMS = """\
prepare:
  synthetic: {height: 48, width: 64, train: 2, val: 1, test: 1, block_size: 2}
  kitti: {raw: data/raw/kitti}
  endoslam: {raw: data/raw/endoslam, per_organ: 1, organs: [Colon]}
teacher:
  model: tiny-random
  workers: 0
  block_size: 4
train:
  dataset: synthetic
  model: leve-mobilenetv3
  resolution: [64, 64]
  epochs: 1
  max_steps: 1
  batch_size: 2
  workers: 0
  val_every: 0
  checkpoint_minutes: 0
  kd: {eps: 0.25}
  labels: {fraction: 1.0}  # every training depth read (a bad one is found)
eval:
  device: cpu
  batch_size: 2
  examples: 1
serve:
  device: cpu
  samples: 0
  warmup: false
"""


@pytest.fixture(scope="session")
def catalogue_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The outputs of an earlier run: a store, its teacher cache, a student, metrics, predictions."""
    from leve.models.checkpoint import save_checkpoint
    from leve.models.registry import create_model
    from leve.teacher.cache.build import build_teacher_cache
    from leve.teacher.loading import load_teacher
    from tests.factories import synthetic_store

    root = tmp_path_factory.mktemp("catalogue") / "ws"
    store = synthetic_store(root / "data/zarr/synthetic.zarr", height=48, width=64, train=4, val=2, test=2, block_size=4)
    teacher = load_teacher("tiny-random")
    for split in ("train", "test"):
        build_teacher_cache(store, root / "data/teacher/synthetic.zarr", split, teacher, **caching(block_size=4),
                            show_progress=False)
    torch.manual_seed(0)
    save_checkpoint(root / CKPT, create_model("leve-mobilenetv3"), "leve-mobilenetv3", 10.0, resolution=(64, 64))
    write(root / "metrics/synthetic.json", '{"rmse": 1.0}\n')
    write(root / "predictions/earlier_depth.png", png(photo(9, 8, 8)))
    write(root / "params.yaml", PARAMS)
    for lock in root.rglob("*.lock"):
        lock.unlink()
    return root


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (lock files aside: their content is the holder's pid)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


@pytest.fixture
def no_serving(monkeypatch: pytest.MonkeyPatch) -> None:
    import uvicorn

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("leve serve must not start serving on bad input")

    monkeypatch.setattr(uvicorn, "run", refuse)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_one_line_and_loses_nothing(case, catalogue_workspace, tmp_path, run_cli, monkeypatch, no_serving):
    ws = tmp_path / "ws"
    shutil.copytree(catalogue_workspace, ws)
    monkeypatch.chdir(ws)
    args = case.make(ws)
    assert args, "the case builder must return the command"
    before = snapshot(ws)
    res = run_cli(*args)
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert res.code == 1, res.stderr[-2000:]
    assert len(errors) == 1 and errors == [line for line in res.stderr.splitlines() if "rror" in line], res.stderr[-2000:]
    assert re.search(case.expect, errors[0]), errors[0]
    after = snapshot(ws)
    changed = sorted(p for p, digest in before.items() if after.get(p) != digest)
    assert changed == [], f"files lost or changed: {changed}"
    assert not (ws / MARKER).exists(), "code from a pickle ran"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ws"], "something was written outside the workspace"


def test_the_armed_pickles_are_armed(tmp_path):
    """Loaded the unsafe way, the checkpoint of the pickle cases does run its code."""
    path = armed_checkpoint(tmp_path / "armed.pt", tmp_path)
    torch.load(path, weights_only=False)
    assert (tmp_path / MARKER).exists()


# --------------------------------------------------------------------------- the docs' table


def catalogue_table() -> str:
    """docs/bad-input.md's table: one row per kind of bad input, with the commands it is tried on."""
    rows = ["| bad input | commands tried (tests/test_bad_input.py) |", "|---|---|"]
    kinds: dict[str, list[str]] = {}
    for case in CASES:
        kinds.setdefault(case.kind, []).append(f"`{case.command}`")
    rows += [f"| {kind} | {', '.join(commands)} |" for kind, commands in kinds.items()]
    return "\n".join(rows)


def test_readme_lists_the_catalogue():
    """The table moved from README.md to docs/bad-input.md; the test kept its name."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "bad-input.md").read_text()
    assert catalogue_table() in page, "regenerate the table in docs/bad-input.md: python -c 'from tests.test_bad_input " \
                                      "import catalogue_table; print(catalogue_table())'"
