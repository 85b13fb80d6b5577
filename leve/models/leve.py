"""The Leve network: DDRNet-23-slim encoder + three-block upsampling decoder.

Input (B, 3, H, W) RGB in [0, 1], H and W multiples of 8 and at least 64; output
(B, 1, H, W) (``output_stride`` 1), read as ``max_depth / depth`` (see :mod:`leve.models.depth`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from leve.models.base import DepthModel
from leve.models.ddrnet import DDRNet23Slim
from leve.models.decoder import Decoder

# Skip sets: for each decoder block (deepest first), the encoder feature it receives.
# "image" is the network input itself (3 channels, full resolution).
SKIP_SETS: dict[str, tuple[str | None, ...]] = {
    "main": ("fusion4", "layer1", "image"),
    "alt": ("fusion4", "fusion3", "layer2"),
    "none": (None, None, None),
}
SKIP_CHANNELS = {"image": 3, "layer1": 32, "layer2": 64, "fusion3": 64, "fusion4": 64}
MIN_SIZE = 64
MULTIPLE = 8


@dataclass(frozen=True)
class LeveConfig:
    """Architecture choices: the LCB (see :data:`leve.models.decoder.LCBS`) and the skip set."""

    lcb: str = "3x3+3x3"
    skips: str = "main"
    max_depth: float = 10.0
    normalize: bool = True


class Leve(DepthModel):
    """Encoder-decoder depth network; ``forward`` returns the raw output (max_depth/depth)."""

    output_stride = 1
    input_multiple = MULTIPLE
    min_input_size = MIN_SIZE

    def __init__(self, config: LeveConfig = LeveConfig()) -> None:
        super().__init__(config.max_depth)
        if config.skips not in SKIP_SETS:
            raise ValueError(f"unknown skip set '{config.skips}'; choose from {sorted(SKIP_SETS)}")
        self.config = config
        self.skip_names = SKIP_SETS[config.skips]
        self.encoder = DDRNet23Slim(head_channels=64, normalize=config.normalize)
        channels = [SKIP_CHANNELS[n] if n else None for n in self.skip_names]
        self.decoder = Decoder(config.lcb, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.check_input(x)
        feats = self.encoder(x)
        skips = [x if n == "image" else feats[n] if n else None for n in self.skip_names]
        return self.decoder(feats["head"], skips)

    def config_dict(self) -> dict:
        return asdict(self.config)

