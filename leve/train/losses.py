"""Training losses (thesis chapter 7, DESIGN §5). Every term works on (B, 1, H, W) tensors.

The student is trained on the target ``max_depth / depth`` (:func:`leve.models.depth.depth_to_output`),
which lies in [1, 100]. ``mask`` marks valid ground-truth pixels (depth > 0); invalid pixels
never contribute to a student term. Distillation terms compare the student with the cached
teacher map (relative disparity, normalised to [0, 1] per image) and use every pixel; ``metric``
(:func:`kd_metric`) compares it with a metric teacher's depth itself, nothing normalised.

Three choices of the thesis's public code (``andrei-dragan/Leve``) are offered by name beside
leve's defaults, for reproduction (``train.loss.ssim``, ``train.loss.invalid``, ``train.kd.norm``):
its SSIM term (:func:`ssim_loss_thesis_code`), its unmasked zero targets
(:func:`training_target`) and its batch-normalised distillation (:func:`kd_l1_batch`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from leve.models.depth import MIN_DEPTH_FRACTION, depth_to_output
from leve.train.config import INVALID_MODES, KD_NORMS, SSIM_MODES

#: the dynamic range L of the target max_depth/depth (it lies in [1, 1/MIN_DEPTH_FRACTION])
TARGET_RANGE = 1.0 / MIN_DEPTH_FRACTION
SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
DEPTH_WEIGHT = 0.1
KD_SHIFT_EPS = 1e-6  # what the thesis code adds to the teacher map after shifting it by its minimum


@dataclass(frozen=True)
class LossOptions:
    """The named loss choices (``train.loss.ssim``, ``train.loss.invalid``, ``train.kd.norm``; their values:
    params.yaml's, which the trainer passes)."""

    ssim: str
    invalid: str
    kd_norm: str


def _masked_mean(values: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``values`` over ``mask`` (all pixels when None); 0 when nothing is valid."""
    if mask is None:
        return values.mean()
    mask = mask.to(values.dtype)
    return (values * mask).sum() / mask.sum().clamp(min=1.0)


def depth_l1(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Eq. 7.2: mean absolute difference ``|output_p - target_p|`` over valid pixels."""
    return _masked_mean((output - target).abs(), mask)


def image_gradients(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward differences ``(g_y, g_x)``: ``x[i+1, j] - x[i, j]`` and ``x[i, j+1] - x[i, j]``,
    zero in the last row (g_y) and last column (g_x), so both keep the input's shape."""
    gy = F.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
    gx = F.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1, 0, 0))
    return gy, gx


def _gradient_mask(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A difference is valid where both of its pixels are valid."""
    m = mask.to(torch.bool)
    my = F.pad(m[..., 1:, :] & m[..., :-1, :], (0, 0, 0, 1))
    mx = F.pad(m[..., :, 1:] & m[..., :, :-1], (0, 1, 0, 0))
    return my, mx


def gradient_l1(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Eqs. 7.3-7.5: ``mean |g_x(out) - g_x(target)| + mean |g_y(out) - g_y(target)|``.

    Each mean runs over the differences whose two pixels are valid (all when ``mask`` is None).
    """
    oy, ox = image_gradients(output)
    ty, tx = image_gradients(target)
    if mask is None:
        return (oy - ty).abs().mean() + (ox - tx).abs().mean()
    my, mx = _gradient_mask(mask)
    return _masked_mean((oy - ty).abs(), my) + _masked_mean((ox - tx).abs(), mx)


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Normalised 2-D Gaussian kernel of shape (1, 1, size, size)."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None].float()


def ssim_map(a: torch.Tensor, b: torch.Tensor, data_range: float = TARGET_RANGE,
             size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA, padding: int = 0) -> torch.Tensor:
    """Per-window SSIM (Wang et al. 2004) with a Gaussian window, 'valid' positions only
    (``padding = 0``) or with ``padding`` zeros around the image (``size // 2``: 'same').

    ``C1 = (0.01 L)^2`` and ``C2 = (0.03 L)^2`` with ``L = data_range``; the result has shape
    (B, 1, H - size + 1 + 2 padding, W - size + 1 + 2 padding).
    """
    w = gaussian_window(size, sigma).to(a)

    def blur(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, w, padding=padding)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))


