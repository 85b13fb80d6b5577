"""``leve predict`` on a video: per-frame depth maps, a colour-mapped depth video and a
temporal-stability figure.

Frames are read with :mod:`leve.datasets.video` (PyAV), every ``every``-th from the first. For a
video ``clip.mp4`` the output folder gets ``clip_frames/<frame>_depth16.png`` (or ``.npy``; a
relative checkpoint's ``<frame>_disp16.png``, as :class:`leve.outputs.depthfiles.DepthEncoding` says; and
``<frame>.ply`` with ``--pointcloud``), ``clip_depth.mp4`` (H.264, or MPEG-4 Part 2 where the
FFmpeg build lacks libx264; inverse depth through the colour map, near = bright, over one range
for the whole video so colours do not flicker; frames of odd size are padded by one edge
row/column) and ``clip_video.json`` (frames, rate, the stability figure).

Temporal stability (:class:`StabilityMeter`) is the warping error of Lai et al., "Learning Blind
Video Temporal Consistency" (ECCV 2018), made flow-free by keeping only pixels that do not move:

* each frame's depth is median-aligned, ``a_t = d_t / median(d_t)`` over its valid (finite,
  positive) pixels (the per-image median scaling of monodepth2, Godard et al. 2019), so a global
  scale drift, which a relative-depth model is free to have, is not counted;
* the static pixels of a consecutive pair are those valid in both frames whose RGB changes by
  less than ``threshold`` grey levels (mean over the channels of ``|I_t - I_{t-1}|``, 0..255);
  in them the warp of Lai et al. is the identity;
* the pair's error is ``mean_S |a_t - a_{t-1}| / mean_S (a_t + a_{t-1}) / 2`` (L1 instead of
  their L2, relative to the aligned depth so the figure reads as a fraction);
* the figure is the mean over the pairs that have static pixels (0 = perfectly stable). With a
  moving camera few pixels are static; the fraction used is reported beside the figure.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from leve.atomic import atomic_path, write_bytes, write_text
from leve.errors import LeveError
from leve.outputs.pointcloud import CloudOptions, write_cloud

if TYPE_CHECKING:
    from leve.outputs.depthfiles import DepthEncoding

STATIC_THRESHOLD = 8.0  # grey levels (of 255): mean |RGB change| below this counts as static
VIDEO_CODECS = ("libx264", "mpeg4")  # the first one the installed FFmpeg has
MEASURE = ("flow-free warping error (Lai et al., ECCV 2018) on static pixels: mean over consecutive frame pairs of "
           "mean_S |a_t - a_{t-1}| / mean_S (a_t + a_{t-1}) / 2, a_t = d_t / median(d_t), S = pixels valid in both "
           "frames whose mean |RGB change| is below threshold grey levels")


# --------------------------------------------------------------------------- temporal stability


@dataclass(frozen=True)
class Stability:
    """The temporal-stability figure of a video (see the module doc)."""

    value: float | None        # mean relative change of aligned depth on static pixels; None: no pair had any
    pairs: int                 # consecutive pairs that had static pixels
    static_fraction: float     # mean fraction of the pixels counted static over all pairs
    threshold: float = STATIC_THRESHOLD

    def describe(self) -> str:
        if self.value is None:
            return "temporal stability n/a (no two consecutive frames share static pixels)"
        return (f"temporal stability {self.value:.4f} (mean relative change of median-aligned depth on static pixels; "
                f"{self.pairs} frame pairs, {self.static_fraction:.0%} of pixels static)")


def median_aligned(depth: np.ndarray) -> np.ndarray:
    """``depth / median(depth)`` over valid (finite, positive) pixels, float64; NaN elsewhere."""
    d = np.asarray(depth, dtype=np.float64)
    valid = np.isfinite(d) & (d > 0)
    if not valid.any():
        return np.full(d.shape, np.nan)
    return np.where(valid, d / np.median(d[valid]), np.nan)


def static_mask(prev_rgb: np.ndarray, rgb: np.ndarray, threshold: float = STATIC_THRESHOLD) -> np.ndarray:
    """(H, W) bool: the mean over channels of ``|rgb - prev_rgb|`` is below ``threshold``."""
    change = np.abs(rgb.astype(np.int16) - prev_rgb.astype(np.int16)).mean(axis=-1)
    return change < threshold


def pair_change(prev_aligned: np.ndarray, aligned: np.ndarray, static: np.ndarray) -> float | None:
    """``mean_S |a_t - a_{t-1}| / mean_S (a_t + a_{t-1}) / 2`` over static pixels valid in both."""
    keep = static & np.isfinite(prev_aligned) & np.isfinite(aligned)
    if not keep.any():
        return None
    a, b = aligned[keep], prev_aligned[keep]
    return float(np.abs(a - b).mean() / ((a + b).mean() / 2.0))


class StabilityMeter:
    """Feed frames in order (:meth:`add`); :meth:`result` gives the :class:`Stability`."""

    def __init__(self, threshold: float = STATIC_THRESHOLD) -> None:
        self.threshold = threshold
        self._prev: tuple[np.ndarray, np.ndarray] | None = None
        self._changes: list[float] = []
        self._static: list[float] = []

    def add(self, rgb: np.ndarray, depth: np.ndarray) -> None:
        aligned = median_aligned(depth)
        if self._prev is not None:
            prev_rgb, prev_aligned = self._prev
            static = static_mask(prev_rgb, rgb, self.threshold) & np.isfinite(aligned) & np.isfinite(prev_aligned)
            self._static.append(float(static.mean()))
            change = pair_change(prev_aligned, aligned, static)
            if change is not None:
                self._changes.append(change)
        self._prev = (rgb, aligned)

    def result(self) -> Stability:
        value = float(np.mean(self._changes)) if self._changes else None
        static = float(np.mean(self._static)) if self._static else 0.0
        return Stability(value, len(self._changes), static, self.threshold)


def temporal_stability(frames: Iterable[np.ndarray], depths: Iterable[np.ndarray],
                       threshold: float = STATIC_THRESHOLD) -> Stability:
    """:class:`Stability` of a sequence of RGB frames and their depth maps."""
    meter = StabilityMeter(threshold)
    for rgb, depth in zip(frames, depths, strict=True):
        meter.add(rgb, depth)
    return meter.result()


# --------------------------------------------------------------------------- depth video


def colour_lut(cmap: str) -> np.ndarray:
    """(256, 3) uint8: the colour map sampled at 256 steps."""
    from matplotlib import colormaps

    return (colormaps[cmap](np.linspace(0.0, 1.0, 256))[:, :3] * 255 + 0.5).astype(np.uint8)


def inverse_range(depth: np.ndarray) -> tuple[float, float]:
    """(min, max) of the inverse depth as :func:`leve.predict.colorize` computes it."""
    inv = 1.0 / np.maximum(depth, 1e-6)
    return float(inv.min()), float(inv.max())


def colour_frame(depth: np.ndarray, lo: float, hi: float, lut: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8: inverse depth scaled from ``lo..hi`` (one range for the whole video)."""
    inv = 1.0 / np.maximum(depth, 1e-6)
    norm = np.clip((inv - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(inv)
    return lut[np.rint(norm * 255).astype(np.intp)]


def video_rate(times: list[float]) -> Fraction:
    """Frames per second of frames at ``times`` (s), as their mean spacing says; 1 for one frame."""
    span = times[-1] - times[0] if times else 0.0
    if len(times) < 2 or span <= 0:
        return Fraction(1)
    return Fraction((len(times) - 1) / span).limit_denominator(1001)


class DepthVideoWriter:
    """An MP4 written frame by frame with PyAV (yuv420p; odd sizes padded by one edge pixel)."""

    def __init__(self, path: Path, rate: Fraction, height: int, width: int) -> None:
        import av

        codec = next((c for c in VIDEO_CODECS if c in av.codecs_available), None)
        if codec is None:
            raise LeveError(f"{path}: this FFmpeg build has none of the encoders {', '.join(VIDEO_CODECS)}")
        self.path, self.frames = path, 0
        self.height, self.width = height + height % 2, width + width % 2
        self._container = av.open(str(path), "w")
        self._stream = self._container.add_stream(codec, rate=rate)
        self._stream.width, self._stream.height, self._stream.pix_fmt = self.width, self.height, "yuv420p"

    def write(self, rgb: np.ndarray) -> None:
        import av

        h, w = rgb.shape[:2]
        if (h, w) != (self.height, self.width):
            rgb = np.pad(rgb, ((0, self.height - h), (0, self.width - w), (0, 0)), mode="edge")
        for packet in self._stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
            self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()

    def __enter__(self) -> DepthVideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- predict on a video


@dataclass(frozen=True)
class VideoOptions:
    """What :func:`predict_video` writes."""

    out_dir: Path
    depth_format: str = "png16"
    cmap: str = "magma"
    every: int = 1
    cloud: CloudOptions | None = None
    threshold: float = STATIC_THRESHOLD
    encoding: DepthEncoding | None = None  # what the per-frame maps hold (default: metric in depth_format)

    @property
    def maps(self) -> DepthEncoding:
        from leve.outputs.depthfiles import DepthEncoding

        return self.encoding or DepthEncoding("metric", self.depth_format)


@dataclass
class VideoResult:
    """What one video gave: the files written and the figures."""

    source: str
    frames: int
    fps: float
    video: Path
    report: Path
    stability: Stability
    written: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        return f"{self.source}: {self.frames} frames -> {self.video}; {self.stability.describe()}"


def _metric_bytes(depth: np.ndarray, encoding: DepthEncoding) -> bytes:
    """A per-frame map's bytes, as ``encoding`` says (metric mm / m, or a relative model's inverse depth)."""
    return encoding.encode(depth)


def _read_metric(path: Path, encoding: DepthEncoding) -> np.ndarray:
    """A per-frame map written by :func:`_metric_bytes`, back as the depth it was written from."""
    return encoding.decode(path.read_bytes(), str(path))


def predict_video(path: Path, depth_of: Callable[[np.ndarray], np.ndarray], opts: VideoOptions) -> VideoResult:
    """Predict every kept frame of ``path`` (``depth_of``: RGB -> metric depth), write the maps,
    the depth video and the report; one line for an unreadable video or one without frames."""
    from leve.datasets.video import close_videos, probe, read_frame, select_frames

    info = probe(path)
    kept = select_frames(info, opts.every)
    camera = None
    if opts.cloud is not None:
        from leve.outputs.intrinsics import resolve

        camera = resolve(opts.cloud.camera, info.height, info.width, str(path))
    frames_dir = opts.out_dir / f"{path.stem}_frames"  # made by the first map's write
    suffix = opts.maps.suffix
    meter, maps, written = StabilityMeter(opts.threshold), [], []
    lo, hi = np.inf, -np.inf
    try:
        for k in kept:
            rgb = read_frame(str(path), info.pts[k], info.keyframes)
            depth = depth_of(rgb)
            maps.append(frames_dir / f"{k:06d}{suffix}")
            write_bytes(maps[-1], _metric_bytes(depth, opts.maps))
            meter.add(rgb, depth)
            f_lo, f_hi = inverse_range(depth)
            lo, hi = min(lo, f_lo), max(hi, f_hi)
            if camera is not None and opts.cloud is not None:
                written.append(write_cloud(frames_dir / f"{k:06d}.ply", depth, rgb, camera, opts.cloud.scale or 1.0))
    finally:
        close_videos(str(path))
    rate = video_rate([info.time(k) for k in kept])
    video = _write_depth_video(opts.out_dir / f"{path.stem}_depth.mp4", maps, rate, (lo, hi), opts.cmap, opts.maps)
    stability = meter.result()
    report = opts.out_dir / f"{path.stem}_video.json"
    body: dict[str, Any] = {"source": str(path), "frames": len(kept), "every": opts.every, "fps": float(rate),
                            "size": [info.height, info.width], "depth_video": video.name, "frames_dir": frames_dir.name,
                            "temporal_stability": {**asdict(stability), "measure": MEASURE}}
    if camera is not None:
        body["intrinsics"] = asdict(camera)
    write_text(report, json.dumps(body, indent=2) + "\n")
    return VideoResult(str(path), len(kept), float(rate), video, report, stability, [*maps, *written, video, report])


def _write_depth_video(path: Path, maps: list[Path], rate: Fraction, inv_range: tuple[float, float],
                       cmap: str, encoding: DepthEncoding) -> Path:
    """Colour every per-frame map over one inverse-depth range into an MP4 (encoded under a temporary
    name, renamed when whole)."""
    lut = colour_lut(cmap)
    first = _read_metric(maps[0], encoding)
    with atomic_path(path) as tmp, DepthVideoWriter(tmp, rate, *first.shape) as writer:
        for p in maps:
            writer.write(colour_frame(_read_metric(p, encoding), *inv_range, lut))
    return path



def split_videos(inputs: Iterable[str | Path]) -> tuple[list[Path], list[Path]]:
    """Videos named or inside the given folders (non-recursive), and the inputs left for images
    (a folder stays there unless it holds only videos)."""
    from leve.datasets.video import VIDEO_EXTENSIONS
    from leve.outputs.depthfiles import IMAGE_SUFFIXES

    videos: list[Path] = []
    rest: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found = sorted(p for p in item.iterdir() if p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS)
            videos += found
            if not found or any(p.suffix.lower() in IMAGE_SUFFIXES for p in item.iterdir()):
                rest.append(item)
        elif item.is_file() and item.suffix.lower() in VIDEO_EXTENSIONS:
            videos.append(item)
        else:
            rest.append(item)
    seen: dict[str, Path] = {}
    for v in videos:
        if v.stem in seen:
            raise LeveError(f"{v}: same name as {seen[v.stem]}; outputs would overwrite each other")
        seen[v.stem] = v
    return videos, rest
