"""Leve checkpoints: safe to load, self-describing (see the format in :mod:`leve.models`)."""

from __future__ import annotations

import json
import math
import os
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from leve.atomic import atomic_path
from leve.errors import LeveError, shown
from leve.limits import MAX_PIXELS
from leve.models.registry import create_model, list_models, model_spec, register_folder_loader

FORMAT = "leve-checkpoint"
VERSION = 1
DEFAULT_RESOLUTION = (480, 640)
DEPTH_KINDS = ("metric", "relative")  # extra["depth_kind"]: metres, or known up to scale and shift
HF_CONFIG, HF_WEIGHTS = "config.json", "model.safetensors"  # a Hugging Face layout folder (leve.models.hf)


@dataclass
class CheckpointInfo:
    """What a checkpoint says about its model."""

    path: str
    model: str
    max_depth: float
    resolution: tuple[int, int]
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def depth_kind(self) -> str:
        """``metric`` (trained on depth: metres) or ``relative`` (distilled without depth: known up to
        scale and shift, scored only with an aligned protocol)."""
        return str(self.extra.get("depth_kind", "metric"))


def save_checkpoint(path: str | Path, model: nn.Module, name: str, max_depth: float,
                    extra: dict[str, Any] | None = None, resolution: tuple[int, int] | None = None) -> Path:
    """Write ``model``'s weights and description atomically (:func:`leve.atomic.atomic_path`).

    ``.safetensors`` paths get a safetensors file with the description in its metadata;
    other paths a torch file of plain containers (loadable with ``weights_only=True``).
    ``extra`` must hold only plain Python values (and tensors for the torch format).
    """
    path = Path(path)
    if name not in list_models():
        raise LeveError(f"{path}: cannot save a checkpoint for unknown model '{name}'")
    res = tuple(resolution or (extra or {}).get("resolution") or DEFAULT_RESOLUTION)
    config = {"max_depth": float(max_depth), "resolution": [int(res[0]), int(res[1])]}
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        try:
            extra_json = json.dumps(extra or {})
        except TypeError as exc:
            raise LeveError(f"{path}: extra must be JSON-serialisable for safetensors ({exc})") from exc
        meta = {"format": FORMAT, "version": str(VERSION), "model": name,
                "config": json.dumps(config), "extra": extra_json}
        with atomic_path(path) as tmp:
            save_file(state, str(tmp), metadata=meta)
            _default_permissions(tmp)
    else:
        with atomic_path(path) as tmp:
            torch.save({"format": FORMAT, "version": VERSION, "model": name, "config": config,
                        "state_dict": state, "extra": dict(extra or {})}, tmp)
    return path


