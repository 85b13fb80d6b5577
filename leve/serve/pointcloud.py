"""The point-cloud download of ``leve serve``: the intrinsics of an upload (its EXIF focal
length, else the assumed field of view ``serve.pointcloud_fov_deg``, and the response says which
and why) or of a bundled synthetic room (the camera that rendered it)."""

from __future__ import annotations

from dataclasses import replace

from leve.errors import LeveError
from leve.outputs.intrinsics import Intrinsics, from_exif, from_fov


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
