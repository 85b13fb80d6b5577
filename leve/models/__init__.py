"""The students: Leve (DDRNet-23-slim encoder, upsampling decoder), the thesis's MobileNetV3 Leve,
DenseDepth on ImageNet encoders (seed 002); registry and checkpoints.

Usage::

    from leve.models.encoders.create import create_encoder
    from leve.models.registry import create_model, list_models
    model = create_model("leve", encoder_weights="DDRNet23s_imagenet.pth", max_depth=10.0)
    maps = create_encoder("resnet50", weights="resnet50-0676ba61.pth")(rgb)  # features_only: strides 2..32
    out = model(rgb)            # (B,3,H,W) in [0,1] -> (B,1,H,W), read as max_depth/depth
    depth = leve.models.depth.output_to_depth(out, model.max_depth)

Variants: ``list_models()``; ``leve`` (LCB 3x3+3x3, main skips) is the default; the thesis's
§9.1 variants ``leve-*``, ``leve-mobilenetv3`` (Table 9.1) and ``densedepth-<encoder>`` (seed
002: densenet169, densenet161, resnet50, resnet101, mobilenetv2). Each is a :class:`ModelSpec`
(``model_spec(name)``) carrying its architecture, encoder, output stride, label, experiment
groups, published figures and its encoder's pretrained file. Every model has ``encoder``,
``decoder``, ``max_depth`` and ``output_stride``: 1 (output at the input size) or 2 (DenseDepth:
half of it; :func:`leve.models.depth.upsample_output` brings it to the input size before depth
is read). An input size a model cannot take is refused with :class:`InputSizeError`.

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

* a folder in the Hugging Face layout (``leve export --format hf``, :mod:`leve.models.hf`):
  ``config.json`` holds the description above (and ``extra`` minus training state),
  ``model.safetensors`` the state dict, ``README.md`` the model card.

``resolution`` is the (H, W) the model was trained at; prediction resizes inputs to it.
``extra["lineage"]`` (written by ``leve train``, :mod:`leve.models.lineage`) names the teacher
(id, resolved revision, licence), the dataset splits (store path and fingerprint) and whether the
student is for non-commercial use only; ``MODEL_CARD.md`` beside ``best.pt`` says the same
(:mod:`leve.models.card`).
"""

from __future__ import annotations

from leve import moved_names

# No re-exports: each name is imported from the module that defines it, so that importing one module
# of this package runs only that module's code (dvc.yaml's derived deps, the training run identity).
# The old spellings (``from leve.models import CheckpointInfo``) still work, with a deprecation warning.
_MOVED = {
    "CheckpointInfo": "leve.models.checkpoint",
    "DDRNet23Slim": "leve.models.ddrnet",
    "DEFAULT_MODEL": "leve.models.registry",
    "DenseDepth": "leve.models.densedepth",
    "DepthModel": "leve.models.base",
    "InputSizeError": "leve.models.base",
    "Leve": "leve.models.leve",
    "LeveConfig": "leve.models.leve",
    "LeveMobileNetV3": "leve.models.leve_mobilenet",
    "LoadReport": "leve.models.pretrained",
    "ModelSpec": "leve.models.registry",
    "ReferenceResult": "leve.models.registry",
    "create_encoder": "leve.models.encoders.create",
    "create_model": "leve.models.registry",
    "list_models": "leve.models.registry",
    "load_checkpoint": "leve.models.checkpoint",
    "load_encoder_weights": "leve.models.pretrained",
    "model_spec": "leve.models.registry",
    "read_checkpoint": "leve.models.checkpoint",
    "register_model": "leve.models.registry",
    "save_checkpoint": "leve.models.checkpoint",
}

__getattr__ = moved_names(__name__, _MOVED)
