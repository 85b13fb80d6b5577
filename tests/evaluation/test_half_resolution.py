"""A network whose output has half the input resolution (DenseDepth's) is evaluated after its output
is upsampled x2 (bilinear) to the input size, before it is read as depth."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from leve.evaluation import get_protocol
from leve.evaluation.metrics import compute_metrics
from leve.evaluation.runner import evaluate
from tests.evaluation.conftest import HEIGHT, WIDTH, ColumnRampNet, as_input, split_of


class HalfResolutionNet(torch.nn.Module):
    """:class:`ColumnRampNet`'s output averaged over 2x2 blocks: (B, 1, H/2, W/2)."""

    output_stride = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(ColumnRampNet()(x), 2)


def test_half_resolution_output_is_upsampled_then_read_as_depth(eval_workspace):
    split = split_of(eval_workspace)
    protocol = get_protocol("standard", "synthetic", 10.0, flip=False)
    result = evaluate(HalfResolutionNet(), split, protocol, (HEIGHT, WIDTH), 10.0, show_progress=False)
    assert len(result.scored) == len(split)
    for i in range(len(split)):
        x, gt = as_input(split.rgb(i)), split.depth(i).astype(np.float64)
        out = HalfResolutionNet()(x)
        assert out.shape[-2:] == (HEIGHT // 2, WIDTH // 2)
        up = F.interpolate(out, size=(HEIGHT, WIDTH), mode="bilinear", align_corners=False)
        depth = np.clip((10.0 / up)[0, 0].double().numpy(), 0.1, 10.0)  # the output -> depth, at the input size
        valid = (gt > 1e-3) & (gt < 10.0)
        assert result.scored[i].metrics == pytest.approx(compute_metrics(depth, gt, valid), rel=1e-6)
    assert result.examples == [] and result.aggregate("student").count == len(split)
