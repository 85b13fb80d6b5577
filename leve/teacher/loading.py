"""Load a Depth-Anything teacher through transformers: registry name, hub id or local folder.

Every loaded teacher carries its identity (model, revision, config hash, licence) and its
preprocessing, which the cache records so that a changed teacher invalidates a cache.

A teacher is *relative* (its map is disparity up to scale and shift: Depth-Anything V1/V2) or
*metric* (depth in metres: a Depth-Anything config with ``depth_estimation_type: metric``, whose
head is ``sigmoid * max_depth``): :attr:`Teacher.depth_kind`, read from the model's config.
Models load through ``AutoConfig`` and ``AutoModelForDepthEstimation``; architectures whose
processor the cache does not replicate (ZoeDepth, DepthPro), and Prompt Depth Anything (metric only through
its prompt), are refused with the reason.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import torch

from leve.errors import LeveError
from leve.store.format import fingerprint
from leve.teacher.dpt import DEPTH_ANYTHING_PREPROCESSING
from leve.teacher.preprocess import Preprocessing
from leve.teacher.registry import DEPTH_PRO_GAP, PROMPT_DEPTH_GAP, REGISTRY, ZOEDEPTH_GAP, TeacherEntry, find_entry

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_VOLATILE_CONFIG_KEYS = {"transformers_version", "_name_or_path", "_commit_hash", "torch_dtype", "dtype"}
SUPPORTED_MODEL_TYPES = ("depth_anything",)
UNSUPPORTED_MODEL_TYPES = {"zoedepth": ZOEDEPTH_GAP, "depth_pro": DEPTH_PRO_GAP, "prompt_depth_anything": PROMPT_DEPTH_GAP}


@dataclass
class Teacher:
    """A ready-to-run teacher model in eval mode and how it must be fed."""

    model: torch.nn.Module
    model_id: str
    revision: str
    licence: str
    config_hash: str
    preprocessing: Preprocessing
    source: str  # "builtin" | "hub" | "folder" | "packaged"
    depth_kind: str = "relative"  # relative: disparity up to scale and shift | metric: depth in metres
    max_depth: float | None = None  # metric: the head's largest depth (config.max_depth, m)

    def identity(self) -> dict[str, Any]:
        """What identifies the teacher's outputs (recorded in the cache and checked on reuse); a metric
        teacher adds its ``depth_kind``, ``units`` and ``max_depth`` (a relative one's is as before)."""
        metric = {"depth_kind": "metric", "units": "m", "max_depth": self.max_depth} if self.depth_kind == "metric" else {}
        return {
            "model": self.model_id,
            "revision": self.revision,
            "config_hash": self.config_hash,
            "licence": self.licence,
            "source": self.source,
            **metric,
        }


def depth_kind_of(config: Any) -> tuple[str, float | None]:
    """``(depth_kind, max_depth)`` of a depth model's config: Depth-Anything's ``depth_estimation_type``
    (``metric``: the head is ``sigmoid * max_depth``, metres) or relative."""
    if getattr(config, "depth_estimation_type", "relative") == "metric":
        return "metric", float(config.max_depth)
    return "relative", None


def config_hash(config: Any) -> str:
    """sha256 of the model config without volatile keys (versions, paths, dtypes)."""
    def clean(d: Any) -> Any:
        if isinstance(d, dict):
            return {k: clean(v) for k, v in d.items() if k not in _VOLATILE_CONFIG_KEYS}
        return d

    return fingerprint(clean(config.to_dict()))


def canonical_model_id(model: str) -> str:
    """The id a cache records for ``model``: a folder's absolute path, a hub id, a built-in name."""
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path.resolve())
    entry = find_entry(model)
    if entry is None:
        return model
    return entry.hub_id or entry.name


def load_teacher(model: str, revision: str | None = None) -> Teacher:
    """Load ``model``: a registry name (``v1-small``, ``tiny-random``, ``embedded``), a hub id, or a folder.

    Hub models resolve from the local Hugging Face cache first; when absent and the hub
    cannot be reached, fail at once with how to provide the model.
    """
    path = Path(model).expanduser()
    if path.is_dir():
        return _from_folder(path, model_id=str(path.resolve()), licence="unknown (local folder)", source="folder")
    entry = find_entry(model)
    if entry is not None and entry.is_builtin:
        return _builtin(entry)
    if entry is not None and entry.folder is not None:
        return _packaged(entry)
    if entry is not None and entry.runnable:
        raise LeveError(f"{entry.name} ({entry.hub_id}): not runnable by the teacher cache yet: {entry.runnable}")
    if entry is None and not _looks_like_hub_id(model):
        names = ", ".join(REGISTRY)
        raise LeveError(
            f"{model}: no such folder and not a known teacher (known: {names}; or a hub id owner/name)"
        )
    hub_id = entry.hub_id if entry and entry.hub_id else model
    licence = entry.licence if entry else "unknown (see the model card)"
    pinned = revision or (entry.revision if entry else None)
    folder = _hub_snapshot(hub_id, pinned)
    teacher = _from_folder(folder, model_id=hub_id, licence=licence, source="hub")
    teacher.revision = folder.name  # the snapshot folder is named by the resolved commit
    return teacher


