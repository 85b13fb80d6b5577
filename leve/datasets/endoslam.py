"""EndoSLAM, synthetic UnityCam part: ``leve prepare endoslam`` -> ``data/zarr/endoslam.zarr``.

The source is the Mendeley Data archive (dataset cd2rtzm23r; zips nested in zips are
unpacked into ``raw`` as needed) or a folder holding ``UnityCam/`` (or such zips).
Per organ (``Colon``, ``Small Intestine``, ``Stomach``) frames ``Frames/image_NNNN.png``
pair with ``Pixelwise Depths/aov_image_NNNN.png``, an 8-bit RGBA PNG whose R channel is
the depth. The dataset describes these values as relative distances in 0..1, so the
store holds ``depth = R / 255`` in *relative* units with max depth 1 (as the thesis
used); they are not metres. ``per_organ`` frames are picked from each organ by the
rule ``selection`` (see :func:`select`), skipping frames that lack an image or a depth.

``depth`` chooses how the R channel becomes depth (:data:`DEPTHS`): ``r255`` (default) stores
``R / 255`` and a zero R is no measurement (0 in the store, left out of every metric);
``thesis`` stores ``R / 255 + 1e-6`` as the thesis code's ``EndoSLAMDataset`` read it
(``np.array(depth) / 255.0 + 1e-6``, in float64 then cast to float32 by its ``ToTensor``), so
every pixel, zero R included, is a measurement and is scored: what its Table 9.8 computed
(a REL of 35-46 comes from those 1e-6 denominators).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from leve.datasets.build import BuildResult, SplitSource, build_store, store_path
from leve.errors import LeveError
from leve.params import config_dict, param, params_section
from leve.progress import console
from leve.sources.archive import Member, list_tree
from leve.sources.download import obtain
from leve.store.format import SplitSpec, dataset_arrays, fingerprint
from leve.store.images import decode_channel, decode_rgb

MENDELEY_PAGE = "https://data.mendeley.com/datasets/cd2rtzm23r/1"
ORGANS = ("Colon", "Small Intestine", "Stomach")
SELECTIONS = ("even", "first")
DEPTHS = ("r255", "thesis")  # R/255 with 0 = no measurement | R/255 + 1e-6, every pixel scored (the thesis code)
THESIS_DEPTH_OFFSET = 1e-6


@params_section("prepare.endoslam")
@dataclass
class Config:
    """Params of ``prepare.endoslam``."""

    out: Path | None = param()  # null: <paths.stores>/endoslam.zarr
    raw: Path = param()  # download and unpacked inner zips
    source: Path | None = param()  # the archive (zip) or a folder with UnityCam/
    url: str | None = param()  # direct URL of the archive, when you have one
    sha256: str | None = param()  # pin the archive's hash
    organs: tuple[str, ...] = param()
    per_organ: int = param()
    # even: k frames at sorted-pair positions round(i (n-1) / (k-1)), i = 0..k-1; first: the first k
    selection: str = param()
    max_depth: float = param()
    # r255: depth = R/255, zero R = no measurement | thesis: R/255 + 1e-6, every pixel scored (Table 9.8)
    depth: str = param()
    workers: int = param()
    block_size: int = param()


_PATTERN = re.compile(
    r"(?:^|/)UnityCam/(?:[^/]+/)*?(?P<organ>Colon|Small Intestine|Stomach)/(?:[^/]+/)*?"
    r"(?P<kind>Frames|Pixelwise Depths)/(?P<aov>aov_)?image_(?P<num>\d+)\.png$"
)


def index_frames(members: list[Member]) -> dict[str, dict[str, dict[int, Member]]]:
    """``organ -> {"image"|"depth" -> {frame number -> member}}`` from a listing of the source."""
    found: dict[str, dict[str, dict[int, Member]]] = {o: {"image": {}, "depth": {}} for o in ORGANS}
    for m in members:
        hit = _PATTERN.search(re.sub(r"\.zip/", "/", m.logical or m.path))
        if hit is None:
            continue
        is_depth = hit["kind"] == "Pixelwise Depths"
        if is_depth != bool(hit["aov"]):
            continue  # e.g. an image_*.png inside "Pixelwise Depths"
        found[hit["organ"]]["depth" if is_depth else "image"][int(hit["num"])] = m
    return found


def select(numbers: list[int], k: int, rule: str) -> list[int]:
    """Pick ``k`` of the sorted frame ``numbers`` deterministically (all of them when fewer)."""
    numbers = sorted(numbers)
    n = len(numbers)
    if n <= k:
        return numbers
    if rule == "first":
        return numbers[:k]
    if rule == "even":
        if k == 1:
            return [numbers[0]]
        return [numbers[int(p)] for p in np.round(np.arange(k) * (n - 1) / (k - 1))]
    raise LeveError(f"prepare.endoslam.selection must be one of {SELECTIONS}, got '{rule}'")


def resolve_source(cfg: Config, show_progress: bool = True) -> tuple[Path, dict[str, Any]]:
    """The local archive or folder to read, and its record (size and sha256 for a file)."""
    if cfg.source is not None:
        src = Path(cfg.source)
        if src.is_dir():
            return src, {"path": str(src)}
        if not src.is_file():
            raise LeveError(f"{src}: EndoSLAM source not found (give the archive or a folder with UnityCam/)")
    elif not cfg.url:
        raise LeveError(
            f"prepare.endoslam: no source; download the EndoSLAM archive from {MENDELEY_PAGE} "
            "and pass --source FILE_OR_FOLDER (or set prepare.endoslam.url)"
        )
    src, digest = obtain(cfg.source, cfg.url or "", Path(cfg.raw) / "EndoSLAM.zip", cfg.sha256, show_progress=show_progress)
    return src, {"path": str(src), "url": cfg.url, "size": src.stat().st_size, "sha256": digest}


@dataclass
class EndoLoader:
    """Sample ``i``: frame RGB and depth R/255 (+ ``offset``; relative units). Picklable."""

    items: list[tuple[str, int, Member, Member]]  # organ, frame number, image, depth
    height: int
    width: int
    offset: float = 0.0  # THESIS_DEPTH_OFFSET for depth "thesis"

    def __call__(self, i: int) -> tuple[dict[str, Any], dict[str, Any]]:
        organ, num, img_m, dep_m = self.items[i]
        img_bytes, dep_bytes = img_m.read(), dep_m.read()
        rgb = decode_rgb(img_bytes, img_m.name)
        red = decode_channel(dep_bytes, dep_m.name, 0)
        for name, arr in ((img_m.name, rgb), (dep_m.name, red)):
            if arr.shape[:2] != (self.height, self.width):
                raise LeveError(f"{name}: is {arr.shape[0]}x{arr.shape[1]}, expected {self.height}x{self.width}")
        depth = red_to_depth(red, self.offset)
        meta = {
            "source": img_m.logical or img_m.name,
            "depth_source": dep_m.logical or dep_m.name,
            "organ": organ,
            "frame": num,
            "height": self.height,
            "width": self.width,
            "rgb_sha256": hashlib.sha256(img_bytes).hexdigest(),
            "depth_sha256": hashlib.sha256(dep_bytes).hexdigest(),
        }
        return {"rgb": rgb, "depth": depth}, meta


def red_to_depth(red: np.ndarray, offset: float = 0.0) -> np.ndarray:
    """Depth (float32) from the 8-bit R channel: ``R / 255`` in float32, or with an ``offset`` the thesis
    code's ``R / 255.0 + offset`` computed in float64 and then cast to float32."""
    if offset == 0.0:
        return (red.astype(np.float32) / np.float32(255.0)).astype(np.float32)
    return (red.astype(np.float64) / 255.0 + offset).astype(np.float32)


