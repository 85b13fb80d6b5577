"""Pinhole intrinsics for a point cloud: given (``--fx/--fy/--cx/--cy`` or ``--fov``), recorded
in a leve store (its ``intrinsics`` attribute), or from the image's EXIF focal length.

Pixel convention (OpenCV's, and :mod:`leve.datasets.synthetic`'s): pixel ``(v, u)`` (row, column,
0-based) is the point ``((u - cx) z / fx, (v - cy) z / fy, z)`` in camera space (x right, y down,
z forward); the default principal point is the image centre ``((W - 1) / 2, (H - 1) / 2)``.

EXIF: ``FocalLengthIn35mmFilm`` (tag 0xA405 in the Exif IFD) is the focal length a 36 x 24 mm
frame would need for the same field of view. Read, as crop factors are, along the diagonal
(43.27 mm for 36 x 24 mm), it gives ``f_px = f35 * sqrt(W^2 + H^2) / 43.27``, which is the same
for a rotated image. A value of 0 (EXIF's "unknown") or outside :data:`EXIF_FOCAL_35MM_RANGE` is
a lie for our purpose and is refused with one line naming the file.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leve.errors import LeveError, shown

EXIF_IFD, FOCAL_35MM_TAG = 0x8769, 0xA405
FILM_DIAGONAL_MM = math.hypot(36.0, 24.0)  # 43.27 mm
# 10 mm is a 130 degree diagonal field of view (wider lenses are fisheyes, which a pinhole does not
# describe); 3000 mm (0.8 degrees) is past the longest consumer superzoom.
EXIF_FOCAL_35MM_RANGE = (10.0, 3000.0)


@dataclass(frozen=True)
class Intrinsics:
    """Focal lengths and principal point in pixels, and where they came from."""

    fx: float
    fy: float
    cx: float
    cy: float
    source: str = "given"

    def describe(self) -> str:
        """One line for logs and PLY comments."""
        return f"fx={self.fx:.6g} fy={self.fy:.6g} cx={self.cx:.6g} cy={self.cy:.6g} ({self.source})"


@dataclass(frozen=True)
class CameraOptions:
    """What the user said about the camera (all optional)."""

    fx: float | None = None
    fy: float | None = None
    cx: float | None = None
    cy: float | None = None
    fov: float | None = None      # horizontal field of view, degrees
    store: Path | None = None     # a leve store whose ``intrinsics`` attribute describes the camera

    @property
    def given(self) -> bool:
        return self.fx is not None or self.fov is not None


def check_camera(opts: CameraOptions) -> None:
    """Refuse contradictory or impossible given values before anything is predicted."""
    if opts.fx is not None and opts.fov is not None:
        raise LeveError("--fx and --fov both given: give one")
    if opts.fx is None and any(v is not None for v in (opts.fy, opts.cx, opts.cy)):
        raise LeveError("--fy/--cx/--cy need --fx")
    for name in ("fx", "fy"):
        value = getattr(opts, name)
        if value is not None and not (math.isfinite(value) and value > 0):
            raise LeveError(f"--{name} must be a positive number of pixels, got {value}")
    if opts.fov is not None and not (math.isfinite(opts.fov) and 0 < opts.fov < 180):
        raise LeveError(f"--fov must be between 0 and 180 degrees, got {opts.fov}")
    if opts.store is not None and opts.given:
        raise LeveError(f"--intrinsics {opts.store} and --fx/--fov both given: give one")


def centre(height: int, width: int) -> tuple[float, float]:
    """The image centre (cx, cy) in the pixel-index convention."""
    return (width - 1) / 2.0, (height - 1) / 2.0


def from_fov(fov_deg: float, height: int, width: int) -> Intrinsics:
    """Square pixels, centred principal point, ``fov_deg`` across the image's width."""
    f = (width / 2.0) / math.tan(math.radians(fov_deg) / 2.0)
    return Intrinsics(f, f, *centre(height, width), source=f"given horizontal field of view {fov_deg:g} deg")


