"""One optimiser step of distillation training (shared by ``leve train`` and ``leve bench train``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from leve.errors import LeveError
from leve.images import resize_depth, resize_maps, rgb_to_float
from leve.train.data import finish_targets
from leve.train.losses import LossOptions, distillation_loss, kd_crops, student_loss, training_target

Batch = dict[str, torch.Tensor]


def targets_at(out: torch.Tensor, depth: torch.Tensor, teacher: torch.Tensor | None = None
               ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Depth and teacher map at the network output's size. A model with a half-resolution output
    (DenseDepth, ``output_stride`` 2) is trained against half-resolution targets, as DenseDepth
    is, made by the one resize rule of :mod:`leve.images`: depth by :func:`~leve.images.resize_depth`
    (validity-weighted, invalid where too little valid depth lies under the filter), the teacher's
    disparity by :func:`~leve.images.resize_maps`. Unchanged at the same size."""
    size = out.shape[-2:]
    depth = resize_depth(depth, size, shortcuts=depth.device.type == "cpu")  # no host sync on a GPU
    if teacher is not None:
        teacher = resize_maps(teacher, size)
    return depth, teacher


class StepRunner:
    """Forward, loss, backward and update for one global batch, split into ``accumulate``
    micro-batches; AMP (bf16/fp16 with a grad scaler) and channels-last on CUDA only. ``eps``, ``kd_loss``,
    ``accumulate``, ``amp`` and ``channels_last`` have no default here: their values are the train section's
    (params.yaml; :class:`leve.train.loop.Trainer` passes its TrainConfig's)."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 scheduler: torch.optim.lr_scheduler.LRScheduler | None, device: torch.device, max_depth: float,
                 eps: float, kd_loss: str, accumulate: int, amp: str, channels_last: bool,
                 grad_clip: float | None = None, *,
                 options: LossOptions, teacher_scale: torch.Tensor | None = None,
                 teacher_low: torch.Tensor | None = None, crops_weight: float | None = None) -> None:
        self.model, self.optimizer, self.scheduler, self.device = model, optimizer, scheduler, device
        self.max_depth, self.eps, self.kd_loss, self.accumulate = max_depth, eps, kd_loss, accumulate
        # options: the named loss choices; teacher_scale: per train sample, the factor from the cached
        # map to the teacher's raw disparity (raw_max), which kd_norm: batch compares across images and which
        # makes a metric teacher's map its inverse depth in 1/m for kd_loss metric (leve.train.losses.kd_metric)
        self.options = options
        self.teacher_scale = None if teacher_scale is None else teacher_scale.to(device)
        # teacher_low: per train sample, the raw map's minimum before clipping (raw_min), the shift of
        # kd_norm: batch with kd.batch_max_shift: raw_min (None: each map's own minimum)
        self.teacher_low = None if teacher_low is None else teacher_low.to(device)
        # crops_weight: the weight of cross-context distillation's local-global term (kd.crops_weight; batches
        # then carry the cache's local crops, leve.train.losses.kd_crops); None: no such term
        self.crops_weight = crops_weight or 0.0
        cuda = device.type == "cuda"
        self.amp_dtype = {"bfloat16": torch.bfloat16, "float16": torch.float16}.get(amp) if cuda else None
        self.channels_last = channels_last and cuda
        self.grad_clip = grad_clip
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype is torch.float16)
        # the mode each step sets: True (train(): BN batch statistics, dropout on) unless the loop says
        # otherwise (train.bn_after_validation: eval, the thesis code's steps after a mid-epoch validation)
        self.train_mode = True

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast("cuda", dtype=self.amp_dtype)

    def to_device(self, batch: Batch) -> Batch:
        """The batch on the device: targets sent at the stored size resized there
        (:func:`leve.train.data.finish_targets`), uint8 RGB made the float input."""
        out = finish_targets({k: v.to(self.device, non_blocking=True) for k, v in batch.items()})
        if out["rgb"].dtype == torch.uint8:  # a loader's uint8 RGB: normalised here, on the device
            out["rgb"] = rgb_to_float(out["rgb"])
        if self.channels_last:
            out["rgb"] = out["rgb"].contiguous(memory_format=torch.channels_last)
        return out

    def losses(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Forward pass and every loss term of a (device) batch; targets at the output's size."""
        with self.autocast():
            out = self.model(batch["rgb"])
        depth, teacher = targets_at(out, batch["depth"], batch.get("teacher"))
        if teacher is not None and self.teacher_scale is not None:
            teacher = teacher * self.teacher_scale[batch["index"]].view(-1, 1, 1, 1)
        low = None if self.teacher_low is None or teacher is None else self.teacher_low[batch["index"]]
        target, mask = training_target(depth, self.max_depth, self.options.invalid)
        terms = distillation_loss(out.float(), target, mask, teacher, self.eps, self.kd_loss, batch.get("has_depth"),
                                  ssim=self.options.ssim, max_depth=self.max_depth, kd_norm=self.options.kd_norm,
                                  teacher_low=low)
        if self.crops_weight > 0:
            # the crop maps at half the output's size (as the cache keeps them at half the stored image's)
            size = (max(out.shape[-2] // 2, 1), max(out.shape[-1] // 2, 1))
            crops = resize_maps(batch["crops"].float(), size)
            terms["kd_crops"] = kd_crops(out.float(), crops, batch["boxes"].float())
            terms["loss"] = terms["loss"] + self.crops_weight * terms["kd_crops"]
        return terms

    def student_terms(self, out: torch.Tensor, depth: torch.Tensor) -> dict[str, torch.Tensor]:
        """The supervised terms of ``out`` against ``depth`` (at the output's size), as training computes them."""
        target, mask = training_target(depth, self.max_depth, self.options.invalid)
        return student_loss(out, target, mask, ssim=self.options.ssim, max_depth=self.max_depth)

    def _micro_batches(self, batch: Batch) -> Iterator[Batch]:
        n = next(iter(batch.values())).shape[0]
        if n % self.accumulate:
            raise LeveError(f"train: a batch of {n} does not split into accumulate={self.accumulate} micro-batches")
        size = n // self.accumulate
        for k in range(self.accumulate):
            yield {key: v[k * size : (k + 1) * size] for key, v in batch.items()}

    def _sync_context(self, last: bool) -> contextlib.AbstractContextManager:
        no_sync = getattr(self.model, "no_sync", None)
        return contextlib.nullcontext() if last or no_sync is None else no_sync()

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Train on one batch, the model in ``train_mode``; returns the loss terms (detached, averaged
        over micro-batches)."""
        self.model.train(self.train_mode)
        self.optimizer.zero_grad(set_to_none=True)
        totals: dict[str, torch.Tensor] = {}
        for k, micro in enumerate(self._micro_batches(self.to_device(batch))):
            with self._sync_context(last=k == self.accumulate - 1):
                terms = self.losses(micro)
                self.scaler.scale(terms["loss"] / self.accumulate).backward()
            for name, value in terms.items():
                totals[name] = totals.get(name, 0.0) + value.detach() / self.accumulate
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)
            totals["grad_norm"] = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip).detach()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scheduler is not None:
            self.scheduler.step()
        return totals
