"""Pretrained weight files: which ones ``leve`` knows, and fetching them into ``data/raw/weights/``.

The table holds every encoder of :data:`leve.models.encoders.registry.ENCODERS` (torchvision
ImageNet files, whose names carry the first hex digits of their sha256) and the DDRNet-23-slim
ImageNet checkpoint ``DDRNet23s_imagenet.pth``, which has no stable direct URL and is placed by
hand (or with ``--source``).

A download goes to ``<dest>/.partial/<file>`` (resumable through ``<file>.part``, see
:mod:`leve.sources.download`) and reaches ``<dest>/<file>`` only after its sha256 prefix matched,
so the final name never holds a wrong file. A file already there is verified, not fetched again.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import requests

from leve.errors import LeveError
from leve.models.encoders.registry import ENCODERS
from leve.models.registry import DDRNET23S_IMAGENET
from leve.sources.download import download_verified, sha256_file, sidecar, verify_file

DEFAULT_DEST = Path("data/raw/weights")
PARTIAL = ".partial"  # sub-folder of the destination for unverified downloads



@dataclass(frozen=True)
class WeightSpec:
    """A fetchable weights file.

    ``url`` is None when there is no stable direct download (``help`` then says where to get
    it); ``sha256_prefix`` is the start of the file's sha256, None when unknown.
    """

    name: str
    file: str
    url: str | None
    sha256_prefix: str | None
    licence: str
    help: str = ""


def _table() -> dict[str, WeightSpec]:
    table = {n: WeightSpec(n, s.file, s.url, s.sha256_prefix, s.licence) for n, s in ENCODERS.items()}
    ddrnet = DDRNET23S_IMAGENET  # the Leve models' encoder file, described once in the model registry
    table["ddrnet23_slim"] = WeightSpec(
        "ddrnet23_slim", ddrnet.file, ddrnet.url, ddrnet.sha256, ddrnet.licence,
        help=f"{ddrnet.file} has no stable direct URL ({ddrnet.source}). {ddrnet.note} "
             f"Or install it here with 'leve weights fetch ddrnet23_slim --source FILE'.",
    )
    return table


WEIGHTS: dict[str, WeightSpec] = _table()


def list_weights() -> list[WeightSpec]:
    """Every fetchable weights file, encoders first (catalogue order)."""
    return list(WEIGHTS.values())


def weight_spec(name: str) -> WeightSpec:
    """The entry called ``name`` (or whose file is ``name``); unknown names list the choices."""
    if name in WEIGHTS:
        return WEIGHTS[name]
    for spec in WEIGHTS.values():
        if spec.file == name:
            return spec
    raise LeveError(f"unknown weights {name!r}; choose one of: {', '.join(WEIGHTS)}")


def fetch_weights(
    name: str,
    dest_dir: Path = DEFAULT_DEST,
    source: Path | None = None,
    url: str | None = None,
    show_progress: bool = True,
) -> Path:
    """Put the weights file ``name`` into ``dest_dir`` (verified) and return its path.

    ``source`` is a copy the user already has (verified, then hard-linked or copied); otherwise
    ``url`` (a mirror) or the table's URL is downloaded with resume. The sha256 prefix is
    checked whenever the entry has one. A file already present is only verified.
    """
    spec = weight_spec(name)
    dest_dir = Path(dest_dir)
    final = dest_dir / spec.file
    if source is not None:
        return _install_source(spec, Path(source), final, show_progress)
    if final.exists():
        digest = verify_file(final, show_progress=show_progress)
        _check_prefix(spec, final, digest, f"delete {final} and rerun")
        return final
    link = url or spec.url
    if link is None:
        hint = spec.help or f"{spec.file} has no download URL; pass --url URL or --source FILE"
        raise LeveError(f"{hint} (or put it at {final})")
    staged = dest_dir / PARTIAL / spec.file
    try:
        _download(spec, link, staged, final, show_progress)
    finally:
        _tidy(staged.parent)  # an empty .partial/ goes; a resumable .part stays
    return final


def _download(spec: WeightSpec, link: str, staged: Path, final: Path, show_progress: bool) -> None:
    """Download ``link`` to ``staged`` (resuming), check it and move it to ``final``."""
    try:
        _, digest = download_verified(link, staged, show_progress=show_progress)
    except LeveError as exc:
        if isinstance(exc.__cause__, (requests.ConnectionError, requests.Timeout)):
            raise LeveError(
                f"{link}: network unreachable ({exc.__cause__.__class__.__name__}); download it elsewhere and "
                f"put it at {final}, or pass --source FILE"
            ) from exc
        raise
    try:
        _check_prefix(spec, staged, digest, f"wrong or corrupted download from {link}; nothing was saved")
        _not_html(staged, link)
    except LeveError:
        _discard(staged)
        raise
    os.replace(staged, final)
    os.replace(sidecar(staged), sidecar(final))


def _install_source(spec: WeightSpec, source: Path, final: Path, show_progress: bool) -> Path:
    """Verify ``source`` and place it at ``final`` (a partial copy never sits under ``final``)."""
    if not source.is_file():
        raise LeveError(f"{source}: file not found")
    if final.exists() and final.samefile(source):
        digest = verify_file(final, show_progress=show_progress)
        _check_prefix(spec, final, digest, f"delete {final} and get the right file")
        return final
    digest = sha256_file(source, show_progress)
    _check_prefix(spec, source, digest, f"not the published {spec.file}")
    _not_html(source, str(source))
    staged = final.parent / PARTIAL / spec.file
    staged.parent.mkdir(parents=True, exist_ok=True)
    _discard(staged)
    try:
        try:
            os.link(source, staged)
        except OSError:  # another file system, or links not allowed
            shutil.copyfile(source, staged)
    except OSError as exc:
        _discard(staged)
        _tidy(staged.parent)
        raise LeveError(f"{source}: cannot copy to {staged} ({exc.strerror or exc.__class__.__name__})") from exc
    os.replace(staged, final)
    sidecar(final).write_text(f"{digest}  {final.name}\n")
    _tidy(staged.parent)
    return final


def _check_prefix(spec: WeightSpec, path: Path, digest: str, hint: str) -> None:
    prefix = spec.sha256_prefix
    if prefix and not digest.startswith(prefix.lower()):
        raise LeveError(f"{path}: sha256 {digest[:16]}… does not start with the expected {prefix} ({hint})")


def _not_html(path: Path, origin: str) -> None:
    """Refuse a web page saved instead of a checkpoint (what file hosts send when a link is wrong)."""
    with open(path, "rb") as f:
        head = f.read(512).lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")):
        raise LeveError(f"{origin}: got a web page, not a weights file (use a direct download link or --source FILE)")


def _discard(staged: Path) -> None:
    for p in (staged, sidecar(staged)):
        p.unlink(missing_ok=True)


def _tidy(folder: Path) -> None:
    try:
        folder.rmdir()  # only when empty: a resumable .part of another file stays
    except OSError:
        pass
