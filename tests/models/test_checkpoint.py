"""Checkpoints round-trip in both encodings and refuse foreign files."""

from __future__ import annotations

import pytest
import torch

from leve.errors import LeveError
from leve.models.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from leve.models.registry import create_model
from tests.media import rewrite_header, set_field


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
    from leve.models.registry import list_models

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


# --------------------------------------------------------------------------- header fields checked before use


BAD_HEADERS = [
    ("version", set_field("version", "abc"), r"checkpoint version must be a whole number, got 'abc'"),
    ("version-float", set_field("version", 1.5), r"checkpoint version must be a whole number, got '?1\.5'?"),
    ("resolution-huge", set_field("config", "resolution", [100000, 100000]),
     r"checkpoint resolution 100000x100000 is 10,000,000,000 pixels, over the cap of 64,000,000"),
    ("resolution-negative", set_field("config", "resolution", [-64, 64]),
     r"checkpoint resolution must be two positive whole numbers \[H, W\], got \[-64, 64\]"),
    ("resolution-text", set_field("config", "resolution", "64x64"), r"checkpoint resolution must be two positive whole numbers"),
    ("resolution-odd", set_field("config", "resolution", [65, 64]), r"checkpoint resolution 65x64: model 'leve': H and W must be "
                                                               r"multiples of 8"),
    ("max_depth-inf", set_field("config", "max_depth", float("inf")), r"checkpoint max_depth must be a finite number > 0"),
    ("max_depth-text", set_field("config", "max_depth", "ten"), r"checkpoint max_depth must be a finite number > 0, got 'ten'"),
    ("extra-list", set_field("extra", [1, 2]), r"checkpoint extra must be a mapping, got \[1, 2\]"),
    ("affine-short", set_field("extra", {"depth_kind": "relative", "relative_affine": [1.0]}),
     r"checkpoint relative_affine must be two finite numbers \[scale, shift\], got \[1\.0\]"),
    ("affine-nan", set_field("extra", {"depth_kind": "relative", "relative_affine": [1.0, float("nan")]}),
     r"checkpoint relative_affine must be two finite numbers"),
    ("depth_kind", set_field("extra", {"depth_kind": "disparity"}), r"checkpoint depth_kind must be one of metric, relative, got "
                                                                r"'disparity'"),
    ("model", set_field("model", ["leve"]), r"checkpoint model must be a registered model name, got '?\[.leve.\]"),
    ("config-list", set_field("config", [10.0]), r"checkpoint config must be a mapping, got \[10\.0\]"),
    ("long-value", set_field("version", "9" * 1_000_000), r"checkpoint version must be a whole number, got '9999"),
]


@pytest.fixture(scope="module")
def plain_checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("headers")
    torch.manual_seed(0)
    model = create_model("leve")
    return {s: save_checkpoint(root / f"good{s}", model, "leve", 10.0, resolution=(64, 64)) for s in (".pt", ".safetensors")}


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
@pytest.mark.parametrize(("change", "message"), [c[1:] for c in BAD_HEADERS], ids=[c[0] for c in BAD_HEADERS])
def test_bad_header_fields_are_one_line_before_use(tmp_path, plain_checkpoints, suffix, change, message):
    """Both encodings (safetensors metadata holds the fields as JSON, which Python writes and reads with
    Infinity/NaN); the good file loads, the changed copy is refused in one short line naming it."""
    import re

    assert load_checkpoint(plain_checkpoints[suffix])[1].resolution == (64, 64)
    bad = rewrite_header(plain_checkpoints[suffix], tmp_path / f"bad{suffix}", change)
    with pytest.raises(LeveError) as err:
        load_checkpoint(bad)
    text = str(err.value)
    assert text.startswith(f"{bad}: ") and "\n" not in text and len(text) < 500, text[:600]
    assert re.search(message, text), text


def test_the_registry_loads_folders_through_the_checkpoint_module(tmp_path):
    """leve.models.registry imports no checkpoint code (no registry <-> checkpoint cycle): create_model(folder)
    is served by the loader leve.models.checkpoint registers when it is imported, and says so before."""
    import subprocess
    import sys

    code = ("import sys\nfrom leve.errors import LeveError\nfrom leve.models.registry import create_model\n"
            "print('leve.models.checkpoint' in sys.modules)\n"
            "for step in ('before', 'after'):\n"
            "    try:\n        create_model(sys.argv[1])\n    except LeveError as e:\n        print(e)\n"
            "    import leve.models.checkpoint\n")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "False", f"{tmp_path}: a saved model folder: load it with leve.models.checkpoint.load_checkpoint",
        f"{tmp_path / 'config.json'}: missing (a leve Hugging Face folder holds config.json and model.safetensors)"]
