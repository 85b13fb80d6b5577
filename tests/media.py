"""Small files that claim huge content, made as real files of their formats (what a hostile or broken
source would hand leve): a video whose frames are gigapixel-class, an ``.npz`` that decompresses to
hundreds of megabytes, an ``.npy`` whose header promises more than the file holds."""

from __future__ import annotations

import struct
import zipfile
import zlib
from fractions import Fraction
from pathlib import Path

import numpy as np


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def black_png(width: int, height: int) -> bytes:
    """A valid all-black 8-bit RGB PNG, compressed row block by row block (never held whole)."""
    comp = zlib.compressobj(1)
    block = b"\0" * (3 * width + 1) * 200
    body = b"".join(comp.compress(block) for _ in range(height // 200))
    body += comp.compress(b"\0" * (3 * width + 1) * (height % 200)) + comp.flush()
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", body) + _chunk(b"IEND", b"")


def huge_frame_video(path: Path, width: int = 9000, height: int = 8000, frames: int = 1) -> Path:
    """A QuickTime file of ``frames`` PNG frames of ``width`` x ``height`` (72 MP by default, over the
    64 MP cap): about 1 MB on disk, 216 MB a frame once decoded. The PNG packets are muxed as they are."""
    import av

    data = black_png(width, height)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = width, height, "rgb24"
        container.start_encoding()
        for i in range(frames):
            packet = av.Packet(data)
            packet.stream, packet.pts, packet.dts = stream, i, i
            packet.time_base, packet.is_keyframe = Fraction(1, 1), True
            container.mux(packet)
    return path


def npz_bomb(path: Path, shape: tuple[int, int] = (9000, 9000), dtype: str = "<f4") -> Path:
    """An ``.npz`` (a zip of ``depth.npy``) of zeros of ``shape``: 324 MB decompressed, a few hundred KB
    on disk, written in blocks so the array never exists in memory."""
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 1), dtype))
    header["shape"] = shape
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf, \
            zf.open("depth.npy", "w", force_zip64=True) as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        row = b"\0" * (shape[1] * np.dtype(dtype).itemsize)
        for start in range(0, shape[0], 500):
            fh.write(row * min(500, shape[0] - start))
    return path


def npy_liar(path: Path, shape: tuple[int, int] = (100_000, 100_000)) -> Path:
    """An ``.npy`` whose header says ``shape`` (float32: 40 GB) followed by 16 bytes."""
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 1), "<f4"))
    header["shape"] = shape
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        fh.write(b"\0" * 16)
    return path


def rewrite_header(src: Path, dst: Path, change) -> Path:  # noqa: ANN001 - change: a function of the header dict
    """A copy of checkpoint ``src`` at ``dst`` (same encoding) whose header fields are changed by ``change(header)``:
    real files as another program (or a damaged one) would write them."""
    import json

    import torch
    from safetensors import safe_open
    from safetensors.torch import save_file

    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.suffix == ".safetensors":
        with safe_open(str(src), framework="pt") as f:
            meta, state = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
        header = {**meta, "config": json.loads(meta["config"]), "extra": json.loads(meta["extra"])}
        change(header)
        meta = {k: v if isinstance(v, str) else json.dumps(v) for k, v in header.items()}
        save_file(state, str(dst), metadata=meta)
    else:
        header = torch.load(src, weights_only=True)
        change(header)
        torch.save(header, dst)
    return dst


def set_field(*keys_value):  # noqa: ANN002, ANN201
    """``change(header)`` that sets ``header[k1][k2]... = value`` (the last argument)."""
    *keys, value = keys_value

    def change(header: dict) -> None:
        node = header
        for key in keys[:-1]:
            node = node[key]
        node[keys[-1]] = value
    return change
