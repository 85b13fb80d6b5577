"""KITTI, Eigen test split (697 frames): ``leve prepare kitti`` -> ``data/zarr/kitti.zarr``.

Sources, per drive and per date, in order of preference:

- ``--source DIR`` holding an extracted raw tree (``<date>/<drive>_sync/image_02/data/...``,
  ``<date>/calib_cam_to_cam.txt``) or the raw zips (``<drive>_sync.zip``, ``<date>_calib.zip``);
- the public raw-data archives, read member by member with HTTP range requests, or
  downloaded whole (resumable) when the server does not honour ranges.

Ground truth ``gt: velodyne`` projects the LiDAR scan into the left colour camera with
the usual protocol (see :func:`project_velodyne`); ``gt: annotated`` reads the 16-bit
``data_depth_annotated`` PNGs (metres = value / 256), which exist for 652 of the 697 frames.
Images differ in size by date: arrays are zero-padded to the largest size and every
sample's true ``height``/``width`` is stored in its metadata.

``gt: guideddecoding`` imports GuidedDecoding's prepared KITTI test files instead (the
"KITTI" download of github.com/mic-rud/GuidedDecoding's README, a zip or its unpacked
folder given as ``source``): one ``.npz`` per sample holding ``image`` (H, W, 3, 0..255) and
``depth`` (H, W, metres), stored as they are, in file-name order. These are the files the
thesis scored for its Table 9.7 (its notebooks' ``KITTIDataset`` reads them, sorted, with no
mask); GuidedDecoding publishes no code that makes them ("Preparing KITTI: Coming soon!"),
so they cannot be rebuilt from the raw KITTI data here: see :data:`GUIDEDDECODING_PROTOCOL`.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from leve.datasets.build import BuildResult, SplitSource, build_store, store_path
from leve.errors import LeveError
from leve.params import config_dict, param, params_section
from leve.progress import console
from leve.sources.archive import Member, list_tree, zip_names
from leve.sources.download import obtain, verify_file
from leve.store.format import SplitSpec, dataset_arrays, fingerprint
from leve.store.images import decode_gray, decode_rgb

# The Eigen test split as distributed with monodepth2 (prepare.kitti.split_url): 697 lines "<date>/<drive> <frame> l".
EIGEN_TEST_LINES = 697

# Evaluation crops (garg, eigen, leve2024) are defined in leve.evaluation.protocols.CROPS.
CAMERAS = {"l": "02", "r": "03"}
GT_CHOICES = ("velodyne", "annotated", "guideddecoding")
GUIDEDDECODING_REPO = "https://github.com/mic-rud/GuidedDecoding"
# What is known of GuidedDecoding's KITTI test files, from its public code (HEAD b1db515): data/kitti.py
# (KITTIDataset) lists <root>/test/*.npz and reads arrays 'image' and 'depth'; for the test split with its
# default 'alhashim' mode it applies no transform; evaluate.py feeds 'depth' unscaled to the metrics as
# metres (max depth 80) with no mask. The README's "Preparing KITTI" section says "Coming soon!" and the
# repository holds no script that makes the files: which KITTI product, densification and size they hold
# is not public. The thesis's Table 9.7 REL is finite with no mask, so no scored pixel is 0 (not raw LiDAR).
GUIDEDDECODING_PROTOCOL = ("GuidedDecoding's prepared KITTI test files (.npz 'image', 'depth' in metres, file-name "
                           "order), stored as they are; how they were made is not published; 0 = no measurement")


@params_section("prepare.kitti")
@dataclass
class Config:
    """Params of ``prepare.kitti``."""

    out: Path | None = param()  # null: <paths.stores>/kitti.zarr
    raw: Path = param()  # downloads and fallback archives
    source: Path | None = param()  # extracted raw tree or folder of raw zips; gt guideddecoding: its test zip or folder
    split_file: Path | None = param()  # Eigen split file you already have
    split_url: str = param()
    split_lines: int = param()  # expected lines of the downloaded split
    split_sha256: str | None = param()  # pin the split file's hash
    gt: str = param()  # "velodyne" | "annotated" | "guideddecoding" (the thesis's Table 9.7 files, from source)
    annotated_source: Path | None = param()  # data_depth_annotated folder or zip
    annotated_url: str = param()
    raw_url: str = param()
    use_ranges: bool = param()  # read remote zip members by HTTP range requests
    hash_sources: bool = param()  # sha256 of local source archives (recorded in the store)
    min_depth: float = param()  # the depth range recorded with the store (evaluation caps: leve.evaluation.protocols)
    max_depth: float = param()
    workers: int = param()
    block_size: int = param()


# --------------------------------------------------------------------------- split file


@dataclass(frozen=True)
class Frame:
    """One test frame: ``<date>/<drive>`` and frame number, camera ``02`` (left) or ``03``."""

    date: str
    drive: str
    frame: int
    camera: str = "02"

    def member(self, kind: str) -> str:
        """Path inside the raw tree of this frame's image (``image``) or LiDAR scan (``velodyne``)."""
        if kind == "image":
            return f"{self.date}/{self.drive}/image_{self.camera}/data/{self.frame:010d}.png"
        return f"{self.date}/{self.drive}/velodyne_points/data/{self.frame:010d}.bin"

    @property
    def id(self) -> str:
        return f"{self.drive}/image_{self.camera}/{self.frame:010d}"


