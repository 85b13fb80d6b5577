"""Leve's decoder: upsampling blocks built around a layered convolution block (LCB).

Block (thesis Fig. 5.2): ``up = bilinear_x2(x)``; ``s = conv1x1(resize(skip))``;
``y = conv1x1(LCB(up) + up + s)``. The LCB keeps the channel count so the sum is defined;
the final 1x1 convolution changes it (64 -> 32 -> 16 -> 1 over three blocks).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from leve.models.ddrnet import resize


def conv_bn_relu(cin: int, cout: int, k: int, groups: int = 1) -> list[nn.Module]:
    """Convolution (no bias: BN follows), batch norm, ReLU."""
    return [nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def lcb_3x3(c: int) -> nn.Sequential:
    """[3x3]"""
    return nn.Sequential(*conv_bn_relu(c, c, 3))


def lcb_3x3_1x1(c: int) -> nn.Sequential:
    """[3x3+1x1]"""
    return nn.Sequential(*conv_bn_relu(c, c, 3), *conv_bn_relu(c, c, 1))


def lcb_3x3_3x3(c: int) -> nn.Sequential:
    """[3x3+3x3], the thesis's choice."""
    return nn.Sequential(*conv_bn_relu(c, c, 3), *conv_bn_relu(c, c, 3))


def lcb_5x5_5x5(c: int) -> nn.Sequential:
    """[5x5+5x5]"""
    return nn.Sequential(*conv_bn_relu(c, c, 5), *conv_bn_relu(c, c, 5))


def lcb_dw(c: int) -> nn.Sequential:
    """[3x3-dw-separable]: depthwise 3x3 then pointwise 1x1, each followed by BN+ReLU."""
    return nn.Sequential(*conv_bn_relu(c, c, 3, groups=c), *conv_bn_relu(c, c, 1))


LCBS: dict[str, Callable[[int], nn.Sequential]] = {
    "3x3": lcb_3x3,
    "3x3+1x1": lcb_3x3_1x1,
    "3x3+3x3": lcb_3x3_3x3,
    "5x5+5x5": lcb_5x5_5x5,
    "dw": lcb_dw,
}


class UpBlock(nn.Module):
    """Bilinear x2, LCB, optional skip through a 1x1 conv, residual sum, 1x1 conv to ``cout``."""

    def __init__(self, cin: int, cout: int, lcb: str, skip_channels: int | None) -> None:
        super().__init__()
        self.lcb = LCBS[lcb](cin)
        self.skip = nn.Conv2d(skip_channels, cin, 1) if skip_channels else None
        self.out = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        up = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        y = self.lcb(up) + up
        if self.skip is not None:
            if skip is None:
                raise ValueError("this block was built with a skip connection; pass its tensor")
            y = y + self.skip(resize(skip, up.shape[-2:]))
        return self.out(y)


class Decoder(nn.Module):
    """:class:`UpBlock` s taking ``channels[i] -> channels[i+1]`` (three by default); ``skips[i]``
    gives each block's skip channel count (``None`` for no skip). After each block listed in
    ``extra_up`` the tensor is upsampled once more (bilinear x2, no parameters), as the thesis's
    MobileNetV3 variant does between its first two blocks."""

    def __init__(self, lcb: str, skips: list[int | None], channels: tuple[int, ...] = (64, 32, 16, 1),
                 extra_up: tuple[int, ...] = ()) -> None:
        super().__init__()
        if lcb not in LCBS:
            raise ValueError(f"unknown LCB '{lcb}'; choose from {sorted(LCBS)}")
        if len(skips) != len(channels) - 1:
            raise ValueError(f"need {len(channels) - 1} skip entries, got {len(skips)}")
        self.blocks = nn.ModuleList(UpBlock(channels[i], channels[i + 1], lcb, s) for i, s in enumerate(skips))
        self.extra_up = tuple(extra_up)

    def forward(self, x: torch.Tensor, skips: list[torch.Tensor | None]) -> torch.Tensor:
        for i, (block, skip) in enumerate(zip(self.blocks, skips, strict=True)):
            x = block(x, skip)
            if i in self.extra_up:
                x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        return x
