"""NYU-Depth V2 into ``data/zarr/nyu.zarr`` (splits train, val, test).

Sources:

* DenseDepth's ``nyu_data.zip`` (read in place, never extracted):
  ``data/nyu2_train.csv`` (50,688 rows ``rgb,depth``, no header; JPEG RGB,
  8-bit PNG depth, metres = v/255·10) and ``data/nyu2_test.csv`` (654 rows;
  PNG RGB, 16-bit PNG depth in millimetres, metres = v/1000).
* Or, for the test split, the official ``nyu_depth_v2_labeled.mat`` (MATLAB 7.3 /
  HDF5: ``images`` (1449, 3, 640, 480) uint8, ``depths``/``rawDepths``
  (1449, 640, 480) float32 metres, i.e. transposed) with ``splits.mat``
  (``testNdxs``, 654 one-based indices; MATLAB v5).

``val`` is made of whole training scenes held out deterministically (params
``val_scenes`` or ``val_fraction``/``val_seed``), so checkpoints are never chosen
on the test set.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from leve.datasets.build import BuildResult, SplitSource, build_store, store_path
from leve.errors import LeveError
from leve.params import config_dict, param, params_section
from leve.sources import archive
from leve.sources.download import obtain
from leve.store.format import SplitSpec, dataset_arrays, fingerprint
from leve.store.images import decode_gray, decode_rgb

LABELED_URL = "http://horatio.cs.nyu.edu/mit/silberman/nyu_depth_v2/nyu_depth_v2_labeled.mat"
LABELED_SIZE = 2_972_037_809
SPLITS_URL = "http://horatio.cs.nyu.edu/mit/silberman/indoor_seg_sup/splits.mat"
TRAIN_CSV = "data/nyu2_train.csv"
TEST_CSV = "data/nyu2_test.csv"
HEIGHT, WIDTH = 480, 640
MAX_DEPTH = 10.0  # evaluation crops are not the dataset's: see leve.evaluation.protocols.CROPS
META = {"source": "str", "scene": "str", "height": "int32", "width": "int32"}


@params_section("prepare.nyu")
@dataclass
class Config:
    """Params of ``prepare.nyu``."""

    out: Path | None = param()  # null: <paths.stores>/nyu.zarr
    raw_dir: Path = param()
    source: Path | None = param()  # nyu_data.zip already on disk
    url: str = param()
    sha256: str | None = param()  # pin for nyu_data.zip; else recorded on first sight
    test_source: str = param()  # "densedepth" (the zip) | "labeled" (.mat + splits.mat)
    labeled_mat: Path | None = param()
    splits_mat: Path | None = param()
    labeled_depth: str = param()  # "depths" (in-filled) | "rawDepths" (raw Kinect, 0 = missing)
    val_scenes: tuple[str, ...] = param()
    val_fraction: float = param()
    val_seed: int = param()
    rgb_codec: str = param()  # "raw" (zstd pixels) | "jpeg" (the source JPEG bytes)
    limit: int | None = param()  # first N rows per split, for a quick look
    workers: int = param()
    block_size: int = param()


# --------------------------------------------------------------------------- zip source


@dataclass(frozen=True)
class Pair:
    rgb: str
    depth: str


def open_zip(path: Path) -> zipfile.ZipFile:
    """Open an archive with a one-line error for truncated or corrupt files."""
    try:
        return zipfile.ZipFile(path)
    except archive.ZIP_ERRORS as exc:
        raise LeveError(f"{path}: not a readable zip archive (truncated or corrupt?): {exc}") from exc


def read_pairs(zf: zipfile.ZipFile, csv_member: str, zip_name: str) -> list[Pair]:
    """Rows of a DenseDepth CSV, each checked to name a plain member present in the archive."""
    infos = {i.filename: i for i in zf.infolist()}
    if csv_member not in infos:
        raise LeveError(f"{zip_name}: '{csv_member}' not found (is this DenseDepth's nyu_data.zip?)")
    where = f"{zip_name}:{csv_member}"
    try:
        rows = list(csv.reader(io.StringIO(zf.read(csv_member).decode("utf-8"))))
    except UnicodeDecodeError as exc:
        raise LeveError(f"{where}: not UTF-8 text (byte {exc.start})") from exc
    except csv.Error as exc:
        raise LeveError(f"{where}: not a readable CSV ({exc})") from exc
    except archive.ZIP_ERRORS as exc:
        raise LeveError(f"{where}: cannot read member ({exc.__class__.__name__}: {exc})") from exc
    pairs = []
    for row_no, row in enumerate(rows, start=1):
        if not row:
            continue
        if len(row) != 2:
            raise LeveError(f"{where} row {row_no}: expected 2 columns, got {len(row)}")
        for member in row:
            archive.safe_member(member, f"{where} row {row_no}")  # no absolute or ../ names
            info = infos.get(member)
            if info is None:
                raise LeveError(f"{where} row {row_no}: member '{member}' missing from the archive")
            if archive.is_symlink(info):
                raise LeveError(f"{where} row {row_no}: member '{member}' is a symbolic link (refused)")
        pairs.append(Pair(row[0], row[1]))
    return pairs


def scene_of(member: str) -> str:
    """``data/nyu2_train/living_room_0038_out/37.jpg`` -> ``living_room_0038``."""
    folder = PurePosixPath(member).parent.name
    return folder.removesuffix("_out")


def choose_val_scenes(scenes: list[str], fraction: float, seed: int) -> list[str]:
    """Whole scenes for validation: ranked by sha256(seed:scene), taken until ``fraction`` of frames."""
    counts: dict[str, int] = {}
    for s in scenes:
        counts[s] = counts.get(s, 0) + 1
    ranked = sorted(counts, key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())
    chosen, frames, target = [], 0, fraction * len(scenes)
    for s in ranked:
        if frames >= target:
            break
        chosen.append(s)
        frames += counts[s]
    return sorted(chosen)


@dataclass
class ZipLoader:
    """Picklable loader of (RGB, depth) pairs from the zip (opened once per process by ``archive``)."""

    zip_path: str
    pairs: list[Pair]
    depth_bits: int  # 8 (train: v/255*10 m) or 16 (test: mm)
    rgb_codec: str  # prepare.nyu.rgb_codec

    def _read(self, member: str) -> bytes:
        try:
            return archive.open_zip(self.zip_path).read(member)
        except (*archive.ZIP_ERRORS, KeyError) as exc:
            raise LeveError(f"{self.zip_path}:{member}: cannot read member ({exc})") from exc

    def __call__(self, i: int) -> tuple[dict[str, Any], dict[str, Any]]:
        pair = self.pairs[i]
        name = Path(self.zip_path).name
        rgb_bytes = self._read(pair.rgb)
        rgb = decode_rgb(rgb_bytes, f"{name}:{pair.rgb}", strict=True)
        raw = decode_gray(self._read(pair.depth), f"{name}:{pair.depth}", self.depth_bits)
        if rgb.shape[:2] != (HEIGHT, WIDTH):
            raise LeveError(f"{name}:{pair.rgb}: image is {rgb.shape[0]}x{rgb.shape[1]}, NYU images are {HEIGHT}x{WIDTH}")
        if raw.shape != rgb.shape[:2]:
            raise LeveError(f"{name}:{pair.depth}: depth {raw.shape} and RGB {rgb.shape[:2]} differ in size")
        depth = depth_metres(raw, self.depth_bits)
        meta = {"source": pair.rgb, "scene": scene_of(pair.rgb), "height": rgb.shape[0], "width": rgb.shape[1]}
        if self.rgb_codec == "jpeg" and pair.rgb.lower().endswith((".jpg", ".jpeg")):
            return {"rgb_jpeg": rgb_bytes, "depth": depth}, meta
        return {"rgb": rgb, "depth": depth}, meta


def depth_metres(raw: np.ndarray, bits: int) -> np.ndarray:
    """DenseDepth's encodings: 8-bit train PNG v/255·10 m; 16-bit test PNG v/1000 m."""
    scale = 10.0 / 255.0 if bits == 8 else 1.0 / 1000.0
    return (raw.astype(np.float64) * scale).astype(np.float32)


