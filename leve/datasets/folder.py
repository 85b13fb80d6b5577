"""Your own data: a folder of RGB images (optionally with depth maps) and/or videos as a store.

``leve prepare folder NAME --source DIR`` (or ``prepare.NAME: {adapter: folder, ...}`` in
params.yaml, then ``leve prepare NAME``) builds ``data/zarr/NAME.zarr`` in the format of every
other dataset (see :mod:`leve.store`).

Finding samples (``source`` is searched recursively; hidden files and folders are skipped):

* RGB: ``.jpg``/``.jpeg``/``.png`` (8-bit RGB is stored as decoded, bit for bit; grey, palette
  or alpha images are converted to RGB by Pillow). An EXIF orientation (a phone photo taken
  upright) is applied as Pillow's ``ImageOps.exif_transpose`` applies it, to the image and to its
  depth map, both taken to share the stored pixel grid; a value outside 1-8 is refused.
* Videos (``.mp4``, ``.mov``, ``.avi``, ``.mkv``, ...) become frames: every ``video_every``-th, or
  one per 1/``video_fps`` s, with the frame's time in ``meta/time``. Each video is a scene.
* Depth maps: files in a folder named ``depth_dir``, files whose stem ends in ``depth_suffix``,
  and every ``.npy``/``.npz``. A depth map pairs with the image of the same *key*: the relative
  path without extension, without folders named ``rgb_dir`` or ``depth_dir`` and without the
  depth suffix (``kitchen/rgb/0001.jpg`` <-> ``kitchen/depth/0001.png``; ``a/0001.jpg`` <->
  ``a/0001_depth.npy``). Or ``pairs_csv`` lists the pairs (header ``rgb,depth[,split][,scene]``,
  paths relative to ``source``; an empty depth cell means no depth).
* Depth values: stored value x ``depth_scale`` in ``units`` (PNG: 8/16-bit single channel,
  ``depth_scale`` required, e.g. 0.001 for millimetres; ``.npy``/``.npz``: float, scale 1 unless
  given). 0 = invalid. NaN/inf (unless ``nan_invalid``), negative and all-zero maps are refused.
* Scene: the key's folder (``.`` at the top level), or the video.

Splits (``split``): ``fraction`` (frames drawn by a seeded hash: ``test_fraction``,
``val_fraction``, the rest train), ``scenes`` (whole scenes held out the same way until the
fractions are reached) or ``lists`` (``split_lists``: split -> list of paths or folders relative to
``source``, inline or as a text file, one per line; or the ``split`` column of ``pairs_csv``).
Within a split every sample has depth or none has: a split without depth has no ``depth`` array.

Sizes (``sizes``): a split holds one image size unless ``pad`` (samples keep their size, padded as
KITTI's are, true size in ``meta/height,width``) or ``HxW`` (every sample resized: RGB with
Pillow's bilinear filter, antialiased when shrinking; depth by nearest neighbour at pixel
centres, so no depth is invented). ``refuse`` (default) names the first file of another size.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from PIL import Image

from leve.datasets.build import BuildResult, FinalAttrs, SplitSource, build_store
from leve.datasets.video import VIDEO_EXTENSIONS, VideoInfo, close_videos, probe, read_frame, select_frames
from leve.errors import LeveError, shown
from leve.limits import MAX_PIXELS
from leve.params import config_dict
from leve.progress import console
from leve.store.format import SplitSpec, dataset_arrays, fingerprint
from leve.store.images import decode_gray, decode_rgb

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
DEPTH_EXTENSIONS = (".png", ".npy", ".npz")
SPLIT_RULES = ("fraction", "scenes", "lists")
SPLIT_ORDER = ("train", "val", "test")
META = {
    "source": "str", "depth_source": "str", "scene": "str", "frame": "int64", "time": "float64",
    "height": "int32", "width": "int32", "source_height": "int32", "source_width": "int32", "depth_max": "float32",
}


@dataclass
class Config:
    """Params of ``prepare.<NAME>`` with ``adapter: folder``."""

    out: Path | None = None  # null: data/zarr/<NAME>.zarr (the path the pipeline's stages read)
    source: Path | None = None  # folder (searched recursively) or one video file
    pairs_csv: Path | None = None  # CSV of pairs instead of pairing by name (relative to source)
    depth: str = "auto"  # auto: pair the depth maps found | none: images only, depth maps ignored
    rgb_dir: str = "rgb"
    depth_dir: str = "depth"
    depth_suffix: str = "_depth"
    depth_scale: float | None = None  # units per stored value; null: 1 for .npy/.npz, required for PNG
    units: str = "metres"
    max_depth: float | None = None  # null: the largest valid depth in the store
    nan_invalid: bool = False  # read NaN/inf depth as 0 (invalid) instead of refusing the file
    split: str = "fraction"  # fraction | scenes | lists
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    split_seed: int = 0
    split_lists: dict[str, Any] = field(default_factory=dict)  # split -> [paths or folders] or a list file
    sizes: str = "refuse"  # refuse | pad | HxW (resize every sample)
    video_every: int = 1
    video_fps: float | None = None
    workers: int = 2
    block_size: int = 256


@dataclass(frozen=True)
class Item:
    """One sample: an image (``frame`` -1) or a video frame, with its depth map if any."""

    rgb: str  # path relative to the source (or absolute), '/'-separated
    depth: str | None
    scene: str
    height: int  # size in the source
    width: int
    frame: int = -1
    pts: int = 0
    time: float = -1.0
    orientation: int = 1  # EXIF orientation (1: as stored); height and width are as displayed


# --------------------------------------------------------------------------- finding files


def _walk(root: Path) -> list[str]:
    """Relative '/'-paths of the files under ``root``, sorted; hidden entries skipped."""
    out = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        base = Path(folder).relative_to(root)
        out += [(base / f).as_posix() for f in files if not f.startswith(".")]
    return sorted(out)


def _is_depth(rel: str, cfg: Config) -> bool:
    p = PurePosixPath(rel)
    ext = p.suffix.lower()
    if ext in (".npy", ".npz"):
        return True
    named = cfg.depth_dir in p.parts[:-1] or bool(cfg.depth_suffix and p.stem.endswith(cfg.depth_suffix))
    return ext in DEPTH_EXTENSIONS and named


def _kind(rel: str, cfg: Config) -> str:
    """video, depth, image, or '' (not a sample file)."""
    ext = PurePosixPath(rel).suffix.lower()
    if ext in VIDEO_EXTENSIONS:
        return "video"
    if _is_depth(rel, cfg):
        return "depth"
    return "image" if ext in IMAGE_EXTENSIONS else ""


def pairing_key(rel: str, cfg: Config, depth: bool) -> str:
    """The name an image and its depth map share (see the module docstring)."""
    p = PurePosixPath(rel)
    folders = [d for d in p.parts[:-1] if d not in (cfg.rgb_dir, cfg.depth_dir)]
    stem = p.stem.removesuffix(cfg.depth_suffix) if depth and cfg.depth_suffix else p.stem
    return "/".join([*folders, stem])


def _scene(key: str) -> str:
    return PurePosixPath(key).parent.as_posix()


def _by_key(files: list[str], cfg: Config, depth: bool, what: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for rel in files:
        key = pairing_key(rel, cfg, depth)
        if key in out:
            raise LeveError(f"{rel}: {what} '{out[key]}' has the same name ({key}); rename one "
                            "(or set depth_dir/depth_suffix so depth maps are told from images)")
        out[key] = rel
    return out


EXIF_ORIENTATION = 0x0112
# EXIF orientation -> the turn that shows the image upright: ImageOps.exif_transpose's table
TURNS = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
         5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
         8: Image.Transpose.ROTATE_90}


def image_header(path: Path, rel: str) -> tuple[int, int, int]:
    """(height, width) as displayed and the EXIF orientation (1: as stored), from the image header."""
    try:
        with Image.open(path) as img:
            w, h = img.size
            orientation = img.getexif().get(EXIF_ORIENTATION, 1)
    except Exception as exc:  # any unreadable header or EXIF block: one line naming the file
        raise LeveError(f"{rel}: cannot read image ({exc.__class__.__name__}: {shown(str(exc), quote=False)})") from exc
    if orientation == 1:
        return h, w, 1
    if not isinstance(orientation, int) or orientation not in TURNS:
        raise LeveError(f"{rel}: EXIF orientation {shown(orientation)} is not one of the standard's values 1-8")
    return (w, h, orientation) if orientation >= 5 else (h, w, orientation)


def oriented(arr: np.ndarray, orientation: int) -> np.ndarray:
    """``arr`` (RGB uint8 or float32 depth, in the stored pixel grid) turned as EXIF ``orientation`` says."""
    if orientation == 1:
        return arr
    return np.asarray(Image.fromarray(arr).transpose(TURNS[orientation]))


def image_size(path: Path, rel: str) -> tuple[int, int]:
    """(height, width) from the image header."""
    try:
        with Image.open(path) as img:
            w, h = img.size
    except Exception as exc:
        raise LeveError(f"{rel}: cannot read image ({exc.__class__.__name__}: {shown(str(exc), quote=False)})") from exc
    return h, w


def _image_item(root: Path, rel: str, depth: str | None, scene: str) -> Item:
    h, w, orientation = image_header(root / rel, rel)
    return Item(rel, depth, scene, h, w, orientation=orientation)


def find_items(cfg: Config, root: Path) -> tuple[list[Item], dict[str, VideoInfo], list[str]]:
    """Images paired with their depth maps, and video frames; with the videos' infos and the
    files left out (other extensions)."""
    if root.is_file():
        files, root_file = [root.name], True
        root = root.parent
    else:
        files, root_file = _walk(root), False
    kind = {f: _kind(f, cfg) for f in files}
    videos, depth_files, images, other = ([f for f in files if kind[f] == k] for k in ("video", "depth", "image", ""))
    if root_file and not videos:
        raise LeveError(f"{root / files[0]}: not a video file ({', '.join(VIDEO_EXTENSIONS)}) nor a folder")
    image_keys = _by_key(images, cfg, False, "image")
    depth_keys = _by_key(depth_files, cfg, True, "depth map") if cfg.depth != "none" else {}
    orphans = sorted(set(depth_keys) - set(image_keys))
    if orphans:
        raise LeveError(f"{root / depth_keys[orphans[0]]}: depth map without an image "
                        f"(looked for {orphans[0]}.jpg/.jpeg/.png outside '{cfg.depth_dir}/')")
    items = [_image_item(root, rel, depth_keys.get(key), _scene(key)) for key, rel in image_keys.items()]
    infos: dict[str, VideoInfo] = {}
    for rel in videos:
        infos[rel] = info = probe(root / rel)
        scene = rel.rsplit(".", 1)[0]
        for k in select_frames(info, cfg.video_every, cfg.video_fps):
            items.append(Item(rel, None, scene, info.height, info.width, k, info.pts[k], info.time(k)))
    return items, infos, other


def read_pairs_csv(cfg: Config, root: Path) -> tuple[list[Item], dict[str, str]]:
    """Items of ``pairs_csv`` (header ``rgb,depth[,split][,scene]``) and the split of each row
    that has one (by RGB path)."""
    assert cfg.pairs_csv is not None
    path = cfg.pairs_csv if cfg.pairs_csv.is_absolute() else root / cfg.pairs_csv
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise LeveError(f"{path}: cannot read pairs CSV ({exc.strerror or exc})") from exc
    rows = list(csv.DictReader(io.StringIO(text)))
    header = [h.strip() for h in (csv.DictReader(io.StringIO(text)).fieldnames or [])]
    if "rgb" not in header:
        raise LeveError(f"{path}: needs a header row with an 'rgb' column (and 'depth', 'split', 'scene' if any)")
    items, splits, seen = [], {}, set()
    for n, row in enumerate(rows, start=2):
        row = {k.strip(): (v or "").strip() for k, v in row.items() if k}
        rgb, dep = row["rgb"], row.get("depth", "") if cfg.depth != "none" else ""
        for rel in (rgb, dep):
            if rel and not (root / rel).is_file():
                raise LeveError(f"{path} line {n}: '{rel}' not found under {root}")
        if rgb in seen:
            raise LeveError(f"{path} line {n}: '{rgb}' is listed twice")
        seen.add(rgb)
        scene = row.get("scene") or PurePosixPath(pairing_key(rgb, cfg, False)).parent.as_posix()
        items.append(_image_item(root, rgb, dep or None, scene))
        if row.get("split"):
            splits[rgb] = row["split"]
    return items, splits


# --------------------------------------------------------------------------- splits


def _rank(names: list[str], seed: int) -> list[str]:
    return sorted(names, key=lambda s: hashlib.sha256(f"{seed}:{s}".encode()).hexdigest())


def _sample_id(it: Item) -> str:
    return it.rgb if it.frame < 0 else f"{it.rgb}#{it.frame}"


def split_by_fraction(items: list[Item], cfg: Config) -> dict[str, list[Item]]:
    """test, then val, take fraction x N samples (rounded half up) in seeded-hash order; the rest is train."""
    n = len(items)
    ranked = _rank([_sample_id(it) for it in items], cfg.split_seed)
    n_test, n_val = int(cfg.test_fraction * n + 0.5), int(cfg.val_fraction * n + 0.5)
    where = {s: "test" for s in ranked[:n_test]} | {s: "val" for s in ranked[n_test : n_test + n_val]}
    return _group(items, lambda it: where.get(_sample_id(it), "train"))


def split_by_scenes(items: list[Item], cfg: Config, name: str) -> dict[str, list[Item]]:
    """Whole scenes in seeded-hash order to test until test_fraction of the samples, then to val."""
    counts: dict[str, int] = {}
    for it in items:
        counts[it.scene] = counts.get(it.scene, 0) + 1
    where: dict[str, str] = {}
    taken = {"test": 0, "val": 0}
    for scene in _rank(list(counts), cfg.split_seed):
        for split, frac in (("test", cfg.test_fraction), ("val", cfg.val_fraction)):
            if taken[split] < frac * len(items):
                where[scene], taken[split] = split, taken[split] + counts[scene]
                break
    if len(where) == len(counts) and cfg.test_fraction + cfg.val_fraction < 1:
        raise LeveError(f"prepare.{name}: {len(counts)} scene(s) ({', '.join(sorted(counts)[:5])}); holding out "
                        "val/test by whole scenes leaves none for train (use split: fraction or lower the fractions)")
    return _group(items, lambda it: where.get(it.scene, "train"))


def _list_entries(value: Any, split: str, name: str) -> list[str]:
    if isinstance(value, list | tuple):
        return [str(v).strip().strip("/") for v in value if str(v).strip()]
    path = Path(str(value))
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise LeveError(f"{path}: cannot read the list of prepare.{name}.split_lists.{split} ({exc.strerror or exc})") from exc
    return [ln.strip().strip("/") for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def split_by_lists(items: list[Item], cfg: Config, name: str, csv_splits: dict[str, str]) -> dict[str, list[Item]]:
    """Each sample goes to the split whose list names its file or a folder above it (or its CSV
    ``split``); unlisted samples are left out (reported)."""
    if csv_splits and cfg.split_lists:
        raise LeveError(f"prepare.{name}: give splits either in pairs_csv's 'split' column or in split_lists, not both")
    if csv_splits:
        return _group(items, lambda it: csv_splits.get(it.rgb, ""))
    if not cfg.split_lists:
        raise LeveError(f"prepare.{name}: split: lists needs split_lists (split -> paths) or a 'split' column in pairs_csv")
    owner: dict[str, str] = {}
    for split, value in cfg.split_lists.items():
        for entry in _list_entries(value, split, name):
            hits = [it.rgb for it in items if it.rgb == entry or it.rgb.startswith(entry + "/")]
            if not hits:
                raise LeveError(f"prepare.{name}.split_lists.{split}: '{entry}' matches no image or video under the source")
            for rgb in hits:
                if owner.setdefault(rgb, split) != split:
                    raise LeveError(f"{rgb}: listed in split_lists {owner[rgb]} and {split}")
    return _group(items, lambda it: owner.get(it.rgb, ""))


def _group(items: list[Item], which: Any) -> dict[str, list[Item]]:
    out: dict[str, list[Item]] = {}
    for it in items:
        out.setdefault(which(it), []).append(it)
    return out


def assign_splits(items: list[Item], cfg: Config, name: str, csv_splits: dict[str, str]) -> dict[str, list[Item]]:
    """Split name -> its samples (source order), by the rule ``cfg.split``; empty splits dropped."""
    for what, frac in (("val_fraction", cfg.val_fraction), ("test_fraction", cfg.test_fraction)):
        if not 0 <= frac <= 1:
            raise LeveError(f"prepare.{name}.{what} must be within 0..1, got {frac}")
    if cfg.split == "fraction":
        parts = split_by_fraction(items, cfg)
    elif cfg.split == "scenes":
        parts = split_by_scenes(items, cfg, name)
    elif cfg.split == "lists":
        parts = split_by_lists(items, cfg, name, csv_splits)
    else:
        raise LeveError(f"prepare.{name}.split must be one of {', '.join(SPLIT_RULES)}, got '{cfg.split}'")
    left_out = parts.pop("", [])
    if left_out:
        console.print(f"{name}: {len(left_out)} sample(s) in no split list left out (first: {left_out[0].rgb})")
    for split in parts:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", split):
            raise LeveError(f"prepare.{name}: split name '{split}' must be letters, digits, '_' or '-'")
    order = {s: i for i, s in enumerate(SPLIT_ORDER)}
    return {s: parts[s] for s in sorted(parts, key=lambda s: (order.get(s, 3), s)) if parts[s]}


# --------------------------------------------------------------------------- sizes and depth


def parse_sizes(rule: str, name: str) -> tuple[int, int] | None:
    """``refuse``/``pad`` -> None; ``HxW`` -> (H, W)."""
    if rule in ("refuse", "pad"):
        return None
    hit = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", rule)
    if not hit or min(int(hit[1]), int(hit[2])) < 1:
        raise LeveError(f"prepare.{name}.sizes must be refuse, pad or HxW (e.g. 240x320), got '{rule}'")
    return int(hit[1]), int(hit[2])


def split_shape(split: str, items: list[Item], cfg: Config, root: Path, name: str) -> tuple[int, int]:
    """The (H, W) the split's arrays hold; with ``sizes: refuse`` every sample must share it."""
    target = parse_sizes(cfg.sizes, name)
    if target is not None:
        return target
    if cfg.sizes == "pad":
        return max(it.height for it in items), max(it.width for it in items)
    first = items[0]
    for it in items:
        if (it.height, it.width) != (first.height, first.width):
            where = it.rgb if it.frame < 0 else f"{it.rgb} frame {it.frame}"
            raise LeveError(f"{root / where}: {it.height}x{it.width}, but split '{split}' has "
                            f"{first.height}x{first.width} ({root / first.rgb}); set prepare.{name}.sizes to pad or HxW")
    return first.height, first.width


