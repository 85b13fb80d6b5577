"""Issue 27, item 5: the ``embedded`` teacher says what it is. Its registry entry reads "synthetic rooms
only"; ``leve teacher-cache`` with it on a store that leve's synthetic adapter did not render prints one
``warning:`` line naming the alternatives, and nothing on a rendered store or with another teacher."""

from __future__ import annotations

from pathlib import Path

import pytest

from leve.teacher.registry import REGISTRY
from leve.teacher.stage import rendered_by_leve
from tests.factories import make_store, synthetic_store


@pytest.fixture(scope="module")
def stores(tmp_path_factory) -> Path:
    """data/zarr-like folder: rendered rooms (``synthetic``), an NYU-named store and a store that only
    calls itself ``synthetic`` (not rendered by leve's adapter)."""
    root = tmp_path_factory.mktemp("embedded_declared") / "zarr"
    synthetic_store(root / "synthetic.zarr", height=48, width=64, train=3, val=1, test=1, block_size=4)
    make_store(root / "nyu.zarr", [(48, 64)] * 3, name="nyu")
    make_store(root / "renamed.zarr", [(48, 64)] * 3, name="synthetic")
    return root


def _cache(run_cli, stores: Path, tmp_path: Path, dataset: str, model: str):
    params = tmp_path / "params.yaml"
    params.write_text(f"paths:\n  stores: {stores}\n  teacher_cache: {tmp_path / 'teacher'}\n"
                      "teacher:\n  workers: 0\n  device: cpu\n")
    return run_cli("teacher-cache", "--params", params, "--dataset", dataset, "--model", model, "--split", "train")


def _warnings(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("warning:")]


def test_registry_entry_reads_synthetic_rooms_only():
    assert REGISTRY["embedded"].description.startswith("synthetic rooms only")


def test_embedded_on_rendered_rooms_says_nothing(run_cli, stores, tmp_path):
    res = _cache(run_cli, stores, tmp_path, "synthetic", "embedded")
    assert res.code == 0, res.stderr
    assert _warnings(res.stderr) == [] and (tmp_path / "teacher" / "synthetic.zarr").is_dir()


@pytest.mark.parametrize("dataset", ["nyu", "renamed"])
def test_embedded_elsewhere_warns_once_naming_the_alternatives(run_cli, stores, tmp_path, dataset):
    res = _cache(run_cli, stores, tmp_path, dataset, "embedded")
    assert res.code == 0, res.stderr
    (line,) = _warnings(res.stderr)
    assert line.startswith(f"warning: {stores / f'{dataset}.zarr'}: the embedded teacher knows only leve's synthetic rooms")
    assert all(name in line for name in ("v2-small", "v1-small", "save_pretrained folder"))
    assert (tmp_path / "teacher" / f"{dataset}.zarr").is_dir()  # a warning, not a refusal


def test_another_teacher_elsewhere_says_nothing(run_cli, stores, tmp_path):
    res = _cache(run_cli, stores, tmp_path, "nyu", "tiny-random")
    assert res.code == 0, res.stderr
    assert _warnings(res.stderr) == []


def test_what_counts_as_rendered_by_leve(stores):
    from leve.store.reader import open_store

    rendered = dict(open_store(stores / "synthetic.zarr").attrs)
    assert rendered_by_leve(rendered)
    assert not rendered_by_leve({**rendered, "adapter": "folder"})  # `leve prepare folder synthetic`
    assert not rendered_by_leve({**rendered, "dataset": "nyu"})
    assert not rendered_by_leve(dict(open_store(stores / "renamed.zarr").attrs))
