"""Fixtures for the model tests: a saved checkpoint, a reference-shaped ImageNet state dict, the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.models.reference import (  # noqa: F401
    CLASSIFIER_ONLY,
    random_imagenet_state_dict,
    reference_entries,
)


@pytest.fixture
def imagenet_file(tmp_path: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    sd = random_imagenet_state_dict()
    path = tmp_path / "DDRNet23s_imagenet.pth"
    torch.save(sd, path)
    return path, sd


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A leve checkpoint (safetensors) of a randomly initialised model trained at 64x96."""
    from leve.models.checkpoint import save_checkpoint
    from leve.models.registry import create_model

    torch.manual_seed(0)
    model = create_model("leve", max_depth=10.0)
    with torch.no_grad():  # make the output positive and image dependent, like a trained model
        model.decoder.blocks[-1].out.bias.fill_(5.0)
    path = tmp_path_factory.mktemp("ckpt") / "leve.safetensors"
    return save_checkpoint(path, model, "leve", 10.0, extra={"epoch": 3}, resolution=(64, 96))
