"""The ``embedded`` teacher shipped in the package: recorded hashes, offline loading through the
real teacher path, and that it knows depth (lstsq-aligned, on the demo's own test split)."""

from __future__ import annotations

import fnmatch
import hashlib
import json
import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest
import yaml

from leve.errors import LeveError
from leve.teacher.embedded import REBUILD, RECORD_NAME, SHIPPED_FILES, WEIGHTS_DIR, verified_folder
from tests.explicit import caching

REPO = Path(__file__).resolve().parents[2]


def _record() -> dict:
    return json.loads((WEIGHTS_DIR / RECORD_NAME).read_text())


def _demo_synthetic() -> dict:
    """params.yaml's prepare.synthetic (the demo's dataset), read as plain YAML."""
    return yaml.safe_load((REPO / "params.yaml").read_text())["prepare"]["synthetic"]


def test_shipped_files_match_their_recorded_sha256_and_stay_small():
    record = _record()
    assert sorted(record["sha256"]) == sorted(SHIPPED_FILES)
    for name in SHIPPED_FILES:
        data = (WEIGHTS_DIR / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == record["sha256"][name], name
    assert sum((WEIGHTS_DIR / n).stat().st_size for n in SHIPPED_FILES) < 8 * 2**20
    assert record["command"] == REBUILD  # the defaults of the script are what was shipped


def test_training_seed_shares_no_sample_with_the_demo():
    """Sample i of split s is drawn from default_rng([seed, s, i]): another seed, other samples."""
    from leve.datasets.synthetic import render_sample

    data = _record()["data"]
    demo = _demo_synthetic()
    assert data["seed"] != demo["seed"]
    # the same 3:4 rooms (trained on 240x320 renders, the demo's are 120x160: the processor feeds
    # both at 126x168, and the teacher scores the same on either)
    assert data["height"] * demo["width"] == data["width"] * demo["height"]
    rgb_train, _ = render_sample(data["seed"], "test", 0, 24, 32)
    rgb_demo, _ = render_sample(demo["seed"], "test", 0, 24, 32)
    assert not np.array_equal(rgb_train, rgb_demo)


def test_package_data_ships_every_file_of_the_folder():
    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["leve"]
    for file in WEIGHTS_DIR.iterdir():
        rel = file.relative_to(REPO / "leve").as_posix()
        assert any(fnmatch.fnmatch(rel, p) for p in patterns), rel


def test_a_changed_or_missing_file_is_refused_in_one_line(tmp_path):
    folder = tmp_path / "weights"
    shutil.copytree(WEIGHTS_DIR, folder)
    assert verified_folder(folder) == folder
    weights = folder / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(LeveError, match="model.safetensors: sha256 .* does not match the recorded") as exc:
        verified_folder(folder)
    assert "\n" not in str(exc.value)
    (folder / "config.json").unlink()
    with pytest.raises(LeveError, match="config.json: missing"):
        verified_folder(folder)
    (folder / RECORD_NAME).unlink()
    with pytest.raises(LeveError, match="record.json: missing"):
        verified_folder(folder)


def test_loads_offline_through_the_registry(monkeypatch):
    from transformers import DepthAnythingForDepthEstimation

    from leve.teacher.loading import canonical_model_id, load_teacher

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    teacher = load_teacher("embedded")
    assert isinstance(teacher.model, DepthAnythingForDepthEstimation)
    assert (teacher.model_id, teacher.source) == ("embedded", "packaged")
    assert canonical_model_id("embedded") == "embedded"
    assert teacher.licence.startswith("Apache-2.0")
    weights_sha = hashlib.sha256((WEIGHTS_DIR / "model.safetensors").read_bytes()).hexdigest()
    assert teacher.revision == f"sha256:{weights_sha[:16]}"
    saved = json.loads((WEIGHTS_DIR / "preprocessor_config.json").read_text())
    assert (teacher.preprocessing.height, teacher.preprocessing.width) == (saved["size"]["height"], saved["size"]["width"])
    assert teacher.preprocessing.output_size(240, 320) == (126, 168)  # 240x320 fed at 9x12 patches
    assert sum(p.numel() for p in teacher.model.parameters()) == _record()["parameters"]


def _teacher_metrics(store: Path, cache: Path, model: str) -> tuple[dict[str, float], float]:
    """Cache ``model`` on the store's test split (the real path), then score it lstsq-aligned;
    also the smallest spread (max - min) of a cached map, each map being in [0, 1]."""
    from leve.evaluation.protocols import get_protocol
    from leve.evaluation.runner import score_teacher
    from leve.metrics import aggregate_metrics
    from leve.store.reader import open_store
    from leve.teacher.cache.build import build_teacher_cache
    from leve.teacher.cache.read import open_teacher_cache
    from leve.teacher.loading import load_teacher

    build_teacher_cache(store, cache, "test", load_teacher(model), **caching(batch_size=8), show_progress=False)
    data = open_store(store).split("test")
    maps = open_teacher_cache(cache, "test", store, expected_model=model)
    protocol = get_protocol("leve2024", "synthetic", 10.0)
    scores = [score_teacher(maps.disparity(i), data.depth(i).astype(np.float64), protocol)[2]
              for i in range(len(data))]
    spread = min(float(np.ptp(maps.disparity(i))) for i in range(len(data)))
    return aggregate_metrics(scores).means, spread


@pytest.mark.slow
def test_beats_tiny_random_on_the_demo_test_split(tmp_path, monkeypatch):
    from leve.datasets import synthetic

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    demo = _demo_synthetic()
    store = tmp_path / "synthetic.zarr"
    synthetic.prepare(synthetic.Config(out=store, seed=demo["seed"], height=demo["height"], width=demo["width"],
                                       train=1, val=1, test=demo["test"], workers=1), show_progress=False)
    trained, spread = _teacher_metrics(store, tmp_path / "embedded.zarr", "embedded")
    random, _ = _teacher_metrics(store, tmp_path / "tiny.zarr", "tiny-random")
    assert spread > 0.3  # the shape survives the float16 cache (no offset-dominated map)
    assert trained["rmse"] < 0.7 * random["rmse"], (trained, random)
    assert trained["abs_rel"] < 0.7 * random["abs_rel"], (trained, random)
    assert trained["d1"] > random["d1"] + 0.2, (trained, random)


def test_training_loss_is_affine_invariant_and_the_gauge_pins_shift_and_scale():
    import torch

    from leve.pipeline.embedded_teacher import affine_invariant_loss, gauge_loss

    y = torch.rand(2, 6, 8) + 0.1
    valid = torch.ones_like(y, dtype=torch.bool)
    valid[0, 0, :4] = False
    assert float(affine_invariant_loss(3.0 * y + 2.0, y, valid)) == pytest.approx(0.0, abs=1e-5)
    assert float(affine_invariant_loss(y.flip(-1), y, valid)) > 0.1
    # shift by 1: medians differ by 1, deviations equal; scale by 2 about 0: both double
    assert float(gauge_loss(y + 1.0, y, valid)) == pytest.approx(1.0, abs=1e-5)
    med = torch.stack([y[b][valid[b]].median() for b in range(2)])
    mad = torch.stack([(y[b][valid[b]] - med[b]).abs().mean() for b in range(2)])
    assert float(gauge_loss(2.0 * y, y, valid)) == pytest.approx(float((med + mad).mean()), rel=1e-5)
