"""The common encoder interface: ImageNet normalisation inside, a list of feature maps out."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from leve.sources.weights import IMAGENET_MEAN, IMAGENET_STD


class Encoder(nn.Module):
    """An ImageNet backbone returning feature maps at increasing stride.

    ``forward(x)`` takes RGB in [0, 1] of shape (B, 3, H, W), normalises it with the ImageNet
    mean/std (non-persistent buffers, so they are not in the state dict) and returns one map per
    entry of ``channels``/``reductions``: map ``i`` has ``channels[i]`` channels and spatial size
    ``H / reductions[i]`` x ``W / reductions[i]`` (rounded up, as the convolutions do).
    """

    def __init__(self, name: str, channels: list[int], reductions: list[int]) -> None:
        super().__init__()
        self.name = name
        self.channels = list(channels)
        self.reductions = list(reductions)
        self.register_buffer("input_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("input_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Normalise RGB in [0, 1] and return the feature maps."""
        return self.forward_features((x - self.input_mean) / self.input_std)

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """Feature maps of an already normalised batch."""
        raise NotImplementedError


def conv_bn_act(cin: int, cout: int, kernel: int = 1, stride: int = 1, groups: int = 1,
                act: type[nn.Module] | None = nn.ReLU, eps: float = 1e-5) -> nn.Sequential:
    """Conv (no bias, 'same' padding) -> BatchNorm -> optional activation, as ``0``, ``1``, ``2``."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout, eps=eps),
    ]
    if act is not None:
        layers.append(act(inplace=True))
    return nn.Sequential(*layers)


def init_weights(module: nn.Module) -> None:
    """He-normal convolutions, unit/zero BatchNorm, zero biases (used when no weights are loaded)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
