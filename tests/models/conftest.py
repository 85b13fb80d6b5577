"""Fixtures for the model tests: a saved checkpoint, a reference-shaped ImageNet state dict, the CLI."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

REFERENCE = Path(__file__).parent / "data" / "ddrnet23s_imagenet_state_dict.json"
CLASSIFIER_ONLY = ("down5.", "last_layer.", "linear.")


def reference_entries() -> list[tuple[str, list[int], str]]:
    """(name, shape, dtype) of every tensor in the public DDRNet23s_imagenet.pth."""
    return [tuple(e) for e in json.loads(REFERENCE.read_text())["entries"]]


def random_imagenet_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict with exactly the reference names, shapes and dtypes, random values."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for name, shape, dtype in reference_entries():
        if dtype == "int64":
            sd[name] = torch.randint(0, 1000, shape, generator=g, dtype=torch.int64)
        else:
            sd[name] = torch.randn(shape, generator=g)
    return sd


@pytest.fixture
def imagenet_file(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    sd = random_imagenet_state_dict()
    path = tmp_path / "DDRNet23s_imagenet.pth"
    torch.save(sd, path)
    return path, sd


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A leve checkpoint (safetensors) of a randomly initialised model trained at 64x96."""
    from leve.models import create_model, save_checkpoint

    torch.manual_seed(0)
    model = create_model("leve", max_depth=10.0)
    with torch.no_grad():  # make the output positive and image dependent, like a trained model
        model.decoder.blocks[-1].out.bias.fill_(5.0)
    path = tmp_path_factory.mktemp("ckpt") / "leve.safetensors"
    return save_checkpoint(path, model, "leve", 10.0, extra={"epoch": 3}, resolution=(64, 96))


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str


@pytest.fixture
def leve_cli(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch):
    """Run ``leve ARGS`` in-process through the real entry point (errors -> exit 1)."""
    from leve.cli import main

    def run(*args: str) -> CliResult:
        monkeypatch.setattr(sys, "argv", ["leve", *map(str, args)])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out = capsys.readouterr()
        return CliResult(code, out.out, out.err)

    return run
