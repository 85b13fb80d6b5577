"""Every byte of a store and a teacher cache is checked: real bytes damaged on disk, then every read path
(Zarr, the direct shard reader, the training loader's dataset, ``leve eval``) refuses in one line naming
the store, the array, the sample and the file, and ``leve verify`` lists exactly the damaged part."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

from leve.errors import LeveError
from tests.explicit import caching, loading
from tests.factories import synthetic_store
from tests.store.damage import flip, flip_in_first_chunk, naive_crc32c, shard_index, truncate, write_index

STORE = "data/zarr/synthetic.zarr"
CACHE = "data/teacher/synthetic.zarr"
N_TEST = 3  # block 2: the last shard of each test array holds one sample and one empty (padding) entry


# --------------------------------------------------------------------------- the workspace


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic store (test: 3 samples, shards of 2), its teacher cache (train, test) and a student."""
    from leve.models.checkpoint import save_checkpoint
    from leve.models.registry import create_model
    from leve.teacher.cache.build import build_teacher_cache
    from leve.teacher.loading import load_teacher

    root = tmp_path_factory.mktemp("integrity") / "ws"
    store = synthetic_store(root / STORE, height=48, width=64, train=2, val=1, test=N_TEST, block_size=2)
    teacher = load_teacher("tiny-random")
    for split in ("train", "test"):
        build_teacher_cache(store, root / CACHE, split, teacher, **caching(block_size=2), show_progress=False)
    torch.manual_seed(0)
    save_checkpoint(root / "models/student/best.pt", create_model("leve"), "leve", 10.0, resolution=(64, 64))
    for lock in root.rglob("*.lock"):
        lock.unlink()
    return root


