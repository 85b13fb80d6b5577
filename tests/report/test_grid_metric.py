"""The ``kd`` grid's ``kd.loss: metric`` points (issue 30 item 5): present exactly when the teacher the params
name for ``train.dataset`` is metric, read from the registry or from a ``save_pretrained`` folder's config."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from leve.errors import LeveError
from leve.experiments import grid as g

RELATIVE_KD = [
    "dvc exp run --queue -n kd-eps0.00 -S train.model=leve -S train.kd.eps=0",
    "dvc exp run --queue -n kd-eps0.10 -S train.model=leve -S train.kd.eps=0.1",
    "dvc exp run --queue -n kd-eps0.25 -S train.model=leve -S train.kd.eps=0.25",
    "dvc exp run --queue -n kd-eps0.50 -S train.model=leve -S train.kd.eps=0.5",
]
METRIC_KD = [
    "dvc exp run --queue -n kd-metric-eps0.10 -S train.model=leve -S train.kd.eps=0.1 -S train.kd.loss=metric",
    "dvc exp run --queue -n kd-metric-eps0.25 -S train.model=leve -S train.kd.eps=0.25 -S train.kd.loss=metric",
    "dvc exp run --queue -n kd-metric-eps0.50 -S train.model=leve -S train.kd.eps=0.5 -S train.kd.loss=metric",
]


def commands(points) -> list[str]:
    return [g.format_command(c) for c in g.queue_commands(points)]


def test_kd_grid_gains_metric_points_for_a_metric_teacher():
    assert commands(g.grid("kd")) == RELATIVE_KD
    assert commands(g.grid("kd", metric_teacher=True)) == RELATIVE_KD + METRIC_KD
    # the union keeps them once, after the relative grid's points; the other grids do not change
    everything = [p.name for p in g.grid("all", metric_teacher=True)]
    assert everything == [p.name for p in g.grid("all")][:4] + [n.split()[5] for n in METRIC_KD] \
        + [p.name for p in g.grid("all")][4:]
    assert g.grid("skips", metric_teacher=True) == g.grid("skips")


def _params(tmp_path: Path, teacher: dict, dataset: str = "synthetic") -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"train": {"dataset": dataset}, "teacher": teacher}))
    return path


def test_the_teacher_is_the_datasets_own_then_teacher_model(tmp_path):
    params = yaml.safe_load(_params(tmp_path, {"model": "v1-small", "datasets": {"synthetic": {"model": "embedded"},
                                                                                  "nyu": {}}}).read_text())
    assert g.teacher_model(params) == "embedded"
    # dvc exp run -S teacher.model=... rewrites teacher.model; the dataset's own entry still wins, as in the stage
    assert g.teacher_model(params, ["teacher.model=v2-metric-indoor-small"]) == "embedded"
    assert g.teacher_model(params, ["teacher.datasets.synthetic.model=v2-metric-indoor-small"]) == "v2-metric-indoor-small"
    assert g.teacher_model(params, ["train.dataset=nyu"]) == "v1-small"
    assert g.teacher_model(params, ["train.dataset=nyu", "teacher.model=zoedepth-nyu"]) == "zoedepth-nyu"


def test_depth_kind_from_the_registry_and_from_a_saved_config(tmp_path):
    from leve.teacher.registry import tiny_random_config, tiny_random_metric_config

    assert g.teacher_depth_kind("embedded") == "relative"
    assert g.teacher_depth_kind("v2-metric-outdoor-small") == "metric"
    assert g.teacher_depth_kind("depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf") == "metric"  # its hub id
    assert g.teacher_depth_kind("someone/unlisted-depth-model") == "relative"  # not fetched
    tiny_random_metric_config().save_pretrained(tmp_path / "metric")
    tiny_random_config().save_pretrained(tmp_path / "relative")
    assert g.teacher_depth_kind(str(tmp_path / "metric")) == "metric"
    assert g.teacher_depth_kind(str(tmp_path / "relative")) == "relative"
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    with pytest.raises(LeveError, match=r"broken/config.json: cannot read the teacher's config \(JSONDecodeError\)"):
        g.teacher_depth_kind(str(tmp_path / "broken"))


def test_queue_and_list_read_the_projects_teacher(run_cli, tmp_path, monkeypatch):
    _params(tmp_path, {"model": "v1-small", "datasets": {"synthetic": {"model": "tiny-random-metric"}}})
    res = run_cli("experiments", "queue", "--grid", "kd", "--dry-run", "--repo", tmp_path)
    assert res.code == 0, res.stderr
    assert res.stdout.splitlines() == RELATIVE_KD + METRIC_KD
    res = run_cli("experiments", "queue", "--grid", "kd", "--dry-run", "--repo", tmp_path,
                  "-S", "teacher.datasets.synthetic.model=embedded")
    assert res.stdout.splitlines() == [c + " -S teacher.datasets.synthetic.model=embedded" for c in RELATIVE_KD]
    monkeypatch.chdir(tmp_path)
    res = run_cli("experiments", "list", "--grid", "kd")
    assert res.code == 0, res.stderr
    assert res.stdout.splitlines()[-1] == "kd-metric-eps0.50: train.model=leve train.kd.eps=0.5 train.kd.loss=metric"
