"""Validation of a relative student aligns its output to the ground truth with a scale held at 0 or
above: an anti-correlated output is read as the best constant, never flipped into a right-looking map."""

from __future__ import annotations

import numpy as np
import torch

from leve.train.loop import _aligned_relative

MAX_DEPTH = 10.0


def _scene(seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    gt = rng.uniform(0.5, 8.0, size=(2, 1, 12, 16))
    gt[0, 0, :2, :3] = 0.0  # invalid pixels: left out of the fit
    return torch.from_numpy(gt).float()


def _naive(out: np.ndarray, gt: np.ndarray, positive: bool) -> np.ndarray:
    """Per image: least squares of ``s*out + t`` to ``1/gt`` on gt > 0 (numpy lstsq), s held >= 0 when
    ``positive``; read back as depth clipped to [max/100, max]."""
    res = np.empty_like(out, dtype=np.float64)
    for b in range(out.shape[0]):
        v = gt[b] > 0
        a = np.stack([out[b][v], np.ones(v.sum())], 1).astype(np.float64)
        y = 1.0 / gt[b][v].astype(np.float64)
        s, t = np.linalg.lstsq(a, y, rcond=None)[0]
        if positive and s <= 0:
            s, t = 0.0, y.mean()
        disp = np.maximum(s * out[b] + t, 1.0 / MAX_DEPTH)
        res[b] = np.clip(1.0 / disp, MAX_DEPTH / 100, MAX_DEPTH)
    return res


def test_a_positively_related_output_is_aligned_as_before():
    gt = _scene()
    out = 3.0 * torch.where(gt > 0, 1.0 / gt.clamp(min=1e-6), torch.zeros_like(gt)) + 0.5
    got = _aligned_relative(out, gt, MAX_DEPTH).numpy()
    want = _naive(out.numpy(), gt.numpy(), positive=True)
    np.testing.assert_allclose(got, want, rtol=1e-4)
    valid = gt.numpy() > 0
    np.testing.assert_allclose(got[valid], gt.numpy()[valid], rtol=1e-3)  # the exact affine is recovered


def test_an_inverted_output_is_read_as_the_best_constant_not_flipped():
    gt = _scene(1)
    out = -2.0 * torch.where(gt > 0, 1.0 / gt.clamp(min=1e-6), torch.zeros_like(gt))  # near and far swapped
    got = _aligned_relative(out, gt, MAX_DEPTH).numpy()
    np.testing.assert_allclose(got, _naive(out.numpy(), gt.numpy(), positive=True), rtol=1e-4)
    for b in range(gt.shape[0]):  # one value per image: 1 / mean(1/gt) over its valid pixels
        v = gt.numpy()[b] > 0
        np.testing.assert_allclose(got[b], 1.0 / np.mean(1.0 / gt.numpy()[b][v]), rtol=1e-4)
    unconstrained = _naive(out.numpy(), gt.numpy(), positive=False)
    valid = gt.numpy() > 0
    assert np.abs(unconstrained[valid] - gt.numpy()[valid]).max() < 1e-3  # the flip this refuses would look perfect
