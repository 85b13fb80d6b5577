"""``leve predict``: depth maps for images, as the thesis app did (resize to the model's
resolution, predict, resize back bilinearly; both with the one resize of :mod:`leve.images`,
so an image reaches the model exactly as in training and evaluation), with optional flip
averaging. A model whose
output has half the input resolution (DenseDepth) has it upsampled to the model's input size
(bilinear) before it is read as depth.

For each input ``<stem>.jpg`` it writes into the output folder ``<stem>_depth.png`` (colour
map of inverse depth, near = bright, scaled per image) and ``<stem>_depth16.png`` (metric
depth in millimetres, 16-bit) or ``<stem>_depth.npy`` (float32 metres); with ``--pointcloud``
also ``<stem>.ply`` (:mod:`leve.outputs.pointcloud`). A video input gets per-frame maps, a depth
video and a temporal-stability figure (:mod:`leve.outputs.video`).
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from leve.errors import LeveError
from leve.images import resize_maps, resize_rgb
from leve.models.checkpoint import CheckpointInfo
from leve.models.depth import output_to_depth, upsample_output
from leve.store.images import decode_rgb, encode_png

if TYPE_CHECKING:
    from leve.outputs.pointcloud import CloudOptions

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
    runtime: str = "auto"  # leve.models.runtime: auto | eager | torch (BN folded, channels-last) | compiled | onnx
    every: int = 1  # videos: every k-th frame (leve.outputs.video)
    pointcloud: CloudOptions | None = None  # --pointcloud: a coloured PLY per image (leve.outputs.pointcloud)


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
    x = resize_rgb(rgb, resolution)[None].to(device)
    # a half-resolution output (DenseDepth) is brought to the input size before it is read as depth
    depth = output_to_depth(upsample_output(model(x), resolution), max_depth)
    if flip:
        depth = 0.5 * (depth + output_to_depth(upsample_output(model(x.flip(-1)), resolution), max_depth).flip(-1))
    return resize_maps(depth.float().cpu(), (h, w))[0, 0].numpy()


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
    from leve.models.runtime import check_runtime

    check_runtime(opts.runtime, opts.device)


def _say_lineage(checkpoint: str | Path, info: CheckpointInfo) -> None:
    """Print where the model comes from: teacher, data and licence (non-commercial first)."""
    from leve.models.lineage import Lineage
    from leve.progress import console

    console.print(f"{checkpoint}: {Lineage.of(info).summary()}", markup=False, highlight=False)


def run_predict(inputs: list[str | Path], checkpoint: str | Path, opts: PredictOptions) -> list[Path]:
    """Load the checkpoint, predict every image and write its outputs."""
    from leve.models.checkpoint import load_checkpoint
    from leve.models.runtime import prepare_for_inference
    from leve.outputs.video import split_videos

    _check_options(opts)
    videos, rest = split_videos(inputs)
    images = find_images(rest) if rest or not videos else []
    model, info = load_checkpoint(checkpoint, device=opts.device)
    model = prepare_for_inference(model, opts.runtime, info.resolution)  # checked against eager there
    if model.fallback:
        from leve.progress import console

        console.print(f"runtime {opts.runtime}: {model.fallback}; running {model.runtime}", markup=False)
    _say_lineage(checkpoint, info)
    if info.depth_kind == "relative":
        from leve.progress import console

        console.print(f"{checkpoint}: relative depth (distilled without depth): the maps are right up to an unknown "
                      "scale (and shift in disparity), not metres")
    cameras = _check_pointcloud(opts, checkpoint, info, images)
    written: list[Path] = []
    for path in images:
        rgb = decode_rgb(path.read_bytes(), str(path))
        depth = predict_depth(model, rgb, info.resolution, info.max_depth, opts.flip, opts.device)
        written += write_outputs(depth, path.stem, opts)
        if opts.pointcloud is not None:
            from leve.outputs.pointcloud import write_cloud

            written.append(write_cloud(opts.out_dir / f"{path.stem}.ply", depth, rgb, cameras[path],
                                       opts.pointcloud.scale or 1.0))
    for video in videos:
        written += _predict_video(video, lambda rgb: predict_depth(model, rgb, info.resolution, info.max_depth,
                                                                   opts.flip, opts.device), opts)
    return written


def _check_pointcloud(opts: PredictOptions, checkpoint: str | Path, info: CheckpointInfo,
                      images: list[Path]) -> dict[Path, Any]:
    """With ``--pointcloud``: refuse a relative checkpoint without a scale, resolve every image's intrinsics."""
    if opts.pointcloud is None:
        return {}
    from leve.outputs.pointcloud import check_cloud, image_cameras

    check_cloud(opts.pointcloud, checkpoint, info.depth_kind)
    return image_cameras(images, opts.pointcloud)


def _predict_video(path: Path, depth_of: Callable[[np.ndarray], np.ndarray], opts: PredictOptions) -> list[Path]:
    """Per-frame maps, the depth video and its temporal-stability figure (leve.outputs.video)."""
    from leve.outputs.video import VideoOptions, predict_video
    from leve.progress import console

    result = predict_video(path, depth_of, VideoOptions(opts.out_dir, opts.depth_format, opts.cmap, opts.every,
                                                        opts.pointcloud))
    console.print(result.summary(), markup=False, highlight=False)
    return result.written
