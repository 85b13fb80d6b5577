"""The encoder catalogue: one small data entry per encoder (builder, published file, checks)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from leve.models.encoders.base import Encoder
from leve.models.encoders.densenet import densenet161, densenet169
from leve.models.encoders.mobilenet import (
    mobilenet_v2,
    mobilenet_v3_large,
    mobilenet_v3_small,
)
from leve.models.encoders.resnet import resnet50, resnet101

TORCHVISION_URL = "https://download.pytorch.org/models/"
TORCHVISION_LICENCE = "BSD-3-Clause (torchvision)"


@dataclass(frozen=True)
class EncoderSpec:
    """An encoder and its published ImageNet weights file.

    ``sha256_prefix`` is the start of the file's SHA-256 (torchvision puts it in the file name);
    ``params`` is the published parameter count without the classifier.
    """

    name: str
    builder: Callable[[], Encoder]
    file: str
    url: str
    sha256_prefix: str | None
    licence: str
    params: int


def torchvision_spec(name: str, builder: Callable[[], Encoder], file: str, params: int) -> EncoderSpec:
    """An entry for a torchvision ImageNet file ``<arch>-<sha256 prefix>.pth``."""
    match = re.fullmatch(r".+-([0-9a-f]+)\.pth", file)
    return EncoderSpec(name, builder, file, TORCHVISION_URL + file, match.group(1) if match else None,
                       TORCHVISION_LICENCE, params)


ENCODERS: dict[str, EncoderSpec] = {s.name: s for s in (
    torchvision_spec("densenet169", densenet169, "densenet169-b2777c0a.pth", 12_484_480),
    torchvision_spec("densenet161", densenet161, "densenet161-8d451a50.pth", 26_472_000),
    torchvision_spec("resnet50", resnet50, "resnet50-0676ba61.pth", 23_508_032),
    torchvision_spec("resnet101", resnet101, "resnet101-63fe2227.pth", 42_500_160),
    torchvision_spec("mobilenet_v2", mobilenet_v2, "mobilenet_v2-b0353104.pth", 2_223_872),
    torchvision_spec("mobilenet_v3_large", mobilenet_v3_large, "mobilenet_v3_large-8738ca79.pth", 2_971_952),
    torchvision_spec("mobilenet_v3_small", mobilenet_v3_small, "mobilenet_v3_small-047dcff4.pth", 927_008),
)}


def list_encoders() -> list[str]:
    """Names of the registered encoders, in catalogue order."""
    return list(ENCODERS)