META = {
    "source": "str", "depth_source": "str", "organ": "str", "frame": "int64", "height": "int32", "width": "int32",
    "rgb_sha256": "str", "depth_sha256": "str",
}


def plan(cfg: Config, show_progress: bool = True) -> tuple[EndoLoader, dict[str, Any], dict[str, list[int]]]:
    """Find, pair and select the frames; returns the loader, root attributes and organ ranges."""
    unknown = [o for o in cfg.organs if o not in ORGANS]
    if unknown:
        raise LeveError(f"prepare.endoslam.organs: unknown organ(s) {unknown}; known: {list(ORGANS)}")
    if cfg.per_organ < 1:
        raise LeveError(f"prepare.endoslam.per_organ must be >= 1, got {cfg.per_organ}")
    if cfg.depth not in DEPTHS:
        raise LeveError(f"prepare.endoslam.depth must be one of {', '.join(DEPTHS)}, got '{cfg.depth}'")
    src, record = resolve_source(cfg, show_progress)
    found = index_frames(list_tree(src, Path(cfg.raw) / "unpacked"))
    items: list[tuple[str, int, Member, Member]] = []
    ranges: dict[str, list[int]] = {}
    report: dict[str, Any] = {}
    for organ in cfg.organs:
        images, depths = found[organ]["image"], found[organ]["depth"]
        if not images and not depths:
            raise LeveError(f"{src}: no UnityCam/{organ}/Frames or 'Pixelwise Depths' images found")
        pairs = sorted(set(images) & set(depths))
        no_depth, no_image = sorted(set(images) - set(depths)), sorted(set(depths) - set(images))
        if no_depth or no_image:
            console.print(f"endoslam {organ}: skipped {len(no_depth)} frame(s) without depth "
                          f"{no_depth[:5]} and {len(no_image)} depth map(s) without frame {no_image[:5]}")
        chosen = select(pairs, cfg.per_organ, cfg.selection)
        if len(chosen) < cfg.per_organ:
            console.print(f"endoslam {organ}: only {len(chosen)} complete pairs (wanted {cfg.per_organ})")
        ranges[organ] = [len(items), len(items) + len(chosen)]
        items += [(organ, n, images[n], depths[n]) for n in chosen]
        report[organ] = {"pairs": len(pairs), "selected": len(chosen), "missing_depth": no_depth,
                         "missing_image": no_image, "frames": chosen}
    if not items:
        raise LeveError(f"{src}: no frame has both an image and a depth map")
    first = decode_rgb(items[0][2].read(), items[0][2].name)
    thesis = cfg.depth == "thesis"
    loader = EndoLoader(items, first.shape[0], first.shape[1], THESIS_DEPTH_OFFSET if thesis else 0.0)
    attrs = {
        "dataset": "endoslam",
        "splits": ["test"],
        "units": "relative",
        "units_note": "EndoSLAM UnityCam depth is a relative distance in 0..1 (not metres): depth = R/255",
        "max_depth": cfg.max_depth,
        "min_depth": 0.0,
        "depth": cfg.depth,
        "depth_encoding": ("R channel of the 8-bit RGBA aov_image PNG: R/255 + 1e-6 (float64, then float32), "
                           "every pixel a measurement, as the thesis code read it" if thesis else
                           "R channel of the 8-bit RGBA aov_image PNG, divided by 255; 0 = invalid"),
        "organs": list(cfg.organs),
        "selection": {"rule": cfg.selection, "per_organ": cfg.per_organ, "organs": report},
        "sources": [record],
        "params": {k: v for k, v in config_dict(cfg).items() if k != "workers"},
    }
    return loader, attrs, ranges


def prepare(cfg: Config, force: bool = False, show_progress: bool = True) -> BuildResult:
    """Build ``cfg.out`` with split ``test``; ``meta/organ`` and ``organ_ranges`` select an organ."""
    loader, attrs, ranges = plan(cfg, show_progress)
    spec = SplitSpec("test", len(loader.items), dataset_arrays(loader.height, loader.width), META,
                     attrs={"organ_ranges": ranges})
    fp = fingerprint({"attrs": attrs, "items": [(o, n) for o, n, _, _ in loader.items]})
    return build_store(store_path(cfg.out, "endoslam"), attrs, fp, [SplitSource(spec, loader)], cfg.workers, cfg.block_size,
                       force=force, show_progress=show_progress)
