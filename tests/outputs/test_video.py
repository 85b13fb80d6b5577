"""``leve predict`` on a video: the temporal-stability figure against hand values and a naive
second implementation, the depth video and per-frame maps, and bad videos."""

from __future__ import annotations

import json
from fractions import Fraction

import av
import numpy as np
import pytest
from matplotlib import colormaps
from PIL import Image

from leve.outputs.video import STATIC_THRESHOLD, DepthVideoWriter, temporal_stability
from tests.outputs.conftest import moving_square, read_video, write_video


def naive_stability(frames: list[np.ndarray], depths: list[np.ndarray], threshold: float) -> float | None:
    """The module doc's measure, pixel by pixel in plain Python."""
    changes = []
    for t in range(1, len(frames)):
        aligned = []
        for d in (depths[t - 1], depths[t]):
            values = sorted(float(v) for v in d.ravel() if np.isfinite(v) and v > 0)
            n = len(values)
            median = values[n // 2] if n % 2 else 0.5 * (values[n // 2 - 1] + values[n // 2])
            aligned.append(d.astype(np.float64) / median)
        diff_sum, mean_sum, count = 0.0, 0.0, 0
        h, w = depths[t].shape
        for i in range(h):
            for j in range(w):
                rgb_change = sum(abs(int(frames[t][i, j, c]) - int(frames[t - 1][i, j, c])) for c in range(3)) / 3
                a, b = aligned[1][i, j], aligned[0][i, j]
                if rgb_change < threshold and depths[t][i, j] > 0 and depths[t - 1][i, j] > 0:
                    diff_sum += abs(a - b)
                    mean_sum += (a + b) / 2
                    count += 1
        if count:
            changes.append((diff_sum / count) / (mean_sum / count))
    return sum(changes) / len(changes) if changes else None


def test_static_scene_scores_zero_even_with_a_scale_drift():
    rgb = moving_square(1, 8, 10)[0]
    depth = np.linspace(1.0, 5.0, 80).reshape(8, 10)
    result = temporal_stability([rgb] * 4, [depth, 2 * depth, depth, 0.5 * depth])
    assert result.value == 0.0 and result.pairs == 3 and result.static_fraction == 1.0


def test_known_change_gives_the_hand_computed_value():
    rgb = np.full((4, 4, 3), 100, np.uint8)
    d1 = np.full((4, 4), 2.0)
    d2 = d1.copy()
    d2[0, :] = 4.0  # 4 of 16 pixels twice as far; the median stays 2
    # aligned: a1 = 1 everywhere, a2 = 2 on 4 pixels -> mean |a2 - a1| = 4/16 = 0.25,
    # mean (a1 + a2)/2 = (16 + 20) / 32 = 1.125 -> 0.25 / 1.125 = 2/9
    assert temporal_stability([rgb, rgb], [d1, d2]).value == pytest.approx(2 / 9, rel=1e-12)
    moved = rgb.copy()
    moved[0, :] = 200  # those pixels' colour changed: no longer static, so nothing counts
    result = temporal_stability([rgb, moved], [d1, d2])
    assert result.value == 0.0 and result.static_fraction == pytest.approx(12 / 16)
    assert temporal_stability([rgb, 255 - rgb], [d1, d2]).value is None  # no static pixel at all


def test_stability_matches_a_naive_computation():
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)]
    depths = [rng.uniform(0.5, 6.0, (9, 11))]
    for _ in range(4):
        img = frames[-1].copy()
        moving = rng.random((9, 11)) < 0.3
        img[moving] = rng.integers(0, 256, (int(moving.sum()), 3))
        frames.append(img)
        d = depths[-1] * rng.uniform(0.7, 1.3) + rng.normal(0, 0.05, (9, 11))
        d[rng.random((9, 11)) < 0.1] = 0.0  # invalid pixels are left out
        depths.append(d)
    expected = naive_stability(frames, depths, STATIC_THRESHOLD)
    assert expected is not None and expected > 0
    assert temporal_stability(frames, depths).value == pytest.approx(expected, rel=1e-9)


def test_odd_frame_sizes_are_padded_for_yuv420(tmp_path):
    path = tmp_path / "odd.mp4"
    with DepthVideoWriter(path, rate=Fraction(5), height=47, width=63) as writer:
        for v in (30, 120, 220):
            writer.write(np.full((47, 63, 3), v, np.uint8))
    frames = read_video(path)
    assert len(frames) == 3 and frames[0].shape == (48, 64, 3)
    assert abs(float(frames[1].mean()) - 120) < 3  # the padding repeats the edge pixels


