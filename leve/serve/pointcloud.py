"""The downloads of ``leve serve``: the intrinsics of an upload's point cloud (its EXIF focal
length, else the assumed field of view ``serve.pointcloud_fov_deg``, and the response says which
and why) or of a bundled synthetic room (the camera that rendered it); the ``.npy`` and ``.ply``
bytes streamed a block of rows at a time (:func:`npy_chunks`, :func:`cloud_chunks`)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import replace

import numpy as np

from leve.errors import LeveError
from leve.outputs.intrinsics import Intrinsics, from_exif, from_fov
from leve.outputs.pointcloud import PLY_PROPERTIES, VERTEX


def upload_intrinsics(data: bytes, name: str, height: int, width: int, fov_deg: float) -> Intrinsics:
    """From the upload's EXIF ``FocalLengthIn35mmFilm``; without one, or with an implausible one,
    ``fov_deg`` across the width, with the reason in ``source``."""
    try:
        found = from_exif(data, name, height, width)
        why = "no EXIF focal length"
    except LeveError as exc:
        found, why = None, str(exc).split("; give")[0]
    if found is not None:
        return found
    assumed = from_fov(fov_deg, height, width)
    return replace(assumed, source=f"assumed {fov_deg:g} deg horizontal field of view ({why})")


def sample_intrinsics(height: int, width: int) -> Intrinsics:
    """The camera that rendered the synthetic rooms (NYU-like, scaled to the sample size)."""
    from leve.datasets.synthetic import Camera

    cam = Camera.nyu_like(height, width)
    return Intrinsics(cam.fx, cam.fy, cam.cx, cam.cy, "the synthetic room's camera")


# --------------------------------------------------------------------------- streamed downloads

CHUNK_BYTES = 4_000_000  # about this much is built at a time, whatever the image size


def npy_chunks(depth: np.ndarray) -> tuple[Iterator[bytes], int]:
    """The ``.npy`` of ``depth`` as float32 (the bytes of :func:`leve.predict.depth_npy`), a block of
    rows at a time, and its size in bytes."""
    depth = np.ascontiguousarray(depth, dtype=np.float32)
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, np.lib.format.header_data_from_array_1_0(depth))
    header = buf.getvalue()
    rows = _rows_per_chunk(depth, 4)

    def chunks() -> Iterator[bytes]:
        yield header
        for r in range(0, depth.shape[0], rows):
            yield depth[r : r + rows].tobytes()

    return chunks(), len(header) + depth.nbytes


def cloud_chunks(depth: np.ndarray, rgb: np.ndarray, k: Intrinsics) -> tuple[Iterator[bytes], int]:
    """The PLY of :func:`leve.outputs.pointcloud.cloud_bytes` (same bytes), built a block of rows at a
    time so that a 24-megapixel cloud never holds more than :data:`CHUNK_BYTES` or so; and its size."""
    if rgb.shape[:2] != depth.shape:
        raise ValueError(f"rgb {rgb.shape[:2]} and depth {depth.shape} differ in size")
    rows = _rows_per_chunk(depth, VERTEX.itemsize * 8)  # the float64 arithmetic of a block dominates
    count = sum(int(np.count_nonzero(_valid(depth[r : r + rows]))) for r in range(0, depth.shape[0], rows))
    comments = ("leve point cloud: camera space, x right, y down, z forward, metres", f"intrinsics {k.describe()}")
    lines = ["ply", "format binary_little_endian 1.0", *(f"comment {' '.join(c.split())}" for c in comments),
             f"element vertex {count}", *PLY_PROPERTIES, "end_header"]
    header = ("\n".join(lines) + "\n").encode("ascii", "replace")

    def chunks() -> Iterator[bytes]:
        yield header
        for r in range(0, depth.shape[0], rows):
            block = depth[r : r + rows].astype(np.float64)
            valid = _valid(block)
            v, u = np.nonzero(valid)
            v = v + r
            z = block[valid]
            vertices = np.empty(len(z), VERTEX)
            vertices["x"] = (u - k.cx) * z / k.fx
            vertices["y"] = (v - k.cy) * z / k.fy
            vertices["z"] = z
            for i, name in enumerate(("red", "green", "blue")):
                vertices[name] = rgb[r : r + rows][valid][:, i]
            yield vertices.tobytes()

    return chunks(), len(header) + count * VERTEX.itemsize


def _valid(depth: np.ndarray) -> np.ndarray:
    return np.isfinite(depth) & (depth > 0)


def _rows_per_chunk(depth: np.ndarray, bytes_per_pixel: int) -> int:
    return max(1, CHUNK_BYTES // max(1, depth.shape[1] * bytes_per_pixel))