_DRIVE = r"(?P<date>\d{4}_\d{2}_\d{2})/(?P<drive>(?P=date)_drive_\d{4}_sync)"
_LINE_FRAME = re.compile(rf"^{_DRIVE}\s+(?P<frame>\d+)\s+(?P<side>[lr])$")
_LINE_PATH = re.compile(rf"^{_DRIVE}/image_(?P<cam>0[23])/data/(?P<frame>\d+)\.(png|jpg)(\s.*)?$")


def _test_store_attrs(cfg: Config) -> dict[str, Any]:
    """The attributes every KITTI test store records, whichever ground truth it holds."""
    return {"dataset": "kitti", "splits": ["test"], "units": "metres", "min_depth": cfg.min_depth,
            "max_depth": cfg.max_depth, "gt": cfg.gt}


def parse_split(text: str, name: str) -> list[Frame]:
    """Frames of a split file: ``<date>/<drive> <frame> l|r`` lines (monodepth2) or
    ``<date>/<drive>/image_02/data/<frame>.png ...`` lines (monodepth)."""
    frames = []
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        m = _LINE_FRAME.match(line) or _LINE_PATH.match(line)
        if m is None:
            raise LeveError(f"{name}:{lineno}: cannot parse split line '{line[:80]}'")
        cam = CAMERAS[m["side"]] if "side" in m.groupdict() and m["side"] else m["cam"]
        frames.append(Frame(m["date"], m["drive"], int(m["frame"]), cam))
    if not frames:
        raise LeveError(f"{name}: split file has no frames")
    return frames


def load_split(cfg: Config, show_progress: bool = True) -> tuple[list[Frame], dict[str, Any]]:
    """Read the split file (given, or downloaded once into ``raw``) and describe it."""
    if cfg.split_file is not None and not Path(cfg.split_file).is_file():
        raise LeveError(f"{cfg.split_file}: split file not found")
    path, digest = obtain(cfg.split_file, cfg.split_url, Path(cfg.raw) / "eigen_test_files.txt",
                          cfg.split_sha256, show_progress=show_progress)
    origin = str(path) if cfg.split_file is not None else cfg.split_url
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise LeveError(f"{path}: cannot read split file ({exc.__class__.__name__})") from exc
    frames = parse_split(text, str(path))
    if cfg.split_file is None and len(frames) != cfg.split_lines:
        raise LeveError(f"{path}: {len(frames)} frames, expected {cfg.split_lines} (wrong or truncated split file)")
    if len(frames) != EIGEN_TEST_LINES:
        console.print(f"note: {path} lists {len(frames)} frames (the Eigen test split has {EIGEN_TEST_LINES})")
    info = {"source": origin, "sha256": digest, "frames": len(frames), "drives": len({f.drive for f in frames})}
    return frames, info


# --------------------------------------------------------------------------- calibration


