"""Checks on uploaded images: size, format and pixel count are verified before decoding."""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from leve.errors import LeveError

FORMATS = ("JPEG", "PNG")


class UploadError(LeveError):
    """A refused upload: an HTTP status and a one-line message for the page."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def check_bytes(size: int, name: str, max_bytes: int) -> None:
    """Refuse empty bodies and bodies over the upload limit."""
    if size == 0:
        raise UploadError(400, f"{name}: empty upload")
    if size > max_bytes:
        raise UploadError(413, f"{name}: file is larger than the upload limit of {max_bytes:,} bytes")


def read_image(data: bytes, name: str, max_bytes: int, max_pixels: int) -> np.ndarray:
    """Decode an uploaded JPEG/PNG to (H, W, 3) uint8, upright as its EXIF orientation says."""
    check_bytes(len(data), name, max_bytes)
    img = _open_header(data, name)
    check_pixels(img.size, name, max_pixels)
    return _decode(img, name)


def _open_header(data: bytes, name: str) -> Image.Image:
    """Read only the header: the format and the declared size."""
    try:
        img = Image.open(io.BytesIO(data), formats=FORMATS)
    except UnidentifiedImageError as exc:
        raise UploadError(415, f"{name}: not a JPEG or PNG image") from exc
    except Image.DecompressionBombError as exc:
        raise UploadError(413, f"{name}: refused as a decompression bomb ({exc})") from exc
    except Exception as exc:  # PIL raises many types on malformed headers
        raise UploadError(400, f"{name}: cannot read image header ({exc.__class__.__name__}: {exc})") from exc
    return img


def check_pixels(size: tuple[int, int], name: str, max_pixels: int) -> None:
    """Refuse images whose declared size exceeds the pixel limit (decompression bombs included)."""
    w, h = size
    if w * h > max_pixels:
        raise UploadError(413, f"{name}: image is {h}x{w} = {w * h:,} pixels, over the limit of "
                               f"{max_pixels:,} (decompression bomb or too large a photo)")


def _decode(img: Image.Image, name: str) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img.load()
            img = ImageOps.exif_transpose(img)
            rgb = img.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise UploadError(413, f"{name}: refused as a decompression bomb ({exc})") from exc
    except Exception as exc:
        raise UploadError(400, f"{name}: cannot decode image ({exc.__class__.__name__}: {exc})") from exc
    return np.asarray(rgb, dtype=np.uint8)
