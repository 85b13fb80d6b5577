"""`leve prepare folder`: your own images (+ depth maps) and videos, built here with Pillow and PyAV."""

from __future__ import annotations

import hashlib
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from leve.datasets import folder, stage
from leve.errors import LeveError
from leve.store.reader import is_complete, open_split, open_store
from tests.explicit import caching

H, W = 24, 32


def _rgb(rng: np.random.Generator, h: int = H, w: int = W) -> np.ndarray:
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".npy":
        np.save(path, arr)
    elif path.suffix == ".npz":
        np.savez(path, depth=arr)
    else:
        Image.fromarray(arr).save(path)


def rgbd_folder(root: Path, scenes: dict[str, int], seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``<scene>/rgb/NNNN.jpg`` + ``<scene>/depth/NNNN.png`` (16-bit mm); returns the expected
    (decoded RGB, metres) by RGB path."""
    rng = np.random.default_rng(seed)
    expected = {}
    for scene, n in scenes.items():
        for k in range(n):
            rgb_path, depth_path = root / scene / "rgb" / f"{k:04d}.jpg", root / scene / "depth" / f"{k:04d}.png"
            _save(rgb_path, _rgb(rng))
            mm = rng.integers(0, 12000, (H, W)).astype(np.uint16)
            _save(depth_path, mm)
            decoded = np.asarray(Image.open(rgb_path).convert("RGB"))
            expected[f"{scene}/rgb/{k:04d}.jpg"] = (decoded, (mm.astype(np.float64) / 1000).astype(np.float32))
    return expected


def prepare(tmp_path: Path, name: str = "mine", **values) -> Path:
    out = tmp_path / f"{name}.zarr"
    stage.run(name, {"out": out, "workers": 1, **values}, params_file=tmp_path / "none.yaml",
              show_progress=False, adapter="folder")
    return out


def samples(path: Path) -> dict[str, tuple[str, int]]:
    """RGB source -> (split, row) over every split of a store."""
    store = open_store(path)
    return {src: (name, i) for name in store.splits for i, src in enumerate(store.split(name).meta["source"])}


# --------------------------------------------------------------------------- with depth



def assert_prepare_refused(run_cli, src: Path, out: Path, name: str, phrase: str) -> None:
    """``leve prepare folder`` on ``src`` exits 1 with one ``error:`` line naming ``name`` and ``phrase``,
    and writes no store at ``out``."""
    res = run_cli("prepare", "folder", out.stem, "--source", src, "--out", out, "--workers", "1",
                  "--params", out.parent / "none.yaml", "--set", "test_fraction=0", "--set", "val_fraction=0")
    assert res.code == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and name in lines[0] and phrase in lines[0], res.stderr
    assert not out.exists()

def test_rgbd_folder_pairs_by_stem_and_holds_out_whole_scenes(tmp_path):
    scenes = {"kitchen": 3, "office": 2, "hall": 2, "lab": 3}
    expected = rgbd_folder(tmp_path / "src", scenes)
    out = prepare(tmp_path, source=tmp_path / "src", depth_scale=0.001, split="scenes",
                  val_fraction=0.2, test_fraction=0.2, block_size=2)
    store = open_store(out)
    where = samples(out)
    assert sorted(where) == sorted(expected)
    for src, (split, i) in where.items():
        s = store.split(split)
        np.testing.assert_array_equal(s.rgb(i), expected[src][0])   # Pillow's decode, bit for bit
        np.testing.assert_array_equal(s.depth(i), expected[src][1])  # mm / 1000, as float32
        assert s.meta["depth_source"].iat[i] == src.replace("/rgb/", "/depth/").replace(".jpg", ".png")
    by_scene = {}
    for src, (split, _) in where.items():
        by_scene.setdefault(src.split("/")[0], set()).add(split)
    assert all(len(v) == 1 for v in by_scene.values())              # whole scenes per split
    held = {s: next(iter(v)) for s, v in by_scene.items()}
    # independent: scenes in sha256("0:<scene>") order; test then val until 20 % of the 10 frames each
    ranked = sorted(scenes, key=lambda s: hashlib.sha256(f"0:{s}".encode()).hexdigest())
    want, taken = {}, {"test": 0, "val": 0}
    for s in ranked:
        split = next((x for x in ("test", "val") if taken[x] < 2), "train")
        want[s] = split
        taken[split] = taken.get(split, 0) + scenes[s]
    assert held == want
    all_depth = np.concatenate([v[1][v[1] > 0] for v in expected.values()])
    assert store.attrs["units"] == "metres" and store.attrs["max_depth"] == pytest.approx(float(all_depth.max()))
    assert store.attrs["has_depth"] == {s: True for s in store.splits}


def test_npy_and_npz_depth_by_suffix_and_fraction_split(tmp_path):
    rng = np.random.default_rng(1)
    src, expected = tmp_path / "src", {}
    for k in range(10):
        _save(src / f"{k}.png", _rgb(rng))
        metres = rng.uniform(0, 20, (H, W)).astype(np.float32)
        _save(src / (f"{k}_depth.npy" if k % 2 else f"{k}_depth.npz"), metres)
        expected[f"{k}.png"] = metres
    out = prepare(tmp_path, source=src, split="fraction", val_fraction=0.2, test_fraction=0.3, max_depth=25.0)
    where = samples(out)
    store = open_store(out)
    for name, (split, i) in where.items():
        np.testing.assert_array_equal(store.split(split).depth(i), expected[name])
    ranked = sorted(expected, key=lambda s: hashlib.sha256(f"0:{s}".encode()).hexdigest())
    assert {n for n, (s, _) in where.items() if s == "test"} == set(ranked[:3])
    assert {n for n, (s, _) in where.items() if s == "val"} == set(ranked[3:5])
    assert store.attrs["max_depth"] == 25.0
    assert store.attrs["depth_max_observed"] == pytest.approx(max(float(v.max()) for v in expected.values()))


def _with_orientation(path: Path, arr: np.ndarray, orientation: int) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation  # EXIF Orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, exif=exif, quality=95)


def test_exif_orientation_turns_the_photo_and_its_depth_upright(tmp_path):
    rng = np.random.default_rng(3)
    src, expected = tmp_path / "src", {}
    # stored W x H and the turn that shows each upright (EXIF 6: 90 deg clockwise, 8: counter-clockwise, 3: 180)
    for name, orientation, (h, w), turn in (("a", 6, (H, W), -1), ("b", 8, (H, W), 1), ("c", 3, (W, H), 2)):
        _with_orientation(src / f"{name}.jpg", _rgb(rng, h, w), orientation)
        stored = np.asarray(Image.open(src / f"{name}.jpg").convert("RGB"))  # Pillow leaves EXIF turns to the caller
        metres = rng.uniform(0.5, 9, (h, w)).astype(np.float32)  # depth in the stored pixel grid, as a sensor writes it
        _save(src / f"{name}_depth.npy", metres)
        expected[f"{name}.jpg"] = (np.rot90(stored, turn), np.rot90(metres, turn))
    out = prepare(tmp_path, source=src, val_fraction=0, test_fraction=0)
    split = open_store(out).split("train")
    for i, source in enumerate(split.meta["source"]):
        rgb, depth = expected[source]
        assert split.rgb(i).shape == (W, H, 3)  # every photo upright: W rows, H columns
        np.testing.assert_array_equal(split.rgb(i), rgb)
        np.testing.assert_array_equal(split.depth(i), depth)


def test_csv_pairs_with_split_column(tmp_path):
    rng = np.random.default_rng(2)
    src = tmp_path / "src"
    rows = ["rgb,depth,split"]
    truth = {}
    for k in range(4):
        _save(src / "img" / f"a{k}.jpg", _rgb(rng))
        raw = rng.integers(1, 60000, (H, W)).astype(np.uint16)
        _save(src / "gt" / f"b{k}.png", raw)
        rows.append(f"img/a{k}.jpg,gt/b{k}.png,{'test' if k == 3 else 'train'}")
        truth[f"img/a{k}.jpg"] = raw.astype(np.float64) / 256.0
    (src / "pairs.csv").write_text("\n".join(rows) + "\n")
    out = prepare(tmp_path, source=src, pairs_csv="pairs.csv", depth_scale=1 / 256, split="lists")
    where = samples(out)
    assert {k: s for k, (s, _) in where.items()} == {**{f"img/a{k}.jpg": "train" for k in range(3)}, "img/a3.jpg": "test"}
    for name, (split, i) in where.items():
        np.testing.assert_array_equal(open_split(out, split).depth(i), truth[name].astype(np.float32))


# --------------------------------------------------------------------------- without depth


def test_images_without_depth_make_a_split_without_depth_array(tmp_path):
    rng = np.random.default_rng(3)
    src = tmp_path / "src"
    images = {f"s{k % 2}/{k}.jpg": _rgb(rng) for k in range(5)}
    for rel, arr in images.items():
        _save(src / rel, arr)
    (src / "notes.txt").write_text("not an image")
    out = prepare(tmp_path, source=src, split="lists", split_lists={"train": ["s0", "s1/1.jpg"], "test": ["s1/3.jpg"]})
    store = open_store(out)
    assert store.splits == ["train", "test"] and store.attrs["max_depth"] is None and store.attrs["units"] is None
    s = store.split("train")
    assert not s.has_depth and "depth" not in s.group and s.attrs["has_depth"] is False
    assert s.array_shape == (H, W) and s[0].depth is None
    with pytest.raises(LeveError, match="has no depth"):
        s.depth(0)
    assert list(s.meta["source"]) == ["s0/0.jpg", "s0/2.jpg", "s0/4.jpg", "s1/1.jpg"]  # sorted paths
    for i, rel in enumerate(s.meta["source"]):
        np.testing.assert_array_equal(s.rgb(i), np.asarray(Image.open(src / rel).convert("RGB")))
    assert store.attrs["skipped_files"] == ["notes.txt"]


def test_depth_none_ignores_depth_maps(tmp_path):
    rgbd_folder(tmp_path / "src", {"a": 2})
    out = prepare(tmp_path, source=tmp_path / "src", depth="none", test_fraction=0, val_fraction=0)
    s = open_split(out, "train")
    assert len(s) == 2 and not s.has_depth


# --------------------------------------------------------------------------- video


def write_video(path: Path, n: int, fps: int, h: int = H, w: int = W, gop: int = 4) -> list[np.ndarray]:
    """An MPEG-4 video of ``n`` changing frames; returns what PyAV decodes from it, in order."""
    with av.open(str(path), "w") as c:
        stream = c.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.gop_size = gop
        for i in range(n):
            img = np.zeros((h, w, 3), np.uint8)
            img[..., 0] = i * 255 // n
            img[:, : (i * 3) % w, 1] = 200
            for p in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(p)
        for p in stream.encode():
            c.mux(p)
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_video_frames_every_kth_and_by_fps(tmp_path):
    clips = tmp_path / "clips"
    clips.mkdir()
    decoded = write_video(clips / "walk.mp4", 20, fps=10)
    out = prepare(tmp_path, source=clips / "walk.mp4", video_every=3, test_fraction=0, val_fraction=0, block_size=3)
    s = open_split(out, "train")
    assert list(s.meta["frame"]) == list(range(0, 20, 3))
    assert list(s.meta["time"]) == [k / 10 for k in range(0, 20, 3)]   # pts x time base, seconds
    assert set(s.meta["scene"]) == {"walk"} and not s.has_depth
    for i, k in enumerate(s.meta["frame"]):
        np.testing.assert_array_equal(s.rgb(i), decoded[k])             # the sequential decode, bit for bit
    out = prepare(tmp_path, "byfps", source=clips, video_fps=4, test_fraction=0, val_fraction=0)
    s = open_split(out, "train")
    # 10 fps at 4 fps: the first frame at or after each 0.25 s: 0, .3, .5, .8, 1.0, 1.3, 1.5, 1.8
    assert list(s.meta["frame"]) == [0, 3, 5, 8, 10, 13, 15, 18]
    for i, k in enumerate(s.meta["frame"]):
        np.testing.assert_array_equal(s.rgb(i), decoded[k])


# --------------------------------------------------------------------------- sizes


def test_mixed_sizes_pad_or_resize(tmp_path):
    rng = np.random.default_rng(4)
    src = tmp_path / "src"
    big, small = _rgb(rng, 20, 30), _rgb(rng, 10, 16)
    _save(src / "big.png", big)
    _save(src / "small.png", small)
    d_big, d_small = rng.uniform(0.5, 5, (20, 30)).astype(np.float32), rng.uniform(0.5, 5, (10, 16)).astype(np.float32)
    _save(src / "big_depth.npy", d_big)
    _save(src / "small_depth.npy", d_small)
    common = {"source": src, "test_fraction": 0, "val_fraction": 0}
    with pytest.raises(LeveError, match=r"small.png: 10x16, but split 'train' has 20x30"):
        prepare(tmp_path, "refused", **common)
    assert not (tmp_path / "refused.zarr").exists()
    s = open_split(prepare(tmp_path, "padded", sizes="pad", **common), "train")
    assert s.array_shape == (20, 30) and s.size(1) == (10, 16)
    np.testing.assert_array_equal(s.rgb(1), small)
    np.testing.assert_array_equal(s.depth(1), d_small)
    s = open_split(prepare(tmp_path, "resized", sizes="8x12", **common), "train")
    # naive nearest at pixel centres: output (i, j) <- input (floor((i + .5) * 20 / 8), floor((j + .5) * 30 / 12))
    want = np.array([[d_big[int((i + 0.5) * 20 / 8), int((j + 0.5) * 30 / 12)] for j in range(12)] for i in range(8)])
    np.testing.assert_array_equal(s.depth(0), want)
    assert s.rgb(1).shape == (8, 12, 3) and (s.meta["source_height"].iat[1], s.meta["source_width"].iat[1]) == (10, 16)
    ref = np.asarray(Image.fromarray(small).resize((12, 8), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(s.rgb(1), ref)


# --------------------------------------------------------------------------- bad input


def _bad_depth(kind: str) -> np.ndarray:
    d = np.full((H, W), 2.0, np.float32)
    if kind == "nan":
        d[3, 4] = np.nan
    elif kind == "negative":
        d[5, 5] = -0.5
    elif kind == "zero":
        d[:] = 0
    return d


def _case(src: Path, kind: str, rng: np.random.Generator) -> tuple[str, str]:
    """Lay out a bad input; return (the file the error must name, a phrase of the message)."""
    for k in range(3):
        _save(src / f"{k}.png", _rgb(rng))
        _save(src / f"{k}_depth.npy", _bad_depth(""))
    if kind in ("nan", "negative", "zero"):
        _save(src / "1_depth.npy", _bad_depth(kind))
        return "1_depth.npy", {"nan": "NaN", "negative": "negative", "zero": "zero everywhere"}[kind]
    if kind == "unpaired":
        (src / "2_depth.npy").unlink()
        return "2.png", "no depth map"
    if kind == "orphan":
        _save(src / "9_depth.npy", _bad_depth(""))
        return "9_depth.npy", "without an image"
    if kind == "mismatched":
        _save(src / "1_depth.npy", np.ones((H + 2, W), np.float32))
        return "1_depth.npy", f"depth is {H + 2}x{W}"
    if kind == "mixed_sizes":
        _save(src / "2.png", _rgb(rng, H + 4, W))
        _save(src / "2_depth.npy", np.ones((H + 4, W), np.float32))
        return "2.png", "set prepare.bad.sizes"
    if kind == "png_without_scale":
        (src / "0_depth.npy").unlink()
        _save(src / "0_depth.png", np.ones((H, W), np.uint16))
        return "0_depth.png", "depth_scale"
    if kind == "exif_orientation":  # EXIF that lies: an orientation the standard does not have
        _with_orientation(src / "1.png", _rgb(rng), 9)
        return "1.png", "EXIF orientation 9 is not one of"
    for k in range(3):
        (src / f"{k}.png").unlink()
        (src / f"{k}_depth.npy").unlink()
    if kind == "unreadable_video":
        (src / "broken.mp4").write_bytes(b"\x00\x01 not a video" * 64)
        return "broken.mp4", "cannot read video"
    assert kind == "empty_video"
    with av.open(str(src / "empty.avi"), "w") as c:  # a header, a stream and no frame
        stream = c.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        c.start_encoding()
    return "empty.avi", "no frames"


@pytest.mark.parametrize("kind", ["nan", "negative", "zero", "unpaired", "orphan", "mismatched", "mixed_sizes",
                                  "png_without_scale", "exif_orientation", "unreadable_video", "empty_video"])
def test_bad_input_is_one_line_naming_the_file_and_nothing_is_complete(tmp_path, run_cli, kind):
    src = tmp_path / "src"
    src.mkdir()
    name, phrase = _case(src, kind, np.random.default_rng(5))
    out = tmp_path / "bad.zarr"
    assert_prepare_refused(run_cli, src, out, name, phrase)
    assert not is_complete(out)


# --------------------------------------------------------------------------- resumption, names, the stage


def test_interrupted_prepare_resumes_at_the_first_unfinished_block(tmp_path, monkeypatch):
    rgbd_folder(tmp_path / "src", {"a": 7})
    args = {"source": tmp_path / "src", "depth_scale": 0.001, "test_fraction": 0, "val_fraction": 0, "block_size": 3}
    real, calls = folder.decode_rgb, []

    def dies_at_the_fifth(data, name):
        calls.append(name)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(data, name)

    monkeypatch.setattr(folder, "decode_rgb", dies_at_the_fifth)
    with pytest.raises(KeyboardInterrupt):
        prepare(tmp_path, **args)
    assert not is_complete(tmp_path / "mine.zarr") and (tmp_path / "mine.zarr.partial").exists()
    calls.clear()
    monkeypatch.setattr(folder, "decode_rgb", lambda data, name: (calls.append(name), real(data, name))[1])
    result = stage.run("mine", {"out": tmp_path / "mine.zarr", "workers": 1, **args},
                       params_file=tmp_path / "none.yaml", show_progress=False, adapter="folder")
    assert result.resumed and result.written == 4 and len(calls) == 4   # block 0 (samples 0-2) was kept
    assert is_complete(tmp_path / "mine.zarr") and len(open_split(tmp_path / "mine.zarr", "train")) == 7


def test_params_declared_dataset_runs_as_leve_prepare_name(tmp_path, run_cli, monkeypatch):
    rgbd_folder(tmp_path / "src", {"a": 2, "b": 2})
    params = tmp_path / "params.yaml"
    params.write_text(f"prepare:\n  mine:\n    adapter: folder\n    source: {tmp_path / 'src'}\n"
                      "    depth_scale: 0.001\n    split: scenes\n    test_fraction: 0.5\n    val_fraction: 0\n"
                      "    workers: 1\n")
    monkeypatch.chdir(tmp_path)
    res = run_cli("prepare", "mine")                          # what dvc.yaml's foreach runs
    assert res.code == 0, res.stderr
    store = open_store(tmp_path / "data/zarr/mine.zarr")     # the path the pipeline's stages read
    assert store.attrs["dataset"] == "mine" and store.splits == ["train", "test"]
    assert stage.config("mine", params_file=params).split == "scenes"
    res = run_cli("prepare", "nosuch")
    assert res.code == 1 and "prepare.nosuch: unknown dataset" in res.stderr and "leve prepare folder nosuch" in res.stderr
    res = run_cli("prepare", "folder", "nyu", "--source", tmp_path / "src")
    assert res.code == 1 and "built-in" in res.stderr


@pytest.mark.slow  # ~19 s alone on 2 busy cores, mostly importing transformers (shared with the teacher tests)
def test_teacher_caches_a_split_without_depth(tmp_path):
    """The store contract shared with the teacher: a split without depth is cached like any other."""
    from leve.teacher.cache.build import build_teacher_cache
    from leve.teacher.cache.read import open_teacher_cache
    from leve.teacher.loading import load_teacher
    from tests.teacher.conftest import save_tiny_teacher

    clips = tmp_path / "clips"
    clips.mkdir()
    write_video(clips / "a.mp4", 6, fps=5)
    store = prepare(tmp_path, source=clips, test_fraction=0, val_fraction=0)
    teacher = load_teacher(str(save_tiny_teacher(tmp_path / "tiny", size=70)))
    build_teacher_cache(store, tmp_path / "t.zarr", "train", teacher, **caching(block_size=4), show_progress=False)
    cache = open_teacher_cache(tmp_path / "t.zarr", "train", store)
    assert len(cache) == 6 and cache.disparity(5).shape == (H, W)
    assert cache.attrs["dataset"]["array_shape"] == [H, W]


def test_params_yaml_documents_every_folder_key_with_its_default():
    import yaml

    from leve.params import config_dict

    text = (Path(__file__).parents[2] / "params.yaml").read_text()
    block = text[text.index("  # mydata:\n"):].split("\n\n")[0]
    lines = [ln.replace("  # ", "  ", 1) for ln in block.splitlines() if ln.startswith("  #   ") or ln == "  # mydata:"]
    documented = yaml.safe_load("\n".join(lines))["mydata"]
    defaults = config_dict(folder.Config())
    assert set(documented) == set(defaults) | {"adapter"}
    assert {k: v for k, v in documented.items() if k not in ("adapter", "source")} == \
        {k: v for k, v in defaults.items() if k != "source"}


# --------------------------------------------------------------------------- sizes from headers (issue 26)


@pytest.mark.parametrize("kind", ["npz_bomb", "npy_liar", "huge_video"])
def test_oversized_depth_arrays_and_video_frames_are_refused_from_their_headers(tmp_path, run_cli, kind):
    """Real crafted files: a 1.4 MB .npz of 9000x9000 zeros (324 MB decompressed), an .npy whose header
    claims 100000x100000 (40 GB) over 16 bytes, a 1 MB video of 9000x8000 frames; each refused in one line
    naming it, before it is decompressed or decoded, with nothing written."""
    from tests.media import huge_frame_video, npy_liar, npz_bomb

    src = tmp_path / "src"
    rng = np.random.default_rng(3)
    if kind == "huge_video":
        name = huge_frame_video(src / "big.mov").name
        phrase = "video frames over the cap of 64,000,000 pixels (as for images), or of a size the file does not say"
    else:
        for k in range(2):
            _save(src / f"{k}.png", _rgb(rng))
            _save(src / f"{k}_depth.npy", _bad_depth(""))
        if kind == "npz_bomb":
            (src / "1_depth.npy").unlink()
            name = npz_bomb(src / "1_depth.npz").name
            phrase = "depth array of shape (9000, 9000) (float32) is too large: 324,000,000 bytes, 81,000,000 pixels"
        else:
            name = npy_liar(src / "1_depth.npy").name
            phrase = "depth array of shape (100000, 100000) (float32) is too large"
    assert_prepare_refused(run_cli, src, tmp_path / "big.zarr", name, phrase)


def test_depth_header_reads_the_shape_without_decompressing(tmp_path):
    """The header reader against numpy's own load, for both containers and both header versions."""
    depth = np.arange(24 * 32, dtype=np.float32).reshape(24, 32)
    np.save(tmp_path / "a.npy", depth)
    np.savez_compressed(tmp_path / "b.npz", depth=depth, other=np.zeros(3))
    np.savez(tmp_path / "c.npz", depth)
    with open(tmp_path / "d.npy", "wb") as fh:
        np.lib.format.write_array(fh, depth, version=(2, 0))
    for name in ("a.npy", "b.npz", "c.npz", "d.npy"):
        shape, dtype = folder.array_header(tmp_path / name, name)
        assert (shape, dtype) == (depth.shape, depth.dtype), name
        np.testing.assert_array_equal(folder.read_depth(tmp_path / name, name, None), depth.astype(np.float64))
