"""Fixtures and helpers for the output tests: small metric and relative-depth checkpoints, videos made
with PyAV, a naive back-projection and a PLY reader (plyfile) for the point clouds."""

from __future__ import annotations

import io
import math
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from plyfile import PlyData


def _checkpoint(path: Path, extra: dict | None = None) -> Path:
    from leve.models.checkpoint import save_checkpoint
    from leve.models.registry import create_model

    torch.manual_seed(0)
    model = create_model("leve", max_depth=10.0)
    with torch.no_grad():  # positive, image-dependent output, like a trained model
        model.decoder.blocks[-1].out.bias.fill_(5.0)
    return save_checkpoint(path, model, "leve", 10.0, extra=extra, resolution=(64, 64))


@pytest.fixture(scope="session")
def metric_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("ckpt") / "metric.safetensors")


@pytest.fixture(scope="session")
def relative_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    extra = {"depth_kind": "relative", "relative_affine": [0.5, 0.1]}
    return _checkpoint(tmp_path_factory.mktemp("ckpt") / "relative.safetensors", extra)


def moving_square(n: int, h: int, w: int, still: bool = False) -> list[np.ndarray]:
    """``n`` frames: a smooth background and a bright square moving right by 4 px a frame."""
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 200 // w + 20, yy * 200 // h + 20, np.full_like(xx, 90)], -1).astype(np.uint8)
    frames = []
    for t in range(n):
        img = base.copy()
        x0 = 4 + (0 if still else 4 * t)
        img[h // 4 : h // 4 + 10, x0 : x0 + 10] = 250
        frames.append(img)
    return frames


def write_video(path: Path, frames: list[np.ndarray], fps: int = 10, codec: str = "libx264") -> Path:
    """Encode ``frames`` (RGB uint8) with PyAV."""
    h, w = frames[0].shape[:2]
    with av.open(str(path), "w") as c:
        stream = c.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        for img in frames:
            for p in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in stream.encode():
            c.mux(p)
    return path


def read_video(path: Path) -> list[np.ndarray]:
    """Every frame of ``path`` decoded with PyAV, as RGB."""
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(c.streams.video[0])]


def naive_cloud(depth: np.ndarray, rgb: np.ndarray, fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """(N, 6) x, y, z, r, g, b of every valid pixel, row by row, one pixel at a time."""
    rows = []
    for v in range(depth.shape[0]):
        for u in range(depth.shape[1]):
            z = float(depth[v, u])
            if math.isfinite(z) and z > 0:
                rows.append([(u - cx) * z / fx, (v - cy) * z / fy, z, *map(int, rgb[v, u])])
    return np.array(rows, dtype=np.float64)


def read_ply(data: bytes | Path) -> np.ndarray:
    """(N, 6) from a PLY file, read by plyfile (a standard reader, not leve's writer)."""
    ply = PlyData.read(io.BytesIO(data) if isinstance(data, bytes) else str(data))
    v = ply["vertex"]
    return np.stack([np.asarray(v[k], np.float64) for k in ("x", "y", "z", "red", "green", "blue")], axis=1)
