"""Each loss term against an independent computation (numpy loops, closed forms)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from leve.train import losses
from tests.explicit import distilling, supervising


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.tensor(a, dtype=torch.float32)[None, None]


def test_depth_l1_hand_worked_and_masked():
    out = _t(np.array([[1.0, 2.0], [3.0, 4.0]]))
    tgt = _t(np.array([[2.0, 2.0], [1.0, 10.0]]))
    assert losses.depth_l1(out, tgt).item() == pytest.approx((1 + 0 + 2 + 6) / 4)
    mask = _t(np.array([[1, 1], [1, 0]])).bool()
    assert losses.depth_l1(out, tgt, mask).item() == pytest.approx((1 + 0 + 2) / 3)


def test_gradient_of_constant_map_is_zero_and_hand_worked_value():
    const = torch.full((2, 1, 5, 6), 3.7)
    assert losses.gradient_l1(const, torch.full_like(const, -2.0)).item() == 0.0
    # out has a horizontal ramp (+1 per column), target is flat: |gx| = 1 on 3x2 of the 3x3
    # differences-with-padding grid, gy = 0.
    out = _t(np.tile(np.arange(3.0), (3, 1)))
    tgt = torch.zeros_like(out)
    gx_mean, gy_mean = 6 / 9, 0.0
    assert losses.gradient_l1(out, tgt).item() == pytest.approx(gx_mean + gy_mean)


def _numpy_gradient_loss(o: np.ndarray, t: np.ndarray, m: np.ndarray) -> float:
    """Independent loop implementation of the masked forward-difference gradient loss."""
    h, w = o.shape
    sx = nx = sy = ny = 0.0
    for i in range(h):
        for j in range(w):
            if j + 1 < w and m[i, j] and m[i, j + 1]:
                sx += abs((o[i, j + 1] - o[i, j]) - (t[i, j + 1] - t[i, j]))
                nx += 1
            if i + 1 < h and m[i, j] and m[i + 1, j]:
                sy += abs((o[i + 1, j] - o[i, j]) - (t[i + 1, j] - t[i, j]))
                ny += 1
    return sx / nx + sy / ny


def test_masked_gradient_matches_loop():
    rng = np.random.default_rng(0)
    o, t = rng.normal(size=(7, 9)), rng.normal(size=(7, 9))
    m = rng.random((7, 9)) > 0.3
    got = losses.gradient_l1(_t(o), _t(t), _t(m).bool()).item()
    assert got == pytest.approx(_numpy_gradient_loss(o, t, m), rel=1e-5)


def _numpy_ssim_at(a: np.ndarray, b: np.ndarray, i: int, j: int, L: float) -> float:
    """SSIM of the 11x11 window whose top-left corner is (i, j), from the definition."""
    x = np.arange(11) - 5
    g = np.exp(-(x**2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    pa, pb = a[i : i + 11, j : j + 11], b[i : i + 11, j : j + 11]
    ma, mb = (w * pa).sum(), (w * pb).sum()
    va, vb = (w * (pa - ma) ** 2).sum(), (w * (pb - mb) ** 2).sum()
    cov = (w * (pa - ma) * (pb - mb)).sum()
    c1, c2 = (0.01 * L) ** 2, (0.03 * L) ** 2
    return ((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2))


def test_ssim_identical_is_one_and_matches_definition():
    rng = np.random.default_rng(1)
    a = rng.uniform(1, 100, (14, 15))
    b = a + rng.normal(0, 10, a.shape)
    assert losses.ssim_map(_t(a), _t(a)).min().item() == pytest.approx(1.0, abs=1e-5)
    assert losses.ssim_loss(_t(a), _t(a)).item() == pytest.approx(0.0, abs=1e-5)
    smap = losses.ssim_map(_t(a), _t(b)).double().numpy()[0, 0]
    assert smap.shape == (4, 5)
    for i, j in [(0, 0), (3, 4), (2, 1)]:
        assert smap[i, j] == pytest.approx(_numpy_ssim_at(a, b, i, j, losses.TARGET_RANGE), rel=1e-4)


def test_ssim_mask_drops_windows_touching_invalid_pixels():
    rng = np.random.default_rng(2)
    a, b = rng.uniform(1, 100, (12, 24)), rng.uniform(1, 100, (12, 24))
    mask = np.ones((12, 24), bool)
    mask[:, 12:] = False  # windows with top-left column j cover columns j..j+10: only j <= 1 stay valid
    smap = losses.ssim_map(_t(a), _t(b)).numpy()[0, 0]
    expected = np.clip((1 - smap[:, :2]) / 2, 0, 1).mean()
    assert losses.ssim_loss(_t(a), _t(b), _t(mask).bool()).item() == pytest.approx(expected, rel=1e-5)


def test_invalid_pixels_do_not_change_the_student_loss():
    rng = np.random.default_rng(3)
    out, tgt = rng.uniform(1, 100, (16, 16)), rng.uniform(1, 100, (16, 16))
    mask = np.ones((16, 16), bool)
    mask[10:, 10:] = False
    garbage = tgt.copy()
    garbage[~mask] = 1e6
    a = losses.student_loss(_t(out), _t(tgt), _t(mask).bool(), **supervising())
    b = losses.student_loss(_t(out), _t(garbage), _t(mask).bool(), **supervising())
    for key in a:
        assert a[key].item() == pytest.approx(b[key].item(), rel=1e-6), key


def test_student_loss_weights():
    rng = np.random.default_rng(4)
    out, tgt = _t(rng.uniform(1, 100, (16, 16))), _t(rng.uniform(1, 100, (16, 16)))
    terms = losses.student_loss(out, tgt, **supervising())
    expected = 0.1 * losses.depth_l1(out, tgt) + losses.gradient_l1(out, tgt) + losses.ssim_loss(out, tgt)
    assert terms["student"].item() == pytest.approx(expected.item())


def test_kd_l1_normalises_per_image():
    out = torch.stack([_t(np.array([[1.0, 2.0], [4.0, 4.0]]))[0], _t(np.array([[10.0, 0.0], [5.0, 5.0]]))[0]])
    teacher = torch.stack([_t(np.array([[0.5, 0.5], [1.0, 1.0]]))[0], _t(np.array([[2.0, 0.0], [1.0, 1.0]]))[0]])
    # image 0: out/4 = [.25 .5 1 1], t/1 = [.5 .5 1 1] -> diffs .25 0 0 0
    # image 1: out/10 = [1 0 .5 .5], t/2 = [1 0 .5 .5] -> 0
    assert losses.kd_l1(out, teacher).item() == pytest.approx(0.25 / 8)
    assert losses.kd_l1(out * 7.0, teacher).item() == pytest.approx(0.25 / 8, rel=1e-6)  # scale-free


def test_ssi_recovers_scale_and_shift():
    rng = np.random.default_rng(5)
    teacher = torch.tensor(rng.random((2, 1, 8, 8)), dtype=torch.float64)
    out = (teacher - torch.tensor([0.3, -0.1]).view(2, 1, 1, 1)) / torch.tensor([0.5, 2.0]).view(2, 1, 1, 1)
    scale, shift = losses.align_scale_shift(out, teacher)
    assert scale.flatten().tolist() == pytest.approx([0.5, 2.0])
    assert shift.flatten().tolist() == pytest.approx([0.3, -0.1])
    assert losses.kd_ssi(out, teacher).item() == pytest.approx(0.0, abs=1e-12)
    # against numpy's least squares on a noisy pair
    noisy = out + torch.tensor(rng.normal(0, 0.05, out.shape))
    s, t = losses.align_scale_shift(noisy, teacher)
    for k in range(2):
        a = np.stack([noisy[k].flatten().numpy(), np.ones(64)], 1)
        (s_ref, t_ref), *_ = np.linalg.lstsq(a, teacher[k].flatten().numpy(), rcond=None)
        assert (s[k].item(), t[k].item()) == pytest.approx((s_ref, t_ref), rel=1e-9)


def _naive_positive_ssi(out: np.ndarray, teacher: np.ndarray) -> float:
    """kd_ssi written out with numpy: per image, least squares of the teacher on [out, 1]; a scale at or
    below 0 gives way to the best constant (the teacher's mean); the mean absolute residual over the
    teacher's mean absolute deviation; the mean over images."""
    losses_ = []
    for x, y in zip(out.reshape(len(out), -1), teacher.reshape(len(teacher), -1), strict=True):
        (s, t), *_ = np.linalg.lstsq(np.stack([x, np.ones_like(x)], 1), y, rcond=None)
        if s <= 0:
            s, t = 0.0, y.mean()
        losses_.append(np.abs(s * x + t - y).mean() / np.abs(y - y.mean()).mean())
    return float(np.mean(losses_))


def test_ssi_never_fits_an_output_that_runs_the_wrong_way():
    rng = np.random.default_rng(11)
    teacher = torch.tensor(rng.random((3, 1, 8, 8)), dtype=torch.float64)
    # an exact inverse of the teacher (near read as far): a free sign would fit it perfectly (loss 0)
    flipped = 5.0 - 3.0 * teacher
    assert losses.kd_ssi(flipped, teacher).item() == pytest.approx(1.0, rel=1e-9)  # the best constant's cost
    assert losses.kd_ssi(2.0 * teacher + 1.0, teacher).item() == pytest.approx(0.0, abs=1e-12)
    # a batch of right, inverted and noisy outputs against the numpy reading
    out = torch.stack([teacher[0] * 0.5, 1.0 - teacher[1], teacher[2] + torch.tensor(rng.normal(0, 0.3, (1, 8, 8)))])
    assert losses.kd_ssi(out, teacher).item() == pytest.approx(_naive_positive_ssi(out.numpy(), teacher.numpy()),
                                                               rel=1e-9)
    # and the inverted output is not pulled further the wrong way: no gradient through a scale held at 0
    grad_out = flipped.clone().requires_grad_(True)
    losses.kd_ssi(grad_out, teacher).backward()
    assert grad_out.grad is not None and float(grad_out.grad.abs().max()) == 0.0


def test_distillation_mix_and_eps_zero_needs_no_teacher():
    rng = np.random.default_rng(6)
    out, tgt = _t(rng.uniform(1, 100, (16, 16))), _t(rng.uniform(1, 100, (16, 16)))
    teacher = _t(rng.random((16, 16)))
    plain = losses.distillation_loss(out, tgt, None, None, **distilling(), eps=0.0)
    assert "kd" not in plain and plain["loss"].item() == pytest.approx(plain["student"].item())
    mixed = losses.distillation_loss(out, tgt, None, teacher, **distilling(), eps=0.25, kd="l1")
    expected = 0.75 * plain["student"].item() + 0.25 * losses.kd_l1(out, teacher).item()
    assert mixed["loss"].item() == pytest.approx(expected)
    with pytest.raises(ValueError):
        losses.distillation_loss(out, tgt, None, None, **distilling(), eps=0.1)


def test_gaussian_window_is_normalised():
    w = losses.gaussian_window()
    assert w.shape == (1, 1, 11, 11) and w.sum().item() == pytest.approx(1.0)
    assert w[0, 0, 5, 5].item() / w[0, 0, 5, 6].item() == pytest.approx(math.exp(1 / (2 * 1.5**2)), rel=1e-5)


def test_ssi_is_in_units_of_the_teachers_spread():
    # one 1x4 image: output [0, 1, 2, 4] aligned to teacher [0, 1, 1, 2] by least squares
    out = torch.tensor([0.0, 1.0, 2.0, 4.0], dtype=torch.float64).view(1, 1, 1, 4)
    teacher = torch.tensor([0.0, 1.0, 1.0, 2.0], dtype=torch.float64).view(1, 1, 1, 4)
    a = np.stack([out.flatten().numpy(), np.ones(4)], 1)
    (s, t), *_ = np.linalg.lstsq(a, teacher.flatten().numpy(), rcond=None)
    residual = np.abs(s * out.flatten().numpy() + t - teacher.flatten().numpy()).mean()
    spread = np.abs(teacher.flatten().numpy() - 1.0).mean()  # mean 1, mean absolute deviation 0.5
    assert losses.kd_ssi(out, teacher).item() == pytest.approx(residual / spread, rel=1e-9)
    # a teacher map with another scale and a large offset (what max-normalising an offset disparity gives)
    assert losses.kd_ssi(out, 0.01 * teacher + 0.98).item() == pytest.approx(residual / spread, rel=1e-6)
