"""Checkpoints round-trip in both encodings and refuse foreign files."""

from __future__ import annotations

import pytest
import torch

from leve.errors import LeveError
from leve.models import create_model, load_checkpoint, read_checkpoint, save_checkpoint


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_round_trip(tmp_path, suffix):
    torch.manual_seed(1)
    model = create_model("leve-3x3-1x1", max_depth=80.0).eval()
    for m in model.modules():  # non-default running stats must survive too
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    path = save_checkpoint(tmp_path / f"m{suffix}", model, "leve-3x3-1x1", 80.0,
                           extra={"epoch": 7, "rmse": 0.51}, resolution=(240, 320))
    assert not list(tmp_path.glob("*.tmp"))
    loaded, info = load_checkpoint(path)
    assert (info.model, info.max_depth, info.resolution) == ("leve-3x3-1x1", 80.0, (240, 320))
    assert info.extra == {"epoch": 7, "rmse": 0.51}
    assert loaded.max_depth == 80.0 and not loaded.training
    x = torch.rand(1, 3, 64, 64)
    with torch.inference_mode():
        assert torch.equal(loaded(x), model(x))


def test_foreign_files_are_refused(tmp_path, imagenet_file):
    path, _ = imagenet_file
    with pytest.raises(LeveError, match="not a leve checkpoint"):
        read_checkpoint(path)
    bad = tmp_path / "other.pt"
    torch.save({"format": "leve-checkpoint", "version": 1, "model": "leve", "config": {"max_depth": 10.0},
                "state_dict": {"w": torch.zeros(2)}}, bad)
    with pytest.raises(LeveError, match="other.pt: weights do not fit model 'leve'"):
        load_checkpoint(bad)
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(LeveError, match="junk.safetensors: cannot read"):
        read_checkpoint(tmp_path / "junk.safetensors")
    with pytest.raises(LeveError, match="checkpoint not found"):
        read_checkpoint(tmp_path / "nope.pt")


def test_save_refuses_unknown_name_and_non_json_extra(tmp_path):
    model = create_model("leve-no-skips")
    with pytest.raises(LeveError, match="unknown model 'leve-big'"):
        save_checkpoint(tmp_path / "a.pt", model, "leve-big", 10.0)
    with pytest.raises(LeveError, match="JSON-serialisable"):
        save_checkpoint(tmp_path / "a.safetensors", model, "leve-no-skips", 10.0, extra={"t": torch.zeros(1)})
    assert not list(tmp_path.iterdir())


def _every_model():
    from leve.models import list_models

    big = {"densedepth-densenet169", "densedepth-densenet161", "densedepth-resnet50", "densedepth-resnet101"}
    return [pytest.param(n, marks=[pytest.mark.slow] if n in big else []) for n in list_models()]


@pytest.mark.parametrize("name", _every_model())
def test_every_model_round_trips(tmp_path, name):
    torch.manual_seed(2)
    model = create_model(name, max_depth=10.0).eval()
    path = save_checkpoint(tmp_path / "m.safetensors", model, name, 10.0, resolution=(64, 96))
    loaded, info = load_checkpoint(path)
    assert info.model == name and type(loaded) is type(model) and loaded.name == name
    assert loaded.output_stride == model.output_stride and not loaded.training
    x = torch.rand(1, 3, 64, 96)
    with torch.inference_mode():
        y = loaded(x)
        assert torch.equal(y, model(x)) and y.shape == (1, 1, 64 // model.output_stride, 96 // model.output_stride)
