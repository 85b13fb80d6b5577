"""A leve depth network for transformers (``AutoModelForDepthEstimation``, ``pipeline("depth-estimation")``).

``predicted_depth`` (B, H, W) is what ``leve predict`` computes at the model's input size: the
network's output brought to the input size (a half-resolution DenseDepth output: bilinear x2) and
read as depth, ``clamp(max_depth / out, max_depth / 100, max_depth)``: metres for a metric model
(``config.depth_kind == "metric"``); for a relative one, depth right up to an unknown scale (and
shift in disparity), not metres. The image processor resizes it to each image's size.

The network below is leve's own code (its modules, bundled by ``leve export``); the weights in
``model.safetensors`` carry leve's names, loaded under ``leve.``."""

from __future__ import annotations

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import DepthEstimatorOutput

from leve.models.densedepth import DenseDepth
from leve.models.depth import RelativeOutput, output_to_depth, upsample_output
from leve.models.encoders.densenet import densenet161, densenet169
from leve.models.encoders.mobilenet import mobilenet_v2, mobilenet_v3_large, mobilenet_v3_small
from leve.models.encoders.resnet import resnet50, resnet101
from leve.models.leve import Leve, LeveConfig
from leve.models.leve_mobilenet import LeveMobileNetV3

from .configuration_leve import LeveDepthConfig

ENCODER_BUILDERS = {"densenet161": densenet161, "densenet169": densenet169, "resnet50": resnet50,
                    "resnet101": resnet101, "mobilenet_v2": mobilenet_v2, "mobilenet_v3_large": mobilenet_v3_large,
                    "mobilenet_v3_small": mobilenet_v3_small}


def build_network(config: LeveDepthConfig) -> nn.Module:
    """The network of ``config`` as leve's registry builds it (``leve.models.registry.create_model``)."""
    max_depth = float(config.max_depth)
    if config.architecture == "leve":
        return Leve(LeveConfig(lcb=config.lcb, skips=config.skips, max_depth=max_depth))
    if config.encoder not in ENCODER_BUILDERS or config.architecture not in ("leve-mobilenetv3", "densedepth"):
        raise ValueError(f"unknown leve architecture {config.architecture!r} with encoder {config.encoder!r}")
    encoder = ENCODER_BUILDERS[config.encoder]()
    if config.architecture == "leve-mobilenetv3":
        return LeveMobileNetV3(encoder, max_depth, lcb=config.lcb)
    trim = getattr(encoder, "trim", None)
    if trim is not None:
        trim()  # MobileNetV2's final 1x1 conv is not run: not part of the model
    return DenseDepth(encoder, max_depth)


class LeveForDepthEstimation(PreTrainedModel):
    """The network under ``leve`` (its weights' names are leve's, with that prefix)."""

    config_class = LeveDepthConfig
    base_model_prefix = "leve"
    main_input_name = "pixel_values"

    def __init__(self, config: LeveDepthConfig) -> None:
        super().__init__(config)
        # built on the CPU even where transformers builds on the meta device: the network's constants
        # (ImageNet mean and std, buffers kept out of the weights) are computed here, not loaded
        with torch.device("cpu"):
            self.leve = build_network(config)
        for module in self.leve.modules():
            constants = {name: buffer.detach().clone() for name, buffer in module.named_buffers(recurse=False)
                         if name in module._non_persistent_buffers_set}
            if constants:
                module.leve_constants = constants
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        """Only the constants: every weight comes from ``model.safetensors`` (transformers empties the
        buffers that are not in it, and asks for them here)."""
        for name, value in getattr(module, "leve_constants", {}).items():
            with torch.no_grad():
                getattr(module, name).copy_(value)

    def network(self) -> nn.Module:
        """The network as leve runs it: a relative model's output in the teacher's convention."""
        if self.config.depth_kind != "relative":
            return self.leve
        scale, shift = self.config.relative_affine or (1.0, 0.0)
        return RelativeOutput(self.leve, scale, shift)  # a view on the same weights

    def forward(self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None,
                return_dict: bool | None = None, **kwargs) -> DepthEstimatorOutput | tuple:
        """``pixel_values``: (B, 3, H, W) RGB in [0, 1] (:class:`LeveImageProcessor`)."""
        if labels is not None:
            raise NotImplementedError("training runs in leve (leve train), not here")
        out = self.network()(pixel_values)
        depth = output_to_depth(upsample_output(out, pixel_values.shape[-2:]), float(self.config.max_depth))[:, 0]
        if return_dict is False:
            return (depth,)
        return DepthEstimatorOutput(predicted_depth=depth)
