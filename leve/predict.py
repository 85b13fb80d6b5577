"""``leve predict``: depth maps for images, as the thesis app did (resize to the model's
resolution, predict, resize back bilinearly; both with the one resize of :mod:`leve.images`,
so an image reaches the model exactly as in training and evaluation), with optional flip
averaging. A model whose
output has half the input resolution (DenseDepth) has it upsampled to the model's input size
(bilinear) before it is read as depth.

For each input ``<stem>.jpg`` it writes into the output folder ``<stem>_depth.png`` (colour
map of inverse depth, near = bright, scaled per image) and the depth itself, as the checkpoint's
``depth_kind`` says (:class:`DepthEncoding`):

* a **metric** checkpoint: ``<stem>_depth16.png`` (depth in millimetres, 16-bit) or
  ``<stem>_depth.npy`` (float32 metres);
* a **relative** checkpoint (distilled without depth: no metres): ``<stem>_disp16.png``, scaled
  inverse depth, ``value = round(65535 * r)``, or ``<stem>_disp.npy`` (float32 ``r``), where ``r`` is
  the model's disparity in the teacher's max-normalised convention (near = large, in [0.01, 1]:
  :class:`leve.models.depth.RelativeOutput`), one fixed scale for every image and frame. Its relative
  depth is ``d = (max_depth / 100) / r`` (the checkpoint's ``max_depth``), right up to an unknown
  scale (and shift in disparity);
* a relative checkpoint with ``--scale S`` (metres per unit of ``d``): metric files again,
  ``<stem>_depth16.png`` in millimetres of ``S * d`` or ``<stem>_depth.npy`` in metres, and the point
  cloud from the same ``S * d``.

With ``--pointcloud`` also ``<stem>.ply`` (:mod:`leve.outputs.pointcloud`). A video input gets
per-frame maps in the same encoding, a depth video and a temporal-stability figure
(:mod:`leve.outputs.video`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from leve.atomic import write_bytes
from leve.errors import LeveError
from leve.images import resize_maps, resize_rgb
from leve.models.checkpoint import CheckpointInfo
from leve.models.depth import output_to_depth, upsample_output
from leve.outputs.depthfiles import DEPTH_FORMATS, IMAGE_SUFFIXES, DepthEncoding
from leve.outputs.depthfiles import DISPARITY_PNG_SCALE as DISPARITY_PNG_SCALE  # their old home: still importable here
from leve.outputs.depthfiles import depth_npy as depth_npy
from leve.outputs.depthfiles import depth_png16 as depth_png16
from leve.store.images import decode_rgb, encode_png

if TYPE_CHECKING:
    from leve.models.runtime import InferenceModel
    from leve.outputs.pointcloud import CloudOptions

@dataclass(frozen=True)
class PredictOptions:
    """How to predict and what to write."""

    out_dir: Path = Path("predictions")
    depth_format: str = "png16"
    flip: bool = False
    cmap: str = "magma"
    device: str = "cpu"
    runtime: str = "auto"  # leve.models.runtime: auto | eager | torch | compiled | onnx | openvino | onnx-int8 (the export)
    every: int = 1  # videos: every k-th frame (leve.outputs.video)
    pointcloud: CloudOptions | None = None  # --pointcloud: a coloured PLY per image (leve.outputs.pointcloud)
    scale: float | None = None  # --scale: metres per unit of the depth (a relative checkpoint's); maps and PLY alike


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
    """Depth (H, W) float32 for one (H, W, 3) uint8 image: metres for a metric checkpoint, the relative
    depth ``(max_depth / 100) / r`` for a relative one (:class:`DepthEncoding`)."""
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


def write_outputs(depth: np.ndarray, stem: str, opts: PredictOptions, encoding: DepthEncoding | None = None) -> list[Path]:
    """Write the colour map and the depth file for one image (``encoding``: what the depth file holds;
    default metric, as ``opts`` says); return the paths written."""
    encoding = encoding or DepthEncoding("metric", opts.depth_format, scale=opts.scale)
    color = opts.out_dir / f"{stem}_depth.png"
    write_bytes(color, encode_png(colorize(depth, opts.cmap)))  # leve.atomic: whole or not at all
    depth_file = opts.out_dir / f"{stem}{encoding.suffix}"
    write_bytes(depth_file, encoding.encode(depth))
    return [color, depth_file]


def _check_options(opts: PredictOptions) -> None:
    from matplotlib import colormaps

    if opts.depth_format not in DEPTH_FORMATS:
        raise LeveError(f"unknown depth format '{opts.depth_format}'; choose from {', '.join(DEPTH_FORMATS)}")
    if opts.cmap not in colormaps:
        raise LeveError(f"unknown colour map '{opts.cmap}' (see matplotlib.colormaps)")
    if opts.scale is not None and not (math.isfinite(opts.scale) and opts.scale > 0):
        raise LeveError(f"--scale must be a positive number of metres per unit, got {opts.scale}")
    if opts.device.startswith("cuda") and not torch.cuda.is_available():
        raise LeveError(f"--device {opts.device}: no CUDA device available to torch")
    from leve.models.runtime import check_runtime

    check_runtime(opts.runtime, opts.device)


def _say_lineage(checkpoint: str | Path, info: CheckpointInfo) -> None:
    """Print where the model comes from: teacher, data and licence (non-commercial first)."""
    from leve.models.lineage import Lineage
    from leve.progress import console

    lineage = Lineage.of(info)
    console.print(f"{checkpoint}: {lineage.summary()}", markup=False, highlight=False)
    warning = lineage.synthetic_warning(checkpoint)
    if warning:
        console.print(warning, markup=False, highlight=False)


def run_predict(inputs: list[str | Path], checkpoint: str | Path, opts: PredictOptions) -> list[Path]:
    """Load the checkpoint, predict every image and write its outputs."""
    from leve.models.checkpoint import load_checkpoint
    from leve.models.runtime import prepare_for_inference
    from leve.outputs.video import split_videos

    if opts.scale is None and opts.pointcloud is not None:
        opts = replace(opts, scale=opts.pointcloud.scale)  # --scale applies to the maps as to the point cloud
    elif opts.pointcloud is not None:
        opts = replace(opts, pointcloud=replace(opts.pointcloud, scale=opts.scale))
    _check_options(opts)
    videos, rest = split_videos(inputs)
    images = find_images(rest) if rest or not videos else []
    model, info = load_checkpoint(checkpoint, device=opts.device)
    if opts.runtime == "onnx-int8":  # the file `leve export --quantize int8` wrote and checked
        model = load_int8_export(checkpoint, model)
    else:
        model = prepare_for_inference(model, opts.runtime, info.resolution)  # checked against eager
    if model.fallback:
        from leve.progress import console

        console.print(f"runtime {opts.runtime}: {model.fallback}; running {model.runtime}", markup=False)
    _say_lineage(checkpoint, info)
    encoding = DepthEncoding(info.depth_kind, opts.depth_format, info.max_depth, opts.scale)
    _say_encoding(checkpoint, info, encoding)
    cameras = _check_pointcloud(opts, checkpoint, info, images)
    written: list[Path] = []
    for path in images:
        rgb = decode_rgb(path.read_bytes(), str(path))
        depth = predict_depth(model, rgb, info.resolution, info.max_depth, opts.flip, opts.device)
        written += write_outputs(depth, path.stem, opts, encoding)
        if opts.pointcloud is not None:
            from leve.outputs.pointcloud import write_cloud

            written.append(write_cloud(opts.out_dir / f"{path.stem}.ply", depth, rgb, cameras[path],
                                       opts.pointcloud.scale or 1.0))
    for video in videos:
        written += _predict_video(video, lambda rgb: predict_depth(model, rgb, info.resolution, info.max_depth,
                                                                   opts.flip, opts.device), opts, encoding)
    return written


def load_int8_export(checkpoint: str | Path, model: nn.Module) -> InferenceModel:
    """``--runtime onnx-int8``: the checkpoint's int8 export, ``<checkpoint stem>.int8.onnx`` beside it (what
    ``leve export --format onnx --quantize int8`` writes by default, calibrated on a store split and checked
    against PyTorch there), run by onnxruntime. Refused in one line, with the command that makes it, when it
    is missing, is not an int8 export, or records another checkpoint's digest (or none)."""
    import shlex

    from leve.models.runtime import DIGEST_KEY, checkpoint_digest, int8_export_path, load_exported
    from leve.store.remote import url_of

    if url_of(checkpoint) is not None:
        raise LeveError(f"{url_of(checkpoint)}: --runtime onnx-int8 needs a local checkpoint with its int8 export beside it")
    path = int8_export_path(checkpoint)
    command = f"leve export --checkpoint {shlex.quote(str(checkpoint))} --format onnx --quantize int8"
    if not path.is_file():
        raise LeveError(f"{path}: not found; --runtime onnx-int8 runs the checkpoint's int8 export: make it with "
                        f"`{command}`")
    prepared = load_exported(model, path, "onnx-int8")
    meta = prepared.metadata
    if meta.get("leve_quantization") != "int8":
        raise LeveError(f"{path}: not an int8 export (no leve_quantization int8 in its metadata); make it with "
                        f"`{command}`")
    recorded, digest = meta.get(DIGEST_KEY), checkpoint_digest(checkpoint)
    if recorded is None:
        raise LeveError(f"{path}: records no checkpoint digest (exported before leve recorded one), so it cannot be "
                        f"matched to {checkpoint}; export it again with `{command}`")
    if recorded != digest:
        raise LeveError(f"{path}: exported from another checkpoint ({meta.get('leve_checkpoint', '?')}, sha256 "
                        f"{recorded[:12]}), not {checkpoint} (sha256 {digest[:12]}); export it again with `{command}`")
    return prepared


