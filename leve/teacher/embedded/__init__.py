"""The ``embedded`` teacher: a small Depth-Anything trained here on synthetic rooms, shipped inside leve.

``weights/`` is a ``save_pretrained`` folder (``config.json``, ``model.safetensors``,
``preprocessor_config.json``) written by ``python -m leve.pipeline.embedded_teacher``; its
``record.json`` holds the sha256 of each of those files, the exact command that rebuilds them,
the seeds, steps and time. :func:`verified_folder` checks the hashes before every load, so a
damaged install fails with one line instead of giving another teacher's maps.

This module imports no torch or transformers at the top: the registry imports it.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from leve.errors import LeveError
from leve.teacher.dpt import DEPTH_ANYTHING_PREPROCESSING

WEIGHTS_DIR = Path(__file__).parent / "weights"
RECORD_NAME = "record.json"
SHIPPED_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")
REBUILD = "python -m leve.pipeline.embedded_teacher --out leve/teacher/embedded/weights"

# DPT preprocessing as every Depth-Anything checkpoint, at a 126 px target instead of 518:
# a 240x320 frame (the demo's) is fed at 126x168 (9x12 patches of 14 px).
PREPROCESSING: dict[str, Any] = {**DEPTH_ANYTHING_PREPROCESSING, "size": {"height": 126, "width": 126}}


def embedded_config() -> Any:
    """The architecture: Dinov2 width 96, 6 layers, 3 heads, DPT neck 12-96 channels, fusion 32."""
    from transformers import DepthAnythingConfig, Dinov2Config

    backbone = Dinov2Config(
        image_size=168,  # position table of 12x12 patches, interpolated to the input grid
        patch_size=14,
        hidden_size=96,
        num_hidden_layers=6,
        num_attention_heads=3,
        intermediate_size=384,
        out_indices=[3, 4, 5, 6],
        reshape_hidden_states=False,
    )
    return DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=96,
        reassemble_factors=[4, 2, 1, 0.5],
        neck_hidden_sizes=[12, 24, 48, 96],
        fusion_hidden_size=32,
        head_hidden_size=16,
    )


def file_sha256(path: Path) -> str:
    """The hex sha256 of a file."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_record(folder: Path = WEIGHTS_DIR) -> dict[str, Any]:
    """The folder's ``record.json`` (hashes, rebuild command, seeds, steps, time)."""
    file = folder / RECORD_NAME
    try:
        record = json.loads(file.read_text())
    except FileNotFoundError:
        raise LeveError(f"{file}: missing; reinstall leve or rebuild with `{REBUILD}`") from None
    except (OSError, ValueError) as exc:
        raise LeveError(f"{file}: not valid JSON ({exc})") from exc
    if not isinstance(record, dict) or not isinstance(record.get("sha256"), dict):
        raise LeveError(f"{file}: no 'sha256' mapping of the shipped files")
    return record


def verified_folder(folder: Path = WEIGHTS_DIR) -> Path:
    """``folder`` after checking each shipped file against the sha256 in its record (LeveError otherwise)."""
    hashes = read_record(folder)["sha256"]
    for name in SHIPPED_FILES:
        path = folder / name
        want = hashes.get(name)
        if want is None:
            raise LeveError(f"{folder / RECORD_NAME}: no sha256 recorded for {name}")
        if not path.is_file():
            raise LeveError(f"{path}: missing; reinstall leve or rebuild with `{REBUILD}`")
        got = file_sha256(path)
        if got != want:
            raise LeveError(f"{path}: sha256 {got[:16]} does not match the recorded {want[:16]}; "
                            f"reinstall leve or rebuild with `{REBUILD}`")
    return folder
