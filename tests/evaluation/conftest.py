"""Fixtures: a tiny synthetic store (real store format), an untrained Leve checkpoint and a
teacher cache of the tiny random Depth-Anything, laid out as the eval stage expects."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.explicit import caching
from tests.factories import synthetic_store

HEIGHT, WIDTH = 48, 64


class ColumnRampNet(torch.nn.Module):
    """A predictor whose depth is known in closed form and is *not* flip-equivariant:
    depth = 1 + 4·red + 3·column/(w−1), returned as the output 10/depth."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 10.0 / ramp_depth(x)


def ramp_depth(x: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) depth of :class:`ColumnRampNet` for input ``x`` (B, 3, H, W)."""
    w = x.shape[-1]
    cols = torch.arange(w, dtype=x.dtype) / (w - 1)
    return 1.0 + 4.0 * x[:, :1] + 3.0 * cols


@pytest.fixture(scope="session")
def eval_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data/zarr/synthetic.zarr (test: 4), data/teacher/synthetic.zarr, models/student/best.pt."""
    from leve.models.checkpoint import save_checkpoint
    from leve.models.registry import create_model
    from leve.teacher.cache.build import build_teacher_cache
    from leve.teacher.loading import load_teacher

    root = tmp_path_factory.mktemp("evalws")
    store = root / "data/zarr/synthetic.zarr"
    synthetic_store(store, height=HEIGHT, width=WIDTH, train=1, val=1, test=4, block_size=4)
    torch.manual_seed(0)
    save_checkpoint(root / "models/student/best.pt", create_model("leve"), "leve", 10.0, resolution=(64, 64))
    build_teacher_cache(store, root / "data/teacher/synthetic.zarr", "test", load_teacher("tiny-random"),
                        **caching(block_size=4), show_progress=False)
    return root


@pytest.fixture
def workspace(eval_workspace: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh copy of the workspace as the current directory."""
    dst = tmp_path / "ws"
    shutil.copytree(eval_workspace, dst)
    monkeypatch.chdir(dst)
    return dst


def split_of(root: Path):
    from leve.store.reader import open_split

    return open_split(root / "data/zarr/synthetic.zarr", "test")


def as_input(rgb: np.ndarray) -> torch.Tensor:
    return torch.tensor(rgb).permute(2, 0, 1)[None].float() / 255.0
