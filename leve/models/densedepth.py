"""DenseDepth (Alhashemi & Wonka, 2018) on any encoder of :mod:`leve.models.encoders`: seed 002's models.

Written from the paper's description and DESIGN §7 (no code taken from DenseDepth, GPL-3.0):

* a 1x1 convolution on the deepest encoder map (stride 32, width ``F``) keeping the width;
* four up-blocks, each: bilinear resize to the skip's size (``align_corners=True``, as DenseDepth's
  PyTorch port), concatenate the skip, 3x3 conv -> LeakyReLU(0.2) -> 3x3 conv -> LeakyReLU(0.2),
  to ``F/2``, ``F/4``, ``F/8``, ``F/16`` channels; the skips are the encoder maps at strides 16, 8,
  4 and 2 (DenseNet: transition2, transition1, pool0, relu0);
* a final 3x3 convolution to one channel at stride 2: the output has HALF the input resolution
  (``output_stride = 2``). Convolutions carry biases; there is no batch norm in the decoder.

With DenseNet-169 (``F = 1664``) the network has 42,657,689 parameters (the paper's 42.6 M).
The output is read like Leve's, as ``max_depth / depth``. Inputs: H and W multiples of 8, at least
64 (every up-block resizes to its skip's size, so the deepest stride need not divide the input;
even sizes give an output of exactly H/2 x W/2, and 8 keeps Leve's sizes such as 120x160 and
240x320, the thesis's ablation resolution, usable for side-by-side runs).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from leve.models.base import DepthModel
from leve.models.encoders.base import Encoder

LEAKY_SLOPE = 0.2
BLOCKS = 4  # up-blocks: strides 32 -> 16 -> 8 -> 4 -> 2


class UpSample(nn.Module):
    """Resize to the skip (bilinear, corners aligned), concatenate it, two 3x3 conv + LeakyReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv_a = nn.Conv2d(cin, cout, 3, padding=1)
        self.conv_b = nn.Conv2d(cout, cout, 3, padding=1)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=True)
        y = F.leaky_relu(self.conv_a(torch.cat([up, skip], 1)), LEAKY_SLOPE)
        return F.leaky_relu(self.conv_b(y), LEAKY_SLOPE)


class DenseDepthDecoder(nn.Module):
    """The decoder over encoder maps with ``channels`` at strides 2, 4, 8, 16, 32."""

    def __init__(self, channels: Sequence[int]) -> None:
        super().__init__()
        if len(channels) != BLOCKS + 1:
            raise ValueError(f"DenseDepth needs {BLOCKS + 1} encoder maps (strides 2..32), got {len(channels)}")
        width = int(channels[-1])
        self.conv = nn.Conv2d(width, width, 1)
        skips = list(channels[-2::-1])  # strides 16, 8, 4, 2
        widths = [width // 2 ** (i + 1) for i in range(BLOCKS)]  # F/2, F/4, F/8, F/16
        ins = [width, *widths[:-1]]
        self.blocks = nn.ModuleList(UpSample(cin + s, cout) for cin, s, cout in zip(ins, skips, widths, strict=True))
        self.out = nn.Conv2d(widths[-1], 1, 3, padding=1)

    def forward(self, maps: list[torch.Tensor]) -> torch.Tensor:
        """``maps`` at strides 2..32 -> one channel at stride 2."""
        x = self.conv(maps[-1])
        for block, skip in zip(self.blocks, maps[-2::-1], strict=True):
            x = block(x, skip)
        return self.out(x)


class DenseDepth(DepthModel):
    """Encoder (ImageNet normalisation inside) + :class:`DenseDepthDecoder`; half-resolution output."""

    output_stride = 2
    input_multiple = 8
    min_input_size = 64

    def __init__(self, encoder: Encoder, max_depth: float = 10.0) -> None:
        super().__init__(max_depth)
        if list(encoder.reductions) != [2, 4, 8, 16, 32]:
            raise ValueError(f"DenseDepth needs encoder maps at strides 2..32, got {encoder.reductions}")
        self.encoder = encoder
        self.decoder = DenseDepthDecoder(encoder.channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        return self.decoder(self.encoder(x))
