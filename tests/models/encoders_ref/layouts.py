"""torchvision's published ImageNet V1 state dicts as ``{key: shape}``, written from the papers' tables.

Written independently of ``leve.models.encoders`` (no module is consulted): these are the files
as torchvision publishes them, old DenseNet key form (``denselayerN.norm.1.weight``) and
classifiers included, without ``num_batches_tracked`` unless asked.
"""

from __future__ import annotations

import math

import torch

Layout = dict[str, tuple[int, ...]]

DENSENET = {"densenet169": (64, 32, (6, 12, 32, 32)), "densenet161": (96, 48, (6, 12, 36, 24))}
RESNET = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3)}
# MobileNetV2 rows: expansion, width, repeats, first stride
V2_ROWS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
# MobileNetV3 rows: kernel, expanded width, output width, SE squeeze width (0: no SE), hard-swish, stride
V3_ROWS = {
    "mobilenet_v3_large": [
        (3, 16, 16, 0, False, 1), (3, 64, 24, 0, False, 2), (3, 72, 24, 0, False, 1),
        (5, 72, 40, 24, False, 2), (5, 120, 40, 32, False, 1), (5, 120, 40, 32, False, 1),
        (3, 240, 80, 0, True, 2), (3, 200, 80, 0, True, 1), (3, 184, 80, 0, True, 1),
        (3, 184, 80, 0, True, 1), (3, 480, 112, 120, True, 1), (3, 672, 112, 168, True, 1),
        (5, 672, 160, 168, True, 2), (5, 960, 160, 240, True, 1), (5, 960, 160, 240, True, 1),
    ],
    "mobilenet_v3_small": [
        (3, 16, 16, 8, False, 2), (3, 72, 24, 0, False, 2), (3, 88, 24, 0, False, 1),
        (5, 96, 40, 24, True, 2), (5, 240, 40, 64, True, 1), (5, 240, 40, 64, True, 1),
        (5, 120, 48, 32, True, 1), (5, 144, 48, 40, True, 1), (5, 288, 96, 72, True, 2),
        (5, 576, 96, 144, True, 1), (5, 576, 96, 144, True, 1),
    ],
}
V3_HIDDEN = {"mobilenet_v3_large": 1280, "mobilenet_v3_small": 1024}


def bn_keys(prefix: str, c: int, nbt: bool = False) -> Layout:
    """A BatchNorm's four tensors (five with ``num_batches_tracked``)."""
    out: Layout = {f"{prefix}.{s}": (c,) for s in ("weight", "bias", "running_mean", "running_var")}
    if nbt:
        out[f"{prefix}.num_batches_tracked"] = ()
    return out


