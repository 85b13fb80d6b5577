"""The Leve student: DDRNet-23-slim encoder, upsampling decoder, registry and checkpoints.

Usage::

    from leve.models import create_model, list_models
    model = create_model("leve", encoder_weights="DDRNet23s_imagenet.pth", max_depth=10.0)
    out = model(rgb)            # (B,3,H,W) in [0,1] -> (B,1,H,W), read as max_depth/depth
    depth = leve.models.depth.output_to_depth(out, model.max_depth)

Variants (thesis §9.1): ``leve`` (LCB 3x3+3x3, main skips; the default), ``leve-3x3``,
``leve-3x3-1x1``, ``leve-5x5-5x5``, ``leve-dw``, ``leve-alt-skips``, ``leve-no-skips``.

Checkpoint format (written by :func:`save_checkpoint`, read by :func:`load_checkpoint`;
used by training, ``leve predict`` and ``leve export``), version 1, two encodings chosen by
the file suffix:

* ``*.safetensors``: the model's ``state_dict`` as tensors; the safetensors metadata (all
  strings) holds ``format = "leve-checkpoint"``, ``version = "1"``, ``model`` (a registry
  name), ``config`` (JSON: ``{"max_depth": float, "resolution": [H, W]}``) and ``extra``
  (JSON object, free-form: epoch, metrics, params...).
* any other suffix (``*.pt``): a ``torch.save`` of a plain dict ``{"format":
  "leve-checkpoint", "version": 1, "model": name, "config": {...as above...},
  "state_dict": {...}, "extra": {...}}``, loaded with ``torch.load(weights_only=True)``;
  ``extra`` may hold plain values and tensors only (e.g. an optimizer state for resuming).

``resolution`` is the (H, W) the model was trained at; prediction resizes inputs to it.
"""

from leve.models.checkpoint import (
    CheckpointInfo,
    load_checkpoint,
    read_checkpoint,
    save_checkpoint,
)
from leve.models.ddrnet import DDRNet23Slim
from leve.models.leve import Leve, LeveConfig
from leve.models.pretrained import LoadReport, load_encoder_weights
from leve.models.registry import (
    DEFAULT_MODEL,
    create_model,
    list_models,
    register_model,
)

__all__ = [
    "DEFAULT_MODEL",
    "CheckpointInfo",
    "DDRNet23Slim",
    "Leve",
    "LeveConfig",
    "LoadReport",
    "create_model",
    "list_models",
    "load_checkpoint",
    "load_encoder_weights",
    "read_checkpoint",
    "register_model",
    "save_checkpoint",
]