def _default_permissions(path: Path) -> None:
    """Give a file the usual permissions (safetensors creates files readable by the owner only)."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, 0o666 & ~mask)


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], CheckpointInfo]:
    """Read a checkpoint's state dict and description without building the model (a file, or a
    Hugging Face layout folder written by ``leve export --format hf``, or a file at an fsspec URL:
    :func:`local_checkpoint`)."""
    from leve.store.remote import location

    where = location(path)
    if isinstance(where, str):
        return _read_url(where)
    path = where
    try:
        folder, file = path.is_dir(), path.is_file()
    except OSError as exc:  # a name too long, a loop of links
        raise LeveError(f"{shown(str(path), 160, quote=False)}: cannot open the checkpoint "
                        f"({exc.strerror or exc.__class__.__name__})") from exc
    if folder:
        state, header = _read_hf_folder(path)
    elif not file:
        raise LeveError(f"{path}: checkpoint not found")
    else:
        state, header = _read_safetensors(path) if path.suffix == ".safetensors" else _read_torch(path)
    if header.get("format") != FORMAT:
        raise LeveError(f"{path}: not a leve checkpoint (no format '{FORMAT}'; "
                        f"use encoder_weights= for ImageNet backbones)")
    version = _version(path, header.get("version", 0))
    if version > VERSION:
        raise LeveError(f"{path}: checkpoint version {version} is newer than this leve ({VERSION})")
    return state, _info(path, header)


def local_checkpoint(path: str | Path) -> Path:
    """A local file or folder for a checkpoint path or URL. A URL (``s3://bucket/run/best.pt``, the
    credentials from the backend's standard sources) is fetched whole into a local cache
    (:func:`leve.store.remote.fetch_object`: one GET per version of the object, its file name kept) and
    read as a local file is, every header check and the same bytes (so the same sha256) included; a
    missing or damaged object is one line naming the URL."""
    from leve.store.remote import location

    where = location(path)
    if isinstance(where, str):
        _read_url(where)
        return _fetched(where)
    return where


def _fetched(url: str) -> Path:
    from leve.store.remote import fetch_object

    return fetch_object(url, "checkpoint")


def _read_url(url: str) -> tuple[dict[str, torch.Tensor], CheckpointInfo]:
    """:func:`read_checkpoint` of the local copy of the object at ``url``, its errors and its description naming
    the URL. A copy that fails to read is removed (the next read fetches the object again)."""
    local = _fetched(url)
    try:
        state, info = read_checkpoint(local)
    except LeveError as exc:
        local.unlink(missing_ok=True)
        raise LeveError(str(exc).replace(str(local), url)) from None
    return state, CheckpointInfo(url, info.model, info.max_depth, info.resolution, info.extra)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, CheckpointInfo]:
    """Build the registered model a checkpoint names, load its weights (strict) and set eval mode. A
    ``relative`` checkpoint's model comes wrapped in :class:`~leve.models.depth.RelativeOutput`. ``path``: a
    file or folder, or a file at an fsspec URL (:func:`local_checkpoint`)."""
    from leve.store.remote import location

    state, info = read_checkpoint(path)
    model = create_model(info.model, max_depth=info.max_depth)
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        where = info.path if isinstance(location(path), str) else path  # a URL as the URL, not as a Path folds it
        raise LeveError(f"{where}: weights do not fit model '{info.model}' ({_first_line(exc)})") from exc
    if info.depth_kind == "relative":  # its output in the teacher's convention (leve.models.depth.RelativeOutput)
        from leve.models.depth import RelativeOutput

        scale, shift = info.extra.get("relative_affine") or (1.0, 0.0)
        model = RelativeOutput(model, scale, shift)
    return model.to(device).eval(), info


def _first_line(exc: BaseException) -> str:
    """The exception's class and the first line of its message (which may be empty), shortened."""
    lines = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {lines[0][:200]}" if lines else exc.__class__.__name__


def _read_torch(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:  # weights_only refuses anything but tensors and plain containers
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        what = f"it would call {found.group(1)}" if found else "its pickle holds more than tensors and plain containers"
        raise LeveError(f"{path}: refused to load: {what} (a pickle can carry code; leve loads weights only)") from exc
    except Exception as exc:
        raise LeveError(f"{path}: cannot read checkpoint safely ({_first_line(exc)})") from exc
    if not isinstance(obj, dict) or not isinstance(obj.get("state_dict"), dict):
        raise LeveError(f"{path}: not a leve checkpoint (expected a dict with 'state_dict')")
    return obj["state_dict"], obj


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            state = {k: f.get_tensor(k) for k in f.keys()}
        header = {**meta, "config": json.loads(meta.get("config", "{}")), "extra": json.loads(meta.get("extra", "{}"))}
    except Exception as exc:
        raise LeveError(f"{path}: cannot read safetensors checkpoint ({_first_line(exc)})") from exc
    return state, header


def _read_hf_folder(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """A Hugging Face layout folder (``leve export --format hf``): ``config.json`` holds the header
    (format, version, model, config, extra), ``model.safetensors`` the state dict."""
    from safetensors.torch import load_file

    config, weights = path / HF_CONFIG, path / HF_WEIGHTS
    for needed in (config, weights):
        if not needed.is_file():
            raise LeveError(f"{needed}: missing (a leve Hugging Face folder holds {HF_CONFIG} and {HF_WEIGHTS})")
    try:
        header = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise LeveError(f"{config}: cannot read as JSON ({_first_line(exc)})") from exc
    if not isinstance(header, dict):
        raise LeveError(f"{config}: not a leve model config (expected a JSON object)")
    try:
        state = load_file(str(weights), device="cpu")
    except Exception as exc:
        raise LeveError(f"{weights}: cannot read safetensors weights ({_first_line(exc)})") from exc
    return state, header


def _version(path: Path, value: Any) -> int:
    """The header's ``version``: an integer (the safetensors metadata holds it as digits)."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 10:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise LeveError(f"{path}: checkpoint version must be a whole number, got {shown(value)}")


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _info(path: Path, header: dict[str, Any]) -> CheckpointInfo:
    """The header checked by type and range before anything uses it (a model is built, memory
    allocated for its resolution): one line naming the field otherwise."""
    config = header.get("config") if header.get("config") is not None else {}
    if not isinstance(config, dict):
        raise LeveError(f"{path}: checkpoint config must be a mapping, got {shown(config)}")
    name = header.get("model")
    if not isinstance(name, str) or name not in list_models():
        raise LeveError(f"{path}: checkpoint model must be a registered model name, got {shown(name)}")
    max_depth = config.get("max_depth")
    if max_depth is None:
        raise LeveError(f"{path}: checkpoint description incomplete (no config max_depth)")
    if not (_number(max_depth) and max_depth > 0):
        raise LeveError(f"{path}: checkpoint max_depth must be a finite number > 0, got {shown(max_depth)}")
    resolution = config.get("resolution", list(DEFAULT_RESOLUTION))
    if not (isinstance(resolution, list | tuple) and len(resolution) == 2
            and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in resolution)):
        raise LeveError(f"{path}: checkpoint resolution must be two positive whole numbers [H, W], got {shown(resolution)}")
    h, w = int(resolution[0]), int(resolution[1])
    if h * w > MAX_PIXELS:
        raise LeveError(f"{path}: checkpoint resolution {h}x{w} is {h * w:,} pixels, over the cap of {MAX_PIXELS:,}")
    model_spec(name).check_size(h, w, what=f"{path}: checkpoint resolution {h}x{w}")
    extra = header.get("extra") if header.get("extra") is not None else {}
    if not isinstance(extra, dict):
        raise LeveError(f"{path}: checkpoint extra must be a mapping, got {shown(extra)}")
    kind = extra.get("depth_kind", "metric")
    if kind not in DEPTH_KINDS:
        raise LeveError(f"{path}: checkpoint depth_kind must be one of {', '.join(DEPTH_KINDS)}, got {shown(kind)}")
    affine = extra.get("relative_affine")
    if affine is not None and not (isinstance(affine, list | tuple) and len(affine) == 2 and all(map(_number, affine))):
        raise LeveError(f"{path}: checkpoint relative_affine must be two finite numbers [scale, shift], got {shown(affine)}")
    return CheckpointInfo(str(path), name, float(max_depth), (h, w), dict(extra))


register_folder_loader(lambda folder: load_checkpoint(folder)[0])  # create_model(folder): a saved model
