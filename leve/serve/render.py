"""What the page shows: downscaled images as data URLs and a colour bar (in metres for a metric model).

The depth picture uses :func:`leve.predict.colorize` (inverse depth scaled to the image's own
range, near = bright), so colour is linear in ``1/depth``: colour position
``t(d) = (1/d - 1/d_max) / (1/d_min - 1/d_max)``. The bar runs from ``t = 0`` (far, top)
to ``t = 1`` (near, bottom) and its metre ticks sit at ``t(d)``.
"""

from __future__ import annotations

import base64
import io
import math

import numpy as np
from PIL import Image

from leve.store.images import encode_png

BAR_STEPS = 256
MIN_TICK_GAP = 0.07  # fraction of the bar height between two labels


def data_url(data: bytes, mime: str) -> str:
    """``data:`` URL for inline images."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def display_image(rgb: np.ndarray, max_side: int, fmt: str = "PNG") -> bytes:
    """Encode (H, W, 3) uint8 for the page, downscaled so the longer side is at most ``max_side``."""
    img = Image.fromarray(rgb)
    scale = max_side / max(img.size)
    if scale < 1:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.LANCZOS)
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def display_depth(depth: np.ndarray, cmap: str, max_side: int) -> bytes:
    """The coloured depth picture for the page (PNG): the map is first shrunk to ``max_side`` by area
    averaging, then coloured by :func:`leve.predict.colorize` (colouring a 24-megapixel map whole
    would take gigabytes of float64 RGBA for a picture the page shows at 1024 pixels)."""
    from leve.predict import colorize

    h, w = depth.shape
    scale = max_side / max(h, w)
    if scale < 1:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        depth = np.asarray(Image.fromarray(depth.astype(np.float32)).resize(size, Image.BOX))
    return encode_png(colorize(depth, cmap))


def metres(m: float) -> str:
    """A tick label: ``2 m``, ``0.45 m``, ``12.5 m``."""
    return f"{float(f'{m:.{1 if m >= 10 else 2}f}'):g} m"


def bar_position(depth_m: float, d_min: float, d_max: float) -> float:
    """Where ``depth_m`` sits on the bar: 0 = ``d_max`` (top), 1 = ``d_min`` (bottom)."""
    if d_max <= d_min:
        return 0.0
    return (1.0 / depth_m - 1.0 / d_max) / (1.0 / d_min - 1.0 / d_max)


def colour_bar(cmap: str) -> bytes:
    """A 1-pixel-wide PNG: row ``r`` has the colour of ``t = r / (BAR_STEPS - 1)``."""
    from matplotlib import colormaps

    t = np.linspace(0.0, 1.0, BAR_STEPS)
    rows = (colormaps[cmap](t)[:, :3] * 255 + 0.5).astype(np.uint8)
    return encode_png(rows[:, None, :].copy())


def nice_ticks(d_min: float, d_max: float) -> list[dict[str, float]]:
    """Labels ``{"m": depth, "pos": t}``: both ends plus round values (1, 2, 5 x 10^k) that fit."""
    if not d_max > d_min:
        return [{"m": round(d_min, 3), "pos": 0.0}]
    ticks = [{"m": d_max, "pos": 0.0}, {"m": d_min, "pos": 1.0}]
    for value in _round_values(d_min, d_max):
        pos = bar_position(value, d_min, d_max)
        if all(abs(pos - t["pos"]) >= MIN_TICK_GAP for t in ticks):
            ticks.append({"m": value, "pos": pos})
    return sorted(({"m": round(t["m"], 3), "pos": round(t["pos"], 5)} for t in ticks), key=lambda t: t["pos"])


def _round_values(lo: float, hi: float) -> list[float]:
    """1, 2, 5 x 10^k strictly inside (lo, hi), nearest first (they spread most on the bar)."""
    out = []
    for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        out += [m * 10.0**k for m in (1, 2, 5) if lo < m * 10.0**k < hi]
    return sorted(out)