def parse_calib(text: str, name: str) -> dict[str, np.ndarray]:
    """``key: numbers`` lines of a KITTI calibration file (non-numeric lines are skipped)."""
    out: dict[str, np.ndarray] = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        try:
            out[key.strip()] = np.array([float(x) for x in value.split()], dtype=np.float64)
        except ValueError:
            continue  # e.g. calib_time: 09-Jan-2012 13:57:47
    if not out:
        raise LeveError(f"{name}: not a KITTI calibration file")
    return out


def _take(calib: dict[str, np.ndarray], key: str, size: int, name: str) -> np.ndarray:
    if key not in calib:
        raise LeveError(f"{name}: missing '{key}'")
    if calib[key].size != size:
        raise LeveError(f"{name}: '{key}' has {calib[key].size} values, expected {size}")
    return calib[key]


@dataclass(frozen=True)
class Calibration:
    """Velodyne -> image projection ``P`` (3x4) of one camera and its rectified image size."""

    P: np.ndarray
    height: int
    width: int


def velo_to_image(cam_to_cam: str, velo_to_cam: str, camera: str, names: tuple[str, str]) -> Calibration:
    """``P = P_rect_0c @ R_rect_00 (4x4) @ [R|T] (4x4)`` from the two calibration texts."""
    cc = parse_calib(cam_to_cam, names[0])
    vc = parse_calib(velo_to_cam, names[1])
    p_rect = _take(cc, f"P_rect_{camera}", 12, names[0]).reshape(3, 4)
    r_rect = np.eye(4)
    r_rect[:3, :3] = _take(cc, "R_rect_00", 9, names[0]).reshape(3, 3)
    width, height = _take(cc, f"S_rect_{camera}", 2, names[0])
    rt = np.eye(4)
    rt[:3, :3] = _take(vc, "R", 9, names[1]).reshape(3, 3)
    rt[:3, 3] = _take(vc, "T", 3, names[1])
    projection = p_rect @ r_rect @ rt
    if not np.isfinite(projection).all():
        raise LeveError(f"{names[0]} / {names[1]}: calibration holds non-finite values")
    if not (1 <= width <= 100_000 and 1 <= height <= 100_000):
        raise LeveError(f"{names[0]}: S_rect_{camera} gives an image size of {width:g} x {height:g}")
    return Calibration(projection, int(round(height)), int(round(width)))


def project_velodyne(points: np.ndarray, P: np.ndarray, height: int, width: int) -> np.ndarray:
    """Sparse depth (H, W) float32 from LiDAR points (N, >=3) with the common KITTI protocol.

    Points behind the sensor (x < 0) are dropped; the rest are projected with ``P``,
    pixel ``u = round(u) - 1, v = round(v) - 1``; depth is the LiDAR forward
    coordinate x; where several points hit one pixel the nearest is kept; 0 = none.
    """
    pts = np.asarray(points, dtype=np.float64)[:, :3]
    pts = pts[pts[:, 0] >= 0]
    homog = np.concatenate([pts, np.ones((len(pts), 1))], axis=1)
    proj = homog @ P.T
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = proj[:, :2] / proj[:, 2:3]
    uv = np.round(uv) - 1
    ok = np.isfinite(uv).all(axis=1)
    ok[ok] &= (uv[ok, 0] >= 0) & (uv[ok, 1] >= 0) & (uv[ok, 0] < width) & (uv[ok, 1] < height)
    u, v, depth = uv[ok, 0].astype(np.int64), uv[ok, 1].astype(np.int64), pts[ok, 0]
    out = np.full(height * width, np.inf)
    np.minimum.at(out, v * width + u, depth)
    out[np.isinf(out)] = 0.0
    return out.reshape(height, width).astype(np.float32)


def read_velodyne(data: bytes, name: str) -> np.ndarray:
    """A KITTI ``.bin`` scan as (N, 4) float32 (x, y, z, reflectance)."""
    if len(data) % 16:
        raise LeveError(f"{name}: {len(data)} bytes is not a whole number of N x 4 float32 points")
    pts = np.frombuffer(data, dtype="<f4").reshape(-1, 4)
    if not np.isfinite(pts[:, :3]).all():
        raise LeveError(f"{name}: scan holds non-finite coordinates")
    return pts


