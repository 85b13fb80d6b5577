"""DenseNet-169 / DenseNet-161 (Huang et al., 2017) with torchvision's module names.

Layout: ``features.{conv0,norm0,relu0,pool0}``, then ``denseblockK.denselayerN.{norm1,conv1,
norm2,conv2}`` (BN-ReLU-1x1 conv to ``bn_size * growth``, BN-ReLU-3x3 conv to ``growth``,
inputs concatenated), ``transitionK.{norm,conv,pool}`` (BN-ReLU-1x1 conv halving the width,
2x2 average pool) and ``norm5``. The classifier is not built.

Returned maps (the skips DenseDepth's decoder uses): ``relu0`` (stride 2), ``pool0`` (4),
``transition1`` (8, after its pool), ``transition2`` (16) and ``norm5`` (32, before DenseNet's
final ReLU).
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import Tensor, nn

from leve.models.encoders.base import Encoder, init_weights

TAPS = ("relu0", "pool0", "transition1", "transition2", "norm5")


class DenseLayer(nn.Module):
    """BN-ReLU-Conv1x1 bottleneck then BN-ReLU-Conv3x3 producing ``growth`` new channels."""

    def __init__(self, cin: int, growth: int, bn_size: int) -> None:
        super().__init__()
        mid = bn_size * growth
        self.norm1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, mid, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(mid)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(mid, growth, 3, padding=1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        """New features from the concatenation of all previous ones."""
        return self.conv2(self.relu2(self.norm2(self.conv1(self.relu1(self.norm1(x))))))


class DenseBlock(nn.ModuleDict):
    """``n`` dense layers; each sees the block input and every earlier layer's output."""

    def __init__(self, n: int, cin: int, growth: int, bn_size: int) -> None:
        super().__init__({f"denselayer{i + 1}": DenseLayer(cin + i * growth, growth, bn_size) for i in range(n)})

    def forward(self, x: Tensor) -> Tensor:
        """Input and all layer outputs concatenated along channels."""
        feats = [x]
        for layer in self.values():
            feats.append(layer(torch.cat(feats, 1)))
        return torch.cat(feats, 1)


def transition(cin: int) -> nn.Sequential:
    """BN-ReLU-Conv1x1 to ``cin // 2`` channels, then 2x2 average pooling."""
    return nn.Sequential(OrderedDict(
        norm=nn.BatchNorm2d(cin),
        relu=nn.ReLU(inplace=True),
        conv=nn.Conv2d(cin, cin // 2, 1, bias=False),
        pool=nn.AvgPool2d(2, 2),
    ))


class DenseNetEncoder(Encoder):
    """DenseNet feature extractor returning the five DenseDepth skip maps."""

    def __init__(self, name: str, init: int, growth: int, blocks: tuple[int, ...], bn_size: int = 4) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict(
            conv0=nn.Conv2d(3, init, 7, 2, 3, bias=False),
            norm0=nn.BatchNorm2d(init),
            relu0=nn.ReLU(inplace=True),
            pool0=nn.MaxPool2d(3, 2, 1),
        )
        width, widths = init, {"relu0": init, "pool0": init}
        for k, n in enumerate(blocks, start=1):
            layers[f"denseblock{k}"] = DenseBlock(n, width, growth, bn_size)
            width += n * growth
            if k < len(blocks):
                layers[f"transition{k}"] = transition(width)
                width //= 2
                widths[f"transition{k}"] = width
        layers["norm5"] = nn.BatchNorm2d(width)
        widths["norm5"] = width
        super().__init__(name, [widths[t] for t in TAPS], [2, 4, 8, 16, 32])
        self.features = nn.Sequential(layers)
        init_weights(self)

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """Run the trunk and keep the outputs of the tapped modules."""
        out = []
        for name, module in self.features.named_children():
            x = module(x)
            if name in TAPS:
                out.append(x)
        return out


def densenet169() -> DenseNetEncoder:
    """DenseNet-169: growth 32, blocks (6, 12, 32, 32), 64 initial features."""
    return DenseNetEncoder("densenet169", 64, 32, (6, 12, 32, 32))


def densenet161() -> DenseNetEncoder:
    """DenseNet-161: growth 48, blocks (6, 12, 36, 24), 96 initial features."""
    return DenseNetEncoder("densenet161", 96, 48, (6, 12, 36, 24))
