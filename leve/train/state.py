"""Training state in a checkpoint: ``last.pt`` is a leve checkpoint (any tool can load its
model) whose ``extra.train_state`` holds what a resume needs: optimiser, scheduler, grad
scaler, random-number states and the position (epoch, batch, step, best val RMSE).
Written atomically by :func:`leve.models.checkpoint.save_checkpoint`; read with
``weights_only=True``.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from leve.errors import LeveError
from leve.models.checkpoint import read_checkpoint, save_checkpoint


@dataclass
class Position:
    """Where training stands: ``batch`` batches of ``epoch`` are done, ``step`` optimiser steps in all."""

    epoch: int = 0
    batch: int = 0
    step: int = 0
    best_rmse: float = float("inf")
    best_step: int = -1
    val_count: int = 0  # validations that competed for best.pt with metrics (val split with depth)
    val_first_step: int = -1  # the step of the first of them


def rng_state() -> dict[str, Any]:
    """torch (CPU and CUDA) and Python random states, as plain containers and tensors."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": list_tuple(random.getstate())}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def list_tuple(x: Any) -> Any:
    return [list_tuple(v) for v in x] if isinstance(x, tuple | list) else x


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_state(path: Path, model: torch.nn.Module, name: str, max_depth: float, resolution: tuple[int, int],
               objects: dict[str, Any], position: Position, config_hash: str,
               extra: dict[str, Any] | None = None) -> Path:
    """Write model + training state atomically (``extra``: more of the checkpoint's description)."""
    train_state = {
        **{k: v.state_dict() for k, v in objects.items() if v is not None},
        "rng": rng_state(),
        "position": asdict(position),
        "config_hash": config_hash,
    }
    return save_checkpoint(path, model, name, max_depth, extra={**(extra or {}), "train_state": train_state},
                           resolution=resolution)


def read_state(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The weights and training state of a ``last.pt``."""
    state, info = read_checkpoint(path)
    train_state = info.extra.get("train_state")
    if not isinstance(train_state, dict) or "position" not in train_state:
        raise LeveError(f"{path}: no training state in this checkpoint (only its weights); cannot resume")
    return state, train_state


def load_state(path: Path, model: torch.nn.Module, objects: dict[str, Any]) -> Position:
    """Restore model, optimiser, scheduler, scaler and RNG from ``path``; returns the position."""
    state, train_state = read_state(path)
    model.load_state_dict(state)
    for key, obj in objects.items():
        if obj is not None and key in train_state:
            obj.load_state_dict(train_state[key])
    set_rng_state(train_state["rng"])
    return Position(**train_state["position"])