# --------------------------------------------------------------------------- sources


@dataclass
class Sources:
    """Where each drive's and each date's files are read from, and what was recorded of them."""

    drives: dict[str, str | None]  # drive -> zip container (None: plain files under root)
    calibs: dict[str, str | None]  # date -> zip container (None: plain files under root)
    root: Path | None
    records: list[dict[str, Any]]

    def member(self, container: str | None, path: str) -> Member:
        if container is None:
            assert self.root is not None
            return Member(None, str(self.root / path))
        return Member(container, path)


def _record_local(path: Path, hash_it: bool) -> dict[str, Any]:
    rec: dict[str, Any] = {"path": str(path), "size": path.stat().st_size}
    if hash_it:
        rec["sha256"] = verify_file(path, show_progress=True)
    return rec


def locate_sources(cfg: Config, frames: list[Frame], show_progress: bool = True) -> Sources:
    """Resolve every needed drive and calibration to a local folder, local zip or remote zip."""
    from leve.sources.remote_zip import zip_source

    drives = sorted({(f.date, f.drive) for f in frames})
    dates = sorted({f.date for f in frames})
    out = Sources({}, {}, Path(cfg.source) if cfg.source else None, [])
    if cfg.source is not None and not Path(cfg.source).is_dir():
        raise LeveError(f"{cfg.source}: --source must be a folder (raw tree or raw zips)")
    wanted = [(drive, f"{date}/{drive}", f"{drive}.zip", f"{cfg.raw_url}/{drive[:-5]}/{drive}.zip")
              for date, drive in drives]
    wanted += [(date, f"{date}/calib_cam_to_cam.txt", f"{date}_calib.zip", f"{cfg.raw_url}/{date}_calib.zip")
               for date in dates]
    for key, tree_path, zip_name, url in wanted:
        table = out.calibs if key in dates else out.drives
        if cfg.source is not None:
            src = Path(cfg.source)
            if (src / tree_path).exists():
                table[key] = None
                if key in dates:
                    for f in ("calib_cam_to_cam.txt", "calib_velo_to_cam.txt"):
                        out.records.append(_record_local(src / key / f, True))
                else:  # per-file sha256 of images and scans are in meta/rgb_sha256, meta/gt_sha256
                    out.records.append({"path": str(src / tree_path), "sha256": "per sample in meta"})
                continue
            if (src / zip_name).is_file():
                table[key] = str(src / zip_name)
                out.records.append(_record_local(src / zip_name, cfg.hash_sources))
                continue
            raise LeveError(f"{src}: has neither {tree_path} nor {zip_name}")
        container, record = zip_source(url, Path(cfg.raw), cfg.use_ranges, show_progress)
        table[key] = container
        out.records.append(record)
    return out


def load_calibrations(sources: Sources, frames: list[Frame]) -> dict[str, Calibration]:
    """Calibration per ``<date>/<camera>``."""
    out = {}
    for date, cam in sorted({(f.date, f.camera) for f in frames}):
        c = sources.calibs[date]
        cc = sources.member(c, f"{date}/calib_cam_to_cam.txt")
        vc = sources.member(c, f"{date}/calib_velo_to_cam.txt")
        texts = []
        for m in (cc, vc):
            try:
                texts.append(m.read().decode("ascii"))
            except UnicodeDecodeError as exc:
                raise LeveError(f"{m.name}: not a text calibration file") from exc
        out[f"{date}/{cam}"] = velo_to_image(texts[0], texts[1], cam, (cc.name, vc.name))
    return out


