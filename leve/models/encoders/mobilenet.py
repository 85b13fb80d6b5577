"""MobileNetV2 (Sandler et al., 2018) and MobileNetV3 large/small (Howard et al., 2019), torchvision names.

MobileNetV2 ``features``: ``0`` stem (3x3 s2 conv-BN-ReLU6 to 32), ``1..17`` inverted residuals
``N.conv`` (optional 1x1 expansion ``conv.0``, 3x3 depthwise, 1x1 linear projection + BN; identity
shortcut when stride 1 and widths match), ``18`` the final 1x1 conv-BN-ReLU6 to 1280.
Returned maps: outputs of blocks 1 (16 ch, stride 2), 3 (24, 4), 6 (32, 8), 13 (96, 16) and
17 (320, 32). ``features.18`` is built, so the ImageNet file loads unchanged and the parameter
count is torchvision's 2,223,872, but it is not run and not listed in ``.channels``: the
stride-32 map is the 320-channel block output.

MobileNetV3 ``features``: ``0`` stem (3x3 s2 conv-BN-Hardswish to 16), then inverted residuals
``N.block.M`` (optional 1x1 expansion, kxk depthwise, optional squeeze-excitation with ``fc1``/
``fc2`` 1x1 convs, ReLU and Hardsigmoid gate, 1x1 linear projection), and the last 1x1
conv-BN-Hardswish to 6x the last width (960 large, 576 small), which is returned. BatchNorm
uses eps 0.001. Classifiers are not built.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F  # noqa: N812

from leve.models.encoders.base import Encoder, conv_bn_act, init_weights

# (expansion t, output channels c, repeats n, first stride s), from the MobileNetV2 paper, Table 2
V2_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))
V2_TAPS = (1, 3, 6, 13, 17)

# (kernel, expanded width, output width, squeeze-excite, hard-swish, stride), MobileNetV3 paper Tables 1-2
V3_LARGE = (
    (3, 16, 16, False, False, 1), (3, 64, 24, False, False, 2), (3, 72, 24, False, False, 1),
    (5, 72, 40, True, False, 2), (5, 120, 40, True, False, 1), (5, 120, 40, True, False, 1),
    (3, 240, 80, False, True, 2), (3, 200, 80, False, True, 1), (3, 184, 80, False, True, 1),
    (3, 184, 80, False, True, 1), (3, 480, 112, True, True, 1), (3, 672, 112, True, True, 1),
    (5, 672, 160, True, True, 2), (5, 960, 160, True, True, 1), (5, 960, 160, True, True, 1),
)
V3_SMALL = (
    (3, 16, 16, True, False, 2), (3, 72, 24, False, False, 2), (3, 88, 24, False, False, 1),
    (5, 96, 40, True, True, 2), (5, 240, 40, True, True, 1), (5, 240, 40, True, True, 1),
    (5, 120, 48, True, True, 1), (5, 144, 48, True, True, 1), (5, 288, 96, True, True, 2),
    (5, 576, 96, True, True, 1), (5, 576, 96, True, True, 1),
)
V3_EPS = 0.001


def make_divisible(v: float, divisor: int = 8) -> int:
    """Round ``v`` to the nearest multiple of ``divisor`` without going below 90 % of it."""
    rounded = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * v else rounded


class TappedTrunk(Encoder):
    """An encoder over ``self.features`` returning the outputs of the blocks in ``taps``."""

    taps: tuple[int, ...]
    features: nn.Sequential

    def forward_features(self, x: Tensor) -> list[Tensor]:
        """Run ``features`` up to the last tap, keeping the tapped outputs."""
        out = []
        for i, block in enumerate(self.features[: self.taps[-1] + 1]):
            x = block(x)
            if i in self.taps:
                out.append(x)
        return out

    def trim(self, taps: tuple[int, ...] | None = None) -> None:
        """Keep only the maps of ``taps`` (a subset of ``self.taps``; default all) and drop every block
        after the last of them, in place: a network built on the trunk then has no parameter it
        never runs (MobileNetV2's ``features.18``). Load ImageNet weights before trimming."""
        taps = self.taps if taps is None else tuple(taps)
        if not taps or any(t not in self.taps for t in taps) or list(taps) != sorted(taps):
            raise ValueError(f"{self.name}: taps {taps} are not an ordered subset of {self.taps}")
        keep = [self.taps.index(t) for t in taps]
        self.channels = [self.channels[i] for i in keep]
        self.reductions = [self.reductions[i] for i in keep]
        self.taps = taps
        self.features = self.features[: taps[-1] + 1]


class InvertedResidualV2(nn.Module):
    """Expand (1x1, unless t = 1) -> depthwise 3x3 -> linear 1x1 projection, residual when shapes allow."""

    def __init__(self, cin: int, cout: int, stride: int, t: int) -> None:
        super().__init__()
        hidden = int(round(cin * t))
        layers: list[nn.Module] = [conv_bn_act(cin, hidden, 1, act=nn.ReLU6)] if t != 1 else []
        layers += [
            conv_bn_act(hidden, hidden, 3, stride, groups=hidden, act=nn.ReLU6),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        """Block output, plus the input when the shortcut applies."""
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2Encoder(TappedTrunk):
    """MobileNetV2 (width 1.0) returning 16, 24, 32, 96, 320 channels at strides 2..32."""

    def __init__(self) -> None:
        super().__init__("mobilenet_v2", [16, 24, 32, 96, 320], [2, 4, 8, 16, 32])
        self.taps = V2_TAPS
        blocks: list[nn.Module] = [conv_bn_act(3, 32, 3, 2, act=nn.ReLU6)]
        cin = 32
        for t, c, n, s in V2_SETTING:
            for i in range(n):
                blocks.append(InvertedResidualV2(cin, c, s if i == 0 else 1, t))
                cin = c
        blocks.append(conv_bn_act(cin, 1280, 1, act=nn.ReLU6))  # loaded, not run
        self.features = nn.Sequential(*blocks)
        init_weights(self)


class SqueezeExcitation(nn.Module):
    """Channel gate: global average -> 1x1 ``fc1`` -> ReLU -> 1x1 ``fc2`` -> Hardsigmoid, times the input."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Scale each channel of ``x`` by its gate."""
        gate = self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1))))
        return x * F.hardsigmoid(gate)