def densenet_layout(name: str, nbt: bool = False) -> Layout:
    """DenseNet with the old ``norm.1``/``conv.1``/``norm.2``/``conv.2`` layer keys."""
    init, growth, blocks = DENSENET[name]
    mid = 4 * growth
    out: Layout = {"features.conv0.weight": (init, 3, 7, 7), **bn_keys("features.norm0", init, nbt)}
    c = init
    for b, n in enumerate(blocks, start=1):
        for i in range(n):
            p = f"features.denseblock{b}.denselayer{i + 1}"
            cin = c + i * growth
            out |= bn_keys(f"{p}.norm.1", cin, nbt)
            out[f"{p}.conv.1.weight"] = (mid, cin, 1, 1)
            out |= bn_keys(f"{p}.norm.2", mid, nbt)
            out[f"{p}.conv.2.weight"] = (growth, mid, 3, 3)
        c += n * growth
        if b < len(blocks):
            out |= bn_keys(f"features.transition{b}.norm", c, nbt)
            out[f"features.transition{b}.conv.weight"] = (c // 2, c, 1, 1)
            c //= 2
    out |= bn_keys("features.norm5", c, nbt)
    return out | {"classifier.weight": (1000, c), "classifier.bias": (1000,)}


def resnet_layout(name: str, nbt: bool = False) -> Layout:
    """Bottleneck ResNet with ``downsample.0/1`` on each stage's first block and ``fc``."""
    out: Layout = {"conv1.weight": (64, 3, 7, 7), **bn_keys("bn1", 64, nbt)}
    cin = 64
    for s, n in enumerate(RESNET[name]):
        w = 64 * 2**s
        for j in range(n):
            p = f"layer{s + 1}.{j}"
            out[f"{p}.conv1.weight"] = (w, cin, 1, 1)
            out |= bn_keys(f"{p}.bn1", w, nbt)
            out[f"{p}.conv2.weight"] = (w, w, 3, 3)
            out |= bn_keys(f"{p}.bn2", w, nbt)
            out[f"{p}.conv3.weight"] = (4 * w, w, 1, 1)
            out |= bn_keys(f"{p}.bn3", 4 * w, nbt)
            if j == 0:
                out[f"{p}.downsample.0.weight"] = (4 * w, cin, 1, 1)
                out |= bn_keys(f"{p}.downsample.1", 4 * w, nbt)
            cin = 4 * w
    return out | {"fc.weight": (1000, 2048), "fc.bias": (1000,)}


def v2_blocks() -> list[tuple[int, int, int, int]]:
    """MobileNetV2 inverted residuals as (input width, output width, stride, expansion)."""
    blocks, cin = [], 32
    for t, c, n, s in V2_ROWS:
        for i in range(n):
            blocks.append((cin, c, s if i == 0 else 1, t))
            cin = c
    return blocks


def mobilenet_v2_layout(name: str = "mobilenet_v2", nbt: bool = False) -> Layout:
    """MobileNetV2: ``features.0`` stem, ``features.1..17`` blocks, ``features.18`` 1x1 to 1280."""
    out: Layout = {"features.0.0.weight": (32, 3, 3, 3), **bn_keys("features.0.1", 32, nbt)}
    for idx, (cin, cout, _, t) in enumerate(v2_blocks(), start=1):
        p, h, j = f"features.{idx}.conv", cin * t, 0
        if t != 1:
            out[f"{p}.0.0.weight"] = (h, cin, 1, 1)
            out |= bn_keys(f"{p}.0.1", h, nbt)
            j = 1
        out[f"{p}.{j}.0.weight"] = (h, 1, 3, 3)
        out |= bn_keys(f"{p}.{j}.1", h, nbt)
        out[f"{p}.{j + 1}.weight"] = (cout, h, 1, 1)
        out |= bn_keys(f"{p}.{j + 2}", cout, nbt)
    out["features.18.0.weight"] = (1280, 320, 1, 1)
    out |= bn_keys("features.18.1", 1280, nbt)
    return out | {"classifier.1.weight": (1000, 1280), "classifier.1.bias": (1000,)}


def v3_blocks(name: str) -> list[tuple[int, int, int, int, int, bool, int]]:
    """MobileNetV3 blocks as (input width, kernel, expanded, output, squeeze, hard-swish, stride)."""
    blocks, cin = [], 16
    for k, e, c, sq, hs, s in V3_ROWS[name]:
        blocks.append((cin, k, e, c, sq, hs, s))
        cin = c
    return blocks


def mobilenet_v3_layout(name: str, nbt: bool = False) -> Layout:
    """MobileNetV3: stem, ``features.N.block.M`` bottlenecks (SE as ``fc1``/``fc2``), last 1x1, classifier."""
    out: Layout = {"features.0.0.weight": (16, 3, 3, 3), **bn_keys("features.0.1", 16, nbt)}
    blocks = v3_blocks(name)
    for idx, (cin, k, e, c, sq, _, _) in enumerate(blocks, start=1):
        p, j = f"features.{idx}.block", 0
        if e != cin:
            out[f"{p}.0.0.weight"] = (e, cin, 1, 1)
            out |= bn_keys(f"{p}.0.1", e, nbt)
            j = 1
        out[f"{p}.{j}.0.weight"] = (e, 1, k, k)
        out |= bn_keys(f"{p}.{j}.1", e, nbt)
        if sq:
            j += 1
            out |= {f"{p}.{j}.fc1.weight": (sq, e, 1, 1), f"{p}.{j}.fc1.bias": (sq,),
                    f"{p}.{j}.fc2.weight": (e, sq, 1, 1), f"{p}.{j}.fc2.bias": (e,)}
        out[f"{p}.{j + 1}.0.weight"] = (c, e, 1, 1)
        out |= bn_keys(f"{p}.{j + 1}.1", c, nbt)
    last, width, hidden = len(blocks) + 1, 6 * blocks[-1][3], V3_HIDDEN[name]
    out[f"features.{last}.0.weight"] = (width, blocks[-1][3], 1, 1)
    out |= bn_keys(f"features.{last}.1", width, nbt)
    return out | {"classifier.0.weight": (hidden, width), "classifier.0.bias": (hidden,),
                  "classifier.3.weight": (1000, hidden), "classifier.3.bias": (1000,)}


def published_layout(name: str, nbt: bool = False) -> Layout:
    """The published file's keys and shapes for encoder ``name``."""
    if name in DENSENET:
        return densenet_layout(name, nbt)
    if name in RESNET:
        return resnet_layout(name, nbt)
    if name == "mobilenet_v2":
        return mobilenet_v2_layout(name, nbt)
    return mobilenet_v3_layout(name, nbt)


def is_classifier(key: str) -> bool:
    """Classifier tensors, which an encoder does not hold."""
    return key.startswith(("classifier.", "fc."))


def trunk_params(layout: Layout) -> int:
    """Parameters of the layout without classifier (BatchNorm running statistics are buffers)."""
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    return sum(math.prod(s) for k, s in layout.items() if not is_classifier(k) and not k.endswith(buffers))


def random_state_dict(layout: Layout, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random values of the layout's shapes: He-scaled convs, BN statistics far from identity."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, shape in layout.items():
        if key.endswith("num_batches_tracked"):
            out[key] = torch.randint(0, 10**6, shape, generator=g)
        elif key.endswith("running_var"):
            out[key] = torch.rand(shape, generator=g) * 1.5 + 0.5
        elif key.endswith(("running_mean", "bias")):
            out[key] = torch.randn(shape, generator=g) * 0.2
        elif len(shape) == 1:  # BatchNorm scale
            out[key] = torch.rand(shape, generator=g) + 0.5
        else:
            fan_in = math.prod(shape[1:])
            out[key] = torch.randn(shape, generator=g) * math.sqrt(2.0 / fan_in)
    return out