def locate_annotated(cfg: Config, frames: list[Frame], show_progress: bool = True) -> tuple[dict[Frame, Member], dict[str, Any]]:
    """The annotated depth PNG of each frame that has one (``{train,val}/<drive>/proj_depth/...``)."""
    from leve.sources.remote_zip import zip_source

    src = cfg.annotated_source
    if src is not None and Path(src).is_dir():
        names = None
        record: dict[str, Any] = {"path": str(src)}
    else:
        if src is not None:
            if not Path(src).is_file():
                raise LeveError(f"{src}: annotated depth source not found")
            container, record = str(src), _record_local(Path(src), cfg.hash_sources)
        else:
            container, record = zip_source(cfg.annotated_url, Path(cfg.raw), cfg.use_ranges, show_progress)
        names = zip_names(container)
    found: dict[Frame, Member] = {}
    for f in frames:
        for part in ("train", "val"):
            rel = f"{part}/{f.drive}/proj_depth/groundtruth/image_{f.camera}/{f.frame:010d}.png"
            if names is None and (Path(src) / rel).is_file():  # type: ignore[arg-type]
                found[f] = Member(None, str(Path(src) / rel))  # type: ignore[arg-type]
            elif names is not None and rel in names:
                found[f] = Member(container, rel)
            else:
                continue
            break
    return found, record


# --------------------------------------------------------------------------- loading


@dataclass
class KittiLoader:
    """Sample ``i``: left image, ground-truth depth (metres) and metadata. Picklable."""

    frames: list[Frame]
    images: list[Member]
    depths: list[Member]  # velodyne scans or annotated PNGs
    calibs: dict[str, Calibration]
    gt: str

    def __call__(self, i: int) -> tuple[dict[str, Any], dict[str, Any]]:
        f = self.frames[i]
        cal = self.calibs[f"{f.date}/{f.camera}"]
        img_bytes = self.images[i].read()
        rgb = decode_rgb(img_bytes, self.images[i].name, strict=True)
        if rgb.shape[:2] != (cal.height, cal.width):
            raise LeveError(
                f"{self.images[i].name}: image is {rgb.shape[0]}x{rgb.shape[1]}, "
                f"calibration S_rect_{f.camera} says {cal.height}x{cal.width}"
            )
        gt_bytes = self.depths[i].read()
        depth = self._depth(gt_bytes, self.depths[i].name, cal)
        meta = {
            "source": f.member("image"),
            "frame_id": f.id,
            "date": f.date,
            "drive": f.drive,
            "frame": f.frame,
            "camera": f"image_{f.camera}",
            "height": cal.height,
            "width": cal.width,
            "rgb_sha256": hashlib.sha256(img_bytes).hexdigest(),
            "gt_sha256": hashlib.sha256(gt_bytes).hexdigest(),
        }
        return {"rgb": rgb, "depth": depth}, meta

    def _depth(self, data: bytes, name: str, cal: Calibration) -> np.ndarray:
        if self.gt == "velodyne":
            return project_velodyne(read_velodyne(data, name), cal.P, cal.height, cal.width)
        raw = decode_gray(data, name, 16)
        if raw.shape != (cal.height, cal.width):
            raise LeveError(f"{name}: depth is {raw.shape[0]}x{raw.shape[1]}, expected {cal.height}x{cal.width}")
        return (raw.astype(np.float32) / np.float32(256.0)).astype(np.float32)


META = {
    "source": "str", "frame_id": "str", "date": "str", "drive": "str", "frame": "int64", "camera": "str",
    "height": "int32", "width": "int32", "rgb_sha256": "str", "gt_sha256": "str",
}