def from_given(opts: CameraOptions, height: int, width: int) -> Intrinsics:
    """``--fx`` (``--fy`` defaults to it, the principal point to the centre) or ``--fov``."""
    if opts.fov is not None:
        return from_fov(opts.fov, height, width)
    assert opts.fx is not None
    cx, cy = centre(height, width)
    return Intrinsics(opts.fx, opts.fy if opts.fy is not None else opts.fx,
                      cx if opts.cx is None else opts.cx, cy if opts.cy is None else opts.cy, "given")


def from_store(path: Path, height: int, width: int) -> Intrinsics:
    """The store's recorded intrinsics, scaled from its image size to ``height`` x ``width``."""
    from leve.store.reader import open_store

    store = open_store(path)
    k = store.attrs.get("intrinsics")
    if not isinstance(k, dict) or not all(isinstance(k.get(n), int | float) for n in ("fx", "fy", "cx", "cy")):
        raise LeveError(f"{path}: store records no intrinsics (attribute 'intrinsics' with fx, fy, cx, cy)")
    if not (all(math.isfinite(float(k[n])) for n in ("fx", "fy", "cx", "cy")) and k["fx"] > 0 and k["fy"] > 0):
        raise LeveError(f"{path}: store intrinsics are not positive finite focal lengths ({k})")
    if not store.splits:
        raise LeveError(f"{path}: store has no split to read its image size from")
    sh, sw = (int(k["height"]), int(k["width"])) if "height" in k and "width" in k else \
        store.split(store.splits[0]).array_shape
    if abs(height * sw - width * sh) > max(sw, sh):  # one pixel of rounding either way
        raise LeveError(f"{path}: store images are {sh}x{sw}, a different aspect ratio from {height}x{width}")
    sx, sy = width / sw, height / sh
    return Intrinsics(float(k["fx"]) * sx, float(k["fy"]) * sy, float(k["cx"]) * sx, float(k["cy"]) * sy,
                      f"store {path} ({sh}x{sw}, scaled)")


def exif_focal_35mm(data: bytes, name: str) -> float | None:
    """The EXIF ``FocalLengthIn35mmFilm`` of an image's bytes, or None without one."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            value: Any = img.getexif().get_ifd(EXIF_IFD).get(FOCAL_35MM_TAG)
    except Exception as exc:  # PIL raises many types on malformed EXIF
        raise LeveError(f"{name}: cannot read EXIF ({exc.__class__.__name__}: {shown(str(exc), quote=False)})") from exc
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise LeveError(f"{name}: EXIF FocalLengthIn35mmFilm is not a number ({shown(value)})") from None


def from_exif(data: bytes, name: str, height: int, width: int) -> Intrinsics | None:
    """Intrinsics from the EXIF 35 mm-equivalent focal length (see the module doc), None
    without one; a focal length of 0 or outside :data:`EXIF_FOCAL_35MM_RANGE` is refused."""
    f35 = exif_focal_35mm(data, name)
    if f35 is None:
        return None
    lo, hi = EXIF_FOCAL_35MM_RANGE
    if not (math.isfinite(f35) and lo <= f35 <= hi):
        raise LeveError(f"{name}: EXIF FocalLengthIn35mmFilm is {f35:g} mm, not a plausible focal length "
                        f"({lo:g}..{hi:g} mm); give --fov or --fx instead")
    f = f35 * math.hypot(width, height) / FILM_DIAGONAL_MM
    return Intrinsics(f, f, *centre(height, width), source=f"EXIF FocalLengthIn35mmFilm {f35:g} mm")


def resolve(opts: CameraOptions, height: int, width: int, name: str, data: bytes | None = None) -> Intrinsics:
    """Given values, else the store's, else the image's EXIF (``data``: its bytes), else one line."""
    if opts.given:
        return from_given(opts, height, width)
    if opts.store is not None:
        return from_store(opts.store, height, width)
    found = from_exif(data, name, height, width) if data is not None else None
    if found is None:
        raise LeveError(f"{name}: no intrinsics for the point cloud (no EXIF FocalLengthIn35mmFilm); "
                        "give --fov DEG, --fx [--fy --cx --cy] or --intrinsics STORE")
    return found
