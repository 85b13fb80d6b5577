"""Video files as frames, through PyAV (FFmpeg bundled in its wheels).

:func:`probe` lists a video's frames from its packets (no decoding, plus one decoded frame for
the size; frames over the pixel cap of images are refused from the stream's declared size before
anything is decoded), :func:`select_frames` keeps every k-th frame or one frame per 1/fps seconds, and
:func:`read_frame` decodes the kept frames, keeping each video open in each process.
Frames are stored as decoded: a display rotation in the file's metadata is not applied.
"""

from __future__ import annotations

import bisect
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from leve.errors import LeveError, shown
from leve.limits import MAX_PIXELS

VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg")


@dataclass(frozen=True)
class VideoInfo:
    """A video's frames: presentation and keyframe timestamps (sorted, in ``time_base``
    seconds) and the size of its frames."""

    path: str
    pts: tuple[int, ...]
    keyframes: tuple[int, ...]
    time_base: Fraction
    height: int
    width: int

    def time(self, k: int) -> float:
        """Seconds of frame ``k``."""
        return float(self.pts[k] * self.time_base)


def _open(path: str | Path) -> Any:
    """The container, opened with FFmpeg's ``max_pixels`` codec option at the pixel cap: FFmpeg's own
    stream probing (which decodes a first frame for some formats) refuses a frame over the cap instead
    of allocating it, and leaves the stream's size unknown (0 x 0)."""
    import av

    try:
        return av.open(str(path), options={"max_pixels": str(MAX_PIXELS)})
    except Exception as exc:  # FFmpeg raises many error types for corrupt input
        raise LeveError(f"{path}: cannot read video ({exc.__class__.__name__}: {shown(str(exc), quote=False)})") from exc


def probe(path: str | Path) -> VideoInfo:
    """The frames of ``path`` (its first video stream); one line for unreadable or empty videos."""
    with _open(path) as container:
        if not container.streams.video:
            raise LeveError(f"{path}: no video stream (no frames)")
        stream = container.streams.video[0]
        try:  # packets only: nothing is decoded
            packets = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.size > 0]
        except Exception as exc:
            raise LeveError(f"{path}: cannot read video ({exc.__class__.__name__}: {shown(str(exc), quote=False)})") from exc
        if not packets:
            raise LeveError(f"{path}: video has no frames")
        check_frame_size(path, stream.codec_context.width, stream.codec_context.height)  # before any decoding
        if any(t is None for t, _ in packets):
            raise LeveError(f"{path}: video packets lack timestamps (remux it, e.g. `ffmpeg -i IN -c copy OUT.mp4`)")
        time_base = Fraction(stream.time_base)
    stamps = tuple(sorted(t for t, _ in packets))
    keyframes = tuple(sorted(t for t, key in packets if key))
    try:
        first = read_frame(str(path), stamps[0], keyframes)
    finally:
        close_videos(str(path))
    return VideoInfo(str(path), stamps, keyframes, time_base, first.shape[0], first.shape[1])


def check_frame_size(path: str | Path, width: int, height: int) -> None:
    """Refuse frames of more pixels than images may have (:data:`leve.limits.MAX_PIXELS`), from the
    size the stream declares, and a stream whose size FFmpeg could not learn within that cap (0 x 0:
    see :func:`_open`); each decoded frame is checked too."""
    if int(width) * int(height) == 0:
        raise LeveError(f"{path}: video frames over the cap of {MAX_PIXELS:,} pixels (as for images), or of a size "
                        "the file does not say: refused before decoding")
    if int(width) * int(height) > MAX_PIXELS:
        raise LeveError(f"{path}: video frames of {height}x{width} are {int(width) * int(height):,} pixels, over the cap "
                        f"of {MAX_PIXELS:,} (as for images)")


def select_frames(info: VideoInfo, every: int = 1, fps: float | None = None) -> list[int]:
    """Indices of the kept frames: every ``every``-th from the first, or (``fps``) the first
    frame at or after each multiple of 1/fps seconds from the first frame's time."""
    if fps is None:
        return list(range(0, len(info.pts), max(int(every), 1)))
    step, start = 1.0 / fps, info.time(0)
    kept, slot = [], 0
    for k in range(len(info.pts)):
        t = info.time(k) - start
        if t >= slot * step - 1e-9:
            kept.append(k)
            slot = int(np.floor(t / step + 1e-9)) + 1
    return kept


# Per process: open videos (path -> [container, stream, frame iterator, last decoded pts]).
_OPEN: dict[str, list[Any]] = {}
_OPEN_PID = [os.getpid()]
MAX_OPEN = 4


def _entry(path: str) -> list[Any]:
    if _OPEN_PID[0] != os.getpid():  # a forked copy must not share FFmpeg state
        _OPEN.clear()
        _OPEN_PID[0] = os.getpid()
    if path not in _OPEN:
        while len(_OPEN) >= MAX_OPEN:
            _OPEN.pop(next(iter(_OPEN)))[0].close()
        container = _open(path)
        _OPEN[path] = [container, container.streams.video[0], None, None]
    return _OPEN[path]


def read_frame(path: str, pts: int, keyframes: tuple[int, ...] = ()) -> np.ndarray:
    """The frame of ``path`` whose timestamp is ``pts``, as RGB (H, W, 3) uint8.

    Videos stay open in each process, so frames asked for in increasing order are decoded
    forward; it seeks only to go back, or when a keyframe (``keyframes``: the video's keyframe
    timestamps, sorted) lies between the last decoded frame and the wanted one, as decoding from
    that keyframe is then never longer."""
    entry = _entry(path)
    container, stream, frames, last = entry
    keyframe_between = last is not None and bisect.bisect_right(keyframes, pts) > bisect.bisect_right(keyframes, last)
    if frames is None or last is None or pts <= last or keyframe_between:
        container.seek(pts, stream=stream, backward=True)
        entry[2], entry[3] = container.decode(stream), None
    where = f"{path}: frame at {pts * float(stream.time_base):.3f} s"
    try:
        for fr in entry[2]:
            entry[3] = fr.pts
            if fr.pts is not None and fr.pts == pts:
                check_frame_size(path, fr.width, fr.height)  # a stream may change size mid-way
                return np.ascontiguousarray(fr.to_ndarray(format="rgb24"))
            if fr.pts is not None and fr.pts > pts:
                break
    except LeveError:
        entry[2] = None
        raise
    except Exception as exc:  # FFmpeg raises many error types for corrupt input
        entry[2] = None
        raise LeveError(f"{where}: cannot decode ({exc.__class__.__name__}: {shown(str(exc), quote=False)})") from exc
    entry[2] = None
    raise LeveError(f"{where}: not found (the video ends early or skips it)")


def close_videos(path: str | None = None) -> None:
    """Close the video ``path`` (or every video) this process holds open."""
    for key in [path] if path is not None else list(_OPEN):
        entry = _OPEN.pop(key, None)
        if entry is not None:
            entry[0].close()