@pytest.fixture
def ws(workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    dst = tmp_path / "ws"
    shutil.copytree(workspace, dst)
    monkeypatch.chdir(dst)
    return dst


# --------------------------------------------------------------------------- damage, on disk


@dataclass(frozen=True)
class Damage:
    make: Callable[[Path], None]
    store: str  # which store is damaged
    error: str  # regex of the one error line (after the store path)
    verify: list[str]  # what `leve verify` lists, exactly


R_RGB = f"{STORE}/test/rgb/c/0/0/0/0"
T_MAP = f"{CACHE}/test/disparity/c/0/0/0"
DEPTH = f"{STORE}/test/depth/c/0/0/0"

DAMAGES = {
    "rgb shard deleted": Damage(
        lambda ws: (ws / R_RGB).unlink(), STORE,
        r"test/rgb sample [01] \(file c/0/0/0/0\): file missing \(it was written when the store was published\)",
        ["test/rgb (file c/0/0/0/0): file missing (samples 0-1; it was written when the store was published)"]),
    "teacher disparity shard deleted": Damage(
        lambda ws: (ws / T_MAP).unlink(), CACHE,
        r"test/disparity sample [01] \(file c/0/0/0\): file missing",
        ["test/disparity (file c/0/0/0): file missing (samples 0-1; it was written when the store was published)"]),
    "16 bytes flipped in an rgb chunk": Damage(
        lambda ws: flip_in_first_chunk(ws / R_RGB, 2), STORE,
        r"test/rgb sample 0( \(file c/0/0/0/0\))?: checksum mismatch",
        ["test/rgb sample 0 (file c/0/0/0/0): checksum mismatch: its bytes changed on disk (damaged or truncated)"]),
    "16 bytes flipped in a teacher chunk": Damage(
        lambda ws: flip_in_first_chunk(ws / T_MAP, 2), CACHE,
        r"test/disparity sample 0( \(file c/0/0/0\))?: checksum mismatch",
        ["test/disparity sample 0 (file c/0/0/0): checksum mismatch: its bytes changed on disk (damaged or truncated)"]),
    "rgb shard truncated": Damage(
        lambda ws: truncate(ws / R_RGB), STORE,
        r"test/rgb sample [01]( \(file c/0/0/0/0\))?: (checksum mismatch|the shard index fails its checksum)",
        ["test/rgb (file c/0/0/0/0): the shard index fails its checksum (damaged or truncated file)"]),
    "a shard index byte flipped": Damage(
        lambda ws: flip(ws / DEPTH, -10, 1), STORE,
        r"test/depth sample [01]( \(file c/0/0/0\))?: (checksum mismatch|the shard index fails its checksum)",
        ["test/depth (file c/0/0/0): the shard index fails its checksum (damaged or truncated file)"]),
    "zarr.json truncated": Damage(
        lambda ws: truncate(ws / STORE / "test/rgb/zarr.json"), STORE,
        r"test/rgb( sample 0)? \(file zarr\.json\): not valid JSON \(truncated or damaged",
        ["test/rgb (file zarr.json): unreadable metadata (JSONDecodeError: truncated or damaged)"]),
    "meta/height chunk deleted": Damage(
        lambda ws: (ws / STORE / "test/meta/height/c/0").unlink(), STORE,
        r"test/meta/height \(file c/0\): file missing",
        ["test/meta/height (file c/0): file missing (samples 0-2; it was written when the store was published)"]),
}


def advice(store: str) -> str:
    rebuild = ("leve teacher-cache --dataset synthetic --split test --force" if store == CACHE
               else "leve prepare synthetic --force")
    return re.escape(f"; run `leve verify {store}`, then rebuild it with `{rebuild}`") + "$"


def assert_refused(read: Callable[[], object], damage: Damage) -> None:
    with pytest.raises(LeveError) as info:
        read()
    line = str(info.value)
    assert "\n" not in line
    assert re.match(re.escape(damage.store) + ": " + damage.error, line), line
    assert re.search(advice(damage.store), line), line


# --------------------------------------------------------------------------- the read paths


def read_everything(ws: Path) -> None:
    """Every sample of the test split through leve's reader: RGB, depth, metadata, the teacher's maps (paths
    relative to the workspace, the current directory, as the errors name them)."""
    from leve.store.reader import open_split
    from leve.teacher.cache.read import open_teacher_cache

    split = open_split(STORE, "test")
    cache = open_teacher_cache(CACHE, "test", STORE)
    for i in range(len(split)):
        split[i]
        cache.disparity(i)


def read_through_zarr(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """As :func:`read_everything`, with the direct shard reader switched off: Zarr reads every array."""
    import leve.store.fastread
    import leve.teacher.cache.read

    with monkeypatch.context() as m:
        m.setattr(leve.store.fastread, "shard_reader", lambda *a, **k: None)
        m.setattr(leve.teacher.cache.read, "shard_reader", lambda *a, **k: None)
        read_everything(ws)


def read_as_the_loader(ws: Path) -> None:
    """The training loader's dataset: each sample decoded into a batch slot (``targets: device``, as
    ``leve train`` does) and as a whole item (``targets: worker``)."""
    from leve.train.data import DepthDataset

    for targets in ("device", "worker"):
        data = DepthDataset(STORE, "test", (32, 32), **loading(), teacher=CACHE, rgb_uint8=True, targets=targets)
        for i in range(len(data)):
            if targets == "device":
                data._fill(0, i, data.empty_item())
            else:
                data[(0, i)]


@pytest.mark.parametrize("name", list(DAMAGES))
def test_every_read_path_refuses_the_damage_in_one_line(name: str, ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    read_everything(ws)  # undamaged: reads
    damage = DAMAGES[name]
    damage.make(ws)
    assert_refused(lambda: read_everything(ws), damage)
    assert_refused(lambda: read_through_zarr(ws, monkeypatch), damage)
    assert_refused(lambda: read_as_the_loader(ws), damage)


@pytest.mark.parametrize("name", list(DAMAGES))
def test_eval_and_verify_name_the_damage(name: str, ws: Path, run_cli) -> None:
    damage = DAMAGES[name]
    damage.make(ws)
    res = run_cli("eval", "--dataset", "synthetic", "--quiet")
    errors = [line for line in res.stderr.splitlines() if "rror" in line]
    assert res.code == 1 and len(errors) == 1, res.stderr[-2000:]
    assert re.match("error: " + re.escape(damage.store) + ": " + damage.error, errors[0]), errors[0]
    res = run_cli("verify", damage.store, "--quiet")
    assert res.code == 1, res.stderr
    assert res.stdout.splitlines() == [f"{damage.store}: {line}" for line in damage.verify]
    assert re.search(re.escape(damage.store) + r": 1 damaged or missing part\(s\), listed above", res.stderr)
    other = CACHE if damage.store == STORE else STORE
    assert run_cli("verify", other, "--quiet").code == 0


def test_undamaged_store_and_cache_verify(ws: Path, run_cli) -> None:
    for path in (STORE, CACHE):
        res = run_cli("verify", path)
        assert res.code == 0, res.stderr
        assert re.fullmatch(re.escape(path) + r": every chunk of \d+ arrays \(\d+ files, [\d.]+ MB\) is there and matches "
                            r"its checksum; [\d.]+ s \(\d+ MB/s\)\n", res.stdout)
        assert "verify synthetic.zarr" in res.stderr  # the progress bar (plain lines off a terminal), with rates


def test_loader_worker_process_reports_one_line(ws: Path) -> None:
    """The damage met in a DataLoader worker process reaches the training process as the same one line."""
    from leve.train.data import DepthDataset

    damage = DAMAGES["16 bytes flipped in a teacher chunk"]
    damage.make(ws)
    data = DepthDataset(STORE, "test", (32, 32), **loading(), teacher=CACHE, rgb_uint8=True)
    loader = torch.utils.data.DataLoader(data, batch_size=1, num_workers=1)
    assert_refused(lambda: list(loader), damage)


# --------------------------------------------------------------------------- the format itself


def test_every_chunk_carries_the_crc32c_of_its_bytes(workspace: Path) -> None:
    """Each stored chunk ends with the little-endian CRC-32C of the bytes before it, computed here bit by
    bit; the shard index too; every sample of every array is in its shard, only padding past the end is
    empty."""
    files = 0
    for zarr_json in sorted(workspace.rglob("zarr.json")):
        meta = json.loads(zarr_json.read_text())
        if meta.get("node_type") != "array":
            continue
        folder, length = zarr_json.parent, meta["shape"][0]
        sharded = meta["codecs"][0]["name"] == "sharding_indexed"
        per = meta["chunk_grid"]["configuration"]["chunk_shape"][0]
        for k in range(-(-length // per)):
            blob = next((folder / "c").glob(f"{k}" + "/0" * (len(meta["shape"]) - 1))).read_bytes()
            files += 1
            chunks = [blob]
            if sharded:
                index_bytes = blob[-(16 * per + 4) :]
                assert naive_crc32c(index_bytes[:-4]) == int.from_bytes(index_bytes[-4:], "little")
                index = shard_index(blob, per)
                rows = min(per, length - k * per)
                empty = index[:, 0] == 2**64 - 1
                assert not empty[:rows].any() and empty[rows:].all(), (zarr_json, index)
                chunks = [blob[int(o) : int(o) + int(n)] for o, n in index[:rows]]
            for chunk in chunks:
                assert naive_crc32c(chunk[:-4]) == int.from_bytes(chunk[-4:], "little"), zarr_json
    assert files > 20


def test_samples_equal_to_the_fill_value_are_written_and_read(tmp_path: Path, run_cli) -> None:
    """A black image with no depth measured (all zeros: Zarr's fill value) is written like any other sample,
    so it reads back as zeros on every path and verifies, while its deleted chunk is refused."""
    from leve.datasets.build import SplitSource, build_store
    from leve.store.format import SplitSpec, dataset_arrays
    from leve.store.reader import open_split

    class Loader:
        def __call__(self, i: int) -> tuple[dict, dict]:
            value = 0 if i == 1 else 50 + i
            return ({"rgb": np.full((6, 8, 3), value, np.uint8), "depth": np.full((6, 8), value / 10, np.float32)},
                    {"height": 6, "width": 8})

    path = tmp_path / "zeros.zarr"
    spec = SplitSpec("test", 3, dataset_arrays(6, 8), {"height": "int32", "width": "int32"})
    build_store(path, {"dataset": "zeros"}, "zeros", [SplitSource(spec, Loader())], block_size=3, show_progress=False)
    split = open_split(path, "test")
    assert split.rgb(1).max() == 0 and split.depth(1).max() == 0 and split.rgb(2).min() == 52
    assert run_cli("verify", path, "--quiet").code == 0
    shard = path / "test/depth/c/0/0/0"
    index = shard_index(shard.read_bytes(), 3)
    assert index[1, 0] != 2**64 - 1  # the all-zero map has its chunk
    emptied = index.copy()
    emptied[1] = 2**64 - 1
    write_index(shard, emptied)  # sample 1's entry emptied, the index's crc32c valid: Zarr would read zeros
    with pytest.raises(LeveError, match=r"zeros\.zarr: test/depth sample 1 \(file c/0/0/0\): chunk missing from its shard"):
        open_split(path, "test").depth(1)
    res = run_cli("verify", path, "--quiet")
    assert res.code == 1 and res.stdout.splitlines() == [
        f"{path}: test/depth sample 1 (file c/0/0/0): chunk missing from its shard (it was written)"]


def test_an_index_pointing_past_the_end_allocates_nothing(ws: Path, run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """A shard index with a valid crc32c that claims a 1 TB chunk (a shard cut short, its index rewritten):
    refused from the file's size before anything is read or allocated."""
    index = shard_index((ws / R_RGB).read_bytes(), 2).copy()
    index[0, 1] = 2**40
    write_index(ws / R_RGB, index)
    damage = Damage(lambda ws: None, STORE, r"test/rgb sample 0 \(file c/0/0/0/0\): the shard index points past the "
                    r"end of the file \(truncated\?\)", [])
    assert_refused(lambda: read_everything(ws), damage)
    assert_refused(lambda: read_through_zarr(ws, monkeypatch), damage)
    res = run_cli("verify", STORE, "--quiet")
    assert res.code == 1 and res.stdout.splitlines() == [
        f"{STORE}: test/rgb sample 0 (file c/0/0/0/0): the shard index points past the end of the file (truncated?)"]


def test_a_deleted_array_is_not_an_images_only_split(ws: Path, run_cli) -> None:
    """Deleting the depth folder does not turn the split into one without depth: it is refused."""
    from leve.store.reader import open_split

    shutil.rmtree(ws / STORE / "test/depth")
    with pytest.raises(LeveError, match=r"synthetic\.zarr: test/depth sample 0: .*missing"):
        open_split(STORE, "test").depth(0)
    res = run_cli("verify", STORE, "--quiet")
    assert res.code == 1 and res.stdout.splitlines() == [
        f"{STORE}: test/depth (file zarr.json): array missing (its folder or zarr.json was deleted)"]


def test_stores_and_caches_of_the_previous_layout_are_refused(ws: Path, run_cli) -> None:
    """Format 1 (no checksums): refused in one line naming the store and how to rebuild it."""
    import zarr

    from leve.store.reader import open_store
    from leve.teacher.cache.read import open_teacher_cache

    zarr.open_group(str(ws / STORE), mode="r+").attrs["store_format"] = 1
    with pytest.raises(LeveError, match=r"synthetic\.zarr: store format 1 was written by an older leve, without chunk "
                                        r"checksums .*rebuild it with `leve prepare synthetic --force`"):
        open_store(ws / STORE)
    zarr.open_group(str(ws / STORE), mode="r+").attrs["store_format"] = 2
    zarr.open_group(str(ws / CACHE), mode="r+")["test"].attrs["format"] = 1
    with pytest.raises(LeveError, match=r"teacher/synthetic\.zarr/test: teacher cache format 1 was written by an older "
                                        r"leve .*rerun `leve teacher-cache --split test`"):
        open_teacher_cache(ws / CACHE, "test", ws / STORE)


def test_naive_crc32c_is_crc32c() -> None:
    """The test's own CRC-32C against the standard check value (RFC 3720, iSCSI) and the library leve uses."""
    from leve.store.integrity import crc32c

    assert naive_crc32c(b"123456789") == 0xE3069283
    data = np.random.default_rng(0).integers(0, 256, 1000, dtype=np.uint8).tobytes()
    assert crc32c(data) == naive_crc32c(data)


def test_bench_measures_checked_against_unchecked_reads(ws: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``leve bench train``'s checksum part: with the readers' checks off no chunk's crc32c is computed, with
    them on one per chunk read; the readers are left checking."""
    import leve.store.fastread
    from leve.bench.train import checksum_cost
    from leve.train.data import DepthDataset

    calls: list[int] = []
    crc = leve.store.fastread.crc32c
    monkeypatch.setattr(leve.store.fastread, "crc32c", lambda data: calls.append(len(data)) or crc(data))
    data = DepthDataset(STORE, "test", (32, 32), **loading(), teacher=CACHE, rgb_uint8=True, targets="device")
    split, cache = data._open()
    readers = [split._reader("rgb"), split._reader("depth"), cache._fast]
    for reader in readers:
        reader.verify = False
    split.rgb(0), split.depth(0), cache.disparity(0)
    assert calls == []
    for reader in readers:
        reader.verify = True
    split.rgb(1), split.depth(1), cache.disparity(1)
    assert len(calls) == 3
    result = checksum_cost(data, batch_size=2, rounds=2)
    assert result["checked_arrays"] == ["test/rgb", "test/depth", "test/disparity"] and result["samples"] == N_TEST
    assert result["sample_checked_over_unchecked"] > 0 and result["reads_checked_over_unchecked"] > 0
    assert all(reader.verify for reader in readers)


def test_zarr_path_over_an_fsspec_url_refuses_a_missing_shard(ws: Path, run_cli) -> None:
    """A store opened by URL (``file://``: fsspec, the object-storage path) is read through Zarr: the same
    samples, and a deleted shard is refused in one line naming the URL and the rebuild; ``leve verify``
    reads it by URL too."""
    from leve.store.reader import open_split

    url = f"file://{ws / STORE}"
    split, local = open_split(url, "test"), open_split(STORE, "test")
    assert split._reader("rgb") is None
    for i in range(N_TEST):
        np.testing.assert_array_equal(split.rgb(i), local.rgb(i))
        np.testing.assert_array_equal(split.depth(i), local.depth(i))
    (ws / R_RGB).unlink()
    with pytest.raises(LeveError) as info:
        open_split(url, "test").rgb(1)
    assert str(info.value) == (f"{url}: test/rgb sample 1 (file c/0/0/0/0): file missing (it was written when the store "
                               f"was published); run `leve verify {url}`, then rebuild it with `leve prepare synthetic --force`")
    res = run_cli("verify", url, "--quiet")
    assert res.code == 1 and res.stdout.splitlines() == [
        f"{url}: test/rgb (file c/0/0/0/0): file missing (samples 0-1; it was written when the store was published)"]
    res = run_cli("verify", "data/zarr/elsewhere.zarr")
    assert res.code == 1 and res.stderr.strip() == "error: data/zarr/elsewhere.zarr: no store here (no zarr.json)"


def test_a_truncated_root_zarr_json_is_one_line(ws: Path, run_cli) -> None:
    """The store's own zarr.json cut short: opening it names the file; ``leve verify`` lists it."""
    from leve.store.reader import open_store

    truncate(ws / STORE / "zarr.json")
    with pytest.raises(LeveError) as info:
        open_store(STORE)
    assert str(info.value) == (f"{STORE}: zarr.json: not valid JSON (truncated or damaged); run `leve verify {STORE}`, "
                               f"then rebuild it with `leve prepare <dataset> --force`")
    res = run_cli("verify", STORE, "--quiet")
    assert res.code == 1 and res.stdout.splitlines() == [
        f"{STORE}: zarr.json: unreadable metadata (JSONDecodeError: truncated or damaged)"]
    assert res.stderr.splitlines() == [f"error: {STORE}: 1 damaged or missing part(s), listed above; rebuild it with "
                                       f"`leve prepare <dataset> --force`"]


def test_source_jpeg_bytes_are_checked_too(tmp_path: Path, run_cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """``rgb_codec: jpeg`` (variable-length bytes, one JPEG per chunk): 16 bytes flipped inside a stored JPEG
    are refused by the direct reader and by Zarr, not decoded into wrong pixels, and listed by verify."""
    import leve.store.fastread
    from leve.datasets.build import SplitSource, build_store
    from leve.store.format import SplitSpec, dataset_arrays
    from leve.store.images import encode_jpeg
    from leve.store.reader import open_split

    class Loader:
        def __call__(self, i: int) -> tuple[dict, dict]:
            rgb = np.random.default_rng(i).integers(0, 256, (16, 24, 3), dtype=np.uint8)
            return {"rgb_jpeg": encode_jpeg(rgb), "depth": np.ones((16, 24), np.float32)}, {"height": 16, "width": 24}

    path = tmp_path / "jpeg.zarr"
    spec = SplitSpec("test", 3, dataset_arrays(16, 24, rgb_codec="jpeg"), {"height": "int32", "width": "int32"})
    build_store(path, {"dataset": "jpegs"}, "jpegs", [SplitSource(spec, Loader())], block_size=3, show_progress=False)
    assert open_split(path, "test").rgb_bytes(1) == Loader()(1)[0]["rgb_jpeg"]
    flip_in_first_chunk(path / "test/rgb_jpeg/c/0", 3)
    with pytest.raises(LeveError, match=r"jpeg\.zarr: test/rgb_jpeg sample 0 \(file c/0\): checksum mismatch"):
        open_split(path, "test").rgb(0)
    with monkeypatch.context() as m:  # Zarr reads it
        m.setattr(leve.store.fastread, "shard_reader", lambda *a, **k: None)
        with pytest.raises(LeveError, match=r"jpeg\.zarr: test/rgb_jpeg sample 0: checksum mismatch"):
            open_split(path, "test").rgb(0)
    assert open_split(path, "test").rgb(2).shape == (16, 24, 3)  # the other samples read
    res = run_cli("verify", path, "--quiet")
    assert res.code == 1 and res.stdout.splitlines() == [
        f"{path}: test/rgb_jpeg sample 0 (file c/0): checksum mismatch: its bytes changed on disk (damaged or truncated)"]
