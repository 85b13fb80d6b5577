"""Build an encoder by name: ``ddrnet23_slim`` (Leve's trunk) or one of the torchvision catalogue's
(:data:`leve.models.encoders.catalogue.ENCODERS`), optionally with its published ImageNet weights."""

from __future__ import annotations

from pathlib import Path

from leve.errors import LeveError
from leve.models.encoders.base import Encoder
from leve.models.encoders.catalogue import ENCODERS, list_encoders
from leve.models.encoders.ddrnet import NAME as DDRNET23_SLIM
from leve.models.encoders.ddrnet import DDRNet23SlimFeatures
from leve.models.pretrained import load_encoder_weights, load_imagenet_weights


def create_encoder(name: str, weights: str | Path | None = None) -> Encoder:
    """Build an encoder (``ddrnet23_slim`` or one of :data:`ENCODERS`); ``weights`` is a local copy of
    its published ImageNet file."""
    if name == DDRNET23_SLIM:
        ddrnet = DDRNet23SlimFeatures()
        if weights is not None:
            load_encoder_weights(ddrnet, weights)  # every tensor but the classifier's, checked by name and shape
        return ddrnet
    if name not in ENCODERS:
        raise LeveError(f"unknown encoder '{name}'; choose from {', '.join([DDRNET23_SLIM, *list_encoders()])}")
    encoder = ENCODERS[name].builder()
    if weights is not None:
        load_imagenet_weights(encoder, weights)
    return encoder