def ssim_loss(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
              data_range: float = TARGET_RANGE) -> torch.Tensor:
    """Eq. 7.6: ``(1 - SSIM) / 2`` clipped to [0, 1], averaged over windows whose pixels are all
    valid (an 11x11 window touching an invalid pixel is left out)."""
    loss = ((1 - ssim_map(output, target, data_range)) / 2).clamp(0, 1)
    if mask is None:
        return loss.mean()
    inside = -F.max_pool2d(-mask.to(output.dtype), SSIM_WINDOW, stride=1)  # 1 where the whole window is valid
    return _masked_mean(loss, inside)


def ssim_loss_thesis_code(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
                          max_depth: float = 10.0) -> torch.Tensor:
    """The SSIM term as the thesis's public code computes it: dynamic range ``L = max_depth`` (not
    the target's range 100), zero 'same' padding (every pixel is a window centre, the windows at the
    border reach into zeros), SSIM averaged over the image first, then ``1 - SSIM / 2`` clipped to
    [0, 1] (eq. 7.6 up to the constant 1/2, but the clip acts on the mean, not per window). With a
    ``mask``, the mean runs over the positions whose window holds no invalid pixel of the image
    (the padding is not invalid)."""
    pad = SSIM_WINDOW // 2
    values = ssim_map(output, target, float(max_depth), padding=pad)
    inside = None
    if mask is not None:  # max_pool2d pads with -inf: the padding never counts as invalid
        inside = -F.max_pool2d(-mask.to(output.dtype), SSIM_WINDOW, stride=1, padding=pad)
    return (1 - 0.5 * _masked_mean(values, inside)).clamp(0, 1)


def training_target(depth: torch.Tensor, max_depth: float, invalid: str) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(target, mask)`` of metric ``depth`` (0 = no measurement): ``mask`` (leve) the target
    ``max_depth / depth`` with the mask ``depth > 0``; ``zero-target`` (the thesis code) the same
    target set to 0 where depth is 0 and no mask, so those pixels are scored against 0."""
    target = depth_to_output(depth, max_depth)
    if invalid == "mask":
        return target, depth > 0
    if invalid == "zero-target":
        return torch.where(depth > 0, target, torch.zeros_like(target)), None
    raise ValueError(f"invalid must be one of {INVALID_MODES}, got {invalid!r}")


def student_loss(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None, *,
                 ssim: str, max_depth: float = 10.0) -> dict[str, torch.Tensor]:
    """Eq. 7.7: ``0.1 L_depth + L_grad + L_SSIM``; returns every term and their sum (``student``).
    ``ssim``: ``leve`` (:func:`ssim_loss`) or ``thesis-code`` (:func:`ssim_loss_thesis_code`, whose
    range is ``max_depth``)."""
    if ssim not in SSIM_MODES:
        raise ValueError(f"ssim must be one of {SSIM_MODES}, got {ssim!r}")
    terms = {
        "depth_l1": depth_l1(output, target, mask),
        "gradient": gradient_l1(output, target, mask),
        "ssim": ssim_loss(output, target, mask) if ssim == "leve" else
        ssim_loss_thesis_code(output, target, mask, max_depth),
    }
    terms["student"] = DEPTH_WEIGHT * terms["depth_l1"] + terms["gradient"] + terms["ssim"]
    return terms


def _per_image_max(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1).amax(1).clamp(min=1e-6).view(-1, *([1] * (x.dim() - 1)))


def kd_l1(output: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Eq. 7.8: L1 between ``output / max(output)`` and ``teacher / max(teacher)``, per image."""
    return (output / _per_image_max(output) - teacher / _per_image_max(teacher)).abs().mean()


def kd_l1_batch(output: torch.Tensor, teacher: torch.Tensor, low: torch.Tensor | None = None) -> torch.Tensor:
    """The thesis code's distillation term: each teacher map (raw disparity, not max-normalised)
    shifted by the absolute value of its own minimum plus 1e-6, then the mean absolute difference
    between ``output / max(output)`` and ``teacher / max(teacher)``, both maxima over the whole
    batch (not per image as eq. 7.8): an image's map is compared at the scale the batch sets.
    ``low`` (B,): the minimum to shift each map by instead of the minimum of ``teacher`` itself
    (``kd.batch_max_shift: raw_min``: the raw map's, before the cache clipped it at 0)."""
    low = teacher.flatten(1).amin(1) if low is None else low.to(teacher.dtype)
    low = low.abs().view(-1, *([1] * (teacher.dim() - 1)))
    shifted = teacher + low + KD_SHIFT_EPS
    return (output / output.max().clamp(min=1e-6) - shifted / shifted.max()).abs().mean()


