"""``leve predict``: depth maps for images, as the thesis app did (resize to the model's
resolution, predict, resize back bilinearly), with optional flip averaging. A model whose
output has half the input resolution (DenseDepth) has it upsampled to the model's input size
(bilinear) before it is read as depth.

For each input ``<stem>.jpg`` it writes into the output folder ``<stem>_depth.png`` (colour
map of inverse depth, near = bright, scaled per image) and ``<stem>_depth16.png`` (metric
depth in millimetres, 16-bit) or ``<stem>_depth.npy`` (float32 metres).
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from leve.errors import LeveError
from leve.models.depth import output_to_depth, upsample_output
from leve.store.images import decode_rgb, encode_png

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png"}
DEPTH_FORMATS = ("png16", "npy")


@dataclass(frozen=True)
class PredictOptions:
    """How to predict and what to write."""

    out_dir: Path = Path("predictions")
    depth_format: str = "png16"
    flip: bool = False
    cmap: str = "magma"
    device: str = "cpu"


def find_images(inputs: Iterable[str | Path]) -> list[Path]:
    """Expand files and folders (non-recursive) into a sorted list of JPEG/PNG files."""
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif item.is_file():
            if item.suffix.lower() not in IMAGE_SUFFIXES:
                raise LeveError(f"{item}: not a JPEG/PNG image")
            found.append(item)
        else:
            raise LeveError(f"{item}: no such file or folder")
    if not found:
        raise LeveError(f"no JPEG/PNG images in {', '.join(map(str, inputs))}")
    _check_unique_stems(found)
    return found


def _check_unique_stems(paths: list[Path]) -> None:
    seen: dict[str, Path] = {}
    for p in paths:
        if p.stem in seen:
            raise LeveError(f"{p}: same name as {seen[p.stem]}; outputs would overwrite each other")
        seen[p.stem] = p


@torch.inference_mode()
def predict_depth(model: nn.Module, rgb: np.ndarray, resolution: tuple[int, int], max_depth: float,
                  flip: bool = False, device: str = "cpu") -> np.ndarray:
    """Metric depth (H, W) float32 for one (H, W, 3) uint8 image."""
    h, w = rgb.shape[:2]
    x = torch.tensor(rgb, device=device).permute(2, 0, 1)[None].float() / 255.0
    x = F.interpolate(x, size=resolution, mode="bilinear", align_corners=False)
    # a half-resolution output (DenseDepth) is brought to the input size before it is read as depth
    depth = output_to_depth(upsample_output(model(x), resolution), max_depth)
    if flip:
        depth = 0.5 * (depth + output_to_depth(upsample_output(model(x.flip(-1)), resolution), max_depth).flip(-1))
    depth = F.interpolate(depth, size=(h, w), mode="bilinear", align_corners=False)
    return depth[0, 0].float().cpu().numpy()


def colorize(depth: np.ndarray, cmap: str = "magma") -> np.ndarray:
    """(H, W, 3) uint8: inverse depth scaled to the image's own range (near = bright)."""
    from matplotlib import colormaps

    inv = 1.0 / np.maximum(depth, 1e-6)
    lo, hi = float(inv.min()), float(inv.max())
    norm = (inv - lo) / (hi - lo) if hi > lo else np.zeros_like(inv)
    return (colormaps[cmap](norm)[..., :3] * 255 + 0.5).astype(np.uint8)


def depth_png16(depth: np.ndarray) -> bytes:
    """Metric depth as a 16-bit PNG in millimetres (rounded, clipped to 0..65535)."""
    return encode_png(np.clip(np.rint(depth * 1000.0), 0, 65535).astype(np.uint16))


def depth_npy(depth: np.ndarray) -> bytes:
    """Metric depth in metres as ``.npy`` bytes (float32)."""
    buf = io.BytesIO()
    np.save(buf, depth.astype(np.float32))
    return buf.getvalue()


def write_outputs(depth: np.ndarray, stem: str, opts: PredictOptions) -> list[Path]:
    """Write the colour map and the metric depth for one image; return the paths written."""
    opts.out_dir.mkdir(parents=True, exist_ok=True)
    color = opts.out_dir / f"{stem}_depth.png"
    color.write_bytes(encode_png(colorize(depth, opts.cmap)))
    if opts.depth_format == "npy":
        metric = opts.out_dir / f"{stem}_depth.npy"
        metric.write_bytes(depth_npy(depth))
    else:
        metric = opts.out_dir / f"{stem}_depth16.png"
        metric.write_bytes(depth_png16(depth))
    return [color, metric]


def _check_options(opts: PredictOptions) -> None:
    from matplotlib import colormaps

    if opts.depth_format not in DEPTH_FORMATS:
        raise LeveError(f"unknown depth format '{opts.depth_format}'; choose from {', '.join(DEPTH_FORMATS)}")
    if opts.cmap not in colormaps:
        raise LeveError(f"unknown colour map '{opts.cmap}' (see matplotlib.colormaps)")
    if opts.device.startswith("cuda") and not torch.cuda.is_available():
        raise LeveError(f"--device {opts.device}: no CUDA device available to torch")


def run_predict(inputs: list[str | Path], checkpoint: str | Path, opts: PredictOptions) -> list[Path]:
    """Load the checkpoint, predict every image and write its outputs."""
    from leve.models.checkpoint import load_checkpoint

    _check_options(opts)
    images = find_images(inputs)
    model, info = load_checkpoint(checkpoint, device=opts.device)
    written: list[Path] = []
    for path in images:
        rgb = decode_rgb(path.read_bytes(), str(path))
        depth = predict_depth(model, rgb, info.resolution, info.max_depth, opts.flip, opts.device)
        written += write_outputs(depth, path.stem, opts)
    return written
