"""Pretrained weight files: the one description of a published file (:class:`WeightsFile`), the
catalogue of those ``leve`` knows, and fetching them into ``data/raw/weights/``.

:class:`WeightsFile` says where a file is published (URL, or the page and how to get it), how to check
it (sha256, or the start of it that torchvision puts in its file names), its licence and the input
normalisation (mean/std) its network expects. The encoders (:mod:`leve.models.encoders`), the
students' encoder files (:mod:`leve.models.registry`) and the teachers (:mod:`leve.teacher.registry`)
all use it. The catalogue :data:`WEIGHTS` holds torchvision's ImageNet files (names carry the first hex
digits of their sha256) and the DDRNet-23-slim ImageNet checkpoint ``DDRNet23s_imagenet.pth``, which
has no stable direct URL and is placed by hand (or with ``--source``). This module imports neither
torch nor the models: ``leve weights list`` stays light.

A download goes to ``<dest>/.partial/<file>`` (resumable through ``<file>.part``, see
:mod:`leve.sources.download`) and reaches ``<dest>/<file>`` only after its sha256 prefix matched,
so the final name never holds a wrong file. A file already there is verified, not fetched again.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import requests

from leve.errors import LeveError
from leve.sources.download import download_verified, sha256_file, sidecar, verify_file

DEFAULT_DEST = Path("data/raw/weights")
PARTIAL = ".partial"  # sub-folder of the destination for unverified downloads
# The ImageNet normalisation every ImageNet-trained network here expects (RGB in [0, 1]).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TORCHVISION_URL = "https://download.pytorch.org/models/"
TORCHVISION_LICENCE = "BSD-3-Clause (torchvision)"


@dataclass(frozen=True)
class WeightsFile:
    """A published weights file.

    ``url`` is None when there is no stable direct download (``source`` then names the page and
    ``note`` how to get it); ``sha256`` is its published hash and ``sha256_prefix`` the start of it
    where only that is published (torchvision's file names), each None when unknown; ``mean`` and
    ``std`` the input normalisation of RGB in [0, 1] its network was trained with.
    """

    name: str  # the catalogue's name: an encoder ("densenet169"), "ddrnet23_slim", a teacher ("v1-small")
    file: str  # the file name ("densenet169-b2777c0a.pth"); a hub repository's id for a teacher
    url: str | None
    sha256_prefix: str | None
    licence: str
    note: str = ""  # how a user obtains it when there is no URL
    sha256: str | None = None
    source: str = ""  # where it is published (a page), when that is not ``url``
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @property
    def help(self) -> str:
        """How to get it when there is no URL ("" when there is one, or nothing is known)."""
        if self.url is not None or not (self.source or self.note):
            return ""
        where = f" ({self.source})" if self.source else ""
        return " ".join(filter(None, (f"{self.file} has no stable direct URL{where}.", self.note,
                                      f"Or install it here with 'leve weights fetch {self.name} --source FILE'.")))


def torchvision_file(name: str, file: str) -> WeightsFile:
    """torchvision's ImageNet file ``<arch>-<sha256 prefix>.pth`` of encoder ``name``."""
    match = re.fullmatch(r".+-([0-9a-f]+)\.pth", file)
    return WeightsFile(name, file, TORCHVISION_URL + file, match.group(1) if match else None, TORCHVISION_LICENCE,
                       source=TORCHVISION_URL + file)


# torchvision's ImageNet V1 files of the encoders of leve.models.encoders.catalogue.ENCODERS (same names).
TORCHVISION: dict[str, WeightsFile] = {w.name: w for w in (
    torchvision_file("densenet169", "densenet169-b2777c0a.pth"),
    torchvision_file("densenet161", "densenet161-8d451a50.pth"),
    torchvision_file("resnet50", "resnet50-0676ba61.pth"),
    torchvision_file("resnet101", "resnet101-63fe2227.pth"),
    torchvision_file("mobilenet_v2", "mobilenet_v2-b0353104.pth"),
    torchvision_file("mobilenet_v3_large", "mobilenet_v3_large-8738ca79.pth"),
    torchvision_file("mobilenet_v3_small", "mobilenet_v3_small-047dcff4.pth"),
)}

# The public ImageNet DDRNet-23-slim classification checkpoint the Leve models' encoder loads (thesis §5,
# taken from Rudolph et al. [28]; DESIGN §5). Its authors publish it only behind file-sharing
# pages (Google Drive; earlier a Baidu Pan share): no direct URL, no published hash.
DDRNET23S_IMAGENET = WeightsFile(
    name="ddrnet23_slim",
    file="DDRNet23s_imagenet.pth",
    url=None,
    sha256_prefix=None,
    licence="MIT (the DDRNet repository's licence; the weights carry no separate licence)",
    source="https://github.com/ydhongHIT/DDRNet (README, 'Pretrained models': DDRNet_23_slim on ImageNet)",
    note="Download it in a browser from the Google Drive page the DDRNet README and Rudolph et al.'s "
         "GuidedDecoding README link (https://drive.google.com/file/d/1mg5tMX7TJ9ZVcAiGSB4PEihPtrJyalB4/view) "
         "and point train.encoder_weights (or create_model(encoder_weights=...)) at it.",
)

WEIGHTS: dict[str, WeightsFile] = {**TORCHVISION, DDRNET23S_IMAGENET.name: DDRNET23S_IMAGENET}


def list_weights() -> list[WeightsFile]:
    """Every fetchable weights file, encoders first (catalogue order)."""
    return list(WEIGHTS.values())


def weight_spec(name: str) -> WeightsFile:
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


def _download(spec: WeightsFile, link: str, staged: Path, final: Path, show_progress: bool) -> None:
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


def _install_source(spec: WeightsFile, source: Path, final: Path, show_progress: bool) -> Path:
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


def _check_prefix(spec: WeightsFile, path: Path, digest: str, hint: str) -> None:
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
