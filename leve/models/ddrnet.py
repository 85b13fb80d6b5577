"""DDRNet-23-slim encoder, as used for segmentation (the variant the Leve thesis adopted).

Two behaviours differ from the ImageNet classifier whose weights it loads, although the
parameter names and shapes are the same:

* ``layer5`` (the low-branch bottleneck) runs at stride 2, so the low branch ends at 1/64;
* the last block of every stage (``layer5``/``layer5_`` included) ends without a ReLU and
  the forward pass applies ReLU where the next stage needs it. Features handed to the
  decoder (``layer1``, the high branch after each fusion) are therefore pre-activation.

Submodule names follow the public checkpoint (``conv1``, ``layer1``..``layer5``,
``layer3_``..``layer5_``, ``down3``, ``down4``, ``compression3``, ``compression4``),
so its state dict loads by name; ``spp`` (DAPPM) and ``final_layer`` (the head) are new.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from leve.sources.weights import IMAGENET_MEAN, IMAGENET_STD


def conv_bn(cin: int, cout: int, k: int, stride: int = 1, bias: bool = False) -> list[nn.Module]:
    """A convolution with 'same' padding followed by batch norm (no activation)."""
    return [nn.Conv2d(cin, cout, k, stride, k // 2, bias=bias), nn.BatchNorm2d(cout)]


def resize(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Bilinear resize (align_corners=False), skipped when the size already matches
    (never skipped while tracing, so an exported graph stays valid at any input size)."""
    if not torch.jit.is_tracing() and tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN with identity (or 1x1 projection) shortcut; ReLU at the end unless ``no_relu``."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, no_relu: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = _projection(cin, planes * self.expansion, stride)
        self.no_relu = no_relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + (x if self.downsample is None else self.downsample(x))
        return out if self.no_relu else F.relu(out)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 (strided) -> 1x1 with expansion 2 and a projection shortcut."""

    expansion = 2

    def __init__(self, cin: int, planes: int, stride: int = 1, no_relu: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.downsample = _projection(cin, planes * self.expansion, stride)
        self.no_relu = no_relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = out + (x if self.downsample is None else self.downsample(x))
        return out if self.no_relu else F.relu(out)


def _projection(cin: int, cout: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


def make_stage(block: type[BasicBlock] | type[Bottleneck], cin: int, planes: int, n: int, stride: int = 1) -> nn.Sequential:
    """``n`` blocks; the first may downsample, the last ends without ReLU (segmentation DDRNet)."""
    blocks = []
    for i in range(n):
        blocks.append(block(cin, planes, stride if i == 0 else 1, no_relu=i == n - 1))
        cin = planes * block.expansion
    return nn.Sequential(*blocks)


def _bn_relu_conv(cin: int, cout: int, k: int = 1) -> list[nn.Module]:
    return [nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, cout, k, padding=k // 2, bias=False)]


class DAPPM(nn.Module):
    """Deep aggregation pyramid pooling: pooled scales fused hierarchically, then compressed."""

    def __init__(self, cin: int, branch: int, cout: int) -> None:
        super().__init__()
        pools = [nn.AvgPool2d(5, 2, 2), nn.AvgPool2d(9, 4, 4), nn.AvgPool2d(17, 8, 8), nn.AdaptiveAvgPool2d(1)]
        for i, pool in enumerate(pools, start=1):
            setattr(self, f"scale{i}", nn.Sequential(pool, *_bn_relu_conv(cin, branch)))
            setattr(self, f"process{i}", nn.Sequential(*_bn_relu_conv(branch, branch, 3)))
        self.scale0 = nn.Sequential(*_bn_relu_conv(cin, branch))
        self.compression = nn.Sequential(*_bn_relu_conv(branch * 5, cout))
        self.shortcut = nn.Sequential(*_bn_relu_conv(cin, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        feats = [self.scale0(x)]
        for i in range(1, 5):
            pooled = resize(getattr(self, f"scale{i}")(x), size)
            feats.append(getattr(self, f"process{i}")(pooled + feats[-1]))
        return self.compression(torch.cat(feats, 1)) + self.shortcut(x)


class SegHead(nn.Module):
    """BN-ReLU-3x3 conv, BN-ReLU-1x1 conv (with bias): the DDRNet head, here giving features."""

    def __init__(self, cin: int, mid: int, cout: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, mid, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, cout, 1, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(F.relu(self.bn1(x)))
        return self.conv2(F.relu(self.bn2(x)))


class DDRNet23Slim(nn.Module):
    """The encoder. ``forward`` returns a dict of features (see :meth:`forward`).

    ``normalize`` applies ImageNet mean/std to the [0, 1] input (the statistics the
    public weights were trained with); the buffers are not saved in state dicts.
    """

    planes = 32
    out_channels = 64

    def __init__(self, head_channels: int = 64, normalize: bool = True) -> None:
        super().__init__()
        p = self.planes
        self.normalize = normalize
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.conv1 = nn.Sequential(*conv_bn(3, p, 3, 2, bias=True), nn.ReLU(inplace=True),
                                   *conv_bn(p, p, 3, 2, bias=True), nn.ReLU(inplace=True))
        self.layer1 = make_stage(BasicBlock, p, p, 2)
        self.layer2 = make_stage(BasicBlock, p, 2 * p, 2, stride=2)
        self.layer3 = make_stage(BasicBlock, 2 * p, 4 * p, 2, stride=2)
        self.layer4 = make_stage(BasicBlock, 4 * p, 8 * p, 2, stride=2)
        self.layer5 = make_stage(Bottleneck, 8 * p, 8 * p, 1, stride=2)
        self.layer3_ = make_stage(BasicBlock, 2 * p, 2 * p, 2)
        self.layer4_ = make_stage(BasicBlock, 2 * p, 2 * p, 2)
        self.layer5_ = make_stage(Bottleneck, 2 * p, 2 * p, 1)
        self.compression3 = nn.Sequential(*conv_bn(4 * p, 2 * p, 1))
        self.compression4 = nn.Sequential(*conv_bn(8 * p, 2 * p, 1))
        self.down3 = nn.Sequential(*conv_bn(2 * p, 4 * p, 3, 2))
        self.down4 = nn.Sequential(*conv_bn(2 * p, 4 * p, 3, 2), nn.ReLU(inplace=True), *conv_bn(4 * p, 8 * p, 3, 2))
        self.spp = DAPPM(16 * p, 4 * p, 4 * p)
        self.final_layer = SegHead(4 * p, 2 * p, head_channels)
        self.out_channels = head_channels

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Features: ``layer1`` (32, H/4), ``layer2`` (64, H/8), ``fusion3``/``fusion4`` (the high
        branch after each bilateral fusion, 64, H/8) and ``head`` (64, H/8); all pre-activation."""
        if self.normalize:
            x = (x - self.mean) / self.std
        f: dict[str, torch.Tensor] = {}
        f["layer1"] = self.layer1(self.conv1(x))
        f["layer2"] = self.layer2(F.relu(f["layer1"]))
        size = f["layer2"].shape[-2:]
        low = self.layer3(F.relu(f["layer2"]))
        high = self.layer3_(F.relu(f["layer2"]))
        low, high = low + self.down3(F.relu(high)), high + resize(self.compression3(F.relu(low)), size)
        f["fusion3"] = high
        low = self.layer4(F.relu(low))
        high = self.layer4_(F.relu(high))
        low, high = low + self.down4(F.relu(high)), high + resize(self.compression4(F.relu(low)), size)
        f["fusion4"] = high
        high = self.layer5_(F.relu(high))
        low = resize(self.spp(self.layer5(F.relu(low))), size)
        f["head"] = self.final_layer(low + high)
        return f