# --------------------------------------------------------------------------- sources


def _builtin(entry: TeacherEntry) -> Teacher:
    from transformers import AutoModelForDepthEstimation

    assert entry.builtin is not None
    config = entry.builtin()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(entry.seed)
        model = AutoModelForDepthEstimation.from_config(config)
    return Teacher(
        model=model.eval(),
        model_id=entry.name,
        revision=f"builtin-seed{entry.seed}",
        licence=entry.licence,
        config_hash=config_hash(config),
        preprocessing=Preprocessing.from_dict(DEPTH_ANYTHING_PREPROCESSING),
        source="builtin",
        **_kind(config),
    )


def _packaged(entry: TeacherEntry) -> Teacher:
    """A folder shipped inside leve, after its files are checked against the recorded sha256."""
    from leve.teacher.embedded import verified_folder

    assert entry.folder is not None
    return _from_folder(verified_folder(entry.folder), model_id=entry.name, licence=entry.licence, source="packaged")


def _kind(config: Any) -> dict[str, Any]:
    kind, max_depth = depth_kind_of(config)
    return {"depth_kind": kind, "max_depth": max_depth}


def _from_folder(folder: Path, model_id: str, licence: str, source: str) -> Teacher:
    from transformers import AutoConfig, AutoModelForDepthEstimation

    cfg_file = folder / "config.json"
    if not cfg_file.is_file():
        raise LeveError(f"{cfg_file}: missing; give a folder saved with save_pretrained")
    try:
        raw = json.loads(cfg_file.read_text())
    except (OSError, ValueError) as exc:
        raise LeveError(f"{cfg_file}: not valid JSON ({exc})") from exc
    kind = raw.get("model_type") if isinstance(raw, dict) else type(raw).__name__
    if kind in UNSUPPORTED_MODEL_TYPES:
        raise LeveError(f"{cfg_file}: model_type {kind!r} is not runnable by the teacher cache yet: "
                        f"{UNSUPPORTED_MODEL_TYPES[str(kind)]}")
    if not isinstance(raw, dict) or kind not in SUPPORTED_MODEL_TYPES:
        raise LeveError(f"{cfg_file}: not a Depth-Anything config (model_type {kind!r})")
    try:
        config = AutoConfig.from_pretrained(str(folder))
        model = AutoModelForDepthEstimation.from_pretrained(str(folder), config=config)
    except Exception as exc:  # transformers raises many types for broken folders
        message = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise LeveError(f"{folder}: cannot load the teacher ({message})") from exc
    revision = f"sha256:{_weights_hash(folder)[:16]}" if source in ("folder", "packaged") else "unknown"
    return Teacher(
        model=model.eval(),
        model_id=model_id,
        revision=revision,
        licence=licence,
        config_hash=config_hash(config),
        preprocessing=_folder_preprocessing(folder),
        source=source,
        **_kind(config),
    )


def _folder_preprocessing(folder: Path) -> Preprocessing:
    """The folder's ``preprocessor_config.json``, or the Depth-Anything defaults without one."""
    file = folder / "preprocessor_config.json"
    if not file.is_file():
        return Preprocessing.from_dict(DEPTH_ANYTHING_PREPROCESSING)
    try:
        values = json.loads(file.read_text())
    except (OSError, ValueError) as exc:
        raise LeveError(f"{file}: not valid JSON ({exc})") from exc
    return Preprocessing.from_dict(values, where=str(file))


def _weights_hash(folder: Path) -> str:
    for name in WEIGHT_FILES:
        f = folder / name
        if f.is_file():
            h = hashlib.sha256()
            with f.open("rb") as fh:
                for block in iter(lambda: fh.read(1 << 22), b""):
                    h.update(block)
            return h.hexdigest()
    return "0" * 64


def _looks_like_hub_id(model: str) -> bool:
    parts = model.split("/")
    return len(parts) == 2 and all(parts) and not model.startswith((".", "~"))


def _hub_snapshot(hub_id: str, revision: str | None) -> Path:
    """The local snapshot folder of ``hub_id`` (from the cache; downloaded when online)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    patterns = ["config.json", "preprocessor_config.json", "model.safetensors"]
    try:
        return Path(snapshot_download(hub_id, revision=revision, allow_patterns=patterns, local_files_only=True))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        pass
    how = (
        f"pass --model DIR (a folder saved with save_pretrained), or fill the offline cache "
        f"(`hf download {hub_id}` on a machine with internet, then copy HF_HOME)"
    )
    if _hub_offline():
        raise LeveError(f"{hub_id}: not in the local Hugging Face cache and the hub is unreachable; {how}")
    try:
        return Path(snapshot_download(hub_id, revision=revision, allow_patterns=patterns))
    except Exception as exc:
        raise LeveError(f"{hub_id}: download failed ({exc.__class__.__name__}); {how}") from exc


def _hub_offline(timeout: float = 3.0) -> bool:
    """True when offline mode is set or the hub endpoint does not accept a connection quickly."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes") or os.environ.get(
        "TRANSFORMERS_OFFLINE", ""
    ).lower() in ("1", "true", "yes"):
        return True
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host = endpoint.hostname or "huggingface.co"
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return False
    except OSError:
        return True