# --------------------------------------------------------------------------- labeled .mat source


@dataclass
class LabeledLoader:
    """Picklable loader of the official labeled .mat (HDF5); opens it once per process."""

    mat_path: str
    indices: list[int]  # zero-based rows of the .mat
    depth_key: str = "depths"

    def __post_init__(self) -> None:
        self._h5: Any = None
        self._pid = -1

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("_h5", "_pid")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._h5, self._pid = None, -1

    def __call__(self, i: int) -> tuple[dict[str, Any], dict[str, Any]]:
        if self._h5 is None or self._pid != os.getpid():
            self._h5, self._pid = open_labeled(Path(self.mat_path), self.depth_key), os.getpid()
        k = self.indices[i]
        try:
            rgb = np.ascontiguousarray(np.asarray(self._h5["images"][k]).transpose(2, 1, 0))
            depth = np.ascontiguousarray(np.asarray(self._h5[self.depth_key][k], dtype=np.float32).T)
        except H5_ERRORS as exc:
            raise LeveError(f"{self.mat_path}: cannot read image {k + 1} ({exc.__class__.__name__}: {_one_line(exc)})") from exc
        bad = int((~np.isfinite(depth) | (depth < 0)).sum())
        if bad:
            raise LeveError(f"{self.mat_path}: {self.depth_key}[{k + 1}] has {bad} NaN, inf or negative value(s)")
        meta = {"source": f"nyu_depth_v2_labeled.mat#{k + 1}", "scene": "", "height": rgb.shape[0], "width": rgb.shape[1]}
        return {"rgb": rgb, "depth": depth}, meta


