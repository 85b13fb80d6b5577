"""DDRNet-23-slim as a features-only encoder: ``create_encoder("ddrnet23_slim")``.

The trunk of :class:`leve.models.ddrnet.DDRNet23Slim` under the public checkpoint's names (``conv1``,
``layer1``..``layer5``, ``layer3_``..``layer5_``, ``down3``, ``down4``, ``compression3``,
``compression4``), without the DAPPM and head that Leve adds, so ``DDRNet23s_imagenet.pth`` loads
into every tensor (its classifier-only ``down5``, ``last_layer`` and ``linear`` are skipped).
``forward`` returns the maps the next stage reads (after ReLU): the stem's first conv (32 @ 1/2),
``layer1`` (32 @ 1/4), ``layer2`` (64 @ 1/8) and the low-resolution branch after each bilateral
fusion (128 @ 1/16, 256 @ 1/32). ``layer5`` and ``layer5_`` are built so the file loads, not run.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from leve.models.ddrnet import DDRNet23Slim, resize
from leve.models.encoders.base import Encoder

NAME = "ddrnet23_slim"
PARTS = ("conv1", "layer1", "layer2", "layer3", "layer4", "layer5", "layer3_", "layer4_", "layer5_",
         "compression3", "compression4", "down3", "down4")


class DDRNet23SlimFeatures(Encoder):
    """DDRNet-23-slim's ImageNet trunk returning five maps at strides 2, 4, 8, 16 and 32."""

    def __init__(self) -> None:
        super().__init__(NAME, [32, 32, 64, 128, 256], [2, 4, 8, 16, 32])
        trunk = DDRNet23Slim(normalize=False)
        for part in PARTS:
            self.add_module(part, getattr(trunk, part))

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """The maps of an ImageNet-normalised batch (the two branches fused as in Leve's encoder)."""
        s2 = self.conv1[:3](x)  # conv, BN, ReLU at stride 2
        s4 = self.layer1(self.conv1[3:](s2))
        s8 = self.layer2(F.relu(s4))
        low, high = self.layer3(F.relu(s8)), self.layer3_(F.relu(s8))
        low, high = low + self.down3(F.relu(high)), high + resize(self.compression3(F.relu(low)), s8.shape[-2:])
        s32 = self.layer4(F.relu(low)) + self.down4(F.relu(self.layer4_(F.relu(high))))
        return [s2, F.relu(s4), F.relu(s8), F.relu(low), F.relu(s32)]
