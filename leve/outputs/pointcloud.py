"""Coloured point clouds from metric depth: back-projection through pinhole intrinsics
(:mod:`leve.outputs.intrinsics` for the convention) written as binary little-endian PLY, the
format MeshLab, CloudCompare, Open3D and ``plyfile`` read.

Depth is read as camera-space z (what the stores hold), not the length along the ray. Pixels
with depth that is not finite and positive are left out. A relative-depth checkpoint has no
metres: :func:`check_cloud` refuses it unless a ``scale`` (metres per unit of its depth) is given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from leve.atomic import write_bytes
from leve.errors import LeveError, shown
from leve.outputs.intrinsics import CameraOptions, Intrinsics, check_camera

VERTEX = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])
PLY_PROPERTIES = ("property float x", "property float y", "property float z",
                  "property uchar red", "property uchar green", "property uchar blue")


@dataclass(frozen=True)
class CloudOptions:
    """``--pointcloud``: the camera, and the metres per unit of depth for a relative checkpoint."""

    camera: CameraOptions = field(default_factory=CameraOptions)
    scale: float | None = None


def check_cloud(opts: CloudOptions, checkpoint: str | Path, depth_kind: str) -> None:
    """Refuse a relative-depth checkpoint without ``--scale``, a bad scale or bad camera values."""
    if opts.scale is not None and not (math.isfinite(opts.scale) and opts.scale > 0):
        raise LeveError(f"--scale must be a positive number of metres per unit, got {opts.scale}")
    if depth_kind == "relative" and opts.scale is None:
        raise LeveError(f"{checkpoint}: relative depth (distilled without depth) has no metres for --pointcloud; "
                        "give --scale S (metres per unit of its depth)")
    check_camera(opts.camera)


def backproject(depth: np.ndarray, k: Intrinsics) -> tuple[np.ndarray, np.ndarray]:
    """Points (N, 3) float32 in camera space (x right, y down, z forward) of the valid pixels,
    and the boolean (H, W) mask of those pixels (row-major order, as the points)."""
    valid = np.isfinite(depth) & (depth > 0)
    v, u = np.nonzero(valid)
    z = depth[valid].astype(np.float64)
    x = (u - k.cx) * z / k.fx
    y = (v - k.cy) * z / k.fy
    return np.stack([x, y, z], axis=1).astype(np.float32), valid


def ply_bytes(points: np.ndarray, colours: np.ndarray, comments: tuple[str, ...] = ()) -> bytes:
    """A binary little-endian PLY of ``points`` (N, 3) with ``colours`` (N, 3) uint8."""
    vertices = np.empty(len(points), VERTEX)
    for i, name in enumerate("xyz"):
        vertices[name] = points[:, i]
    for i, name in enumerate(("red", "green", "blue")):
        vertices[name] = colours[:, i]
    lines = ["ply", "format binary_little_endian 1.0",
             *(f"comment {' '.join(c.split())}" for c in comments),
             f"element vertex {len(points)}", *PLY_PROPERTIES, "end_header"]
    return ("\n".join(lines) + "\n").encode("ascii", "replace") + vertices.tobytes()


def cloud_bytes(depth: np.ndarray, rgb: np.ndarray, k: Intrinsics, scale: float = 1.0) -> bytes:
    """The PLY of an image: every pixel with valid depth (times ``scale``), coloured by ``rgb``."""
    if rgb.shape[:2] != depth.shape:
        raise ValueError(f"rgb {rgb.shape[:2]} and depth {depth.shape} differ in size")
    points, valid = backproject(depth.astype(np.float64) * scale, k)
    comments = ("leve point cloud: camera space, x right, y down, z forward, metres",
                f"intrinsics {k.describe()}", *((f"depth scale {scale:g} m per unit",) if scale != 1.0 else ()))
    return ply_bytes(points, rgb[valid], comments)


def write_cloud(path: Path, depth: np.ndarray, rgb: np.ndarray, k: Intrinsics, scale: float = 1.0) -> Path:
    """Write :func:`cloud_bytes` to ``path`` (atomically: :func:`leve.atomic.write_bytes`)."""
    return write_bytes(path, cloud_bytes(depth, rgb, k, scale))


def image_cameras(images: list[Path], opts: CloudOptions) -> dict[Path, Intrinsics]:
    """Each image's intrinsics (given, the store's or its EXIF), resolved before anything is
    predicted so a missing or lying focal length stops the run at once."""
    from PIL import Image

    from leve.outputs.intrinsics import resolve

    cameras = {}
    for path in images:
        data = path.read_bytes()
        try:
            with Image.open(path) as img:
                width, height = img.size
        except Exception as exc:  # PIL raises many types on malformed headers
            raise LeveError(f"{path}: cannot read image header "
                            f"({exc.__class__.__name__}: {shown(str(exc), quote=False)})") from exc
        cameras[path] = resolve(opts.camera, height, width, str(path), data)
    return cameras