class InvertedResidualV3(nn.Module):
    """MobileNetV3 bottleneck: [expand 1x1] -> depthwise kxk -> [SE] -> linear 1x1, residual when possible."""

    def __init__(self, cin: int, kernel: int, expanded: int, cout: int, se: bool, hswish: bool, stride: int) -> None:
        super().__init__()
        act = nn.Hardswish if hswish else nn.ReLU
        layers: list[nn.Module] = []
        if expanded != cin:
            layers.append(conv_bn_act(cin, expanded, 1, act=act, eps=V3_EPS))
        layers.append(conv_bn_act(expanded, expanded, kernel, stride, groups=expanded, act=act, eps=V3_EPS))
        if se:
            layers.append(SqueezeExcitation(expanded, make_divisible(expanded // 4)))
        layers.append(conv_bn_act(expanded, cout, 1, act=None, eps=V3_EPS))
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        """Block output, plus the input when the shortcut applies."""
        return x + self.block(x) if self.use_residual else self.block(x)


class MobileNetV3Encoder(TappedTrunk):
    """MobileNetV3 trunk (stem, bottlenecks, last 1x1 conv) returning five maps at strides 2..32."""

    def __init__(self, name: str, setting: tuple[tuple, ...], taps: tuple[int, ...]) -> None:
        blocks: list[nn.Module] = [conv_bn_act(3, 16, 3, 2, act=nn.Hardswish, eps=V3_EPS)]
        widths, cin = [16], 16
        for kernel, expanded, cout, se, hswish, stride in setting:
            blocks.append(InvertedResidualV3(cin, kernel, expanded, cout, se, hswish, stride))
            widths.append(cout)
            cin = cout
        blocks.append(conv_bn_act(cin, 6 * cin, 1, act=nn.Hardswish, eps=V3_EPS))
        widths.append(6 * cin)
        super().__init__(name, [widths[i] for i in taps], [2, 4, 8, 16, 32])
        self.taps = taps
        self.features = nn.Sequential(*blocks)
        init_weights(self)


def mobilenet_v2() -> MobileNetV2Encoder:
    """MobileNetV2, width multiplier 1.0."""
    return MobileNetV2Encoder()


def mobilenet_v3_large() -> MobileNetV3Encoder:
    """MobileNetV3-Large: maps 16, 24, 40, 112, 960 (``features`` 1, 3, 6, 12, 16)."""
    return MobileNetV3Encoder("mobilenet_v3_large", V3_LARGE, (1, 3, 6, 12, 16))


def mobilenet_v3_small() -> MobileNetV3Encoder:
    """MobileNetV3-Small: maps 16, 16, 24, 48, 576 (``features`` 0, 1, 3, 8, 12)."""
    return MobileNetV3Encoder("mobilenet_v3_small", V3_SMALL, (0, 1, 3, 8, 12))