def plan(cfg: Config, show_progress: bool = True) -> tuple[KittiLoader, dict[str, Any]]:
    """Resolve split, sources and calibrations into a loader and the store attributes."""
    if cfg.gt not in GT_CHOICES:
        raise LeveError(f"prepare.kitti.gt must be one of {', '.join(GT_CHOICES)}, got '{cfg.gt}'")
    frames, split_info = load_split(cfg, show_progress)
    sources = locate_sources(cfg, frames, show_progress)
    calibs = load_calibrations(sources, frames)
    extra: dict[str, Any] = {}
    if cfg.gt == "annotated":
        found, record = locate_annotated(cfg, frames, show_progress)
        missing = [f.id for f in frames if f not in found]
        if missing:
            console.print(f"kitti: {len(missing)} of {len(frames)} frames have no annotated depth; "
                          f"skipped (first: {', '.join(missing[:3])})")
        frames = [f for f in frames if f in found]
        if not frames:
            raise LeveError(f"{record.get('path') or record.get('url')}: no annotated depth for any split frame")
        depths = [found[f] for f in frames]
        sources.records.append({**record, "role": "annotated depth"})
        extra["missing_gt"] = missing
    else:
        depths = [sources.member(sources.drives[f.drive], f.member("velodyne")) for f in frames]
    images = [sources.member(sources.drives[f.drive], f.member("image")) for f in frames]
    loader = KittiLoader(frames, images, depths, calibs, cfg.gt)
    attrs = {
        **_test_store_attrs(cfg),
        "gt_protocol": (
            "velodyne: P = P_rect_02 R_rect_00 [R|T]velo->cam; x >= 0; u,v = round(.) - 1; in-image; "
            "depth = LiDAR x; nearest per pixel; 0 = none"
            if cfg.gt == "velodyne" else "data_depth_annotated 16-bit PNG, metres = v/256, 0 = none"
        ),
        "split_file": split_info,
        "sources": sources.records,
        "calibration": {k: {"P_velo_to_image": c.P.tolist(), "height": c.height, "width": c.width}
                        for k, c in calibs.items()},
        "params": {k: v for k, v in config_dict(cfg).items() if k not in ("workers",)},
        **extra,
    }
    return loader, attrs


def prepare(cfg: Config, force: bool = False, show_progress: bool = True) -> BuildResult:
    """Build ``cfg.out`` with split ``test`` (resumable; complete only when every block is written)."""
    if cfg.gt == "guideddecoding":
        return prepare_guideddecoding(cfg, force, show_progress)
    loader, attrs = plan(cfg, show_progress)
    height = max(c.height for c in loader.calibs.values())
    width = max(c.width for c in loader.calibs.values())
    spec = SplitSpec("test", len(loader.frames), dataset_arrays(height, width), META,
                     attrs={"padded_to": [height, width]})
    fp = fingerprint({"attrs": attrs, "frames": [f.id for f in loader.frames]})
    return build_store(store_path(cfg.out, "kitti"), attrs, fp, [SplitSource(spec, loader)], cfg.workers, cfg.block_size,
                       force=force, show_progress=show_progress)


# --------------------------------------------------------------------------- gt: guideddecoding


