"""Store API contract: completion marker, resumption, padding, info and preview."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from leve.datasets.build import SplitSource, build_store
from leve.datasets.synthetic import Config as SynthConfig
from leve.errors import LeveError
from leve.params import build_config, parse_overrides
from leve.store.format import SplitSpec, dataset_arrays
from leve.store.reader import is_complete, open_split, open_store
from tests.factories import synthetic_store

META = {"source": "str", "height": "int32", "width": "int32"}


class Loader:
    """Samples of varying size (like KITTI) with values derived from the index."""

    def __init__(self, fail_at: int | None = None):
        self.fail_at = fail_at

    def __call__(self, i):
        if i == self.fail_at:
            raise LeveError(f"sample{i}.png: cannot decode image")
        h, w = 10 + i % 3, 12 - i % 2
        rgb = np.full((h, w, 3), i, np.uint8)
        depth = np.full((h, w), 0.5 * i, np.float32)
        return {"rgb": rgb, "depth": depth}, {"source": f"sample{i}.png", "height": h, "width": w}


def _build(path, loader, n=7, block=3):
    spec = SplitSpec("test", n, dataset_arrays(12, 12), META)
    return build_store(path, {"dataset": "toy", "units": "metres", "max_depth": 4.0}, "v1",
                       [SplitSource(spec, loader)], block_size=block, show_progress=False)


def test_padded_samples_read_back_at_true_size(tmp_path):
    _build(tmp_path / "s.zarr", Loader())
    s = open_split(tmp_path / "s.zarr", "test")
    for i in range(7):
        rgb, depth = Loader()(i)[0].values()
        np.testing.assert_array_equal(s.rgb(i), rgb)
        np.testing.assert_array_equal(s.depth(i), depth)
        assert s.size(i) == rgb.shape[:2]
    assert s[-1].index == 6
    with pytest.raises(IndexError):
        s.rgb(7)


def test_failure_leaves_no_complete_store_and_resume_finishes(tmp_path):
    path = tmp_path / "s.zarr"
    with pytest.raises(LeveError, match="sample4.png"):
        _build(path, Loader(fail_at=4))
    assert not path.exists() and not is_complete(path)
    with pytest.raises(LeveError, match="incomplete|no store"):
        open_store(path.with_name("s.zarr.partial"))
    calls = []

    class Counting(Loader):
        def __call__(self, i):
            calls.append(i)
            return super().__call__(i)

    result = _build(path, Counting())
    assert result.resumed and sorted(calls) == [3, 4, 5, 6]  # block 0 (samples 0-2) was kept
    assert is_complete(path) and not path.with_name("s.zarr.partial").exists()


def test_changed_params_rebuild_from_scratch(tmp_path):
    path = tmp_path / "s.zarr"
    _build(path, Loader())
    spec = SplitSpec("test", 2, dataset_arrays(12, 12), META)
    build_store(path, {"dataset": "toy"}, "v2", [SplitSource(spec, Loader())], block_size=3, show_progress=False)
    assert len(open_split(path, "test")) == 2


def test_info_and_preview(tmp_path, run_cli):
    path = tmp_path / "s.zarr"
    _build(path, Loader())
    res = run_cli("info", path, "--json")
    assert res.code == 0, res.stderr
    info = json.loads(res.stdout)
    assert info["complete"] and info["attrs"]["units"] == "metres"
    assert info["splits"]["test"]["arrays"]["rgb"] == {"shape": [7, 12, 12, 3], "dtype": "uint8"}
    assert info["splits"]["test"]["arrays"]["depth"]["dtype"] == "float32"
    assert set(info["splits"]["test"]["meta"]) == {"source", "height", "width"}
    assert info["bytes"] > 0
    assert run_cli("info", path).code == 0
    out = tmp_path / "grid.png"
    res = run_cli("preview", path, "--split", "test", "--count", "4", "--out", out)
    assert res.code == 0, res.stderr
    img = np.asarray(Image.open(out))
    assert img.ndim == 3 and img.shape[1] > img.shape[0]
    res = run_cli("info", tmp_path / "missing.zarr")
    assert res.code == 1 and "missing.zarr" in res.stderr


def test_params_refuse_unknown_and_coerce():
    with pytest.raises(LeveError, match="unknown parameter.*heigth"):
        build_config(SynthConfig, {"heigth": 10}, "prepare.synthetic")
    with pytest.raises(LeveError, match="expected int"):
        build_config(SynthConfig, {"height": "tall"}, "prepare.synthetic")
    cfg = build_config(SynthConfig, parse_overrides(["height=64", "out=x.zarr"]), "prepare.synthetic")
    assert cfg.height == 64 and str(cfg.out) == "x.zarr"


def test_fast_shard_reads_equal_zarr(tmp_path):
    """The direct shard reader (leve/store/fastread.py) against Zarr's own read, sample by sample."""
    import zarr

    from leve.store.fastread import shard_reader

    out = tmp_path / "syn.zarr"
    synthetic_store(out, height=24, width=32, train=7, val=1, test=1, block_size=3)
    group = zarr.open_group(str(out), mode="r")["train"]
    for name in ("rgb", "depth"):
        reader = shard_reader(out / "train" / name)
        assert reader is not None
        for i in range(7):
            fast = reader.read(i)
            ref = np.asarray(group[name][i])
            assert fast.dtype == ref.dtype
            np.testing.assert_array_equal(fast, ref)
    assert shard_reader(out / "train" / "meta" / "source") is None  # unsharded strings: Zarr path


def test_depth_reads_alike_from_every_codec_also_into_a_buffer(tmp_path):
    """Depth written with zstd (a store's default) or shuffled LZ4-HC (a teacher cache's maps) reads the
    same through the direct shard reader and Zarr, also into a given buffer, also cropped."""
    import zarr

    from leve.store.format import ArraySpec

    assert dataset_arrays(12, 12)["depth"].compressor == "zstd"
    for codec, inner in (("zstd", "zstd"), ("blosc-lz4hc-shuffle", "blosc")):
        arrays = {**dataset_arrays(12, 12), "depth": ArraySpec((12, 12), "float32", codec)}
        path = tmp_path / f"{codec}.zarr"
        build_store(path, {"dataset": "toy", "units": "metres", "max_depth": 4.0}, "v1",
                    [SplitSource(SplitSpec("test", 7, arrays, META), Loader())], block_size=3, show_progress=False)
        meta = json.loads((path / "test" / "depth" / "zarr.json").read_text())
        assert [c["name"] for c in meta["codecs"][0]["configuration"]["codecs"]] == ["bytes", inner, "crc32c"]
        split = open_split(path, "test")
        group = zarr.open_group(str(path), mode="r")["test"]
        for i in range(7):
            want = Loader()(i)[0]["depth"]
            h, w = want.shape
            np.testing.assert_array_equal(np.asarray(group["depth"][i])[:h, :w], want)
            buf = np.full((h, w), -1, np.float32)
            assert split.depth(i, out=buf) is buf  # full-size samples decode into it, smaller ones are cropped into it
            np.testing.assert_array_equal(buf, want)
            np.testing.assert_array_equal(split.depth(i), want)
