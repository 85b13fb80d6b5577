"""Naive reference forwards written from the architecture definitions with ``torch.nn.functional``.

Each takes a state dict in torchvision's published layout (see ``layouts.py``) and RGB in [0, 1]
and returns the feature maps the encoders promise, computed op by op (eval-mode BatchNorm).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F  # noqa: N812

from tests.models.encoders_ref.layouts import DENSENET, RESNET, v2_blocks, v3_blocks

SD = dict[str, Tensor]


def normalise(x: Tensor) -> Tensor:
    """ImageNet mean/std normalisation."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    return (x - mean) / std


def bn(sd: SD, p: str, x: Tensor, eps: float = 1e-5) -> Tensor:
    """Eval-mode batch norm with the running statistics under prefix ``p``."""
    return F.batch_norm(x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"],
                        training=False, eps=eps)


def densenet_ref(sd: SD, name: str, x: Tensor) -> list[Tensor]:
    """relu0, pool0, transition1, transition2 and norm5 of a DenseNet."""
    _, _, blocks = DENSENET[name]
    relu0 = F.relu(bn(sd, "features.norm0", F.conv2d(normalise(x), sd["features.conv0.weight"], stride=2, padding=3)))
    x = F.max_pool2d(relu0, 3, 2, 1)
    maps = [relu0, x]
    for b, n in enumerate(blocks, start=1):
        for i in range(1, n + 1):
            p = f"features.denseblock{b}.denselayer{i}"
            y = F.conv2d(F.relu(bn(sd, f"{p}.norm.1", x)), sd[f"{p}.conv.1.weight"])
            y = F.conv2d(F.relu(bn(sd, f"{p}.norm.2", y)), sd[f"{p}.conv.2.weight"], padding=1)
            x = torch.cat([x, y], dim=1)
        if b < len(blocks):
            t = f"features.transition{b}"
            x = F.avg_pool2d(F.conv2d(F.relu(bn(sd, f"{t}.norm", x)), sd[f"{t}.conv.weight"]), 2)
            if b <= 2:
                maps.append(x)
    return maps + [bn(sd, "features.norm5", x)]


def resnet_ref(sd: SD, name: str, x: Tensor) -> list[Tensor]:
    """Stem ReLU and the outputs of layer1..4 of a bottleneck ResNet."""
    x = F.relu(bn(sd, "bn1", F.conv2d(normalise(x), sd["conv1.weight"], stride=2, padding=3)))
    maps = [x]
    x = F.max_pool2d(x, 3, 2, 1)
    for s, n in enumerate(RESNET[name]):
        for j in range(n):
            p, stride = f"layer{s + 1}.{j}", 2 if (j == 0 and s > 0) else 1
            y = F.relu(bn(sd, f"{p}.bn1", F.conv2d(x, sd[f"{p}.conv1.weight"])))
            y = F.relu(bn(sd, f"{p}.bn2", F.conv2d(y, sd[f"{p}.conv2.weight"], stride=stride, padding=1)))
            y = bn(sd, f"{p}.bn3", F.conv2d(y, sd[f"{p}.conv3.weight"]))
            if j == 0:
                x = bn(sd, f"{p}.downsample.1", F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=stride))
            x = F.relu(y + x)
        maps.append(x)
    return maps


def mobilenet_v2_ref(sd: SD, x: Tensor) -> list[Tensor]:
    """Outputs of blocks 1, 3, 6, 13 and 17 of MobileNetV2 (ReLU6, linear bottlenecks)."""
    x = F.relu6(bn(sd, "features.0.1", F.conv2d(normalise(x), sd["features.0.0.weight"], stride=2, padding=1)))
    maps = []
    for idx, (cin, cout, stride, t) in enumerate(v2_blocks(), start=1):
        p, y, j = f"features.{idx}.conv", x, 0
        if t != 1:
            y = F.relu6(bn(sd, f"{p}.0.1", F.conv2d(y, sd[f"{p}.0.0.weight"])))
            j = 1
        y = F.conv2d(y, sd[f"{p}.{j}.0.weight"], stride=stride, padding=1, groups=y.shape[1])
        y = F.relu6(bn(sd, f"{p}.{j}.1", y))
        y = bn(sd, f"{p}.{j + 2}", F.conv2d(y, sd[f"{p}.{j + 1}.weight"]))
        x = x + y if stride == 1 and cin == cout else y
        if idx in (1, 3, 6, 13, 17):
            maps.append(x)
    return maps


def mobilenet_v3_ref(sd: SD, name: str, x: Tensor) -> list[Tensor]:
    """The five MobileNetV3 maps (large: blocks 1, 3, 6, 12, last conv; small: stem, 1, 3, 8, last conv)."""
    eps = 1e-3
    taps = (1, 3, 6, 12) if name == "mobilenet_v3_large" else (0, 1, 3, 8)
    x = F.hardswish(bn(sd, "features.0.1", F.conv2d(normalise(x), sd["features.0.0.weight"], stride=2, padding=1),
                       eps))
    maps = [x] if 0 in taps else []
    blocks = v3_blocks(name)
    for idx, (cin, k, e, c, sq, hs, stride) in enumerate(blocks, start=1):
        act = F.hardswish if hs else F.relu
        p, y, j = f"features.{idx}.block", x, 0
        if e != cin:
            y = act(bn(sd, f"{p}.0.1", F.conv2d(y, sd[f"{p}.0.0.weight"]), eps))
            j = 1
        y = act(bn(sd, f"{p}.{j}.1", F.conv2d(y, sd[f"{p}.{j}.0.weight"], stride=stride, padding=k // 2, groups=e),
                   eps))
        if sq:
            j += 1
            s = y.mean(dim=(2, 3), keepdim=True)
            s = F.relu(F.conv2d(s, sd[f"{p}.{j}.fc1.weight"], sd[f"{p}.{j}.fc1.bias"]))
            y = y * F.hardsigmoid(F.conv2d(s, sd[f"{p}.{j}.fc2.weight"], sd[f"{p}.{j}.fc2.bias"]))
        y = bn(sd, f"{p}.{j + 1}.1", F.conv2d(y, sd[f"{p}.{j + 1}.0.weight"]), eps)
        x = x + y if stride == 1 and cin == c else y
        if idx in taps:
            maps.append(x)
    last = len(blocks) + 1
    x = F.hardswish(bn(sd, f"features.{last}.1", F.conv2d(x, sd[f"features.{last}.0.weight"]), eps))
    return maps + [x]


def reference_maps(sd: SD, name: str, x: Tensor) -> list[Tensor]:
    """Dispatch to the reference forward for encoder ``name``."""
    if name in DENSENET:
        return densenet_ref(sd, name, x)
    if name in RESNET:
        return resnet_ref(sd, name, x)
    if name == "mobilenet_v2":
        return mobilenet_v2_ref(sd, x)
    return mobilenet_v3_ref(sd, name, x)
