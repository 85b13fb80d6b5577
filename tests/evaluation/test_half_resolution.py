"""A network whose output has half the input resolution (DenseDepth's) is evaluated after its output
is upsampled x2 (bilinear) to the input size, before it is read as depth."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from leve.evaluation.protocols import get_protocol
from leve.evaluation.runner import evaluate
from leve.metrics import compute_metrics
from tests.evaluation.conftest import HEIGHT, WIDTH, ColumnRampNet, as_input, split_of
from tests.explicit import evaluation


class HalfResolutionNet(torch.nn.Module):
    """:class:`ColumnRampNet`'s output averaged over 2x2 blocks: (B, 1, H/2, W/2)."""

    output_stride = 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(ColumnRampNet()(x), 2)


def test_half_resolution_output_is_upsampled_then_read_as_depth(eval_workspace):
    split = split_of(eval_workspace)
    protocol = get_protocol("standard", "synthetic", 10.0, align="none", flip=False)
    result = evaluate(HalfResolutionNet(), split, protocol, (HEIGHT, WIDTH), 10.0, **evaluation(), show_progress=False)
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


def _bilinear_x2(a: np.ndarray) -> np.ndarray:
    """(h, w) -> (2h, 2w) bilinear at pixel centres (output i reads input (i + 0.5) / 2 - 0.5), edges
    held: separable ``np.interp`` along rows then columns (independent of torch)."""
    h, w = a.shape
    rows, cols = (np.arange(2 * h) + 0.5) / 2 - 0.5, (np.arange(2 * w) + 0.5) / 2 - 0.5
    by_rows = np.stack([np.interp(rows, np.arange(h), a[:, j]) for j in range(w)], axis=1)
    return np.stack([np.interp(cols, np.arange(w), by_rows[i]) for i in range(2 * h)])


def test_densedepth_protocol_reproduces_densedepths_evaluation(eval_workspace):
    """DenseDepth's evaluation in numpy: depth clip(10/out, 0.1, 10) at half resolution, upsampled x2
    *as depth*, averaged with the un-mirrored depth of the mirrored image, no mask, REL divided by the
    prediction, every metric over the concatenated pixels of the split."""
    split = split_of(eval_workspace)
    protocol = get_protocol("densedepth", "synthetic", 10.0)
    result = evaluate(HalfResolutionNet(), split, protocol, (HEIGHT, WIDTH), 10.0, **evaluation(), show_progress=False)
    assert len(result.scored) == len(split) and not any(s.flipped for s in result.scored)
    preds, gts = [], []
    for i in range(len(split)):
        x, gt = as_input(split.rgb(i)), split.depth(i).astype(np.float64)
        out = HalfResolutionNet()(x)[0, 0].double().numpy()
        out_flip = HalfResolutionNet()(x.flip(-1))[0, 0].double().numpy()
        depth = _bilinear_x2(np.clip(10.0 / out, 0.1, 10.0))
        depth_flip = _bilinear_x2(np.clip(10.0 / out_flip, 0.1, 10.0))[:, ::-1]
        assert not np.allclose(depth, np.clip(10.0 / _bilinear_x2(out), 0.1, 10.0))   # depth upsampled, not the output
        pred = 0.5 * depth + 0.5 * depth_flip
        ok = gt > 0   # no validity mask: only pixels without a measurement are left out
        preds.append(pred[ok])
        gts.append(gt[ok])
    p, g = np.concatenate(preds), np.concatenate(gts)
    ratio = np.maximum(p / g, g / p)
    want = {"abs_rel": np.mean(np.abs(p - g) / p), "rmse": np.sqrt(np.mean((p - g) ** 2)),
            "log10": np.mean(np.abs(np.log10(p) - np.log10(g))),
            "d1": np.mean(ratio < 1.25), "d2": np.mean(ratio < 1.25**2), "d3": np.mean(ratio < 1.25**3)}
    agg = result.aggregate("student")
    assert agg.aggregation == "pooled" and agg.pixels == p.size and agg.count == len(split)
    assert {k: agg.means[k] for k in want} == pytest.approx(want, rel=1e-5)
    per_image = np.mean([s.metrics["rmse"] for s in result.scored])
    assert abs(per_image - agg.means["rmse"]) > 1e-6   # pooled, not the mean of the images' RMSEs
