"""Leve on a MobileNetV3-Small encoder: the thesis's "MobileNetV3" row of Table 9.1 (DESIGN §7).

As the thesis code built it (notebook ``leve_mobilenetv3.ipynb``, facts only): torchvision
``mobilenet_v3_small`` cut into ``features[0:1]`` (16 channels at 1/2), ``features[1:4]`` (24 at
1/8) and ``features[4:9]`` (48 at 1/16; the later blocks are not built); Leve's decoder with
three up-blocks 48 -> 24 -> 16 -> 1 (:class:`~leve.models.decoder.UpBlock`, LCB 3x3+3x3) whose
skips are the 24-channel map at 1/8, the 16-channel map at 1/2 and the image, and one extra
bilinear x2 between the first two blocks (1/8 -> 1/4). Output at the input resolution.

The thesis's LCB convolutions carry a bias before their batch norm; leve's do not (the same
function, as for ``leve``). Inputs: H and W multiples of 16 (the encoder's deepest stride), at
least 64.
"""

from __future__ import annotations

import torch

from leve.models.base import DepthModel
from leve.models.decoder import Decoder
from leve.models.encoders.mobilenet import MobileNetV3Encoder

ENCODER = "mobilenet_v3_small"
TAPS = (0, 3, 8)  # features indices: 16 @ 1/2, 24 @ 1/8, 48 @ 1/16
CHANNELS = (48, 24, 16, 1)
SKIPS = (24, 16, 3)  # the 1/8 map, the 1/2 map, the image


class LeveMobileNetV3(DepthModel):
    """MobileNetV3-Small ``features[0:9]`` + Leve's decoder with an extra x2 after its first block."""

    output_stride = 1
    input_multiple = 16
    min_input_size = 64

    def __init__(self, encoder: MobileNetV3Encoder, max_depth: float = 10.0, lcb: str = "3x3+3x3") -> None:
        super().__init__(max_depth)
        if encoder.taps != TAPS:
            encoder.trim(TAPS)
        self.encoder = encoder
        self.decoder = Decoder(lcb, list(SKIPS), CHANNELS, extra_up=(0,))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        s2, s8, s16 = self.encoder(x)
        return self.decoder(s16, [s8, s2, x])
