"""Picture grids: RGB beside colour-mapped depth, for a quick look at a store (``leve preview``).

The PNG (:func:`save_grid`, drawn by :func:`preview_figure`) titles its columns (RGB, depth), labels
each sample with its index, shows the depth on one fixed scale ``0..max_depth`` (``turbo_r``: near =
red; pixels without depth black) with a colour bar in the store's units, and names the store and split
in its title. :func:`grid` is the same as a plain array without text."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from leve.store.reader import open_store

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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


def preview_figure(store: str, split: str, count: int = 8, columns: int = 2, height: int = 160) -> Figure:
    """The preview as a Figure: ``count`` evenly spaced samples, ``columns`` RGB | depth pairs a row."""
    from leve.report.figures import DEPTH_CMAP, DPI, masked_cmap, new_figure, unit_label, valid_map

    st = open_store(store)
    s = st.split(split)
    max_depth = float(st.attrs.get("max_depth") or 1.0)
    unit = unit_label(st.attrs.get("units"))
    idx = [int(i) for i in np.linspace(0, len(s) - 1, min(count, len(s))).round().astype(int)]
    rows = -(-len(idx) // columns)
    first = s.rgb(idx[0])
    tile_h = height / DPI
    tile_w = tile_h * first.shape[1] / first.shape[0]
    fig = new_figure(tile_w * 2 * columns + 0.4, tile_h * rows + 1.5)
    axes = fig.subplots(rows, 2 * columns, squeeze=False)
    image = None
    for k, i in enumerate(idx):
        rgb_ax, depth_ax = axes[k // columns, 2 * (k % columns)], axes[k // columns, 2 * (k % columns) + 1]
        rgb_ax.imshow(s.rgb(i), interpolation="bilinear")
        rgb_ax.set_ylabel(f"sample {i}", fontsize=8)
        depth = s.depth(i) if s.has_depth else None
        if depth is None:
            depth_ax.text(0.5, 0.5, "no depth", ha="center", va="center", transform=depth_ax.transAxes)
        else:
            image = depth_ax.imshow(valid_map(depth), cmap=masked_cmap(DEPTH_CMAP), vmin=0.0, vmax=max_depth,
                                    interpolation="bilinear")
    for col in range(2 * columns):
        axes[0, col].set_title("RGB" if col % 2 == 0 else "depth", fontsize=10)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    for k in range(len(idx), rows * columns):  # the last row's empty places
        axes[k // columns, 2 * (k % columns)].set_visible(False)
        axes[k // columns, 2 * (k % columns) + 1].set_visible(False)
    if image is not None:
        fig.colorbar(image, ax=list(axes.ravel()), location="bottom", shrink=0.6, aspect=40,
                     label=f"depth ({unit}), near = red; black: no depth")
    fig.suptitle(f"{store} / {split}: {len(idx)} of {len(s)} samples", fontsize=10)
    return fig


def save_grid(store: str, split: str, out: Path, count: int = 8, columns: int = 2) -> Path:
    """Write :func:`preview_figure` as a PNG, whole or not at all."""
    from leve.report.figures import save_figure

    return save_figure(preview_figure(store, split, count, columns), out)
