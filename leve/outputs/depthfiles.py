"""The depth files of ``leve predict`` (the module doc of :mod:`leve.predict` describes them): which
image files are inputs, and :class:`DepthEncoding`, what one checkpoint's depth files hold. Here, below
:mod:`leve.predict`, because the video output (:mod:`leve.outputs.video`) writes and reads them too."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np

from leve.models.depth import MIN_DEPTH_FRACTION
from leve.store.images import encode_png

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
DEPTH_FORMATS = ("png16", "npy")
DISPARITY_PNG_SCALE = 65535  # a relative model's 16-bit PNG holds round(65535 * r), r its disparity in [0.01, 1]


def depth_png16(depth: np.ndarray) -> bytes:
    """Metric depth as a 16-bit PNG in millimetres (rounded, clipped to 0..65535)."""
    return encode_png(np.clip(np.rint(depth * 1000.0), 0, 65535).astype(np.uint16))


def depth_npy(depth: np.ndarray) -> bytes:
    """Metric depth in metres as ``.npy`` bytes (float32)."""
    buf = io.BytesIO()
    np.save(buf, depth.astype(np.float32))
    return buf.getvalue()


@dataclass(frozen=True)
class DepthEncoding:
    """What the depth files of one checkpoint hold (see the module doc): metric depth (mm in a 16-bit
    PNG, metres in ``.npy``), or, for a relative checkpoint without a scale, its disparity ``r``
    (``round(65535 * r)`` in a 16-bit PNG, ``r`` in ``.npy``). ``scale`` (``--scale``) multiplies the depth
    first and makes the files metric. ``encode`` takes the depth :func:`leve.predict.predict_depth` returns (metres, or
    the relative depth ``d = (max_depth / 100) / r``); ``decode`` inverts it."""

    depth_kind: str = "metric"  # the checkpoint's: metric | relative
    depth_format: str = "png16"  # png16 | npy
    max_depth: float = 10.0  # the checkpoint's (a relative model's depth unit is max_depth / 100)
    scale: float | None = None  # metres per unit of depth (--scale)

    @property
    def metric(self) -> bool:
        """Whether the files hold metres (a metric checkpoint, or any checkpoint with ``--scale``)."""
        return self.depth_kind != "relative" or self.scale is not None

    @property
    def suffix(self) -> str:
        """The depth file's name after the image's stem."""
        if self.metric:
            return "_depth.npy" if self.depth_format == "npy" else "_depth16.png"
        return "_disp.npy" if self.depth_format == "npy" else "_disp16.png"

    def disparity(self, depth: np.ndarray) -> np.ndarray:
        """A relative model's disparity ``r = (max_depth / 100) / d`` (near = large, in [0.01, 1])."""
        unit = self.max_depth * MIN_DEPTH_FRACTION
        return (unit / np.maximum(np.asarray(depth, dtype=np.float64), unit * 1e-6)).astype(np.float32)

    def encode(self, depth: np.ndarray) -> bytes:
        """The depth file's bytes for ``depth`` (as :func:`leve.predict.predict_depth` returns it)."""
        if self.metric:
            metres = depth * self.scale if self.scale is not None else depth
            return depth_npy(metres) if self.depth_format == "npy" else depth_png16(metres)
        r = self.disparity(depth)
        if self.depth_format == "npy":
            return depth_npy(r)
        return encode_png(np.clip(np.rint(r.astype(np.float64) * DISPARITY_PNG_SCALE), 0, 65535).astype(np.uint16))

    def decode(self, data: bytes, name: str = "depth") -> np.ndarray:
        """Depth in :func:`leve.predict.predict_depth`'s units from a file :meth:`encode` wrote (float32)."""
        if self.depth_format == "npy":
            stored = np.load(io.BytesIO(data)).astype(np.float64)
        else:
            from leve.store.images import decode_gray

            stored = decode_gray(data, name, 16).astype(np.float64)
        if self.metric:
            metres = stored if self.depth_format == "npy" else stored / 1000.0
            return (metres / self.scale if self.scale is not None else metres).astype(np.float32)
        r = stored if self.depth_format == "npy" else stored / DISPARITY_PNG_SCALE
        unit = self.max_depth * MIN_DEPTH_FRACTION
        return (unit / np.maximum(r, 1.0 / DISPARITY_PNG_SCALE)).astype(np.float32)

    def describe(self) -> str:
        """One line: what the depth files hold."""
        what = "_depth.npy in metres" if self.depth_format == "npy" else "_depth16.png in millimetres"
        if self.depth_kind != "relative":
            return f"metric depth: <image>{what}" + (f", times --scale {self.scale:g}" if self.scale is not None else "")
        unit = f"d = {self.max_depth * MIN_DEPTH_FRACTION:g} / r"
        if self.scale is not None:
            return (f"metric depth from relative depth x --scale {self.scale:g} m per unit ({unit}, r its disparity): "
                    f"<image>{what}")
        stored = "r (float32)" if self.depth_format == "npy" else f"round({DISPARITY_PNG_SCALE} * r), 16-bit"
        return (f"relative (inverse depth), not metres: <image>{self.suffix} holds {stored}, r = the model's "
                f"disparity in [0.01, 1] (near = large); relative depth {unit}, right up to an unknown scale")