# What h5py raises on a damaged file: OSError (most), RuntimeError (a bad heap or B-tree), and
# KeyError/ValueError/TypeError/AttributeError from objects that are not what their names promise.
H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, AttributeError)


def open_labeled(path: Path, depth_key: str) -> Any:
    """The labeled .mat (HDF5) opened for reading, its two datasets checked; a damaged file is one line."""
    import h5py

    try:
        f = h5py.File(path, "r")
    except H5_ERRORS as exc:
        raise LeveError(f"{path}: not a readable MATLAB 7.3 (HDF5) file: {_one_line(exc)}") from exc
    try:
        _check_labeled(f, path, depth_key)
    except LeveError:
        f.close()
        raise
    except H5_ERRORS as exc:
        f.close()
        raise LeveError(f"{path}: damaged MATLAB 7.3 (HDF5) file ({exc.__class__.__name__}: {_one_line(exc)})") from exc
    return f


def _check_labeled(f: Any, path: Path, depth_key: str) -> None:
    import h5py

    for key in ("images", depth_key):
        if key not in f or not isinstance(f[key], h5py.Dataset):
            raise LeveError(f"{path}: dataset '{key}' missing (is this nyu_depth_v2_labeled.mat?)")
    images, depths = f["images"].shape, f[depth_key].shape
    if images[1:] != (3, WIDTH, HEIGHT):
        raise LeveError(f"{path}: 'images' has shape {images}, expected (N, 3, 640, 480)")
    if depths != (images[0], WIDTH, HEIGHT):
        raise LeveError(f"{path}: '{depth_key}' has shape {depths}, expected ({images[0]}, 640, 480)")


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else exc.__class__.__name__


def read_test_indices(path: Path) -> list[int]:
    """Zero-based test rows from ``splits.mat`` (``testNdxs`` holds one-based indices)."""
    from leve.sources.matfile import read_numeric

    values = read_numeric(path, "testNdxs").ravel()
    if not values.size or not np.isfinite(values).all() or (values < 1).any() or (values != np.round(values)).any():
        raise LeveError(f"{path}: 'testNdxs' must hold one-based row numbers (whole numbers >= 1)")
    return [int(v) - 1 for v in values]


# --------------------------------------------------------------------------- prepare


def fetch_zip(cfg: Config, show_progress: bool) -> tuple[Path, str]:
    """The zip on disk (``--source`` or downloaded with resume) and its verified sha256."""
    return obtain(cfg.source, cfg.url, cfg.raw_dir / "nyu_data.zip", cfg.sha256, show_progress=show_progress)


def fetch_labeled(cfg: Config, show_progress: bool) -> tuple[Path, Path, list[dict[str, Any]]]:
    mat, mat_sha = obtain(cfg.labeled_mat, LABELED_URL, cfg.raw_dir / "nyu_depth_v2_labeled.mat",
                          size=LABELED_SIZE, show_progress=show_progress)
    splits, splits_sha = obtain(cfg.splits_mat, SPLITS_URL, cfg.raw_dir / "splits.mat", show_progress=show_progress)
    files = [{"path": str(p), "bytes": p.stat().st_size, "sha256": h} for p, h in ((mat, mat_sha), (splits, splits_sha))]
    return mat, splits, files


