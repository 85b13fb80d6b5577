"""``leve bench io``: the readers return what the stores hold, and the JSON's ratios agree with its figures."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from leve.bench import io as bench_io


def test_bench_io_readers_and_ratios(tmp_path):
    result = bench_io.run(samples=4, workers=0, repeats=1, workdir=tmp_path)
    readers = result["readers"]
    assert set(readers) == {"source_zip", "store_raw", "store_jpeg", "store_jpeg_half_res"}
    base = readers["source_zip"]
    for r in readers.values():
        assert r["speedup_single"] == pytest.approx(r["single_process_samples_per_s"] / base["single_process_samples_per_s"])
        assert r["bytes_ratio"] == pytest.approx(r["bytes"] / base["bytes"])
    half = readers["store_jpeg_half_res"]
    assert half["bytes"] == readers["store_jpeg"]["bytes"] and half["rgb_at"] == [240, 320]
    assert half["meets_half_res_goal"] == (half["speedup_single_cpu"] >= 3.0 and half["bytes_ratio"] <= 1.1)
    # the half-resolution reader returns Pillow's own 1/2-scale decode of the stored JPEG, and the depth
    from leve.store.reader import open_split

    split = open_split(tmp_path / "nyu_jpeg.zarr", "train")
    rgb, depth = bench_io.StoreReader(str(tmp_path / "nyu_jpeg.zarr"), draft=(240, 320))(1)
    img = Image.open(io.BytesIO(split.rgb_bytes(1)))
    img.draft("RGB", (320, 240))
    assert np.array_equal(rgb, np.asarray(img)) and rgb.flags.writeable and depth.flags.writeable
    assert np.array_equal(depth, split.depth(1))
