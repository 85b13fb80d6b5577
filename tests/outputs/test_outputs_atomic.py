"""``leve predict`` on a full disk: a real write failure (RLIMIT_FSIZE: EFBIG, as ENOSPC on a full disk) in a
real process ends in one line, exit 1, the outputs of an earlier run byte for byte and no temporary file."""

from __future__ import annotations

import sys

import pytest
from PIL import Image

from tests.limits import run_limited, snapshot, temporaries
from tests.outputs.conftest import moving_square, write_video


@pytest.mark.slow
@pytest.mark.parametrize("what", ["image", "video"])
def test_predict_on_a_full_disk_keeps_the_earlier_outputs(tmp_path, metric_checkpoint, what):
    out = tmp_path / "o"
    earlier = {"a_depth.png": b"earlier colour map", "a_depth16.png": b"earlier depth", "clip_depth.mp4": b"earlier video",
               "clip_video.json": b"{}\n", "clip_frames/000000_depth16.png": b"earlier frame"}
    for name, data in earlier.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_bytes(data)
    if what == "image":
        Image.fromarray(moving_square(1, 48, 64)[0]).save(tmp_path / "a.png")
        source = tmp_path / "a.png"
    else:
        source = write_video(tmp_path / "clip.mp4", moving_square(4, 48, 64), fps=10)
    args = [sys.executable, "-m", "leve", "predict", str(source), "--checkpoint", str(metric_checkpoint), "--out", str(out),
            "--runtime", "eager"]
    done = run_limited(args, 1024, tmp_path)  # every output here is larger than 1 KB
    assert done.returncode == 1, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if "rror" in line or "Traceback" in line]
    assert len(errors) == 1 and errors[0].startswith(f"error: {out}/"), done.stderr[-3000:]
    assert "cannot write: file too large for this file system or its limits" in errors[0]
    assert snapshot(out) == earlier
    assert temporaries(out) == []
    assert run_limited(args, None, tmp_path).returncode == 0  # the limit made the difference
    assert snapshot(out)["a_depth.png" if what == "image" else "clip_depth.mp4"] != earlier[
        "a_depth.png" if what == "image" else "clip_depth.mp4"]
