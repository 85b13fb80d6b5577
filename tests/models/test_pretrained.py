"""ImageNet DDRNet-23-slim weights: reference names/shapes load; wrappers unwrap; wrong files fail loudly."""

from __future__ import annotations

import math

import pytest
import torch

from leve.errors import LeveError
from leve.models.pretrained import load_encoder_weights
from leve.models.registry import create_model
from tests.models.reference import CLASSIFIER_ONLY, reference_entries


def transferable(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in sd.items() if not k.startswith(CLASSIFIER_ONLY)}


def assert_loaded(encoder: torch.nn.Module, sd: dict[str, torch.Tensor]) -> None:
    state = encoder.state_dict()
    for k, v in transferable(sd).items():
        assert torch.equal(state[k], v), k


def test_reference_file_loads_exactly(imagenet_file):
    path, sd = imagenet_file
    model = create_model("leve")
    before = {k: v.clone() for k, v in model.encoder.state_dict().items() if k.startswith(("spp.", "final_layer."))}
    report = load_encoder_weights(model.encoder, path)
    assert len(transferable(sd)) == 254 and report.loaded == 254
    expected_params = sum(math.prod(s) for n, s, d in reference_entries()
                          if not n.startswith(CLASSIFIER_ONLY) and "running_" not in n and d == "float32")
    assert report.loaded_params == expected_params == 4_547_232
    assert report.random == ["final_layer", "spp"]
    assert len(report.skipped) == 274 - 254
    assert_loaded(model.encoder, sd)
    after = model.encoder.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())  # new parts untouched


def test_create_model_reports_what_loaded(imagenet_file, capsys):
    path, sd = imagenet_file
    model = create_model("leve-dw", encoder_weights=path)
    assert_loaded(model.encoder, sd)
    err = capsys.readouterr().err
    assert "loaded 254 tensors" in err and "4.55 M" in err and "spp" in err and "final_layer" in err


@pytest.mark.parametrize("wrap", ["module", "state_dict", "both", "safetensors"])
def test_prefixed_and_wrapped_copies_load(imagenet_file, tmp_path, wrap):
    _, sd = imagenet_file
    prefixed = {f"module.{k}": v for k, v in sd.items()}
    obj = {"module": prefixed, "state_dict": {"state_dict": sd, "epoch": 90},
           "both": {"state_dict": prefixed, "best_acc1": torch.tensor(0.7)}}.get(wrap)
    path = tmp_path / f"w.{wrap}.pth"
    if wrap == "safetensors":
        from safetensors.torch import save_file

        path = tmp_path / "w.safetensors"
        save_file(sd, str(path))
    else:
        torch.save(obj, path)
    model = create_model("leve")
    assert load_encoder_weights(model.encoder, path).loaded == 254
    assert_loaded(model.encoder, sd)


def test_wrong_shapes_are_refused(imagenet_file, tmp_path):
    _, sd = imagenet_file
    sd = dict(sd)
    sd["layer3.0.conv1.weight"] = torch.zeros(128, 64, 1, 1)
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    model = create_model("leve")
    before = model.encoder.conv1[0].weight.clone()
    with pytest.raises(LeveError, match=r"bad\.pth: tensor 'layer3\.0\.conv1\.weight' has shape \(128, 64, 1, 1\)"):
        load_encoder_weights(model.encoder, path)
    assert torch.equal(model.encoder.conv1[0].weight, before)  # nothing half-loaded


def test_missing_tensors_are_refused(imagenet_file, tmp_path):
    _, sd = imagenet_file
    partial = {k: v for k, v in sd.items() if not k.startswith("layer4_.")}
    path = tmp_path / "partial.pth"
    torch.save(partial, path)
    with pytest.raises(LeveError, match=r"partial\.pth: only 230 of 254 .*missing e\.g\. 'layer4_\."):
        load_encoder_weights(create_model("leve").encoder, path)


def test_other_network_is_refused(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"fc.weight": torch.zeros(10, 4), "conv1.weight": torch.zeros(64, 3, 7, 7)}, path)
    with pytest.raises(LeveError, match="resnet.pth"):
        load_encoder_weights(create_model("leve").encoder, path)


class Evil:
    def __reduce__(self):
        return (print, ("pwned",))


@pytest.mark.parametrize("content", [b"not a checkpoint", "pickle"])
def test_unreadable_or_unsafe_files_are_refused(tmp_path, content):
    path = tmp_path / "weird.pth"
    if content == "pickle":
        torch.save({"x": Evil()}, path)  # needs full unpickling: weights_only refuses it
    else:
        path.write_bytes(content)
    with pytest.raises(LeveError, match="weird.pth: cannot read"):
        load_encoder_weights(create_model("leve").encoder, path)
    with pytest.raises(LeveError, match="not found"):
        load_encoder_weights(create_model("leve").encoder, tmp_path / "missing.pth")


def test_plain_pickle_dict_without_tensors_is_refused(tmp_path):
    path = tmp_path / "meta.pth"
    torch.save({"epoch": 3, "arch": "ddrnet"}, path)
    with pytest.raises(LeveError, match="no state dict of tensors"):
        load_encoder_weights(create_model("leve").encoder, path)