def split_sources(cfg: Config, zip_path: Path) -> tuple[list[SplitSource], list[str]]:
    """Train/val (and zip test) split sources; returns them with the held-out val scenes."""
    with open_zip(zip_path) as zf:
        train = read_pairs(zf, TRAIN_CSV, zip_path.name)
        test = read_pairs(zf, TEST_CSV, zip_path.name) if cfg.test_source == "densedepth" else []
    scenes = [scene_of(p.rgb) for p in train]
    known = set(scenes)
    if cfg.val_scenes:
        unknown = sorted(set(cfg.val_scenes) - known)
        if unknown:
            raise LeveError(f"{zip_path}: val_scenes not in the training set: {', '.join(unknown[:5])}")
        val_scenes = sorted(cfg.val_scenes)
    else:
        val_scenes = choose_val_scenes(scenes, cfg.val_fraction, cfg.val_seed)
    held = set(val_scenes)
    parts = {
        "train": [p for p, s in zip(train, scenes, strict=True) if s not in held],
        "val": [p for p, s in zip(train, scenes, strict=True) if s in held],
    }
    if test:
        parts["test"] = test
    sources = []
    for name, pairs in parts.items():
        pairs = pairs[: cfg.limit] if cfg.limit else pairs
        bits = 16 if name == "test" else 8
        codec = cfg.rgb_codec if name != "test" else "raw"  # test RGB is PNG
        spec = SplitSpec(name, len(pairs), dataset_arrays(HEIGHT, WIDTH, codec), META,
                         attrs={"split": name, "rgb_codec": codec, "depth_encoding": _encoding(bits)})
        sources.append(SplitSource(spec, ZipLoader(str(zip_path), pairs, bits, codec)))
    return sources, val_scenes


def _encoding(bits: int) -> str:
    return "8-bit PNG, metres = v/255*10" if bits == 8 else "16-bit PNG, metres = v/1000"


def prepare(cfg: Config, force: bool = False, show_progress: bool = True) -> BuildResult:
    """Build ``cfg.out`` from the zip (and the labeled .mat when ``test_source: labeled``)."""
    if cfg.test_source not in ("densedepth", "labeled"):
        raise LeveError(f"prepare.nyu.test_source must be 'densedepth' or 'labeled', got '{cfg.test_source}'")
    if cfg.labeled_depth not in ("depths", "rawDepths"):
        raise LeveError(f"prepare.nyu.labeled_depth must be 'depths' or 'rawDepths', got '{cfg.labeled_depth}'")
    zip_path, digest = fetch_zip(cfg, show_progress)
    source_files = [{"path": str(zip_path), "bytes": zip_path.stat().st_size, "sha256": digest}]
    sources, val_scenes = split_sources(cfg, zip_path)
    if cfg.test_source == "labeled":
        mat, splits, files = fetch_labeled(cfg, show_progress)
        source_files += files
        indices = read_test_indices(splits)
        indices = indices[: cfg.limit] if cfg.limit else indices
        with open_labeled(mat, cfg.labeled_depth) as h5:
            n_rows = h5["images"].shape[0]
        if indices and (min(indices) < 0 or max(indices) >= n_rows):
            raise LeveError(f"{splits}: test indices outside 1..{n_rows} of {mat}")
        spec = SplitSpec("test", len(indices), dataset_arrays(HEIGHT, WIDTH), META,
                         attrs={"split": "test", "rgb_codec": "raw", "depth_encoding": f"float32 metres ('{cfg.labeled_depth}')"})
        sources.append(SplitSource(spec, LabeledLoader(str(mat), indices, cfg.labeled_depth)))
    places = ("out", "workers", "raw_dir", "source", "labeled_mat", "splits_mat")
    params = {k: v for k, v in config_dict(cfg).items() if k not in places}
    attrs = {
        "dataset": "nyu",
        "units": "metres",
        "max_depth": MAX_DEPTH,
        "sources": source_files,
        "val_scenes": val_scenes,
        "params": params,
    }
    identity = fingerprint([params, [f["sha256"] for f in source_files]])
    return build_store(store_path(cfg.out, "nyu"), attrs, identity, sources, cfg.workers, cfg.block_size, force, show_progress)