def test_predict_video_writes_maps_depth_video_and_stability(tmp_path, metric_checkpoint, run_cli):
    frames = moving_square(6, 48, 64)
    src = write_video(tmp_path / "clip.mp4", frames, fps=10)
    decoded = read_video(src)  # what leve sees: the decoded frames, independently of leve
    out = tmp_path / "o"
    res = run_cli("predict", src, "--checkpoint", metric_checkpoint, "--out", out, "--depth-format", "npy")
    assert res.code == 0, res.stderr
    maps = sorted((out / "clip_frames").iterdir())
    assert [p.name for p in maps] == [f"{k:06d}_depth.npy" for k in range(6)]
    depths = [np.load(p) for p in maps]
    assert all(d.shape == (48, 64) and d.dtype == np.float32 for d in depths)

    video = read_video(out / "clip_depth.mp4")
    assert len(video) == 6 and video[0].shape == (48, 64, 3)
    with av.open(str(out / "clip_depth.mp4")) as c:
        assert c.streams.video[0].average_rate == 10
    inv = [1.0 / np.maximum(d, 1e-6) for d in depths]  # one colour range for the whole video
    lo, hi = min(float(i.min()) for i in inv), max(float(i.max()) for i in inv)
    lut = (colormaps["magma"](np.linspace(0, 1, 256))[:, :3] * 255 + 0.5).astype(np.uint8)
    for got, i in zip(video, inv):
        want = lut[np.rint((i - lo) / (hi - lo) * 255).astype(int)]
        assert np.abs(got.astype(int) - want.astype(int)).mean() < 6  # H.264 at its default quality

    report = json.loads((out / "clip_video.json").read_text())
    expected = naive_stability(decoded, depths, STATIC_THRESHOLD)
    assert report["frames"] == 6 and report["fps"] == 10.0
    assert report["temporal_stability"]["value"] == pytest.approx(expected, rel=1e-6)
    assert report["temporal_stability"]["pairs"] == 5
    assert f"temporal stability {expected:.4f}" in res.stderr  # the console line


def test_every_kth_frame_and_png16_maps(tmp_path, metric_checkpoint, run_cli):
    src = write_video(tmp_path / "walk.mp4", moving_square(7, 48, 64), fps=10)
    out = tmp_path / "o"
    res = run_cli("predict", src, "--checkpoint", metric_checkpoint, "--out", out, "--every", "3")
    assert res.code == 0, res.stderr
    assert sorted(p.name for p in (out / "walk_frames").iterdir()) == [
        "000000_depth16.png", "000003_depth16.png", "000006_depth16.png"]
    assert len(read_video(out / "walk_depth.mp4")) == 3
    assert json.loads((out / "walk_video.json").read_text())["fps"] == pytest.approx(10 / 3)


def test_a_folder_of_images_and_videos(tmp_path, metric_checkpoint, run_cli):
    src = tmp_path / "in"
    src.mkdir()
    write_video(src / "clip.mp4", moving_square(2, 48, 64))
    Image.fromarray(moving_square(1, 40, 60)[0]).save(src / "still.png")
    res = run_cli("predict", src, "--checkpoint", metric_checkpoint, "--out", tmp_path / "o")
    assert res.code == 0, res.stderr
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [
        "clip_depth.mp4", "clip_frames", "clip_video.json", "still_depth.png", "still_depth16.png"]


@pytest.mark.parametrize("kind", ["unreadable", "no frames"])
def test_bad_video_is_one_line_naming_the_file(tmp_path, metric_checkpoint, run_cli, kind):
    if kind == "unreadable":
        src = tmp_path / "broken.mp4"
        src.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 50)
        message = "broken.mp4: cannot read video"
    else:
        src = tmp_path / "empty.avi"
        with av.open(str(src), "w") as c:  # a header, a stream and no frame
            stream = c.add_stream("mpeg4", rate=10)
            stream.width, stream.height = 64, 48
            c.start_encoding()
        message = "empty.avi: video has no frames"
    res = run_cli("predict", src, "--checkpoint", metric_checkpoint, "--out", tmp_path / "o")
    assert res.code == 1
    errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0] and "Traceback" not in res.stderr, res.stderr
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").rglob("*.mp4"))
