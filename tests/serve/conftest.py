"""Fixtures for ``leve serve``: a small checkpoint, the app, and a real uvicorn on loopback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from leve.serve.app import create_app
from leve.serve.config import Config
from leve.serve.model import LoadedModel, load_model
from tests.serve.helpers import live_server

LIMITS = {"max_upload_bytes": 200_000, "max_pixels": 300_000}


def small_student(path: Path, extra: dict | None = None) -> Path:
    """A leve checkpoint at 64x96 whose output is positive and image dependent (``extra``: its header's)."""
    from leve.models.checkpoint import save_checkpoint
    from leve.models.registry import create_model

    torch.manual_seed(0)
    model = create_model("leve", max_depth=10.0)
    with torch.no_grad():
        model.decoder.blocks[-1].out.bias.fill_(5.0)
    return save_checkpoint(path, model, "leve", 10.0, extra=extra, resolution=(64, 96))


@pytest.fixture(scope="session")
def serve_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_student(tmp_path_factory.mktemp("serve") / "student.safetensors")


@pytest.fixture(scope="session")
def serve_config(serve_checkpoint: Path) -> Config:
    return Config(checkpoint=serve_checkpoint, device="cpu", samples=2, sample_height=48, sample_width=64, **LIMITS)


@pytest.fixture(scope="session")
def served(serve_config: Config) -> Iterator[str]:
    """Base URL of the checkpoint app served by a real uvicorn on 127.0.0.1 (free port)."""
    from leve.serve.app import create_app

    with live_server(create_app(serve_config)) as url:
        yield url


@pytest.fixture(scope="module")
def serve_model(serve_config: Config) -> LoadedModel:
    return load_model(serve_config)


@pytest.fixture
def serve_with(serve_config: Config, serve_model: LoadedModel) -> Iterator[Callable[..., str]]:
    """Start a live server of the test checkpoint with some serve params changed; its URL."""
    stack: list = []

    def start(**changes: object) -> str:
        ctx = live_server(create_app(replace(serve_config, warmup=False, samples=0, **changes), model=serve_model))
        stack.append(ctx)
        return ctx.__enter__()

    yield start
    for ctx in stack:
        ctx.__exit__(None, None, None)
