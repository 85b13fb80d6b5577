"""A checkpoint as a folder in the Hugging Face layout (``leve export --format hf``)::

    <out>/config.json         format, version, model (a registry name), config {max_depth, resolution},
                              output_stride, leve_version, depth_kind (metric | relative), depth_units,
                              output (how to read the network output) and extra (lineage, val metrics...)
    <out>/model.safetensors   the state dict (safetensors metadata ``format: pt``)
    <out>/README.md           the model card (:mod:`leve.models.card`), with Hub front matter

It loads back offline wherever a checkpoint is taken: ``load_checkpoint(folder)``,
``create_model(folder)``, ``leve predict --checkpoint folder``, ``leve serve``, ``leve export``.
The folder is built under a temporary name, loaded back and compared with the source checkpoint
(outputs must be identical), and only then moved into place.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from leve import __version__
from leve.atomic import check_name, plain_os_error, temporary_name
from leve.errors import LeveError
from leve.models.checkpoint import FORMAT, HF_CONFIG, HF_WEIGHTS, VERSION, load_checkpoint, read_checkpoint

DROPPED = ("train_state",)  # resumption state (optimizer tensors): not part of a published model


def plain_extra(extra: dict[str, Any]) -> dict[str, Any]:
    """The JSON-serialisable entries of a checkpoint's ``extra`` (tensors and training state dropped)."""
    out = {}
    for key, value in extra.items():
        try:
            json.dumps(value)
        except (TypeError, ValueError):
            continue
        if key not in DROPPED:
            out[key] = value
    return out


def write_hf_folder(checkpoint: str | Path, out: str | Path,
                    metrics: tuple[str | Path, ...] = ()) -> tuple[float, list[int], float]:
    """Write ``checkpoint`` as a Hugging Face layout folder at ``out``. Returns the largest absolute
    difference between the source's and the reloaded folder's outputs on a random input (0 expected),
    that output's shape and its range (max - min)."""
    from safetensors.torch import save_file

    from leve.models.card import count_parameters, depth_output, read_metrics, render_card
    from leve.models.checkpoint import _default_permissions, _info

    out = Path(out)
    _check_target(out)
    state, info = read_checkpoint(checkpoint)
    model, _ = load_checkpoint(checkpoint)
    header = {"format": FORMAT, "version": VERSION, "model": info.model, "library_name": "leve",
              "config": {"max_depth": info.max_depth, "resolution": list(info.resolution)},
              "output_stride": int(getattr(model, "output_stride", 1)), "leve_version": __version__,
              **_depth_fields(depth_output(info)), "extra": plain_extra(info.extra)}
    check_name(out)
    staging = temporary_name(out)  # unique to this process and call: two exports never share it
    try:
        staging.mkdir(parents=True)
        (staging / HF_CONFIG).write_text(json.dumps(header, indent=2) + "\n", encoding="utf-8")
        save_file({k: v.contiguous() for k, v in state.items()}, str(staging / HF_WEIGHTS), metadata={"format": "pt"})
        _default_permissions(staging / HF_WEIGHTS)
        card_info = _info(staging, header)
        (staging / "README.md").write_text(render_card(card_info, count_parameters(state), read_metrics(metrics),
                                                       out.name), encoding="utf-8")
        diff, shape, span = _compare(model, staging, info.resolution)
        if diff != 0.0:
            raise LeveError(f"{out}: the reloaded folder's output differs from {checkpoint} (max abs diff {diff:.3g})")
        shutil.rmtree(out, ignore_errors=True)
        os.replace(staging, out)
    except OSError as exc:
        raise (plain_os_error(exc, out) or exc) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return diff, shape, span


def _depth_fields(meaning: dict[str, str]) -> dict[str, str]:
    """config.json's statement of the output: ``depth_kind`` (metric | relative), ``depth_units``, ``output``."""
    return {"depth_kind": meaning["depth_kind"], "depth_units": meaning["units"], "output": meaning["output"]}


def _check_target(out: Path) -> None:
    """Refuse to replace anything but an earlier leve export (never a user's folder)."""
    if not out.exists():
        return
    config = out / HF_CONFIG
    try:
        ours = out.is_dir() and json.loads(config.read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours and (out.is_file() or any(out.iterdir())):
        raise LeveError(f"{out}: exists and is not a leve Hugging Face folder; choose another --out")


@torch.inference_mode()
def _compare(model: torch.nn.Module, folder: Path, resolution: tuple[int, int]) -> tuple[float, list[int], float]:
    """Max abs difference of ``model`` and the model loaded from ``folder`` on one random input."""
    loaded, _ = load_checkpoint(folder)
    x = torch.rand(1, 3, *resolution, generator=torch.Generator().manual_seed(0))
    ref = model(x)
    return float((ref - loaded(x)).abs().max()), list(ref.shape), float(ref.max() - ref.min())
