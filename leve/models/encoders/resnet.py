"""ResNet-50 / ResNet-101 (He et al., 2016; stride on the 3x3 conv, "v1.5") with torchvision's names.

Layout: ``conv1``, ``bn1``, ``relu``, ``maxpool``, then ``layer1..4`` of bottlenecks
``{conv1,bn1,conv2,bn2,conv3,bn3}`` (1x1 to the width, 3x3 with the stage's stride, 1x1 to four
times the width) with a projection shortcut ``downsample.{0,1}`` (1x1 conv + BN) on each stage's
first block. The classifier (``fc``) is not built.

Returned maps: ``relu`` (stride 2, 64 channels), ``layer1`` (4, 256), ``layer2`` (8, 512),
``layer3`` (16, 1024), ``layer4`` (32, 2048).
"""

from __future__ import annotations

from torch import Tensor, nn

from leve.models.encoders.base import Encoder, init_weights

EXPANSION = 4


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 residual block with an optional projection shortcut."""

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        cout = width * EXPANSION
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        """ReLU(residual branch + shortcut)."""
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(y + shortcut)


def stage(cin: int, width: int, blocks: int, stride: int) -> nn.Sequential:
    """``blocks`` bottlenecks; the first one strides and projects."""
    layers = [Bottleneck(cin, width, stride)]
    layers += [Bottleneck(width * EXPANSION, width, 1) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ResNetEncoder(Encoder):
    """Bottleneck ResNet feature extractor returning the stem and the four stage outputs."""

    def __init__(self, name: str, blocks: tuple[int, int, int, int]) -> None:
        super().__init__(name, [64, 256, 512, 1024, 2048], [2, 4, 8, 16, 32])
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = stage(64, 64, blocks[0], 1)
        self.layer2 = stage(256, 128, blocks[1], 2)
        self.layer3 = stage(512, 256, blocks[2], 2)
        self.layer4 = stage(1024, 512, blocks[3], 2)
        init_weights(self)

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """Stem output, then each stage's output."""
        out = [self.relu(self.bn1(self.conv1(x)))]
        x = self.maxpool(out[0])
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = layer(x)
            out.append(x)
        return out


def resnet50() -> ResNetEncoder:
    """ResNet-50: (3, 4, 6, 3) bottlenecks."""
    return ResNetEncoder("resnet50", (3, 4, 6, 3))


def resnet101() -> ResNetEncoder:
    """ResNet-101: (3, 4, 23, 3) bottlenecks."""
    return ResNetEncoder("resnet101", (3, 4, 23, 3))
