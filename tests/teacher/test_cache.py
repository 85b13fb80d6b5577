"""Resumption, sharding, stale-cache refusal, bad inputs and the CLI / stage."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from leve.cli import app
from leve.errors import LeveError
from leve.store.integrity import verify_store
from leve.teacher.cache.build import build_teacher_cache, parse_shard
from leve.teacher.cache.read import check_cache_matches, open_teacher_cache
from leve.teacher.infer import TeacherRunner
from leve.teacher.loading import load_teacher
from tests.explicit import caching
from tests.factories import make_store

SIZES = [(30, 40), (20, 50), (30, 40), (30, 40), (20, 50), (30, 40), (25, 33)]


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_store(tmp_path_factory.mktemp("ds") / "tiny.zarr", SIZES)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, store: Path, fast_teacher_dir: Path) -> Path:
    out = tmp_path_factory.mktemp("ref") / "teacher.zarr"
    result = build_teacher_cache(store, out, "train", load_teacher(str(fast_teacher_dir)), **caching(block_size=2),
                                 show_progress=False)
    assert result.complete
    return out


def read_all(path: Path) -> dict[str, np.ndarray]:
    g = zarr.open_group(str(path), mode="r")["train"]
    return {k: np.asarray(g[k][:]) for k in ("disparity", "raw_min", "raw_max", "zero")}


def assert_same(a: Path, b: Path) -> None:
    x, y = read_all(a), read_all(b)
    for k in x:
        np.testing.assert_array_equal(x[k], y[k], err_msg=k)


def test_resume_after_some_blocks_equals_uninterrupted(
    tmp_path: Path, store: Path, fast_teacher_dir: Path, reference: Path
) -> None:
    teacher = load_teacher(str(fast_teacher_dir))
    out = tmp_path / "teacher.zarr"
    first = build_teacher_cache(store, out, "train", teacher, **caching(block_size=2), max_blocks=2, show_progress=False)
    assert not first.complete and first.written == 4
    assert not (out / "train").exists()  # nothing incomplete in the final store
    progress = tmp_path / "teacher.zarr.train.partial" / "_progress" / "train"
    assert sorted(p.name for p in progress.glob("*.json")) == ["0.json", "1.json"]
    second = build_teacher_cache(store, out, "train", teacher, **caching(block_size=2), show_progress=False)
    assert second.complete and second.written == len(SIZES) - 4
    assert not (tmp_path / "teacher.zarr.train.partial").exists()
    assert_same(out, reference)
    again = build_teacher_cache(store, out, "train", teacher, **caching(block_size=2), show_progress=False)
    assert again.up_to_date and again.written == 0


def test_crash_inside_a_block_redoes_only_that_block(
    tmp_path: Path, store: Path, fast_teacher_dir: Path, reference: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    teacher = load_teacher(str(fast_teacher_dir))
    out = tmp_path / "teacher.zarr"
    real = TeacherRunner.predict
    calls = {"n": 0}

    def dying(self: TeacherRunner, *args: object, **kwargs: object) -> object:
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(self, *args, **kwargs)

    monkeypatch.setattr(TeacherRunner, "predict", dying)
    with pytest.raises(KeyboardInterrupt):  # dies in block 2 (blocks 0 and 1 take three batches)
        build_teacher_cache(store, out, "train", teacher, **caching(block_size=2), show_progress=False)
    progress = tmp_path / "teacher.zarr.train.partial" / "_progress" / "train"
    assert sorted(p.name for p in progress.glob("*.json")) == ["0.json", "1.json"]
    monkeypatch.setattr(TeacherRunner, "predict", real)
    resumed = build_teacher_cache(store, out, "train", teacher, **caching(block_size=2), show_progress=False)
    assert resumed.complete and resumed.written == len(SIZES) - 4
    assert_same(out, reference)


def test_two_shards_equal_a_single_run(tmp_path: Path, store: Path, fast_teacher_dir: Path, reference: Path) -> None:
    teacher = load_teacher(str(fast_teacher_dir))
    out = tmp_path / "teacher.zarr"
    a = build_teacher_cache(store, out, "train", teacher, **caching(block_size=2), shard=(1, 2), show_progress=False)
    assert not a.complete and a.pending_elsewhere == 2 and a.written == 3  # blocks 1, 3 (rows 2-3, 6)
    assert not (out / "train").exists()
    b = build_teacher_cache(store, out, "train", teacher, **caching(block_size=2), shard=(0, 2), show_progress=False)
    assert b.complete and b.written == 4
    assert_same(out, reference)
    attrs = check_cache_matches(out, "train", store, expected_model=str(fast_teacher_dir))
    assert attrs["complete"] and attrs["dtype"] == "float16" and attrs["teacher"]["revision"].startswith("sha256:")
    # what the two shard processes wrote is recorded whole (7 maps in shards of 2) and every chunk checks
    assert attrs["written"] == {"disparity": 4, "raw_min": 1, "raw_max": 1, "zero": 1}
    bad, counts = verify_store(out)
    assert bad == [] and counts["arrays"] == 4 and counts["chunk_files"] == 7


def test_parse_shard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert parse_shard("1/4") == (1, 4) and parse_shard(None) == (0, 1)
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert parse_shard(None) == (2, 3)
    for bad in ("4/4", "x", "1/0", "-1/2"):
        with pytest.raises(LeveError, match="--shard"):
            parse_shard(bad)


def test_cache_attributes_record_identity(reference: Path, store: Path, fast_teacher_dir: Path) -> None:
    attrs = check_cache_matches(reference, "train", store)
    ds = dict(zarr.open_group(str(store), mode="r").attrs)
    assert attrs["dataset"]["fingerprint"] == ds["fingerprint"] and attrs["dataset"]["length"] == len(SIZES)
    assert attrs["teacher"]["model"] == str(fast_teacher_dir.resolve())
    assert attrs["preprocessing"]["height"] == 70 and attrs["preprocessing"]["resample"] == "bicubic"
    for key in ("resize_mode", "normalisation", "leve_version", "tta", "compute_dtype"):
        assert attrs[key]
    cache = open_teacher_cache(reference, "train", store)
    assert len(cache) == len(SIZES) and cache.disparity(1).shape == SIZES[1]
    np.testing.assert_allclose(cache.raw(0).max(), cache.raw_max[0], rtol=1e-6)


# --------------------------------------------------------------------------- bad input


def test_stale_cache_from_another_dataset_is_refused(tmp_path: Path, reference: Path) -> None:
    other = make_store(tmp_path / "other.zarr", SIZES, seed=1)
    with pytest.raises(LeveError, match="another dataset store"):
        check_cache_matches(reference, "train", other)
    shorter = make_store(tmp_path / "short.zarr", SIZES[:3])
    with pytest.raises(LeveError, match="stale teacher cache"):
        open_teacher_cache(reference, "train", shorter)


def test_cache_from_another_model_is_refused(reference: Path, store: Path) -> None:
    with pytest.raises(LeveError, match="expected 'LiheYoung/depth-anything-small-hf'"):
        check_cache_matches(reference, "train", store, expected_model="v1-small")
    with pytest.raises(LeveError, match="config_hash"):
        check_cache_matches(reference, "train", store, expected_config_hash="0" * 64)


def test_missing_and_incomplete_caches_are_refused(tmp_path: Path, store: Path, fast_teacher_dir: Path) -> None:
    with pytest.raises(LeveError, match="no teacher cache here"):
        check_cache_matches(tmp_path / "none.zarr", "train", store)
    out = tmp_path / "teacher.zarr"
    teacher = load_teacher(str(fast_teacher_dir))
    build_teacher_cache(store, out, "train", teacher, **caching(block_size=2), max_blocks=1, show_progress=False)
    with pytest.raises(LeveError, match="no teacher cache here|split not cached"):
        check_cache_matches(out, "train", store)


def test_incomplete_dataset_store_is_refused(tmp_path: Path, fast_teacher_dir: Path) -> None:
    ds = make_store(tmp_path / "ds.zarr", SIZES[:2])
    zarr.open_group(str(ds), mode="r+").attrs["complete"] = False
    with pytest.raises(LeveError, match="incomplete"):
        build_teacher_cache(ds, tmp_path / "t.zarr", "train", load_teacher(str(fast_teacher_dir)), **caching(),
                            show_progress=False)
    assert not (tmp_path / "t.zarr").exists()


def test_unknown_split_is_refused(store: Path, tmp_path: Path, fast_teacher_dir: Path) -> None:
    with pytest.raises(LeveError, match="no split 'val'"):
        build_teacher_cache(store, tmp_path / "t.zarr", "val", load_teacher(str(fast_teacher_dir)), **caching(),
                            show_progress=False)


def _copy_model(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda d: (d / "config.json").write_text("{not json"), "not valid JSON"),
        (lambda d: (d / "config.json").unlink(), "config.json: missing"),
        (lambda d: _edit(d, model_type="bert"), "not a Depth-Anything config"),
        (lambda d: _edit(d, depth_estimation_type="sideways"), "cannot load the teacher"),
        (lambda d: (d / "model.safetensors").unlink(), "cannot load the teacher"),
        (lambda d: (d / "preprocessor_config.json").write_text("[1"), "preprocessor_config.json: not valid JSON"),
    ],
)
def test_broken_model_folder_is_refused(tmp_path: Path, fast_teacher_dir: Path, mutate: object, match: str) -> None:
    folder = _copy_model(fast_teacher_dir, tmp_path / "model")
    mutate(folder)  # type: ignore[operator]
    with pytest.raises(LeveError, match=match) as info:
        load_teacher(str(folder))
    assert str(folder) in str(info.value) and "\n" not in str(info.value)


def _edit(folder: Path, **changes: object) -> None:
    cfg = json.loads((folder / "config.json").read_text())
    cfg.update(changes)
    (folder / "config.json").write_text(json.dumps(cfg))


def test_offline_hub_model_fails_fast_with_how_to(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    with pytest.raises(LeveError, match=r"--model DIR.*offline cache"):
        load_teacher("v1-small")
    with pytest.raises(LeveError, match="not a known teacher"):
        load_teacher("no-such-teacher")


# --------------------------------------------------------------------------- CLI and stage


def test_cli_builds_cache_through_the_stage(tmp_path: Path, fast_teacher_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    make_store(tmp_path / "data" / "zarr" / "mini.zarr", SIZES[:3])
    (tmp_path / "params.yaml").write_text(
        "teacher:\n  model: v1-small\n  workers: 0\n  block_size: 2\n"
        f"  datasets:\n    mini:\n      model: {fast_teacher_dir}\n"
    )
    runner = CliRunner()
    args = ["teacher-cache", "--dataset", "mini", "--split", "train", "--batch-size", "2", "--device", "cpu"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    cache = open_teacher_cache(tmp_path / "data" / "teacher" / "mini.zarr", "train", tmp_path / "data" / "zarr" / "mini.zarr")
    assert len(cache) == 3 and not cache.zero.any()
    bad = runner.invoke(app, ["teacher-cache", "--dataset", "mini", "--shard", "3/2"])
    assert bad.exit_code != 0 and isinstance(bad.exception, LeveError)


def test_a_call_without_crops_still_works_as_no_crops(tmp_path: Path, store: Path, fast_teacher_dir: Path,
                                                     reference: Path) -> None:
    """Callers written before ``crops`` existed: left out, it is 0 (the reference's bytes), with one warning."""
    run = caching(block_size=2)
    del run["crops"]
    with pytest.warns(DeprecationWarning, match="crops=0"):
        result = build_teacher_cache(store, tmp_path / "t.zarr", "train", load_teacher(str(fast_teacher_dir)), **run,
                                     show_progress=False)
    assert result.complete
    assert "crops" not in dict(zarr.open_group(str(tmp_path / "t.zarr"), mode="r")["train"].attrs)
    assert_same(reference, tmp_path / "t.zarr")
