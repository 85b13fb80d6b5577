"""Lineage travels with the weights: a student distilled from a cache whose teacher is CC-BY-NC is
marked non-commercial in its checkpoint, card, ``leve predict`` output, ONNX metadata, ``leve serve``
page and Hugging Face folder; the folder loads back offline with identical outputs; a student
trained without distillation says it has no teacher."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from leve.errors import LeveError
from leve.models.card import write_model_card
from leve.models.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from leve.models.lineage import Lineage, is_non_commercial
from leve.models.registry import create_model
from leve.store.reader import open_store
from leve.teacher.cache.build import build_teacher_cache
from leve.teacher.loading import load_teacher
from leve.teacher.registry import REGISTRY
from leve.train.lineage import training_lineage
from leve.train.loop import train
from leve.train.stage import KDConfig, TrainConfig
from tests.explicit import caching
from tests.factories import synthetic_store

NC_ID = "depth-anything/Depth-Anything-V2-Base-hf"
NC_REVISION = "4b6d8c0e1f2a3b4c5d6e7f8091a2b3c4d5e6f708"  # what the hub would have resolved
SIZE = (64, 64)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("lineage") / "data" / "synthetic.zarr"
    return synthetic_store(path, height=64, width=64, train=4, val=1, test=1, block_size=4)


def _config(store: Path, out: Path, eps: float, teacher_dir: Path) -> TrainConfig:
    return TrainConfig(dataset="synthetic", data_dir=store.parent, resolution=SIZE, batch_size=4, epochs=1,
                       max_steps=1, workers=0, val_every=0, log_every=1, out_dir=out / "models",
                       log_dir=out / "dvclive", kd=KDConfig(eps=eps, teacher_dir=teacher_dir))


@pytest.fixture(scope="module")
def nc_student(store: Path) -> Path:
    """best.pt distilled from a cache whose teacher identity is Depth-Anything V2 Base's (a tiny random
    network under that name: nothing is downloaded)."""
    teacher = load_teacher("tiny-random")
    teacher.model_id, teacher.revision, teacher.licence = NC_ID, NC_REVISION, REGISTRY["v2-base"].licence
    teacher.source = "hub"
    cache = store.parent.parent / "teacher" / "synthetic.zarr"
    build_teacher_cache(store, cache, "train", teacher, **caching(block_size=4), show_progress=False)
    cfg = _config(store, store.parent.parent / "kd", 0.5, cache.parent)
    train(cfg, show_progress=False)
    return cfg.out_dir / "best.pt"


@pytest.fixture(scope="module")
def plain_student(store: Path) -> Path:
    """A checkpoint with the lineage ``leve train`` records for a run without distillation (kd.eps 0)
    and its card, written by the same functions the training loop calls (no second training run)."""
    cfg = _config(store, store.parent.parent / "plain", 0.0, store.parent.parent / "no-teacher")
    path = save_checkpoint(cfg.out_dir / "best.pt", create_model(cfg.model), cfg.model, 10.0,
                           {"lineage": training_lineage(cfg, open_store(store))}, SIZE)
    write_model_card(path)
    return path


def test_registry_licences_mark_exactly_v2_base_and_large_and_depth_pro_non_commercial():
    marked = {name for name, e in REGISTRY.items() if is_non_commercial(e.licence)}
    v2_nc = {f"v2-{kind}{size}" for kind in ("", "metric-indoor-", "metric-outdoor-") for size in ("base", "large")}
    assert marked == v2_nc | {"depth-pro"}  # CC-BY-NC-4.0, and Apple's research-only licence
    assert not is_non_commercial("Apache-2.0") and not is_non_commercial("unknown (local folder)")
    assert not is_non_commercial("MIT") and is_non_commercial("Research use only")
    assert is_non_commercial("CC-BY-NC-SA-3.0") and is_non_commercial("free for non-commercial research")


def test_checkpoint_records_teacher_and_datasets(nc_student, store):
    extra = read_checkpoint(nc_student)[1].extra
    lin = extra["lineage"]
    t = lin["teacher"]
    assert (t["model"], t["name"], t["revision"]) == (NC_ID, "v2-base", NC_REVISION)
    assert t["licence"] == REGISTRY["v2-base"].licence and t["non_commercial"] is True
    assert t["eps"] == 0.5 and t["cache"].endswith("teacher/synthetic.zarr")
    assert lin["non_commercial"] is True and lin["licence_id"] == "cc-by-nc-4.0"
    attrs = open_store(store).attrs
    got = [(d["role"], d["name"], d["split"], d["samples"], d["path"], d["fingerprint"]) for d in lin["datasets"]]
    assert got == [("train", "synthetic", "train", 4, str(store), attrs["fingerprint"]),
                   ("val", "synthetic", "val", 1, str(store), attrs["fingerprint"])]
    assert Lineage.from_extra(extra).summary().startswith("NON-COMMERCIAL use only: teacher " + NC_ID)


def test_model_card_beside_the_checkpoint(nc_student):
    card = (nc_student.parent / "MODEL_CARD.md").read_text()
    _, info = read_checkpoint(nc_student)
    params = sum(p.numel() for p in create_model(info.model).parameters())  # the model itself, not the state dict
    assert "license: cc-by-nc-4.0" in card.split("---")[1]
    assert "**Non-commercial use only**" in card and NC_ID in card and NC_REVISION in card
    assert f"| parameters | {params:,} |" in card
    assert "`leve train` validation on `synthetic/val`" in card
    assert f"{info.extra['val']['rmse']:.4f}" in card and "| synthetic | train | 4 |" in card


def test_predict_says_non_commercial(nc_student, tmp_path, run_cli):
    Image.fromarray(np.full((40, 50, 3), 128, np.uint8)).save(tmp_path / "a.png")
    res = run_cli("predict", tmp_path / "a.png", "--checkpoint", nc_student, "--out", tmp_path / "o")
    assert res.code == 0, res.stderr
    assert "NON-COMMERCIAL use only" in res.stderr and NC_ID in res.stderr and NC_REVISION in res.stderr


def test_serve_page_and_info_say_non_commercial(nc_student):
    from starlette.testclient import TestClient

    from leve.serve.app import create_app
    from leve.serve.config import Config

    client = TestClient(create_app(Config(checkpoint=nc_student, device="cpu", samples=1, sample_height=24,
                                          sample_width=32, warmup=False)))
    page = client.get("/").text
    assert 'id="lineage"' in page and "Non-commercial use only." in page and NC_ID in page
    info = client.get("/api/info").json()["lineage"]
    assert info["non_commercial"] is True and info["teacher"]["revision"] == NC_REVISION


def test_onnx_metadata_says_non_commercial(nc_student, tmp_path, run_cli):
    onnx = pytest.importorskip("onnx")
    res = run_cli("export", "--checkpoint", nc_student, "--out", tmp_path / "s.onnx", "--accept-noncommercial")
    assert res.code == 0, res.stderr
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "s.onnx")).metadata_props}
    assert meta["leve_non_commercial"] == "true" and meta["leve_licence_id"] == "cc-by-nc-4.0"
    assert (meta["leve_teacher"], meta["leve_teacher_revision"]) == (NC_ID, NC_REVISION)
    assert json.loads(meta["leve_lineage"])["teacher"] == read_checkpoint(nc_student)[1].extra["lineage"]["teacher"]


def test_hf_folder_loads_back_offline_with_identical_outputs(nc_student, tmp_path, run_cli, monkeypatch):
    folder = tmp_path / "student-hf"
    res = run_cli("export", "--checkpoint", nc_student, "--format", "hf", "--out", folder, "--accept-noncommercial")
    assert res.code == 0, res.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "configuration_leve.py",
                                                        "image_processing_leve.py", "model.safetensors",
                                                        "modeling_leve.py", "preprocessor_config.json"]
    assert "license: cc-by-nc-4.0" in (folder / "README.md").read_text()
    assert json.loads((folder / "config.json").read_text())["extra"]["lineage"]["non_commercial"] is True

    def no_network(*args, **kwargs):
        raise AssertionError("network used while loading a local folder")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    x = torch.rand(2, 3, *SIZE, generator=torch.Generator().manual_seed(1))
    ref, _ = load_checkpoint(nc_student)
    with torch.inference_mode():
        assert torch.equal(create_model(str(folder))(x), ref(x))
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 50, 3), np.uint8)).save(tmp_path / "a.png")
    outs = []
    for ckpt, name in ((nc_student, "pt"), (folder, "hf")):
        res = run_cli("predict", tmp_path / "a.png", "--checkpoint", ckpt, "--out", tmp_path / name,
                      "--depth-format", "npy")
        assert res.code == 0 and "NON-COMMERCIAL use only" in res.stderr, res.stderr
        outs.append(np.load(tmp_path / name / "a_depth.npy"))
    assert np.array_equal(outs[0], outs[1])


def test_student_without_distillation_says_no_teacher(plain_student, tmp_path):
    lineage = Lineage.of(read_checkpoint(plain_student)[1])
    assert lineage.recorded and lineage.teacher is None and not lineage.non_commercial
    assert lineage.licence_id == "apache-2.0" and lineage.summary().startswith("no teacher")
    assert "No teacher: trained without distillation." in (plain_student.parent / "MODEL_CARD.md").read_text()
    assert lineage.onnx_metadata()["leve_teacher"] == "none"
    assert lineage.onnx_metadata()["leve_non_commercial"] == "false"


def test_checkpoint_from_before_lineage_says_not_recorded(small_checkpoint):
    lineage = Lineage.of(read_checkpoint(small_checkpoint)[1])
    assert not lineage.recorded and "not recorded" in lineage.summary()


def test_bad_hf_folders_are_refused_in_one_line(nc_student, tmp_path):
    from leve.models.hf import write_hf_folder

    folder = tmp_path / "hf"
    write_hf_folder(nc_student, folder)
    (folder / "model.safetensors").unlink()
    with pytest.raises(LeveError, match=r"model\.safetensors: missing"):
        load_checkpoint(folder)
    (folder / "model.safetensors").write_bytes(b"")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(LeveError, match=r"config\.json: cannot read as JSON"):
        read_checkpoint(folder)
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(LeveError, match="not a leve Hugging Face folder"):
        write_hf_folder(nc_student, mine)
    assert (mine / "notes.txt").read_text() == "keep me"


def test_model_card_command_adds_eval_metrics_with_their_protocol(plain_student, tmp_path, run_cli):
    protocol = {"name": "leve2024", "crop": {"name": "eigen"}, "flip": "separate", "min_depth": 0.1, "max_depth": 10.0,
                "align": "none", "upsample": "output", "aggregation": "per_image"}
    metrics = {"dataset": "synthetic", "split": "test", "protocol": {**protocol, "teacher_align": "lstsq"},
               "student": {"abs_rel": 0.123456, "rmse": 0.987654, "d1": 0.5, "count": 7},
               "teacher": {"abs_rel": 0.2, "rmse": 1.49996, "d1": 0.300049, "count": 7},
               "teacher_source": {"model": "embedded"}}
    (tmp_path / "m.json").write_text(json.dumps(metrics))
    out = tmp_path / "CARD.md"
    res = run_cli("model-card", "--checkpoint", plain_student, "--metrics", tmp_path / "m.json", "--out", out)
    assert res.code == 0, res.stderr
    card = out.read_text()
    assert "protocol `leve2024`: crop eigen, flip separate, depth 0.1-10.0, alignment none" in card
    assert "| model | abs_rel | rmse | d1 |" in card and "| student | 0.1235 | 0.9877 | 0.5000 |" in card
    assert "| teacher `embedded` (lstsq-aligned) | 0.2000 | 1.5000 | 0.3000 |" in card and "7 images" in card
    (tmp_path / "bad.json").write_text(json.dumps({"rmse": 1.0}))
    res = run_cli("model-card", "--checkpoint", plain_student, "--metrics", tmp_path / "bad.json", "--out", out)
    assert res.code == 1 and "bad.json: not a `leve eval` metrics file" in res.stderr


@pytest.mark.parametrize(("teacher", "datasets", "expected"), [
    ({"model": "embedded"}, [{"name": "synthetic", "split": "train"}, {"name": "synthetic", "split": "val"}], True),
    (None, [{"name": "synthetic", "split": "train"}], True),  # no teacher, synthetic data only
    ({"model": "depth-anything/Depth-Anything-V2-Small-hf"}, [{"name": "synthetic", "split": "train"}], False),
    ({"model": "embedded"}, [{"name": "synthetic", "split": "train"}, {"name": "nyu", "split": "train"}], False),
    ({"model": "embedded"}, [], False),  # data not recorded: nothing to say
])
def test_a_synthetic_only_student_is_named_so(teacher, datasets, expected):
    lineage = Lineage.from_extra({"lineage": {"teacher": teacher, "datasets": datasets}})
    assert lineage.synthetic_only() is expected
    line = lineage.synthetic_warning("best.pt")
    assert (line is not None) is expected
    if expected:
        assert line.startswith("warning: best.pt: trained on leve's synthetic rooms only") and "\n" not in line
    assert not Lineage().synthetic_only()  # a checkpoint without lineage is not judged


def test_predict_warns_once_for_a_synthetic_only_student(tmp_path, capsys):
    from leve.predict import _say_lineage

    extra = {"lineage": {"teacher": {"model": "embedded", "revision": "x", "licence": "Apache-2.0"},
                         "datasets": [{"name": "synthetic", "split": "train", "fingerprint": "abc"}],
                         "licence": "Apache-2.0", "licence_id": "apache-2.0"}}
    path = save_checkpoint(tmp_path / "s.pt", create_model("leve", max_depth=10.0), "leve", 10.0, extra=extra)
    _say_lineage(path, read_checkpoint(path)[1])
    out = capsys.readouterr().err  # leve's console writes to stderr
    assert sum(line.startswith("warning:") for line in out.splitlines()) == 1
    assert "synthetic rooms only" in out
