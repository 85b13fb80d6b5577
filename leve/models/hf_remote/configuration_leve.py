"""The configuration of a leve depth model exported with ``leve export --format hf``.

``config.json`` holds the network (``architecture``, ``encoder``, ``lcb``, ``skips``, ``max_depth``),
the input size (``image_size``: [H, W]), what the output means (``depth_kind``: metric | relative,
``depth_units``, ``output``; a relative model's ``relative_affine``) and leve's own checkpoint header
(``format``, ``version``, ``model``, ``config``, ``extra``: lineage and metrics), so that leve
loads the folder too (``leve predict --checkpoint folder``)."""

from __future__ import annotations

from transformers import PretrainedConfig


class LeveDepthConfig(PretrainedConfig):
    """Every field comes from ``config.json`` as written by leve; nothing has a default of its own."""

    model_type = "leve"