def depth_header_size(path: Path, rel: str) -> tuple[int, int] | None:
    """(height, width) of a depth file from its header, nothing decoded or decompressed (a ``.npy``/``.npz``
    array over the pixel cap is refused here, see :func:`array_header`)."""
    ext = path.suffix.lower()
    if ext == ".png":
        return image_size(path, rel)
    if ext in (".npy", ".npz"):
        shape, _ = array_header(path, rel)
        return (int(shape[0]), int(shape[1])) if len(shape) >= 2 else (-1, -1)
    return None


def _npz_member(zf: zipfile.ZipFile, rel: str) -> str:
    """The member of an ``.npz`` that holds the depth: its only array, or the one named ``depth``."""
    names = [n for n in zf.namelist() if n.endswith(".npy")]
    if len(names) == 1:
        return names[0]
    if "depth.npy" in names:
        return "depth.npy"
    keys = [n.removesuffix(".npy") for n in names]
    raise LeveError(f"{rel}: .npz holds {shown(keys)}; expected one array or one named 'depth'")


def _read_npy_header(fh: Any) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(fh)
    read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
    shape, _, dtype = read(fh)
    return tuple(int(v) for v in shape), dtype


def array_header(path: Path, rel: str) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of a ``.npy`` (or of the depth member of an ``.npz``) read from the array's header
    alone: a few hundred bytes, before anything is decompressed or allocated. An array of more pixels
    than images may have (:data:`leve.limits.MAX_PIXELS`; a 1 MB ``.npz`` of zeros can hold
    gigabytes) or more than 8 bytes a pixel is refused in one line."""
    try:
        if path.suffix.lower() == ".npz":
            with zipfile.ZipFile(path) as zf, zf.open(_npz_member(zf, rel)) as fh:
                shape, dtype = _read_npy_header(fh)
        else:
            with open(path, "rb") as fh:
                shape, dtype = _read_npy_header(fh)
    except LeveError:
        raise
    except (OSError, ValueError, EOFError, SyntaxError, zipfile.BadZipFile) as exc:
        raise LeveError(f"{rel}: cannot read depth ({exc.__class__.__name__}: {shown(str(exc), quote=False)})") from exc
    pixels = int(np.prod(shape[:2], dtype=np.float64)) if len(shape) >= 2 else int(np.prod(shape, dtype=np.float64))
    size = float(np.prod(shape, dtype=np.float64)) * dtype.itemsize
    if pixels > MAX_PIXELS or size > MAX_PIXELS * 8:
        raise LeveError(f"{rel}: depth array of shape {shown(shape)} ({dtype}) is too large: {size:,.0f} bytes, "
                        f"{pixels:,} pixels (at most {MAX_PIXELS:,}, as for images)")
    return shape, dtype


def check_pairs(items: list[Item], cfg: Config, root: Path, name: str) -> None:
    """Depth maps that need a scale or differ in size from their image are refused before any
    writing."""
    for it in items:
        if it.depth is None:
            continue
        if it.depth.lower().endswith(".png") and cfg.depth_scale is None:
            raise LeveError(f"{root / it.depth}: PNG depth needs prepare.{name}.depth_scale "
                            "(units per stored value, e.g. 0.001 for millimetres)")
        size = depth_header_size(root / it.depth, it.depth)
        stored = (it.width, it.height) if it.orientation >= 5 else (it.height, it.width)  # before the EXIF turn
        if size is not None and size != stored:
            raise LeveError(f"{root / it.depth}: depth is {size[0]}x{size[1]} but its image {root / it.rgb} "
                            f"is {stored[0]}x{stored[1]}")


def read_depth(path: Path, rel: str, scale: float | None) -> np.ndarray:
    """The depth file as float64 in units: stored value x ``scale`` (1 for .npy/.npz when None)."""
    ext = path.suffix.lower()
    try:
        if ext == ".png":
            raw: np.ndarray = decode_gray(path.read_bytes(), rel, 16)
        else:
            array_header(path, rel)  # the size, from the header, before anything is decompressed
            loaded = np.load(path, allow_pickle=False)
            if isinstance(loaded, np.lib.npyio.NpzFile):
                with loaded:
                    keys = list(loaded.keys())
                    if len(keys) != 1 and "depth" not in keys:
                        raise LeveError(f"{rel}: .npz holds {shown(keys)}; expected one array or one named 'depth'")
                    raw = loaded[keys[0] if len(keys) == 1 else "depth"]
            else:
                raw = loaded
    except LeveError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise LeveError(f"{rel}: cannot read depth ({exc.__class__.__name__}: {shown(str(exc), quote=False)})") from exc
    raw = raw[..., 0] if raw.ndim == 3 and raw.shape[2] == 1 else raw
    if raw.ndim != 2 or not (np.issubdtype(raw.dtype, np.floating) or np.issubdtype(raw.dtype, np.integer)):
        raise LeveError(f"{rel}: depth must be a 2-D numeric array, got shape {raw.shape} dtype {raw.dtype}")
    return raw.astype(np.float64) * (1.0 if scale is None else scale)


def check_depth(depth: np.ndarray, rel: str, nan_invalid: bool) -> np.ndarray:
    """Refuse NaN/inf (or zero them with ``nan_invalid``), negative and all-zero depth; float32."""
    bad = ~np.isfinite(depth)
    if bad.any():
        if not nan_invalid:
            raise LeveError(f"{rel}: depth has {int(bad.sum())} NaN/inf value(s) (nan_invalid: true reads them as invalid)")
        depth = np.where(bad, 0.0, depth)
    if (depth < 0).any():
        raise LeveError(f"{rel}: depth has negative values (min {depth.min():g})")
    if not (depth > 0).any():
        raise LeveError(f"{rel}: depth is zero everywhere (no valid pixel)")
    return depth.astype(np.float32)


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Pillow's bilinear resize to (H, W) (antialiased when shrinking)."""
    if rgb.shape[:2] == size:
        return rgb
    return np.asarray(Image.fromarray(rgb).resize((size[1], size[0]), Image.Resampling.BILINEAR))


