"""ImageNet encoders: published parameter counts, feature maps, torchvision checkpoint layout,
an independent functional reference forward, and refusal of files that do not fit."""

from __future__ import annotations

import dataclasses
import hashlib
from functools import cache
from pathlib import Path

import pytest
import torch

from leve.errors import LeveError
from leve.models.encoders.base import Encoder
from leve.models.encoders.catalogue import ENCODERS, list_encoders
from leve.models.encoders.create import create_encoder
from leve.models.pretrained import load_imagenet_weights
from leve.sources.weights import WEIGHTS
from tests.models.encoders_ref.layouts import is_classifier, published_layout, random_state_dict, trunk_params
from tests.models.encoders_ref.naive import reference_maps

NAMES = list_encoders()
# Published parameter counts without classifier, and the (channels) at strides 2, 4, 8, 16, 32 (DESIGN §7).
PUBLISHED_PARAMS = {
    "densenet169": 12_484_480, "densenet161": 26_472_000, "resnet50": 23_508_032, "resnet101": 42_500_160,
    "mobilenet_v2": 2_223_872, "mobilenet_v3_large": 2_971_952, "mobilenet_v3_small": 927_008,
}
CHANNELS = {
    "densenet169": [64, 64, 128, 256, 1664], "densenet161": [96, 96, 192, 384, 2208],
    "resnet50": [64, 256, 512, 1024, 2048], "resnet101": [64, 256, 512, 1024, 2048],
    "mobilenet_v2": [16, 24, 32, 96, 320], "mobilenet_v3_large": [16, 24, 40, 112, 960],
    "mobilenet_v3_small": [16, 16, 24, 48, 576],
}
H, W = 64, 96


class NotATensor:
    """A custom class: pickling an instance makes a file that weights-only loading must refuse."""

    def __init__(self) -> None:
        self.payload = [1, 2, 3]


@cache
def built(name: str) -> Encoder:
    """A randomly initialised encoder in eval mode, shared by the read-only tests."""
    return create_encoder(name).eval()


def module_key(published: str) -> str:
    """torchvision's published key -> the module's key (old DenseNet ``norm.1`` -> ``norm1``)."""
    if ".denselayer" not in published:
        return published
    for part in ("norm", "relu", "conv"):
        for i in ("1", "2"):
            published = published.replace(f".{part}.{i}.", f".{part}{i}.")
    return published


def save_fixture(name: str, path: Path, seed: int = 0, nbt: bool = False) -> dict[str, torch.Tensor]:
    """Write a random state dict in the published layout of ``name`` to ``path``; return it."""
    sd = random_state_dict(published_layout(name, nbt), seed)
    torch.save(sd, path)
    return sd