def align_scale_shift(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image least squares ``(s, t) = argmin sum (s x + t - y)^2`` in closed form.

    Returns tensors of shape (B, 1, 1, 1). Differentiable; a constant ``x`` gives ``s = 0,
    t = mean(y)``.
    """
    xf, yf = x.flatten(1), y.flatten(1)
    mx, my = xf.mean(1), yf.mean(1)
    var = ((xf - mx[:, None]) ** 2).mean(1)
    cov = ((xf - mx[:, None]) * (yf - my[:, None])).mean(1)
    scale = torch.where(var > 1e-12, cov / var.clamp(min=1e-12), torch.zeros_like(var))
    shift = my - scale * mx
    return scale.view(-1, 1, 1, 1), shift.view(-1, 1, 1, 1)


def kd_ssi(output: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Scale-and-shift-invariant distillation (leve's choice, after MiDaS): align the student's
    output (proportional to disparity) to the teacher's disparity per image by least squares with
    the scale held at 0 or above, then take the mean absolute difference in units of the teacher's
    own spread (its mean absolute deviation from its mean, per image). Zero when ``output = a *
    teacher + b`` with a > 0; the same for ``teacher`` and ``c * teacher + d`` (c > 0): a
    relative-depth teacher's unknown scale and shift, e.g. a max-normalised map that keeps a large
    offset, change nothing.

    Why the scale is held at 0 or above (as validation's and evaluation's fits,
    :func:`leve.evaluation.align.fit_positive_scale_shift`): with a free sign an output that runs the
    wrong way (near read as far) fits the teacher exactly, so the term taught an inverted map as well
    as a right one, and with few labels a student learned one (scripts/few_labels.py, 640 images, 8
    labelled, ε 0.5). Held at 0, such an output costs what the best constant does: 1, the teacher's
    own spread."""
    scale, _ = align_scale_shift(output, teacher)
    scale = scale.clamp(min=0.0)  # the constrained optimum of the convex fit: on the boundary when s < 0
    shift = teacher.flatten(1).mean(1).view_as(scale) - scale * output.flatten(1).mean(1).view_as(scale)
    residual = (scale * output + shift - teacher).abs().flatten(1).mean(1)
    tf = teacher.flatten(1)
    spread = (tf - tf.mean(1, keepdim=True)).abs().mean(1).clamp(min=1e-6)
    return (residual / spread).mean()


def crop_output(output: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """The maps (B, 1, H, W) inside each of their boxes (B, K, 4), as fractions of the map's sides
    ``x0, y0, x1, y1``, resized to ``size``: (B, K, h, w). Pixel ``(r, c)`` of a crop is the bilinear value
    of the map at the point ``(x0 + (c + 1/2) (x1 - x0) / w, y0 + (r + 1/2) (y1 - y0) / h)`` of the image
    (pixel centres at half-integers, as ``align_corners=False``), edges extended: the crop's own pixel grid
    laid over the region. Differentiable in ``output``."""
    b, k = boxes.shape[:2]
    h, w = int(size[0]), int(size[1])
    frac_x = (torch.arange(w, device=output.device, dtype=output.dtype) + 0.5) / w
    frac_y = (torch.arange(h, device=output.device, dtype=output.dtype) + 0.5) / h
    x0, y0, x1, y1 = (boxes.to(output.dtype)[..., j, None] for j in range(4))  # (B, K, 1)
    xs = x0 + (x1 - x0) * frac_x  # (B, K, w): image fractions
    ys = y0 + (y1 - y0) * frac_y  # (B, K, h)
    grid = torch.stack([xs[:, :, None, :].expand(b, k, h, w), ys[:, :, :, None].expand(b, k, h, w)], dim=-1)
    grid = (2 * grid - 1).reshape(b, k * h, w, 2)  # grid_sample's [-1, 1], -1 the left edge of the first pixel
    sampled = F.grid_sample(output, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return sampled.reshape(b, k, h, w)


def kd_crops(output: torch.Tensor, crops: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """The local-global term of cross-context distillation (He et al. 2025, "Distill Any Depth"): the
    student's map of the whole image (B, 1, H, W) inside each box (B, K, 4) (:func:`crop_output`, at the crop
    map's size) against the teacher's map of that crop alone (B, K, h, w), by :func:`kd_ssi` per crop:
    least-squares scale and shift, then the mean absolute residual in units of the crop map's spread, averaged
    over the B x K crops."""
    b, k, h, w = crops.shape
    student = crop_output(output, boxes, (h, w))
    return kd_ssi(student.reshape(b * k, 1, h, w), crops.reshape(b * k, 1, h, w).to(output.dtype))


def log_output(out: torch.Tensor) -> torch.Tensor:
    """``log(out)`` (``= log(max_depth) - log(depth)``) for ``out >= 1``, continued below 1 by its tangent
    ``out - 1`` (value and slope meet at 1): an output under the target range [1, 100] (depth beyond
    ``max_depth``, or a negative output early in training) still has a gradient towards the target."""
    return torch.where(out >= 1, torch.log(out.clamp(min=1.0)), out - 1.0)


def kd_metric(output: torch.Tensor, teacher: torch.Tensor, max_depth: float) -> torch.Tensor:
    """Metric distillation: the mean absolute difference of log depth between the student and a metric
    teacher, ``|log d_student - log d_teacher|``, with no normalisation of either map.

    ``teacher``: the teacher's inverse depth in 1/m (a metric cache's map times its ``raw_max``), read as
    the training target is: depth clamped to ``[max_depth / 100, max_depth]`` (an inverse depth of 0, no
    depth, reads as ``max_depth``), so its output ``max_depth / depth`` lies in [1, 100]. Since
    ``log d = log max_depth - log out``, the difference is taken on the outputs (:func:`log_output`).
    Log depth, not depth: a metric teacher's error grows with depth (its error is a ratio), and an L1 on
    depth would be ruled by the far pixels (on the output, ``max_depth / depth``, by the near ones); the
    log weighs a relative error alike at every depth, in any unit."""
    target = (max_depth * teacher).clamp(1.0, TARGET_RANGE)
    return (log_output(output) - torch.log(target)).abs().mean()


KD_LOSSES = {"l1": kd_l1, "ssi": kd_ssi}  # metric: kd_metric (it also takes max_depth)


def distillation_loss(output: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None,
                      teacher: torch.Tensor | None, eps: float, kd: str = "l1",
                      has_depth: torch.Tensor | None = None, *, ssim: str, max_depth: float = 10.0,
                      kd_norm: str, teacher_low: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Eq. 7.1: ``(1 - eps) L_student + eps L_teacher``; ``eps = 0`` needs no teacher map.

    ``has_depth`` (B,) bool marks the samples whose depth may be used (None: all): the student
    terms average over those samples only (0 when the batch has none), the KD term over all.
    ``ssim`` and ``max_depth`` as :func:`student_loss`; ``kd_norm: batch`` with ``kd: l1`` is
    :func:`kd_l1_batch` (``teacher`` then in raw units, ``teacher_low`` (B,) its shift, None: each map's minimum);
    ``kd: metric`` is :func:`kd_metric` (``teacher`` a metric teacher's inverse depth, 1/m).
    Returns the student terms, ``kd`` (when eps > 0) and ``loss`` (what is minimised).
    """
    if has_depth is None or bool(has_depth.all()):
        terms = student_loss(output, target, mask, ssim=ssim, max_depth=max_depth)
    elif bool(has_depth.any()):
        terms = student_loss(output[has_depth], target[has_depth], None if mask is None else mask[has_depth],
                             ssim=ssim, max_depth=max_depth)
    else:
        zero = output.sum() * 0.0  # no labelled sample: nothing to learn from depth, graph kept
        terms = {name: zero for name in ("depth_l1", "gradient", "ssim", "student")}
    loss = terms["student"]
    if eps > 0:
        if teacher is None:
            raise ValueError("distillation with eps > 0 needs the teacher map")
        if kd_norm not in KD_NORMS:
            raise ValueError(f"kd_norm must be one of {KD_NORMS}, got {kd_norm!r}")
        if kd == "l1" and kd_norm == "batch":
            terms["kd"] = kd_l1_batch(output, teacher, teacher_low)
        elif kd == "metric":
            terms["kd"] = kd_metric(output, teacher, max_depth)
        else:
            terms["kd"] = KD_LOSSES[kd](output, teacher)
        loss = (1 - eps) * loss + eps * terms["kd"]
    terms["loss"] = loss
    return terms