def _say_encoding(checkpoint: str | Path, info: CheckpointInfo, encoding: DepthEncoding) -> None:
    """Say what the depth files hold (relative: inverse depth, not millimetres)."""
    from leve.progress import console

    if info.depth_kind == "relative":
        console.print(f"{checkpoint}: relative depth (distilled without depth): the maps are right up to an unknown "
                      "scale (and shift in disparity), not metres", markup=False, highlight=False)
    console.print(f"depth files: {encoding.describe()}", markup=False, highlight=False)


def _check_pointcloud(opts: PredictOptions, checkpoint: str | Path, info: CheckpointInfo,
                      images: list[Path]) -> dict[Path, Any]:
    """With ``--pointcloud``: refuse a relative checkpoint without a scale, resolve every image's intrinsics."""
    if opts.pointcloud is None:
        return {}
    from leve.outputs.pointcloud import check_cloud, image_cameras

    check_cloud(opts.pointcloud, checkpoint, info.depth_kind)
    return image_cameras(images, opts.pointcloud)


def _predict_video(path: Path, depth_of: Callable[[np.ndarray], np.ndarray], opts: PredictOptions,
                   encoding: DepthEncoding | None = None) -> list[Path]:
    """Per-frame maps, the depth video and its temporal-stability figure (leve.outputs.video)."""
    from leve.outputs.video import VideoOptions, predict_video
    from leve.progress import console

    result = predict_video(path, depth_of, VideoOptions(opts.out_dir, opts.depth_format, opts.cmap, opts.every,
                                                        opts.pointcloud, encoding=encoding))
    console.print(result.summary(), markup=False, highlight=False)
    return result.written
