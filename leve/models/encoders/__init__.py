"""ImageNet encoders in plain torch that load torchvision's published V1 checkpoints unchanged.

Usage::

    from leve.models.encoders.create import create_encoder
    from leve.models.encoders.catalogue import list_encoders
    enc = create_encoder("densenet169", weights="densenet169-b2777c0a.pth")
    maps = enc(rgb)  # rgb (B,3,H,W) in [0,1] -> five maps at strides enc.reductions = [2,4,8,16,32]

Encoders (``.channels`` at strides 2, 4, 8, 16, 32):

* ``densenet169``: relu0 64, pool0 64, transition1 128, transition2 256, norm5 1664
* ``densenet161``: 96, 96, 192, 384, 2208
* ``resnet50``, ``resnet101``: relu 64, layer1 256, layer2 512, layer3 1024, layer4 2048
* ``mobilenet_v2``: 16, 24, 32, 96, 320 (the final 1x1 conv to 1280, ``features.18``, is
  built so the file loads but is not run)
* ``mobilenet_v3_large``: 16, 24, 40, 112, 960; ``mobilenet_v3_small``: 16, 16, 24, 48, 576
* ``ddrnet23_slim``: 32, 32, 64, 128, 256 (Leve's encoder trunk, :mod:`leve.models.encoders.ddrnet`;
  weights ``DDRNet23s_imagenet.pth``, which has no published URL or hash)

Module names and shapes equal the published files' (torchvision's; DDRNet's); the ImageNet normalisation happens inside
``forward``. Weights come from ``https://download.pytorch.org/models/<file>`` (BSD-3-Clause,
torchvision); see :data:`ENCODERS` (the torchvision catalogue) for files, hashes and parameter counts.
"""

from __future__ import annotations

from leve import moved_names

# No re-exports: each name is imported from the module that defines it. The old spellings
# (``from leve.models.encoders import create_encoder``) still work, with a deprecation warning.
_MOVED = {
    "DDRNET23_SLIM": ("leve.models.encoders.ddrnet", "NAME"),
    "DDRNet23SlimFeatures": ("leve.models.encoders.ddrnet", "DDRNet23SlimFeatures"),
    "ENCODERS": ("leve.models.encoders.catalogue", "ENCODERS"),
    "Encoder": ("leve.models.encoders.base", "Encoder"),
    "EncoderSpec": ("leve.models.encoders.catalogue", "EncoderSpec"),
    "IMAGENET_MEAN": ("leve.sources.weights", "IMAGENET_MEAN"),
    "IMAGENET_STD": ("leve.sources.weights", "IMAGENET_STD"),
    "WeightsReport": ("leve.models.pretrained", "WeightsReport"),
    "create_encoder": ("leve.models.encoders.create", "create_encoder"),
    "list_encoders": ("leve.models.encoders.catalogue", "list_encoders"),
    "load_imagenet_weights": ("leve.models.pretrained", "load_imagenet_weights"),
}

__getattr__ = moved_names(__name__, _MOVED)
