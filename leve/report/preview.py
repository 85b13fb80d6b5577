"""Picture grids: RGB beside colour-mapped depth, for a quick look at a store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from leve.store import open_store


def colour_map(depth: np.ndarray, lo: float, hi: float, cmap: str = "turbo_r") -> np.ndarray:
    """(H, W, 3) uint8 of ``depth`` on the fixed scale ``[lo, hi]``; invalid pixels (not > 0) black."""
    import matplotlib

    norm = np.clip((depth - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    rgb = (matplotlib.colormaps[cmap](norm)[..., :3] * 255 + 0.5).astype(np.uint8)
    rgb[~(depth > 0)] = 0
    return rgb


def colorize(depth: np.ndarray, max_depth: float, cmap: str = "turbo_r") -> np.ndarray:
    """Depth (H, W) -> RGB uint8 with a fixed scale [0, max_depth]; invalid (0) pixels black."""
    return colour_map(depth, 0.0, max_depth, cmap)


def grid(store: str, split: str, count: int = 8, columns: int = 2, height: int = 160) -> np.ndarray:
    """A grid of ``count`` evenly spaced samples, each RGB | depth, scaled to ``height`` rows."""
    st = open_store(store)
    s = st.split(split)
    max_depth = float(st.attrs.get("max_depth") or 1.0)
    idx = np.linspace(0, len(s) - 1, min(count, len(s))).round().astype(int)
    tiles = []
    for i in idx:
        pair = np.concatenate([s.rgb(int(i)), colorize(s.depth(int(i)), max_depth)], axis=1)
        w = round(pair.shape[1] * height / pair.shape[0])
        tiles.append(np.asarray(Image.fromarray(pair).resize((w, height), Image.BILINEAR)))
    width = max(t.shape[1] for t in tiles)
    tiles = [np.pad(t, ((2, 2), (2, 2 + width - t.shape[1]), (0, 0)), constant_values=255) for t in tiles]
    blank = np.full_like(tiles[0], 255)
    rows = [np.concatenate(tiles[r : r + columns] + [blank] * (columns - len(tiles[r : r + columns])), axis=1)
            for r in range(0, len(tiles), columns)]
    return np.concatenate(rows, axis=0)


def save_grid(store: str, split: str, out: Path, count: int = 8, columns: int = 2) -> Path:
    from leve.atomic import atomic_path

    with atomic_path(out) as tmp:
        Image.fromarray(grid(store, split, count, columns)).save(tmp)
    return out