def _npz(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """The raw ``image`` and ``depth`` arrays of one GuidedDecoding test file."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            missing = [k for k in ("image", "depth") if k not in z.files]
            if missing:
                raise LeveError(f"{name}: no {' or '.join(missing)} array (GuidedDecoding's KITTI files hold "
                                f"'image' and 'depth')")
            return z["image"], z["depth"]
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise LeveError(f"{name}: not a readable .npz ({exc.__class__.__name__}: {exc})") from exc


def npz_sample(data: bytes, name: str) -> tuple[np.ndarray, np.ndarray]:
    """``image`` as (H, W, 3) uint8 and ``depth`` as (H, W) float32 metres from one ``.npz``; refuses
    anything else (wrong shapes, image values that are not 0..255 integers, negative or non-finite depth)."""
    image, depth = _npz(data, name)
    if image.ndim != 3 or image.shape[2] != 3 or not np.issubdtype(image.dtype, np.number):
        raise LeveError(f"{name}: 'image' is {image.dtype} {image.shape}, expected (H, W, 3) numbers")
    if image.dtype != np.uint8:
        ok = np.isfinite(image).all() and image.min() >= 0 and image.max() <= 255 and (image == np.round(image)).all()
        if not ok:
            raise LeveError(f"{name}: 'image' ({image.dtype}) must hold integers 0..255")
        image = image.astype(np.uint8)
    if depth.ndim == 3 and depth.shape[2] == 1:
        depth = depth[..., 0]
    if depth.shape != image.shape[:2] or not np.issubdtype(depth.dtype, np.number):
        raise LeveError(f"{name}: 'depth' is {depth.dtype} {depth.shape}, expected {image.shape[:2]} numbers")
    depth = depth.astype(np.float32)
    if not np.isfinite(depth).all() or (depth < 0).any():
        raise LeveError(f"{name}: 'depth' holds negative or non-finite values")
    return image, depth


def locate_npz(cfg: Config) -> tuple[list[Member], dict[str, Any]]:
    """The ``.npz`` test files under ``cfg.source`` (zip or folder), in file-name order, and their record.
    Files in several folders: the one folder named ``test`` (GuidedDecoding's ``<root>/test``)."""
    if cfg.source is None:
        raise LeveError(f"prepare.kitti.gt guideddecoding: no source; download the prepared KITTI test set linked "
                        f"in {GUIDEDDECODING_REPO}'s README and pass --source ZIP_OR_FOLDER")
    src = Path(cfg.source)
    if not src.exists():
        raise LeveError(f"{src}: GuidedDecoding KITTI source not found")
    by_dir: dict[str, list[Member]] = {}
    for m in list_tree(src, Path(cfg.raw) / "unpacked"):
        path = m.logical or m.path
        if path.lower().endswith(".npz"):
            by_dir.setdefault(posixpath.dirname(path), []).append(m)
    if len(by_dir) > 1:
        tests = [d for d in by_dir if posixpath.basename(d) == "test"]
        if len(tests) != 1:
            raise LeveError(f"{src}: .npz files in {len(by_dir)} folders ({', '.join(sorted(by_dir)[:3])}); "
                            f"pass the folder of the test files")
        by_dir = {tests[0]: by_dir[tests[0]]}
    if not by_dir:
        raise LeveError(f"{src}: no .npz file (GuidedDecoding's KITTI test files are .npz with 'image' and 'depth')")
    folder, members = next(iter(by_dir.items()))
    members.sort(key=lambda m: posixpath.basename(m.logical or m.path))
    record = _record_local(src, cfg.hash_sources) if src.is_file() else {"path": str(src)}
    return members, {**record, "folder": folder, "files": len(members), "role": "GuidedDecoding KITTI test files"}


@dataclass
class NpzLoader:
    """Sample ``i``: image and depth of the ``i``-th GuidedDecoding ``.npz``. Picklable."""

    files: list[Member]

    def __call__(self, i: int) -> tuple[dict[str, Any], dict[str, Any]]:
        m = self.files[i]
        data = m.read()
        rgb, depth = npz_sample(data, m.name)
        path = m.logical or m.path
        meta = {"source": path, "frame_id": posixpath.splitext(posixpath.basename(path))[0],
                "height": rgb.shape[0], "width": rgb.shape[1], "npz_sha256": hashlib.sha256(data).hexdigest()}
        return {"rgb": rgb, "depth": depth}, meta


NPZ_META = {"source": "str", "frame_id": "str", "height": "int32", "width": "int32", "npz_sha256": "str"}


def prepare_guideddecoding(cfg: Config, force: bool = False, show_progress: bool = True) -> BuildResult:
    """Build ``cfg.out`` (split ``test``) from GuidedDecoding's KITTI test files, padded to the largest image."""
    members, record = locate_npz(cfg)
    sizes = [npz_sample(m.read(), m.name)[0].shape[:2] for m in members]
    if len(members) != EIGEN_TEST_LINES:
        console.print(f"note: {record['path']} holds {len(members)} test files (the Eigen test split has "
                      f"{EIGEN_TEST_LINES})")
    height, width = max(h for h, _ in sizes), max(w for _, w in sizes)
    attrs = {
        **_test_store_attrs(cfg),
        "gt_protocol": GUIDEDDECODING_PROTOCOL,
        "sizes": sorted({f"{w}x{h}" for h, w in sizes}),
        "sources": [record],
        "params": {k: v for k, v in config_dict(cfg).items() if k not in ("workers",)},
    }
    spec = SplitSpec("test", len(members), dataset_arrays(height, width), NPZ_META, attrs={"padded_to": [height, width]})
    fp = fingerprint({"attrs": attrs, "files": [m.logical or m.path for m in members]})
    return build_store(store_path(cfg.out, "kitti"), attrs, fp, [SplitSource(spec, NpzLoader(members))], cfg.workers,
                       cfg.block_size, force=force, show_progress=show_progress)
