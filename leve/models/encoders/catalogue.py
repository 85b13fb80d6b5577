"""The encoder catalogue: one small data entry per encoder (builder, published file, checks)."""

from __future__ import annotations

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
from leve.sources.weights import TORCHVISION, WeightsFile


@dataclass(frozen=True)
class EncoderSpec:
    """An encoder and its published ImageNet weights file (:class:`~leve.sources.weights.WeightsFile`:
    file, URL, sha256 prefix, licence, mean/std); ``params`` is the published parameter count
    without the classifier."""

    name: str
    builder: Callable[[], Encoder]
    weights: WeightsFile
    params: int

    @property
    def file(self) -> str:
        return self.weights.file

    @property
    def url(self) -> str | None:
        return self.weights.url

    @property
    def sha256_prefix(self) -> str | None:
        """The start of the file's SHA-256 (torchvision puts it in the file name)."""
        return self.weights.sha256_prefix

    @property
    def licence(self) -> str:
        return self.weights.licence


def torchvision_spec(name: str, builder: Callable[[], Encoder], params: int) -> EncoderSpec:
    """An entry for the torchvision ImageNet file of encoder ``name`` (:data:`leve.sources.weights.TORCHVISION`)."""
    return EncoderSpec(name, builder, TORCHVISION[name], params)


ENCODERS: dict[str, EncoderSpec] = {s.name: s for s in (
    torchvision_spec("densenet169", densenet169, 12_484_480),
    torchvision_spec("densenet161", densenet161, 26_472_000),
    torchvision_spec("resnet50", resnet50, 23_508_032),
    torchvision_spec("resnet101", resnet101, 42_500_160),
    torchvision_spec("mobilenet_v2", mobilenet_v2, 2_223_872),
    torchvision_spec("mobilenet_v3_large", mobilenet_v3_large, 2_971_952),
    torchvision_spec("mobilenet_v3_small", mobilenet_v3_small, 927_008),
)}


def list_encoders() -> list[str]:
    """Names of the registered encoders, in catalogue order."""
    return list(ENCODERS)
