"""Network output <-> metric depth, checked against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from leve.models.depth import depth_range, depth_to_output, output_to_depth


def test_known_values():
    out = torch.tensor([1.0, 2.0, 4.0, 100.0, 200.0, 0.5])
    # 10/1, 10/2, 10/4, 10/100, clamp(0.05)->0.1, clamp(20)->10
    assert torch.allclose(output_to_depth(out, 10.0), torch.tensor([10.0, 5.0, 2.5, 0.1, 0.1, 10.0]))
    assert depth_range(80.0) == (0.8, 80.0)


def test_round_trip_in_range_and_target_bounds():
    depth = torch.linspace(0.1, 10.0, 101)
    assert torch.allclose(output_to_depth(depth_to_output(depth, 10.0), 10.0), depth, rtol=1e-6)
    target = depth_to_output(torch.tensor([0.0, 0.05, 3.0, 12.0]), 10.0)
    assert torch.allclose(target, torch.tensor([100.0, 100.0, 10.0 / 3.0, 1.0]))


@pytest.mark.parametrize("max_depth", [1.0, 10.0, 80.0])
def test_numpy_matches_torch(max_depth):
    rng = np.random.default_rng(0)
    out = rng.uniform(-5, 150, size=(4, 5)).astype(np.float32)
    out[0, 0] = 0.0
    np_depth = output_to_depth(out, max_depth)
    assert np_depth.dtype == np.float32
    np.testing.assert_allclose(np_depth, output_to_depth(torch.from_numpy(out), max_depth).numpy(), rtol=1e-6)
    assert np_depth.min() >= max_depth / 100 and np_depth.max() <= max_depth
    assert np_depth[0, 0] == max_depth  # +0 output reads as the far bound
    depth = rng.uniform(0, 2 * max_depth, size=(3, 3)).astype(np.float32)
    np.testing.assert_allclose(depth_to_output(depth, max_depth),
                               depth_to_output(torch.from_numpy(depth), max_depth).numpy(), rtol=1e-6)