def resize_depth(depth: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest neighbour at pixel centres: output (i, j) takes input (floor((i+.5) h/H), floor((j+.5) w/W))."""
    h, w = depth.shape
    rows = np.minimum(((np.arange(size[0]) + 0.5) * h / size[0]).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(size[1]) + 0.5) * w / size[1]).astype(np.int64), w - 1)
    return depth[rows[:, None], cols[None, :]]


# --------------------------------------------------------------------------- loading


@dataclass
class FolderLoader:
    """Sample ``i`` of one split: RGB (image or video frame), depth if any, metadata. Picklable."""

    root: str
    items: list[Item]
    keyframes: dict[str, tuple[int, ...]]  # video -> keyframe timestamps
    depth_scale: float | None
    nan_invalid: bool
    resize: tuple[int, int] | None
    with_depth: bool

    def __call__(self, i: int) -> tuple[dict[str, Any], dict[str, Any]]:
        it = self.items[i]
        path = Path(self.root) / it.rgb
        if it.frame < 0:
            try:
                data = path.read_bytes()
            except OSError as exc:
                raise LeveError(f"{path}: cannot read ({exc.strerror or exc})") from exc
            rgb = oriented(decode_rgb(data, str(path)), it.orientation)
        else:
            rgb = read_frame(str(path), it.pts, self.keyframes[it.rgb])
        if rgb.shape[:2] != (it.height, it.width):
            raise LeveError(f"{path}: decoded {rgb.shape[0]}x{rgb.shape[1]}, listed as {it.height}x{it.width} (changed?)")
        arrays: dict[str, Any] = {"rgb": rgb}
        depth_max = 0.0
        if self.with_depth:
            assert it.depth is not None
            dpath = Path(self.root) / it.depth
            depth = check_depth(read_depth(dpath, str(dpath), self.depth_scale), str(dpath), self.nan_invalid)
            depth = oriented(depth, it.orientation)
            if depth.shape != rgb.shape[:2]:
                raise LeveError(f"{dpath}: depth is {depth.shape[0]}x{depth.shape[1]} but its image {path} "
                                f"is {rgb.shape[0]}x{rgb.shape[1]}")
            arrays["depth"] = resize_depth(depth, self.resize) if self.resize else depth
            depth_max = float(arrays["depth"].max())
        if self.resize:
            arrays["rgb"] = resize_rgb(rgb, self.resize)
        h, w = arrays["rgb"].shape[:2]
        meta = {"source": it.rgb, "depth_source": it.depth or "", "scene": it.scene, "frame": it.frame,
                "time": it.time, "height": h, "width": w, "source_height": it.height, "source_width": it.width,
                "depth_max": depth_max}
        return arrays, meta


# --------------------------------------------------------------------------- prepare


def _source(cfg: Config) -> tuple[Path, str]:
    if cfg.out is None:
        raise LeveError("prepare: the folder adapter needs `out` (leve prepare folder NAME sets data/zarr/NAME.zarr)")
    name = cfg.out.name.removesuffix(".zarr")
    if cfg.source is None:
        raise LeveError(f"prepare.{name}: no source; pass --source DIR (or set prepare.{name}.source)")
    root = Path(cfg.source)
    if not root.exists():
        raise LeveError(f"{root}: source not found")
    if cfg.depth not in ("auto", "none"):
        raise LeveError(f"prepare.{name}.depth must be auto or none, got '{cfg.depth}'")
    if cfg.video_fps is not None and (cfg.video_fps <= 0 or cfg.video_every != 1):
        raise LeveError(f"prepare.{name}: set video_fps (> 0) or video_every, not both")
    if cfg.video_every < 1:
        raise LeveError(f"prepare.{name}.video_every must be >= 1, got {cfg.video_every}")
    return root, name


def plan(cfg: Config) -> tuple[list[SplitSource], dict[str, Any], str]:
    """Find, pair, split and check the samples; the split sources, root attributes and identity.
    Everything that can be checked from names and headers is refused here, before any writing."""
    root, name = _source(cfg)
    csv_splits: dict[str, str] = {}
    if cfg.pairs_csv is not None:
        if not root.is_dir():
            raise LeveError(f"{root}: with pairs_csv the source must be the folder the CSV's paths start from")
        items, csv_splits = read_pairs_csv(cfg, root)
        infos: dict[str, VideoInfo] = {}
        other: list[str] = []
    else:
        items, infos, other = find_items(cfg, root)
    base = root if root.is_dir() else root.parent
    if not items:
        raise LeveError(f"{root}: no images ({', '.join(IMAGE_EXTENSIONS)}) or videos found")
    parts = assign_splits(items, cfg, name, csv_splits)
    resize = parse_sizes(cfg.sizes, name)
    keyframes = {rel: info.keyframes for rel, info in infos.items()}
    sources, has_depth = [], {}
    for split, its in parts.items():
        with_depth = its[0].depth is not None
        unpaired = next((it for it in its if (it.depth is not None) != with_depth), None)
        if unpaired is not None:
            odd = next(it for it in its if it.depth is None)
            raise LeveError(f"{base / odd.rgb}: no depth map, but other samples of split '{split}' have one "
                            f"(e.g. {next(it.depth for it in its if it.depth)}); a split has depth for all or none")
        check_pairs(its, cfg, base, name)
        h, w = split_shape(split, its, cfg, base, name)
        has_depth[split] = with_depth
        spec = SplitSpec(split, len(its), dataset_arrays(h, w, depth=with_depth), META,
                         attrs={"split": split, "has_depth": with_depth})
        loader = FolderLoader(str(base), its, keyframes, cfg.depth_scale, cfg.nan_invalid, resize, with_depth)
        sources.append(SplitSource(spec, loader))
    any_depth = any(has_depth.values())
    params = {k: v for k, v in config_dict(cfg).items() if k not in ("out", "workers", "source")}
    listing = [_stat(base / rel, rel) for rel in sorted({it.rgb for it in items} | {it.depth for it in items if it.depth})]
    attrs = {
        "dataset": name,
        "adapter": "folder",
        "units": cfg.units if any_depth else None,
        "max_depth": cfg.max_depth,
        "has_depth": has_depth,
        "depth_encoding": _encoding(cfg) if any_depth else "none",
        "sources": [{"path": str(root), "files": len(listing), "bytes": sum(f[1] for f in listing)}],
        "videos": {rel: {"frames": len(i.pts), "kept": sum(1 for it in items if it.rgb == rel)} for rel, i in infos.items()},
        "splits": {s: len(v) for s, v in parts.items()},
        "scenes": {s: sorted({it.scene for it in v}) for s, v in parts.items()},
        "skipped_files": other[:20],
        "params": params,
    }
    if other:
        console.print(f"{name}: {len(other)} other file(s) ignored (first: {other[0]})")
    assignment = {s: [_sample_id(it) for it in v] for s, v in parts.items()}
    return sources, attrs, fingerprint([params, listing, assignment])


def _stat(path: Path, rel: str) -> tuple[str, int, int]:
    st = path.stat()
    return rel, st.st_size, st.st_mtime_ns


def _encoding(cfg: Config) -> str:
    scale = "1 for .npy/.npz (PNG needs one)" if cfg.depth_scale is None else f"{cfg.depth_scale:g}"
    return f"{cfg.units} = stored value x {scale}; 0 = invalid"


def final_attrs(max_depth: float | None) -> FinalAttrs:
    """Root attributes known once every sample is written: the largest valid depth, and
    ``max_depth`` when the params leave it to the data."""

    def attrs(meta: dict[str, dict[str, list[Any]]]) -> dict[str, Any]:
        values = [v for m in meta.values() for v in m["depth_max"] if v > 0]
        if not values:
            return {}
        observed = float(str(np.float32(max(values))))  # the stored float32, shortest decimal (6.836, not 6.8359999)
        return {"depth_max_observed": observed, "max_depth": max_depth if max_depth is not None else observed}

    return attrs


def prepare(cfg: Config, force: bool = False, show_progress: bool = True) -> BuildResult:
    """Build ``cfg.out`` from the folder, CSV or video(s) at ``cfg.source``."""
    sources, attrs, identity = plan(cfg)
    assert cfg.out is not None
    try:
        return build_store(cfg.out, attrs, identity, sources, cfg.workers, cfg.block_size, force, show_progress,
                           final_attrs=final_attrs(cfg.max_depth))
    finally:
        close_videos()
