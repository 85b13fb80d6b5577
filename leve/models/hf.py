"""A checkpoint as a folder in the Hugging Face layout (``leve export --format hf``)::

    <out>/config.json         format, version, model (a registry name), config {max_depth, resolution},
                              output_stride, leve_version, depth_kind (metric | relative), depth_units,
                              output (how to read the network output) and extra (lineage, val metrics...)
    <out>/model.safetensors   the state dict (safetensors metadata ``format: pt``)
    <out>/README.md           the model card (:mod:`leve.models.card`), with Hub front matter
    <out>/configuration_leve.py, modeling_leve.py, image_processing_leve.py
                              transformers' remote code (:mod:`leve.models.hf_code`: leve's own
                              network code, bundled so that it runs without leve)
    <out>/preprocessor_config.json  the image processor: leve's resize to the model's resolution

``config.json`` also holds what transformers reads: ``model_type`` (leve), ``auto_map`` (AutoConfig,
AutoModel, AutoModelForDepthEstimation), ``architectures`` and the network (``architecture``,
``encoder``, ``lcb``, ``skips``, ``max_depth``, ``image_size``, a relative model's
``relative_affine``). So, offline and without leve::

    AutoModelForDepthEstimation.from_pretrained(folder, trust_remote_code=True)
    pipeline("depth-estimation", model=folder, trust_remote_code=True)

give ``predicted_depth`` as ``leve predict`` computes it (metres for a metric model). It loads back
offline wherever a checkpoint is taken too: ``load_checkpoint(folder)`` (and ``create_model(folder)`` once
:mod:`leve.models.checkpoint` is imported),
``leve predict --checkpoint folder``, ``leve serve``, ``leve export``. The folder is built under a
temporary name, loaded back by leve (outputs identical) and by its own remote code (outputs within
:data:`REMOTE_TOLERANCE`), and only then moved into place. :func:`push_hf_folder` uploads it
(``leve export --format hf --push REPO``).
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
from leve.models.checkpoint import (
    FORMAT,
    HF_CONFIG,
    HF_WEIGHTS,
    VERSION,
    CheckpointInfo,
    load_checkpoint,
    read_checkpoint,
)

DROPPED = ("train_state",)  # resumption state (optimizer tensors): not part of a published model
PREPROCESSOR = "preprocessor_config.json"
MODEL_CLASS, CONFIG_CLASS, PROCESSOR_CLASS = "LeveForDepthEstimation", "LeveDepthConfig", "LeveImageProcessor"
AUTO_MAP = {"AutoConfig": f"configuration_leve.{CONFIG_CLASS}", "AutoModel": f"modeling_leve.{MODEL_CLASS}",
            "AutoModelForDepthEstimation": f"modeling_leve.{MODEL_CLASS}"}
REMOTE_TOLERANCE = 1e-5  # max abs difference of the remote code's depth and leve's, relative to leve's largest


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
    remote = transformers_fields(info)
    header = {"format": FORMAT, "version": VERSION, "model": info.model, "library_name": "leve",
              "config": {"max_depth": info.max_depth, "resolution": list(info.resolution)},
              "output_stride": int(getattr(model, "output_stride", 1)), "leve_version": __version__,
              **_depth_fields(depth_output(info)), **remote, "extra": plain_extra(info.extra)}
    check_name(out)
    staging = temporary_name(out)  # unique to this process and call: two exports never share it
    try:
        staging.mkdir(parents=True)
        (staging / HF_CONFIG).write_text(json.dumps(header, indent=2) + "\n", encoding="utf-8")
        save_file({k: v.contiguous() for k, v in state.items()}, str(staging / HF_WEIGHTS), metadata={"format": "pt"})
        _default_permissions(staging / HF_WEIGHTS)
        card_info = _info(staging, header)
        (staging / "README.md").write_text(render_card(card_info, count_parameters(state), read_metrics(metrics),
                                                       out.name, transformers=bool(remote)), encoding="utf-8")
        diff, shape, span = _compare(model, staging, info.resolution)
        if diff != 0.0:
            raise LeveError(f"{out}: the reloaded folder's output differs from {checkpoint} (max abs diff {diff:.3g})")
        if remote:
            _write_remote_code(staging, info)
            remote_diff = check_remote_code(staging, model, info)
            if not remote_diff <= REMOTE_TOLERANCE:
                raise LeveError(f"{out}: the exported transformers code's depth differs from leve's "
                                f"({remote_diff:.3g} of its largest value, over {REMOTE_TOLERANCE:g})")
        shutil.rmtree(out, ignore_errors=True)
        os.replace(staging, out)
    except OSError as exc:
        raise (plain_os_error(exc, out) or exc) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return diff, shape, span


def transformers_fields(info: CheckpointInfo) -> dict[str, Any]:
    """config.json's entries for transformers: ``model_type``, ``auto_map``, ``architectures`` and the
    network as :func:`leve.models.hf_remote.modeling_leve.build_network` builds it; empty for a model
    with a custom factory (``register_model`` decorator: its code cannot be bundled), whose folder
    loads in leve only."""
    from leve.models.registry import model_spec

    spec = model_spec(info.model)
    if spec.factory is not None:
        return {}
    fields: dict[str, Any] = {
        "model_type": "leve", "architectures": [MODEL_CLASS], "auto_map": dict(AUTO_MAP),
        "architecture": spec.architecture, "encoder": spec.encoder, "lcb": spec.lcb, "skips": spec.skips,
        "max_depth": float(info.max_depth), "image_size": list(info.resolution)}
    if info.depth_kind == "relative":
        fields["relative_affine"] = [float(v) for v in info.extra.get("relative_affine") or (1.0, 0.0)]
    return fields


def _write_remote_code(folder: Path, info: CheckpointInfo) -> None:
    """The three Python files (:mod:`leve.models.hf_code`) and ``preprocessor_config.json``."""
    from leve.models.hf_code import write_remote_code

    write_remote_code(folder, f"Written by leve {__version__} (`leve export --format hf`) for model '{info.model}'.")
    h, w = info.resolution
    processor = {"image_processor_type": PROCESSOR_CLASS, "size": {"height": h, "width": w},
                 "auto_map": {"AutoImageProcessor": f"image_processing_leve.{PROCESSOR_CLASS}"}}
    (folder / PREPROCESSOR).write_text(json.dumps(processor, indent=2) + "\n", encoding="utf-8")


def load_remote_code(folder: Path) -> dict[str, Any]:
    """The folder's configuration, modeling and image-processing modules, imported as a package of
    their own (its relative import resolved as transformers' remote code resolves it), without
    transformers' module cache."""
    import importlib.util
    import sys
    import uuid

    package = f"leve_export_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(package, folder / "__init__.py", submodule_search_locations=[str(folder)])
    assert spec is not None
    sys.modules[package] = importlib.util.module_from_spec(spec)
    modules = {}
    try:
        for name in ("configuration_leve", "modeling_leve", "image_processing_leve"):
            sub = importlib.util.spec_from_file_location(f"{package}.{name}", folder / f"{name}.py")
            assert sub is not None and sub.loader is not None
            module = importlib.util.module_from_spec(sub)
            sys.modules[sub.name] = module
            sub.loader.exec_module(module)
            modules[name] = module
    finally:
        for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
            del sys.modules[name]
    return modules


@torch.inference_mode()
def check_remote_code(folder: Path, model: torch.nn.Module, info: CheckpointInfo) -> float:
    """Load ``folder`` with its own remote code (model and image processor) and compare its
    ``predicted_depth`` with leve's on a random image: the largest difference relative to leve's
    largest depth."""
    import numpy as np
    from transformers.utils import logging as hf_logging

    from leve.images import resize_rgb
    from leve.models.depth import output_to_depth, upsample_output

    modules = load_remote_code(folder)
    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # no "Loading weights" bar in leve's output
    try:
        hf_model = getattr(modules["modeling_leve"], MODEL_CLASS).from_pretrained(str(folder)).eval()
        processor = getattr(modules["image_processing_leve"], PROCESSOR_CLASS).from_pretrained(str(folder))
    finally:
        if shown:
            hf_logging.enable_progress_bar()
    h, w = info.resolution
    rgb = np.random.default_rng(0).integers(0, 256, (h + h // 3, w - w // 4, 3), dtype=np.uint8)
    pixels = processor(rgb, return_tensors="pt")["pixel_values"]
    x = resize_rgb(rgb, info.resolution)[None]
    if not torch.equal(pixels, x):
        raise LeveError(f"{folder}: the exported image processor's input differs from leve's")
    ref = output_to_depth(upsample_output(model(x), info.resolution), info.max_depth)[:, 0]
    got = hf_model(pixel_values=pixels).predicted_depth
    if got.shape != ref.shape:
        raise LeveError(f"{folder}: the exported model gave shape {tuple(got.shape)}, leve {tuple(ref.shape)}")
    return float((got - ref).abs().max() / ref.abs().max())


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


def push_hf_folder(folder: str | Path, repo: str, dry_run: bool = False, api: Any = None,
                   private: bool = False) -> list[str]:
    """Upload an exported folder to the Hugging Face Hub repository ``repo`` (``owner/name``, created
    if missing) with ``huggingface_hub.HfApi.upload_folder``; return the files it holds (relative
    paths, sorted). ``dry_run``: only list them, nothing is sent. ``api``: the client (default
    ``HfApi()``, which reads the token as huggingface_hub does: ``HF_TOKEN`` or ``hf auth login``)."""
    folder = Path(folder)
    config = folder / HF_CONFIG
    try:
        ours = json.loads(config.read_text(encoding="utf-8")).get("format") == FORMAT
    except (OSError, ValueError, AttributeError):
        ours = False
    if not ours:
        raise LeveError(f"{folder}: not a folder written by `leve export --format hf` (no leve {HF_CONFIG})")
    owner, _, name = repo.partition("/")
    if not (owner and name) or "/" in name:
        raise LeveError(f"--push {repo}: expected a Hub repository as owner/name")
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    if dry_run:
        return files
    if api is None:
        from huggingface_hub import HfApi

        api = HfApi()
    try:
        api.create_repo(repo, repo_type="model", exist_ok=True, private=private)
        api.upload_folder(folder_path=str(folder), repo_id=repo, repo_type="model",
                          commit_message=f"leve export --format hf ({__version__})")
    except Exception as exc:  # huggingface_hub's HTTP and auth errors: one line
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        raise LeveError(f"--push {repo}: upload failed ({exc.__class__.__name__}: {first})") from exc
    return files