def error_of(name: str, path: Path) -> str:
    """The one-line message of the LeveError raised when loading ``path`` into ``name``."""
    with pytest.raises(LeveError) as info:
        create_encoder(name, weights=path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    return message


# ------------------------------------------------------------------------------ architecture


def test_registry_entries() -> None:
    assert NAMES == list(PUBLISHED_PARAMS)
    for name, spec in ENCODERS.items():
        assert spec.name == name and spec.file.startswith(name + "-") and spec.file.endswith(".pth")
        assert spec.url == f"https://download.pytorch.org/models/{spec.file}"
        assert spec.sha256_prefix and spec.file == f"{name}-{spec.sha256_prefix}.pth"
        assert spec.licence == "BSD-3-Clause (torchvision)" and spec.params == PUBLISHED_PARAMS[name]


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count(name: str) -> None:
    assert sum(p.numel() for p in built(name).parameters()) == PUBLISHED_PARAMS[name]
    assert trunk_params(published_layout(name)) == PUBLISHED_PARAMS[name]  # the test's own layout agrees


@pytest.mark.parametrize("name", NAMES)
def test_feature_maps(name: str) -> None:
    enc = built(name)
    assert enc.channels == CHANNELS[name] and enc.reductions == [2, 4, 8, 16, 32]
    with torch.no_grad():
        maps = enc(torch.rand(2, 3, H, W))
    assert [tuple(m.shape) for m in maps] == [(2, c, H // r, W // r) for c, r in zip(enc.channels, enc.reductions)]


def test_normalisation_inside_and_not_persistent() -> None:
    enc = built("mobilenet_v3_small")
    assert not any("input_" in k for k in enc.state_dict())
    x = torch.rand(1, 3, 32, 32)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        for a, b in zip(enc(x), enc.forward_features((x - mean) / std)):
            torch.testing.assert_close(a, b)


# ------------------------------------------------------------------------------ checkpoint layout


@pytest.mark.parametrize("name", NAMES)
def test_published_layout_loads_every_tensor(name: str, tmp_path: Path) -> None:
    sd = save_fixture(name, tmp_path / f"{name}_imagenet.pth", seed=1)
    enc = create_encoder(name, weights=tmp_path / f"{name}_imagenet.pth")
    loaded = enc.state_dict()
    trunk = {module_key(k): v for k, v in sd.items() if not is_classifier(k)}
    assert set(trunk) == {k for k in loaded if not k.endswith("num_batches_tracked")}
    for key, value in trunk.items():
        assert torch.equal(loaded[key], value), key


def test_num_batches_tracked_and_safetensors_accepted(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    sd = save_fixture("mobilenet_v3_small", tmp_path / "with_nbt.pth", seed=2, nbt=True)
    enc = create_encoder("mobilenet_v3_small", weights=tmp_path / "with_nbt.pth")
    assert torch.equal(enc.state_dict()["features.1.block.0.1.num_batches_tracked"],
                       sd["features.1.block.0.1.num_batches_tracked"])
    save_file(sd, str(tmp_path / "w.safetensors"))
    report = load_imagenet_weights(create_encoder("mobilenet_v3_small"), tmp_path / "w.safetensors")
    assert report.loaded_params == PUBLISHED_PARAMS["mobilenet_v3_small"]
    assert sorted(report.skipped) == ["classifier.0.bias", "classifier.0.weight", "classifier.3.bias",
                                      "classifier.3.weight"]


@pytest.mark.parametrize("name", NAMES)
def test_matches_functional_reference(name: str, tmp_path: Path) -> None:
    sd = save_fixture(name, tmp_path / "w.pth", seed=3)
    enc = create_encoder(name, weights=tmp_path / "w.pth").eval()
    x = torch.rand(2, 3, H, W, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        got, want = enc(x), reference_maps(sd, name, x)
    assert len(got) == len(want) == 5
    for g, w in zip(got, want):
        assert w.std() > 0.1  # BatchNorm is far from identity and the maps are not degenerate
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5 * float(w.abs().max()))


# ------------------------------------------------------------------------------ hash check


def test_canonical_name_with_wrong_hash_refused(tmp_path: Path) -> None:
    path = tmp_path / ENCODERS["mobilenet_v3_small"].file
    save_fixture("mobilenet_v3_small", path)
    message = error_of("mobilenet_v3_small", path)
    assert "SHA-256" in message and ENCODERS["mobilenet_v3_small"].sha256_prefix in message


def test_canonical_name_with_matching_hash_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scratch = tmp_path / "scratch.pth"
    save_fixture("mobilenet_v3_small", scratch)
    prefix = hashlib.sha256(scratch.read_bytes()).hexdigest()[:8]
    published = ENCODERS["mobilenet_v3_small"]
    spec = dataclasses.replace(published, weights=dataclasses.replace(
        published.weights, file=f"mobilenet_v3_small-{prefix}.pth", sha256_prefix=prefix))
    monkeypatch.setitem(ENCODERS, "mobilenet_v3_small", spec)
    monkeypatch.setitem(WEIGHTS, "mobilenet_v3_small", spec.weights)  # the catalogue the loader checks against
    path = scratch.rename(tmp_path / spec.file)
    create_encoder("mobilenet_v3_small", weights=path)


# ------------------------------------------------------------------------------ bad input


def test_file_for_another_encoder_refused(tmp_path: Path) -> None:
    path = tmp_path / "resnet50_weights.pth"
    save_fixture("resnet50", path)
    message = error_of("mobilenet_v2", path)
    assert "not a mobilenet_v2" in message and "'conv1.weight'" in message


def test_sibling_densenet_refused(tmp_path: Path) -> None:
    path = tmp_path / "d169.pth"
    save_fixture("densenet169", path)
    message = error_of("densenet161", path)
    assert "not a densenet161" in message and "'features.denseblock" in message


def test_missing_tensor_refused(tmp_path: Path) -> None:
    sd = random_state_dict(published_layout("densenet169"))
    del sd["features.denseblock2.denselayer3.norm.2.running_var"]
    torch.save(sd, tmp_path / "missing.pth")
    message = error_of("densenet169", tmp_path / "missing.pth")
    assert "'features.denseblock2.denselayer3.norm2.running_var'" in message and "missing" in message


def test_misshaped_tensor_refused(tmp_path: Path) -> None:
    sd = random_state_dict(published_layout("mobilenet_v3_small"))
    sd["features.4.block.2.fc1.weight"] = torch.zeros(25, 96, 1, 1)
    torch.save(sd, tmp_path / "shape.pth")
    message = error_of("mobilenet_v3_small", tmp_path / "shape.pth")
    assert "'features.4.block.2.fc1.weight'" in message and "(25, 96, 1, 1)" in message and "(24, 96, 1, 1)" in message


def test_extra_tensor_refused(tmp_path: Path) -> None:
    sd = random_state_dict(published_layout("mobilenet_v3_small"))
    sd["features.99.weight"] = torch.zeros(3)
    torch.save(sd, tmp_path / "extra.pth")
    assert "'features.99.weight'" in error_of("mobilenet_v3_small", tmp_path / "extra.pth")


def test_truncated_file_refused(tmp_path: Path) -> None:
    full = tmp_path / "full.pth"
    save_fixture("mobilenet_v3_small", full)
    cut = tmp_path / "cut.pth"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    error_of("mobilenet_v3_small", cut)


def test_pickle_that_is_not_weights_only_refused(tmp_path: Path) -> None:
    path = tmp_path / "pickle.pth"
    torch.save({"features.0.0.weight": torch.zeros(16, 3, 3, 3), "extra": NotATensor()}, path)
    message = error_of("mobilenet_v3_small", path)
    assert "weights-only" in message and "\x1b" not in message


@pytest.mark.parametrize("obj", [torch.zeros(3), {"state": {"a": torch.zeros(1)}}, {}])
def test_not_a_state_dict_refused(obj: object, tmp_path: Path) -> None:
    torch.save(obj, tmp_path / "odd.pth")
    error_of("mobilenet_v3_small", tmp_path / "odd.pth")


def test_missing_file_refused(tmp_path: Path) -> None:
    error_of("resnet50", tmp_path / "absent.pth")


def test_unknown_encoder_refused() -> None:
    with pytest.raises(LeveError) as info:
        create_encoder("vgg16")
    assert "vgg16" in str(info.value) and all(n in str(info.value) for n in NAMES)


# ------------------------------------------------------------------------------ ddrnet23_slim


def _ddrnet_imagenet_file(path: Path) -> dict[str, torch.Tensor]:
    """DDRNet23s_imagenet.pth's names and shapes (tests/models/data) with values that keep the maps finite:
    He-scaled convolutions, positive running variances."""
    from tests.models.reference import random_imagenet_state_dict

    sd = random_imagenet_state_dict(seed=6)
    for key, value in sd.items():
        if key.endswith("running_var"):
            sd[key] = value.abs() + 0.5
        elif value.dim() == 4:
            sd[key] = value * (2.0 / value[0].numel()) ** 0.5
    torch.save(sd, path)
    return sd


def test_ddrnet23_slim_loads_the_imagenet_file_and_returns_its_trunk_maps(tmp_path: Path) -> None:
    import torch.nn.functional as F

    from leve.models.ddrnet import DDRNet23Slim
    from leve.models.encoders.create import create_encoder as public_create_encoder
    from tests.models.reference import CLASSIFIER_ONLY

    path = tmp_path / "DDRNet23s_imagenet.pth"
    sd = _ddrnet_imagenet_file(path)
    enc = public_create_encoder("ddrnet23_slim", weights=path).eval()
    assert enc.channels == [32, 32, 64, 128, 256] and enc.reductions == [2, 4, 8, 16, 32]
    trunk = {k: v for k, v in sd.items() if not k.startswith(CLASSIFIER_ONLY)}
    assert len(trunk) == 254 and set(enc.state_dict()) == set(trunk)  # every tensor but the classifier's
    assert all(torch.equal(enc.state_dict()[k], v) for k, v in trunk.items())
    assert sum(p.numel() for p in enc.parameters()) == 4_547_232  # the file's transferable parameters
    # Leve's own DDRNet-23-slim on the same weights gives the stride-4 and -8 maps; the stem's first conv,
    # BN and ReLU, and the low branch's fusions (low + down(high), high + up(compression(low))) by hand
    ref = DDRNet23Slim()
    ref.load_state_dict({**ref.state_dict(), **trunk})
    ref.eval()
    x = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        got = enc(x)
        leve = ref(x)
        xn = (x - torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        s2 = F.relu(F.batch_norm(F.conv2d(xn, sd["conv1.0.weight"], sd["conv1.0.bias"], stride=2, padding=1),
                                 sd["conv1.1.running_mean"], sd["conv1.1.running_var"], sd["conv1.1.weight"],
                                 sd["conv1.1.bias"]))
        l2 = F.relu(leve["layer2"])
        low, high = ref.layer3(l2), ref.layer3_(l2)
        up = F.interpolate(ref.compression3(F.relu(low)), size=(8, 12), mode="bilinear", align_corners=False)
        low, high = low + ref.down3(F.relu(high)), high + up
        s32 = ref.layer4(F.relu(low)) + ref.down4(F.relu(ref.layer4_(F.relu(high))))
    want = [s2, F.relu(leve["layer1"]), l2, F.relu(low), F.relu(s32)]
    assert all(torch.isfinite(w).all() and w.std() > 0.1 for w in want)  # maps far from degenerate
    assert [tuple(g.shape) for g in got] == [(2, c, 64 // r, 96 // r) for c, r in zip(enc.channels, enc.reductions)]
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-5 * float(w.abs().max()))
    assert torch.equal(leve["fusion3"], high)  # the hand-written fusion is Leve's


def test_ddrnet23_slim_refuses_another_encoders_file(tmp_path: Path) -> None:
    path = tmp_path / "resnet50.pth"
    save_fixture("resnet50", path)
    message = error_of("ddrnet23_slim", path)
    assert "DDRNet-23-slim" in message


def test_unknown_encoder_lists_ddrnet23_slim() -> None:
    with pytest.raises(LeveError, match="choose from ddrnet23_slim, densenet169"):
        create_encoder("vgg16")
