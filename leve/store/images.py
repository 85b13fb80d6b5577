"""Image decoding with errors that name the file. Decoding goes through Pillow alone, so a
stored RGB equals the source decode bit for bit."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image

from leve.errors import LeveError

# A decompression bomb is refused well before it can exhaust memory.
Image.MAX_IMAGE_PIXELS = 64_000_000


def _open(data: bytes, name: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            img.load()
        return img
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise LeveError(f"{name}: image too large (decompression bomb?)") from exc
    except Exception as exc:  # PIL raises many types for corrupt data
        raise LeveError(f"{name}: cannot decode image ({exc.__class__.__name__}: {exc})") from exc


def decode_rgb(data: bytes, name: str) -> np.ndarray:
    """Decode JPEG/PNG bytes to (H, W, 3) uint8."""
    img = _open(data, name)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8)


def decode_gray(data: bytes, name: str, bits: int) -> np.ndarray:
    """Decode a single-channel PNG of 8 or 16 bits to uint8/uint16, refusing other formats."""
    img = _open(data, name)
    arr = np.asarray(img)
    if arr.ndim == 3:
        raise LeveError(f"{name}: expected a single-channel depth PNG, got mode {img.mode}")
    if bits == 8 and arr.dtype != np.uint8:
        raise LeveError(f"{name}: expected an 8-bit depth PNG, got mode {img.mode}")
    if bits == 16:
        if arr.dtype not in (np.uint16, np.int32, np.uint8) or img.mode not in ("I;16", "I;16B", "I", "L"):
            raise LeveError(f"{name}: expected a 16-bit depth PNG, got mode {img.mode}")
        arr = arr.astype(np.uint16)
    return arr


def decode_channel(data: bytes, name: str, channel: int) -> np.ndarray:
    """Decode an image and return one 8-bit channel (e.g. R of an RGBA depth PNG)."""
    img = _open(data, name)
    arr = np.asarray(img)
    if arr.ndim != 3 or arr.shape[2] <= channel or arr.dtype != np.uint8:
        raise LeveError(f"{name}: expected an 8-bit multi-channel image, got mode {img.mode}")
    return arr[..., channel]


def encode_png(arr: np.ndarray) -> bytes:
    """Encode uint8 (H, W[, 3|4]) or uint16 (H, W) as PNG bytes."""
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def encode_jpeg(arr: np.ndarray, quality: int = 90) -> bytes:
    """Encode (H, W, 3) uint8 as JPEG bytes."""
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()
