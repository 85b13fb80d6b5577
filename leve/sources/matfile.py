"""Numeric variables of a MATLAB v5/v7 ``.mat`` file (NYU's ``splits.mat``), read without scipy.

``scipy.io.loadmat`` can crash the interpreter on a damaged file (an unknown data-type code in an
element tag ends in SIGBUS; found by ``tests/test_fuzz.py``), and a crash cannot be caught. This
reader follows the published MAT-file layout for the one thing leve needs, a numeric matrix:

- a 128-byte header: text, then at bytes 124..127 the version (0x0100) and the endian
  indicator ``IM`` (little-endian) or ``MI`` (big-endian);
- then data elements, each an 8-byte tag (type, byte count) and its data padded to 8 bytes,
  or a *small* element (count in the tag's upper 16 bits, up to 4 bytes of data in the tag);
- ``miCOMPRESSED`` (15): a zlib stream holding one element (not padded);
- ``miMATRIX`` (14): sub-elements array flags (class in the low byte), dimensions (int32),
  name (int8), real part (any numeric type, column-major).

Every size is checked against the bytes present and the inflated size is capped, so any
damage ends in a one-line :class:`LeveError`.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from leve.errors import LeveError

HEADER = 128
MI_INT32, MI_UINT32, MI_MATRIX, MI_COMPRESSED = 5, 6, 14, 15
MI_NUMERIC = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 9: "f8", 12: "i8", 13: "u8"}
NUMERIC_CLASSES = range(6, 16)  # mxDOUBLE_CLASS .. mxUINT64_CLASS
MAX_INFLATED = 1 << 26  # 64 MB: far above any splits file
MAX_ELEMENTS = 1 << 24


def read_numeric(path: Path, name: str) -> np.ndarray:
    """Variable ``name`` of the .mat file at ``path`` as float64, in MATLAB's (column-major) shape."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise LeveError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    order = _header(data, path)
    pos = HEADER
    while pos < len(data):
        kind, body, pos = _element(data, pos, order, path)
        if kind == MI_COMPRESSED:
            kind, body, _ = _element(_inflate(body, path), 0, order, path)
        if kind == MI_MATRIX:
            found, values = _matrix(body, order, path)
            if found == name:
                if values is None:
                    raise LeveError(f"{path}: '{name}' is not a real numeric matrix")
                return values
    raise LeveError(f"{path}: '{name}' not found")


def _header(data: bytes, path: Path) -> str:
    """The byte order of a MATLAB 5 file; refuses anything else (7.3 files are HDF5)."""
    if len(data) < HEADER or data[126:128] not in (b"IM", b"MI"):
        hint = " (a MATLAB 7.3 / HDF5 file?)" if data[:19] == b"MATLAB 7.3 MAT-file" else ""
        raise LeveError(f"{path}: not a readable MATLAB .mat file (no MATLAB 5 header){hint}")
    order = "<" if data[126:128] == b"IM" else ">"
    if struct.unpack(order + "H", data[124:126])[0] != 0x0100:
        raise LeveError(f"{path}: not a readable MATLAB .mat file (unknown version)")
    return order


def _element(buf: bytes, pos: int, order: str, path: Path) -> tuple[int, bytes, int]:
    """(type, data, position of the next element) of the element at ``pos``."""
    if pos + 8 > len(buf):
        raise LeveError(f"{path}: not a readable MATLAB .mat file (truncated element at byte {pos})")
    kind, size = struct.unpack(order + "II", buf[pos : pos + 8])
    if kind >> 16:  # small element: the count in the upper half of the type word, data in the tag
        kind, size = kind & 0xFFFF, kind >> 16
        if size > 4:
            raise LeveError(f"{path}: not a readable MATLAB .mat file (bad small element at byte {pos})")
        return kind, buf[pos + 4 : pos + 4 + size], pos + 8
    end = pos + 8 + size
    if end > len(buf):
        raise LeveError(f"{path}: not a readable MATLAB .mat file (element at byte {pos} runs past the end)")
    return kind, buf[pos + 8 : end], end if kind == MI_COMPRESSED else pos + 8 + -(-size // 8) * 8


def _inflate(body: bytes, path: Path) -> bytes:
    inflater = zlib.decompressobj()
    try:
        out = inflater.decompress(body, MAX_INFLATED)
    except zlib.error as exc:
        raise LeveError(f"{path}: not a readable MATLAB .mat file (corrupt compressed element: {exc})") from exc
    if inflater.unconsumed_tail:
        raise LeveError(f"{path}: compressed element inflates beyond {MAX_INFLATED:,} bytes")
    return out


def _matrix(body: bytes, order: str, path: Path) -> tuple[str, np.ndarray | None]:
    """(name, values) of a miMATRIX element; values None unless it is a real numeric matrix."""
    parts: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(body) and len(parts) < 4:
        kind, data, pos = _element(body, pos, order, path)
        parts.append((kind, data))
    if len(parts) < 3 or parts[0][0] != MI_UINT32 or len(parts[0][1]) < 4 or parts[1][0] != MI_INT32:
        raise LeveError(f"{path}: not a readable MATLAB .mat file (malformed matrix)")
    flags = struct.unpack(order + "I", parts[0][1][:4])[0]
    dims = [int(v) for v in np.frombuffer(parts[1][1][: len(parts[1][1]) // 4 * 4], dtype=order + "i4")]
    name = parts[2][1].decode("ascii", errors="replace")
    numeric = (flags & 0xFF) in NUMERIC_CLASSES and not flags & 0x800 and len(parts) == 4
    if not numeric or parts[3][0] not in MI_NUMERIC:
        return name, None
    if len(dims) < 2 or min(dims) < 0 or int(np.prod(dims, dtype=np.int64)) > MAX_ELEMENTS:
        raise LeveError(f"{path}: '{name}' has invalid dimensions {dims}")
    dtype = np.dtype(order + MI_NUMERIC[parts[3][0]])
    raw = parts[3][1]
    if len(raw) != int(np.prod(dims, dtype=np.int64)) * dtype.itemsize:
        raise LeveError(f"{path}: '{name}' holds {len(raw)} bytes for dimensions {dims}")
    return name, np.frombuffer(raw, dtype=dtype).astype(np.float64).reshape(dims, order="F")
