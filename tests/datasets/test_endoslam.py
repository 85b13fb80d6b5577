"""EndoSLAM UnityCam store: real folder names (with the space), RGBA depth PNGs, nested zips."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from leve.cli import app
from leve.datasets import endoslam
from leve.errors import LeveError
from leve.sources.archive import close_all, list_tree
from leve.store.format import PARTIAL_SUFFIX
from leve.store.images import encode_png
from leve.store.reader import is_complete, open_split

H, W = 10, 12
# organ -> frame numbers present as image / as depth (gaps on purpose)
FRAMES = {
    "Colon": (range(1, 8), range(1, 8)),
    "Small Intestine": ([1, 2, 3, 4, 5, 6, 7], [1, 2, 4, 5, 6, 7, 9]),  # 3 lacks depth, 9 lacks image
    "Stomach": (range(10, 13), range(10, 13)),  # fewer than per_organ
}
PER_ORGAN = 4


def write_tree(root: Path) -> dict[tuple[str, int], tuple[np.ndarray, np.ndarray]]:
    """``UnityCam/<organ>/{Frames,Pixelwise Depths,Poses}`` with RGB frames and RGBA depth PNGs."""
    truth = {}
    for k, (organ, (imgs, deps)) in enumerate(FRAMES.items()):
        base = root / "UnityCam" / organ
        for sub in ("Frames", "Pixelwise Depths", "Poses"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        (base / "Poses" / "poses.csv").write_text("frame,x,y,z\n")
        for n in sorted(set(imgs) | set(deps)):
            rng = np.random.default_rng(100 * k + n)
            rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
            rgba = rng.integers(0, 256, (H, W, 4), dtype=np.uint8)  # depth in R; G, B, A unrelated
            if n in imgs:
                (base / "Frames" / f"image_{n:04d}.png").write_bytes(encode_png(rgb))
            if n in deps:
                (base / "Pixelwise Depths" / f"aov_image_{n:04d}.png").write_bytes(encode_png(rgba))
            truth[(organ, n)] = (rgb, rgba)
    return truth


def expected_selection() -> dict[str, list[int]]:
    """The documented rule, computed here: positions round(i (n-1) / (k-1)) of the sorted pairs."""
    out = {}
    for organ, (imgs, deps) in FRAMES.items():
        pairs = sorted(set(imgs) & set(deps))
        n, k = len(pairs), PER_ORGAN
        out[organ] = pairs if n <= k else [pairs[round(i * (n - 1) / (k - 1))] for i in range(k)]
    return out


@pytest.fixture()
def tree(tmp_path: Path):
    truth = write_tree(tmp_path / "src")
    yield tmp_path / "src", truth
    close_all()


def cfg_for(tmp_path: Path, source: Path, **kw: object) -> endoslam.Config:
    args = {"out": tmp_path / "endo.zarr", "raw": tmp_path / "cache", "source": source,
            "per_organ": PER_ORGAN, "block_size": 3, **kw}
    return endoslam.Config(**args)  # type: ignore[arg-type]


def check_store(path: Path, truth: dict) -> None:
    s = open_split(path, "test")
    want = expected_selection()
    organs = s.meta["organ"].tolist()
    frames = s.meta["frame"].tolist()
    assert list(zip(organs, frames, strict=True)) == [(o, n) for o, ns in want.items() for n in ns]
    for i in range(len(s)):
        rgb, rgba = truth[(organs[i], frames[i])]
        np.testing.assert_array_equal(s.rgb(i), rgb)
        np.testing.assert_allclose(s.depth(i), rgba[..., 0].astype(np.float64) / 255.0, rtol=1e-7, atol=0)
        assert s.depth(i).dtype == np.float32
    ranges = s.attrs["organ_ranges"]
    for organ, (a, b) in ranges.items():
        assert set(organs[a:b]) == {organ} and b - a == len(want[organ])
    root = zarr.open_group(str(path)).attrs
    assert root["units"] == "relative" and root["max_depth"] == 1.0 and "not metres" in root["units_note"]
    assert not [k for k in root if "crop" in k]  # evaluation scores it in full (protocols.CROPS)
    assert root["selection"]["organs"]["Small Intestine"]["missing_depth"] == [3]
    assert root["selection"]["organs"]["Small Intestine"]["missing_image"] == [9]


def test_store_from_folder(tree, tmp_path, capsys):
    src, truth = tree
    res = endoslam.prepare(cfg_for(tmp_path, src), show_progress=False)
    assert res.samples == 4 + 4 + 3
    check_store(tmp_path / "endo.zarr", truth)
    err = capsys.readouterr().err
    assert "skipped 1 frame(s) without depth [3]" in err and "only 3 complete pairs" in err


def test_store_from_nested_zips(tree, tmp_path):
    """Mendeley-style: an outer zip holding a zip per organ (and a plain folder for one)."""
    src, truth = tree
    outer = tmp_path / "EndoSLAM.zip"
    with zipfile.ZipFile(outer, "w") as z:
        for organ in ("Colon", "Small Intestine"):
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as inner:
                for p in sorted((src / "UnityCam" / organ).rglob("*")):
                    if p.is_file():
                        inner.write(p, p.relative_to(src / "UnityCam").as_posix())
            z.writestr(f"EndoSLAM/UnityCam/{organ}.zip", buf.getvalue())
        for p in sorted((src / "UnityCam" / "Stomach").rglob("*")):
            if p.is_file():
                z.write(p, f"EndoSLAM/{p.relative_to(src).as_posix()}")
    endoslam.prepare(cfg_for(tmp_path, outer), show_progress=False)
    check_store(tmp_path / "endo.zarr", truth)
    attrs = zarr.open_group(str(tmp_path / "endo.zarr")).attrs
    assert attrs["sources"][0]["size"] == outer.stat().st_size and len(attrs["sources"][0]["sha256"]) == 64
    s = open_split(tmp_path / "endo.zarr", "test")
    assert s.meta["source"][0] == "EndoSLAM.zip/EndoSLAM/UnityCam/Colon.zip/Colon/Frames/image_0001.png"


def test_selection_rules():
    nums = list(range(100, 110))
    assert endoslam.select(nums, 4, "even") == [100, 103, 106, 109]
    assert endoslam.select(nums, 3, "first") == [100, 101, 102]
    assert endoslam.select(nums[:2], 5, "even") == [100, 101]
    with pytest.raises(LeveError, match="selection must be one of"):
        endoslam.select(nums, 3, "random")


def test_archive_member_escaping_is_refused(tmp_path):
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("UnityCam/Colon/Frames/image_0001.png", b"x")
        z.writestr("../../etc/evil.png", b"x")
    with pytest.raises(LeveError, match=r"bad.zip: unsafe member path '../../etc/evil.png'"):
        list_tree(bad, tmp_path / "cache")
    assert not (tmp_path.parent / "etc").exists()
    close_all()


def test_no_source_says_how_to_get_it(tmp_path):
    cfg = endoslam.Config(out=tmp_path / "e.zarr", raw=tmp_path / "cache")
    with pytest.raises(LeveError, match=r"data.mendeley.com/datasets/cd2rtzm23r.*--source"):
        endoslam.prepare(cfg, show_progress=False)


def _cli(tmp_path: Path, source: Path):
    args = ["prepare", "endoslam", "--source", str(source), "--out", str(tmp_path / "endo.zarr"),
            "--raw", str(tmp_path / "cache"), "--per-organ", str(PER_ORGAN), "--params", str(tmp_path / "no.yaml"),
            "--set", "block_size=2"]
    return CliRunner().invoke(app, args)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda r: (r / "UnityCam/Colon/Pixelwise Depths/aov_image_0007.png").write_bytes(b"nope"),
         "aov_image_0007.png: cannot decode image"),
        (lambda r: (r / "UnityCam/Stomach/Pixelwise Depths/aov_image_0011.png").write_bytes(
            encode_png(np.zeros((H, W), np.uint8))), "aov_image_0011.png: expected an 8-bit multi-channel image"),
        (lambda r: (r / "UnityCam/Stomach/Frames/image_0012.png").write_bytes(
            encode_png(np.zeros((H + 1, W, 3), np.uint8))), "image_0012.png: is 11x12, expected 10x12"),
    ],
)
def test_bad_input_is_one_line_error_and_nothing_complete(tree, tmp_path, damage, message):
    src, _ = tree
    damage(src)
    result = _cli(tmp_path, src)
    assert result.exit_code != 0 and isinstance(result.exception, LeveError)
    assert message in str(result.exception) and "\n" not in str(result.exception)
    assert not (tmp_path / "endo.zarr").exists()
    partial = tmp_path / ("endo.zarr" + PARTIAL_SUFFIX)
    assert not partial.exists() or not is_complete(partial)


def test_resumes_after_a_failure_midway(tree, tmp_path):
    src, truth = tree
    bad = src / "UnityCam/Stomach/Frames/image_0012.png"
    good = bad.read_bytes()
    bad.write_bytes(b"broken")
    result = _cli(tmp_path, src)
    assert result.exit_code != 0 and "image_0012.png" in str(result.exception)
    bad.write_bytes(good)
    result = _cli(tmp_path, src)
    assert result.exit_code == 0, result.output
    assert "(resumed)" in result.output and "wrote 1 in" in result.output  # 11 samples, blocks of 2
    check_store(tmp_path / "endo.zarr", truth)


def test_thesis_depth_keeps_zero_red_as_a_measurement(tmp_path):
    """``depth: thesis`` stores R/255 + 1e-6 at every pixel (zero R included), as the thesis code read
    the depth PNG; the default stores R/255 with zero R as no measurement. Values checked by hand."""
    red = np.array([[0, 51, 255], [102, 0, 204]], dtype=np.uint8)  # 51/255 = 0.2, 102/255 = 0.4, 204/255 = 0.8
    rgba = np.stack([red, np.full_like(red, 7), np.full_like(red, 9), np.full_like(red, 255)], axis=-1)
    base = tmp_path / "src" / "UnityCam" / "Colon"
    (base / "Frames").mkdir(parents=True)
    (base / "Pixelwise Depths").mkdir()
    (base / "Frames" / "image_0001.png").write_bytes(encode_png(np.zeros((2, 3, 3), np.uint8)))
    (base / "Pixelwise Depths" / "aov_image_0001.png").write_bytes(encode_png(rgba))
    want = {"thesis": [[1e-6, 0.200001, 1.000001], [0.400001, 1e-6, 0.800001]],
            "r255": [[0.0, 0.2, 1.0], [0.4, 0.0, 0.8]]}
    for depth, expected in want.items():
        out = tmp_path / f"{depth}.zarr"
        endoslam.prepare(cfg_for(tmp_path, tmp_path / "src", out=out, organs=("Colon",), depth=depth),
                         show_progress=False)
        got = open_split(out, "test").depth(0)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got, np.array(expected, dtype=np.float32))
        attrs = zarr.open_group(str(out)).attrs
        assert attrs["depth"] == depth and ("1e-6" in attrs["depth_encoding"]) == (depth == "thesis")
    close_all()
    with pytest.raises(LeveError, match=r"prepare.endoslam.depth must be one of r255, thesis, got 'metres'"):
        endoslam.prepare(cfg_for(tmp_path, tmp_path / "src", out=tmp_path / "x.zarr", depth="metres"),
                         show_progress=False)
