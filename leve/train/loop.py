"""``leve train``: distil the student from a store split and its teacher cache.

Checkpoints go to ``<out_dir>/last.pt`` (model + training state, every epoch, every
``checkpoint_every`` steps and ``checkpoint_minutes``, on Ctrl-C/SIGTERM and at the end) and ``<out_dir>/best.pt`` (the
lowest validation RMSE). Rerunning the same command continues an interrupted run from
``last.pt``; a run with other params starts over; a finished run is left as it is.
"""

from __future__ import annotations

import hashlib
import json
import math
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from leve.errors import LeveError
from leve.metrics import MetricAccumulator, compute_metrics
from leve.models.card import write_model_card
from leve.models.checkpoint import save_checkpoint
from leve.models.depth import depth_range, output_to_depth, upsample_output
from leve.models.registry import create_model
from leve.params import config_dict
from leve.processes import DiesWithParent
from leve.progress import console, progress_bar
from leve.store.reader import open_store
from leve.train import distributed as dist_
from leve.train.batches import PREFETCH, SharedBatchLoader
from leve.train.config import RESULT_INDEPENDENT, TrainConfig
from leve.train.data import DepthDataset, EpochBatchSampler, collate, draft_refusal, labelled_samples
from leve.train.lineage import training_lineage
from leve.train.logging import RunLog
from leve.train.losses import LossOptions, align_scale_shift
from leve.train.schedule import make_scheduler, validation_at
from leve.train.state import Position, load_state, read_state, save_state
from leve.train.step import StepRunner, targets_at


def code_digest() -> str:
    """sha256 over the source files the ``train`` stage imports (the same import closure that
    dvc.yaml lists as the stage's code deps, see leve/closure.py)."""
    from leve.closure import code_closure

    root = Path(__file__).resolve().parents[2]
    digest = hashlib.sha256()
    for rel in code_closure("leve.train.stage", root):
        digest.update(rel.encode() + b"\0" + (root / rel).read_bytes())
    return digest.hexdigest()


def _without(values: dict[str, Any], dotted: str) -> None:
    """Drop ``a.b`` (``values[a][b]``) from nested ``values`` in place."""
    *parents, leaf = dotted.split(".")
    for key in parents:
        values = values.get(key) or {}
    values.pop(leaf, None)


def run_identity(cfg: TrainConfig, data: dict[str, Any] | None = None) -> str:
    """What a run computes: its params (not speed, logging or places: ``RESULT_INDEPENDENT``),
    the data it reads (store fingerprint, teacher identity) and the training code. ``last.pt``
    from another identity is never resumed or taken as finished."""
    values = config_dict(cfg)
    for dotted in RESULT_INDEPENDENT:
        _without(values, dotted)
    payload = {"config": values, "data": data or {}, "code": code_digest()}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _aligned_relative(out: torch.Tensor, gt: torch.Tensor, max_depth: float) -> torch.Tensor:
    """Depth from a relative student's output ``(B, 1, H, W)``: per image the output's least-squares
    scale and shift to the ground truth's disparity ``1/gt`` over the valid pixels (gt > 0), read back
    as depth in ``[max_depth/100, max_depth]`` (a disparity at or below ``1/max_depth`` is ``max_depth``).

    The scale is held at 0 or above, as evaluation's fit (:func:`leve.evaluation.align.fit_positive_scale_shift`):
    an output anti-correlated with the ground truth is read as the best constant, never flipped into a
    map that looks right, so validation cannot pick such a model as its best."""
    lo, hi = depth_range(max_depth)
    depth = torch.full_like(out, hi)
    for b in range(out.shape[0]):
        valid = gt[b] > 0
        if valid.any():
            target = 1.0 / gt[b][valid][None]
            scale, shift = align_scale_shift(out[b][valid][None], target)
            if float(scale) <= 0:
                scale, shift = torch.zeros_like(scale), target.mean().view_as(shift)
            disparity = (scale[0, 0] * out[b] + shift[0, 0]).clamp(min=1.0 / hi)
            depth[b] = (1.0 / disparity).clamp(lo, hi)
    return depth


@dataclass
class TrainResult:
    out_dir: Path
    steps: int
    seconds: float
    samples: int
    best_rmse: float
    best_step: int
    resumed_from: int = 0
    up_to_date: bool = False
    rank: int = 0  # torchrun rank of the process that returns it (process 0 reports)
    val_has_depth: bool = True  # False: best.pt is the latest model, there is no val RMSE
    val_count: int = 0  # validations with metrics that competed for best.pt (Position.val_count)
    val_first_step: int = -1

    def best(self) -> str:
        """What best.pt is: the lowest val RMSE, or why there is none (never an ``inf`` as a result)."""
        if not self.val_has_depth:
            return f"no depth in the val split, so no val RMSE: best.pt is the model at step {self.best_step}"
        if self.val_count == 0:
            return "not validated yet"
        if not math.isfinite(self.best_rmse):
            return f"no finite val RMSE in {self.val_count} validation(s): best.pt not written"
        return f"best val RMSE {self.best_rmse:.4f} at step {self.best_step}"

    def warning(self) -> str | None:
        """One ``warning:`` line when validation never improved over the whole run: no validation gave
        a finite RMSE, or at least two did and none after the first had a lower RMSE than the first
        (the best model is then the first validated one); None otherwise (or without depth to validate on)."""
        if not self.val_has_depth or self.val_count == 0:
            return None
        if not math.isfinite(self.best_rmse):
            return (f"warning: {self.out_dir}: none of {self.val_count} validation(s) gave a finite RMSE: the student's "
                    "depth is not a number; check the data, train.lr and train.grad_clip")
        if self.val_count >= 2 and self.best_step == self.val_first_step:
            return (f"warning: {self.out_dir}: val RMSE never improved on its first value ({self.best_rmse:.4f} at step "
                    f"{self.best_step}) in {self.val_count} validations: the student learned nothing that helps on the "
                    "val split after that step; check the data, train.lr and the loss")
        return None

    def summary(self) -> str:
        if self.up_to_date:
            return f"{self.out_dir}: up to date ({self.steps} steps, {self.best()})"
        rate = self.samples / max(self.seconds, 1e-9)
        resumed = f", resumed at step {self.resumed_from}" if self.resumed_from else ""
        return (f"{self.out_dir}: trained to step {self.steps} in {self.seconds:.1f} s ({rate:.1f} samples/s{resumed}); "
                f"{self.best()}")


@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """torchrun and schedulers stop jobs with SIGTERM: treat it like Ctrl-C (save, then stop)."""
    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class Trainer:
    """Holds the pieces of one run; :meth:`run` is the loop."""

    # called on process 0 with each checkpoint file just written or removed (train.out_dir at a URL: the
    # stage uploads it, leve.train.mirror); None for a local out_dir
    mirror: Callable[[Path], None] | None = None

    def __init__(self, cfg: TrainConfig, expected_teacher: str | None = None, show_progress: bool = True,
                 expected_crops: int | None = None) -> None:
        self.cfg, self.show_progress = cfg, show_progress
        self.expected_crops = expected_crops  # teacher.crops as the params say (None: the cache's own, any)
        self.layout, self.device = dist_.init(cfg.device)
        self._seed()
        store = open_store(cfg.store_path, cache_bytes=cfg.read_cache_bytes)
        self.max_depth = float(store.attrs.get("max_depth") or 10.0)  # None in a store without depth
        for split in (cfg.train_split, cfg.val_split):
            store.split(split)  # a clear error when a split is missing
        data_id: dict[str, Any] = {"store": [store.attrs.get(k) for k in ("fingerprint", "completed_at")]}
        labelled = self._labelled(store.split(cfg.train_split))
        # no depth to learn from: relative depth from the teacher alone (metric from a metric teacher's)
        self.relative = not labelled.any() and cfg.kd.loss != "metric"
        self.val_has_depth = store.split(cfg.val_split).has_depth
        teacher = self._teacher(store, expected_teacher, data_id) if cfg.kd.eps > 0 else None
        self.lineage = training_lineage(cfg, store)  # teacher and data, recorded in best.pt and its card
        self.decode = self._decode(store.split(cfg.train_split))
        # uint8 RGB at the training size and the depth/teacher maps at the stored size between processes; the
        # maps are resized and flipped on the device (runner.to_device), the RGB made float there: the same input
        self.train_set = DepthDataset(cfg.store_path, cfg.train_split, cfg.resolution, teacher, cfg.augment,
                                      seed=cfg.seed, labelled=None if labelled.all() else labelled, rgb_uint8=True,
                                      decode=self.decode, targets="device", local_crops=cfg.kd.crops_weight > 0,
                                      cache_bytes=cfg.read_cache_bytes)
        # validation reads its input as evaluation does: the full decode, whatever train.data.decode says
        self.val_set = DepthDataset(cfg.store_path, cfg.val_split, cfg.resolution, seed=cfg.seed, decode="full",
                                    rgb_uint8=True, targets="device", cache_bytes=cfg.read_cache_bytes)
        # the unaugmented first training samples with their teacher maps: a relative student's output convention
        self.calib_set = (DepthDataset(cfg.store_path, cfg.train_split, cfg.resolution, teacher, seed=cfg.seed,
                                       decode="full", labelled=labelled, cache_bytes=cfg.read_cache_bytes)
                          if self.relative else None)
        self.sampler = self._sampler(labelled)
        self.model = self._model()
        self.total_steps = self._total_steps()
        optimizer = torch.optim.Adam(self.model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        scheduler = make_scheduler(optimizer, cfg.schedule, self.total_steps, self.sampler.batches_per_epoch(), cfg.lr)
        kd_weight = 1.0 if not labelled.any() else cfg.kd.eps  # without labels the KD term is the whole loss
        teacher_scale, teacher_low = self._teacher_raw(teacher, store)
        self.runner = StepRunner(self.ddp_model, optimizer, scheduler, self.device, self.max_depth, kd_weight,
                                 cfg.kd.loss, cfg.accumulate, cfg.amp, cfg.channels_last, cfg.grad_clip,
                                 options=LossOptions(cfg.loss.ssim, cfg.loss.invalid, cfg.kd.norm),
                                 teacher_scale=teacher_scale, teacher_low=teacher_low, crops_weight=cfg.kd.crops_weight)
        self.hash = run_identity(cfg, data_id)
        self.position = Position()
        # built once: worker processes persist across epochs and validations
        # written by the workers into batches allocated once in shared memory (leve.train.batches)
        # each worker fetches a bucket store's shard files ahead of its reads (cfg.read_prefetch; no results change)
        self.train_loader = SharedBatchLoader(self.train_set, self.sampler, self.sampler.rank_batch_size,
                                              cfg.workers, read_ahead=cfg.read_prefetch, worker_init_fn=DiesWithParent())
        val: Any = self.val_set
        if cfg.val_limit:
            val = torch.utils.data.Subset(self.val_set, range(min(cfg.val_limit, len(self.val_set))))
        self.val_loader = self._loader(val, batch_size=max(cfg.batch_size // self.layout.world, 1))

    # ------------------------------------------------------------------ setup

    def _seed(self) -> None:
        import random

        torch.manual_seed(self.cfg.seed)
        random.seed(self.cfg.seed)
        torch.backends.cudnn.benchmark = not self.cfg.deterministic
        if self.cfg.deterministic and self.device.type == "cpu":
            if self.cfg.compile:  # inductor's own flag too
                torch.use_deterministic_algorithms(True, warn_only=True)
            else:
                # The same switch without torch.use_deterministic_algorithms' import of torch._inductor
                # (it only sets inductor's flag, which matters to torch.compile): that import cost 1.27 s of
                # every `leve train` process (cProfile, torch 2.13 CPU), more than 16 demo training steps' forwards.
                torch._C._set_deterministic_algorithms(True, warn_only=True)

    def _teacher(self, store: Any, expected: str | None, data_id: dict[str, Any]) -> Path:
        from leve.teacher.cache.read import cache_place, check_cache_matches, check_kd_loss

        attrs = check_cache_matches(self.cfg.teacher_path, self.cfg.train_split, store, expected_model=expected)
        place = cache_place(self.cfg.teacher_path)  # a URL as the URL (a Path folds s3:// to s3:/)
        check_kd_loss(attrs, self.cfg.kd.loss, f"{place}/{self.cfg.train_split}")
        from leve.teacher.cache.crops import check_crops

        check_crops(attrs, self.expected_crops, self.cfg.kd.crops_weight, f"{place}/{self.cfg.train_split}")
        data_id["teacher"] = [attrs.get(k) for k in ("identity_fingerprint", "completed_at")]
        if self.layout.main:
            t = attrs.get("teacher", {})
            console.print(f"distilling from {place} ({t.get('model')} @ {t.get('revision')}), "
                          f"eps={self.cfg.kd.eps}, kd.loss={self.cfg.kd.loss}")
        return self.cfg.teacher_path

    def _teacher_raw(self, teacher: Path | None, store: Any) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``kd.norm: batch`` compares raw teacher maps across a batch: per train sample, the factor from
        the cached map to the raw one (:meth:`leve.teacher.cache.read.TeacherCache.raw_scale`) and, with
        ``kd.batch_max_shift: raw_min``, the raw map's minimum before clipping (the cache's ``raw_min``)."""
        if teacher is None or (self.cfg.kd.norm != "batch" and self.cfg.kd.loss != "metric"):
            return None, None  # kd.loss metric: the scale makes the cached map the teacher's inverse depth (1/m)
        from leve.teacher.cache.read import TeacherCache

        cache = TeacherCache(teacher, self.cfg.train_split, store.split(self.cfg.train_split),
                             cache_bytes=self.cfg.read_cache_bytes)
        low = torch.from_numpy(cache.raw_min.astype(np.float32)) if self.cfg.kd.batch_max_shift == "raw_min" else None
        return torch.from_numpy(cache.raw_scale()), low

    def _decode(self, split: Any) -> str:
        """``data.decode`` as it applies to the train split: ``draft`` falls back to ``full`` (said once)
        where the store keeps raw RGB or the resolution is more than half the stored one."""
        why = draft_refusal(split, self.cfg.resolution) if self.cfg.data.decode == "draft" else None
        if why and self.layout.main:
            console.print(f"train.data.decode: draft has no effect ({why}); decoding in full")
        return "full" if why else self.cfg.data.decode

    def _labelled(self, split: Any) -> np.ndarray:
        """Which training samples' depth the student may see (``labels``); a split without depth has none.
        Without any, the student learns relative depth from the teacher alone, which needs the ssi KD loss."""
        cfg = self.cfg
        n = len(split)
        labelled = labelled_samples(n, cfg.labels.fraction, cfg.labels.seed) if split.has_depth else np.zeros(n, bool)
        if not labelled.any():
            why = "has no depth" if not split.has_depth else f"keeps no depth at labels.fraction {cfg.labels.fraction}"
            if cfg.kd.eps <= 0 or cfg.kd.loss not in ("ssi", "metric"):
                raise LeveError(f"{cfg.store_path}/{cfg.train_split}: the split {why}: training from the teacher alone "
                                f"needs kd.eps > 0 and kd.loss: ssi (got eps {cfg.kd.eps}, loss {cfg.kd.loss})")
            if self.layout.main and cfg.kd.loss == "metric":
                console.print(f"{cfg.store_path}/{cfg.train_split}: the split {why}: the student learns metric "
                              "depth from the metric teacher alone (kd.loss metric is the whole loss)")
            elif self.layout.main:
                console.print(f"{cfg.store_path}/{cfg.train_split}: the split {why}: the student learns relative "
                              "depth from the teacher alone (kd.loss ssi is the whole loss)")
        elif not labelled.all() and self.layout.main:
            console.print(f"labels: {int(labelled.sum())} of {n} training samples keep their depth "
                          f"(labels.fraction {cfg.labels.fraction}, labels.seed {cfg.labels.seed}); KD on all {n}")
        return labelled

    def _sampler(self, labelled: np.ndarray) -> EpochBatchSampler:
        cfg, world = self.cfg, self.layout.world
        if cfg.batch_size % (world * cfg.accumulate):
            raise LeveError(f"train: batch_size {cfg.batch_size} must split over {world} process(es) x "
                            f"accumulate {cfg.accumulate}")
        pool, extra_pool, extra = self._pools(labelled)
        if extra % (world * cfg.accumulate):
            raise LeveError(f"train: labels.unlabelled_batch {extra} must split over {world} process(es) x "
                            f"accumulate {cfg.accumulate}")
        sampler = EpochBatchSampler(len(self.train_set), cfg.batch_size, self.layout.rank, world, seed=cfg.seed,
                                    pool=pool, extra_pool=extra_pool, extra=extra)
        if sampler.batches_per_epoch() == 0:
            raise LeveError(f"{self.cfg.store_path}/{cfg.train_split}: {len(self.train_set)} samples, fewer than "
                            f"one batch of {cfg.batch_size}")
        return sampler

    def _pools(self, labelled: np.ndarray) -> tuple[np.ndarray | None, np.ndarray | None, int]:
        """Where batches come from (``labels.sampling``): with some but not all samples labelled, ``split``
        draws every batch's ``batch_size`` samples from the labelled ones and, when distilling,
        ``labels.unlabelled_batch`` more from the others (KD only); ``mixed`` draws from all of them."""
        cfg = self.cfg
        if cfg.labels.sampling != "split" or labelled.all() or not labelled.any():
            return None, None, 0
        extra = 0 if cfg.kd.eps <= 0 else cfg.labels.unlabelled_batch or cfg.batch_size
        if self.layout.main:
            console.print(f"labels.sampling split: each batch {cfg.batch_size} labelled"
                          + (f" + {extra} unlabelled (KD only)" if extra else " (kd.eps 0: the others teach nothing)"))
        return np.flatnonzero(labelled), (np.flatnonzero(~labelled) if extra else None), extra

    def _model(self) -> torch.nn.Module:
        cfg = self.cfg
        model = create_model(cfg.model, encoder_weights=cfg.encoder_weights, max_depth=self.max_depth).to(self.device)
        if cfg.channels_last and self.device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        self.ddp_model: torch.nn.Module = model
        if self.layout.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if cfg.compile:
            self.ddp_model = torch.compile(self.ddp_model)
        return model

    def _total_steps(self) -> int:
        total = self.cfg.epochs * self.sampler.batches_per_epoch()
        return min(total, self.cfg.max_steps) if self.cfg.max_steps else total

    def _loader(self, dataset: Any, **kwargs: Any) -> torch.utils.data.DataLoader:
        workers = self.cfg.workers
        return torch.utils.data.DataLoader(
            dataset, num_workers=workers, collate_fn=collate, pin_memory=self.device.type == "cuda",
            persistent_workers=workers > 0, prefetch_factor=PREFETCH if workers else None,
            worker_init_fn=DiesWithParent(), **kwargs)  # no worker outlives this process, however it ends

    # ------------------------------------------------------------------ checkpoints

    @property
    def last_path(self) -> Path:
        return self.cfg.out_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.cfg.out_dir / "best.pt"

    def _objects(self) -> dict[str, Any]:
        return {"optimizer": self.runner.optimizer, "scheduler": self.runner.scheduler, "scaler": self.runner.scaler}

    def try_resume(self, restart: bool) -> bool:
        """Load ``last.pt`` when it belongs to this run's params; True when resumed."""
        if restart and self.layout.main:
            self.best_path.unlink(missing_ok=True)
            self._mirrored(self.best_path)
        if restart or not self.last_path.exists():
            return False
        _, state = read_state(self.last_path)
        if state.get("config_hash") != self.hash:
            if self.layout.main:
                console.print(f"{self.last_path}: written with other params, data or training code; starting over")
                self.best_path.unlink(missing_ok=True)  # never leave another run's best behind
                self._mirrored(self.best_path)
            dist_.barrier(self.layout)
            return False
        self.position = load_state(self.last_path, self.model, self._objects())
        return True

    def save_last(self) -> None:
        if self.layout.main:
            self._write_last()
        dist_.barrier(self.layout)

    def _write_last(self) -> None:
        """``last.pt``, atomically (a temporary file renamed into place): a kill never leaves half of it."""
        save_state(self.last_path, self.model, self.cfg.model, self.max_depth, self.cfg.resolution,
                   self._objects(), self.position, self.hash, self._depth_kind())
        self._saved_at = time.monotonic()
        self._mirrored(self.last_path)

    def _checkpoint_due(self) -> bool:
        """``checkpoint_every`` steps or ``checkpoint_minutes`` since the last save; never at the last step,
        whose save follows the final validation (a kill between the two must not skip that validation)."""
        cfg, step = self.cfg, self.position.step
        if step >= self.total_steps:
            return False
        by_steps = cfg.checkpoint_every > 0 and step % cfg.checkpoint_every == 0
        by_time = cfg.checkpoint_minutes > 0 and time.monotonic() - self._saved_at >= 60 * cfg.checkpoint_minutes
        return by_steps or by_time

    def _save_periodic(self) -> None:
        """A save inside the loop: process 0 alone, no barrier (under torchrun the processes' clocks
        disagree on when ``checkpoint_minutes`` have passed; the others only read)."""
        if self.layout.main:
            self._write_last()

    def _depth_kind(self) -> dict[str, Any]:
        """What the checkpoint's output means: ``depth_kind`` metric, or relative with its ``relative_affine``."""
        if not self.relative:
            return {"depth_kind": "metric"}
        return {"depth_kind": "relative", "relative_affine": self._relative_affine()}

    def _save_best(self, metrics: dict[str, float]) -> None:
        extra = {"step": self.position.step, "epoch": self.position.epoch, "val": metrics,
                 "train_config": config_dict(self.cfg), "decode": self.decode, "dataset": self.cfg.dataset, **self._depth_kind()}
        extra["lineage"] = self.lineage
        save_checkpoint(self.best_path, self.model, self.cfg.model, self.max_depth, extra, self.cfg.resolution)
        card = write_model_card(self.best_path)  # MODEL_CARD.md beside best.pt
        self._mirrored(self.best_path, card)

    def _mirrored(self, *paths: Path) -> None:
        """Tell :attr:`mirror` (when there is one) of files just written or removed."""
        if self.mirror is not None:
            for path in paths:
                self.mirror(path)

    # ------------------------------------------------------------------ validation

    @torch.inference_mode()
    def validate(self) -> dict[str, float]:
        """Mean per-image metrics (and the student loss) on the val split, on process 0. A relative
        student's output is first aligned to each image's ground truth (least-squares scale and
        shift in disparity space); it has no student loss."""
        self.model.eval()
        acc, loss_sum, batches = MetricAccumulator(), 0.0, 0
        for batch in self.val_loader:
            batch = self.runner.to_device(batch)
            with self.runner.autocast():
                out = self.model(batch["rgb"]).float()
            depth, _ = targets_at(out, batch["depth"])  # the loss as trained: at the output's size
            if not self.relative:
                loss_sum += float(self.runner.student_terms(out, depth)["student"])
            batches += 1
            # metrics at the input size: a half-resolution output is upsampled first
            full = upsample_output(out, batch["rgb"].shape[-2:])
            pred = _aligned_relative(full, batch["depth"], self.max_depth) if self.relative else \
                output_to_depth(full, self.max_depth)
            for p, g in zip(pred.cpu(), batch["depth"].cpu()):
                acc.add(compute_metrics(p, g))
        result = acc.result()
        metrics = {k: result.means[k] for k in ("rmse", "abs_rel", "d1", "d2", "d3", "log10")}
        return metrics if self.relative else {**metrics, "loss": loss_sum / max(batches, 1)}

    @torch.inference_mode()
    def _relative_affine(self, count: int = 16) -> list[float]:
        """``[s, t]`` with ``s * output + t`` closest (least squares over every pixel) to the teacher's
        max-normalised disparity on the first ``count`` training samples, unaugmented: how a relative
        student's output reads in the teacher's convention (near = 1, far towards 0), so that
        evaluation and prediction get its orientation and range (:class:`leve.models.depth.RelativeOutput`)."""
        assert self.calib_set is not None
        self.model.eval()
        batch = collate([self.calib_set[i] for i in range(min(count, len(self.calib_set)))])
        batch = self.runner.to_device(batch)
        with self.runner.autocast():
            out = self.model(batch["rgb"]).float()
        _, teacher = targets_at(out, batch["depth"], batch["teacher"])
        assert teacher is not None
        scale, shift = align_scale_shift(out.reshape(1, -1), teacher.reshape(1, -1))
        return [float(scale), float(shift)]

    def _validate_and_keep_best(self, log: RunLog, keep: bool = True) -> dict[str, float]:
        """Validate and keep the best model (``keep``; else log only); without depth in the val split, the
        latest model is kept (a log-only validation then does nothing)."""
        metrics: dict[str, float] = {}
        if self.layout.main and (keep or self.val_has_depth):
            metrics = self.validate() if self.val_has_depth else {}
            if keep and metrics:
                self.position.val_count += 1
                if self.position.val_count == 1:
                    self.position.val_first_step = self.position.step
            improved = keep and (not metrics or metrics["rmse"] < self.position.best_rmse)
            if improved:
                if metrics:
                    self.position.best_rmse = metrics["rmse"]
                self.position.best_step = self.position.step
                self._save_best(metrics)
            log.log(self.position.step, {f"val/{k}": v for k, v in metrics.items()})
            shown = (f"val RMSE {metrics['rmse']:.4f}, abs_rel {metrics['abs_rel']:.4f}, d1 {metrics['d1']:.3f}"
                     + (" (aligned)" if self.relative else "") if metrics else "no depth in the val split: latest kept")
            console.print(f"step {self.position.step}/{self.total_steps} epoch {self.position.epoch}: {shown}"
                          f"{' (best)' if improved and metrics else ''}")
        dist_.barrier(self.layout)
        return metrics

    # ------------------------------------------------------------------ loop

    def run(self, restart: bool = False, stop_after: int | None = None) -> TrainResult:
        """Train to ``total_steps`` (or until ``stop_after`` steps in all, then save and return)."""
        resumed = self.try_resume(restart)
        start = self.position.step
        result = TrainResult(self.cfg.out_dir, start, 0.0, 0, self.position.best_rmse, self.position.best_step, start,
                             rank=self.layout.rank, val_has_depth=self.val_has_depth)
        self._validation_record(result)
        if start >= self.total_steps and self.best_path.exists():
            result.up_to_date = True
            return result
        log = RunLog(self.cfg.log_dir, self.layout.main, start if resumed else None, config_dict(self.cfg))
        self._saved_at = time.monotonic()
        t0 = time.perf_counter()
        try:
            with _sigterm_as_interrupt(), progress_bar(self.show_progress and self.layout.main) as bar:
                task = bar.add_task("train", total=self.total_steps, completed=start)
                self._epochs(log, bar, task, stop_after)
        except KeyboardInterrupt:
            self.save_last()
            if self.layout.main:
                console.print(f"interrupted at step {self.position.step}; {self.last_path} saved, rerun to continue")
            raise
        finally:
            log.close()
        result.seconds = time.perf_counter() - t0
        result.steps, result.samples = self.position.step, (self.position.step - start) * self.cfg.batch_size
        result.best_rmse, result.best_step = self.position.best_rmse, self.position.best_step
        self._validation_record(result)
        warning = result.warning() if self.position.step >= self.total_steps else None  # judged on a whole run
        if warning and self.layout.main:
            console.print(warning, markup=False, highlight=False)
        return result

    def _validation_record(self, result: TrainResult) -> None:
        result.val_count, result.val_first_step = self.position.val_count, self.position.val_first_step

    def _epochs(self, log: RunLog, bar: Any, task: Any, stop_after: int | None) -> None:
        cfg, pos = self.cfg, self.position
        while pos.step < self.total_steps:
            self.sampler.set_position(pos.epoch, pos.batch)
            self.runner.train_mode = not self._validated_this_epoch()  # an epoch starts in train mode
            t_log, n_log = time.perf_counter(), 0
            for batch in self.train_loader:
                terms = self.runner.step(batch)
                pos.step, pos.batch, n_log = pos.step + 1, pos.batch + 1, n_log + 1
                bar.advance(task)
                if pos.step % cfg.log_every == 0 or pos.step == self.total_steps:
                    t_log = self._log_train(log, terms, n_log, t_log)
                    n_log = 0
                ends = pos.batch >= self.sampler.batches_per_epoch() or pos.step >= self.total_steps
                when = validation_at(cfg.val_schedule, cfg.val_every, pos.step, pos.batch, ends)
                if when:
                    self._validate_and_keep_best(log, keep=when == "best")
                    if self._freezes_after_validation:
                        self.runner.train_mode = False  # the thesis code: model.eval() in validation, kept
                if self._checkpoint_due():
                    self._save_periodic()
                if pos.step >= self.total_steps or (stop_after is not None and pos.step >= stop_after):
                    break
            epoch_done = pos.batch >= self.sampler.batches_per_epoch()
            if epoch_done:
                pos.epoch, pos.batch = pos.epoch + 1, 0
            self.save_last()
            if stop_after is not None and pos.step >= stop_after:
                return

    @property
    def _freezes_after_validation(self) -> bool:
        """``bn_after_validation: eval``: after a validation that ran the model (the val split has depth),
        the rest of the epoch trains in eval mode (BN running statistics frozen and used, dropout off),
        as the thesis code does: its validation calls ``model.eval()`` and only an epoch's start ``model.train()``."""
        return self.cfg.bn_after_validation == "eval" and self.val_has_depth

    def _validated_this_epoch(self) -> bool:
        """Whether a validation that freezes the mode followed one of the ``batch`` batches of the current
        epoch already done (a run resumed mid-epoch continues in the mode it had)."""
        if not self._freezes_after_validation:
            return False
        cfg, pos, per = self.cfg, self.position, self.sampler.batches_per_epoch()
        first = pos.step - pos.batch  # the global step before the epoch's first batch
        return any(validation_at(cfg.val_schedule, cfg.val_every, first + b, b, b >= per or first + b >= self.total_steps)
                   for b in range(1, pos.batch + 1))

    def _log_train(self, log: RunLog, terms: dict[str, torch.Tensor], steps: int, since: float) -> float:
        names = sorted(terms)
        values = dist_.mean_across(torch.stack([terms[k].float() for k in names]), self.layout).tolist()
        loss = values[names.index("loss")]
        if not math.isfinite(loss):
            raise LeveError(f"train: loss is not finite at step {self.position.step}; lower train.lr or set train.grad_clip")
        now = time.perf_counter()
        rate = steps * self.cfg.batch_size / max(now - since, 1e-9)
        log.log(self.position.step, {**{f"train/{k}": v for k, v in zip(names, values)},
                                     "train/lr": self.runner.optimizer.param_groups[0]["lr"],
                                     "train/samples_per_s": rate})
        return now


def train(cfg: TrainConfig, expected_teacher: str | None = None, restart: bool = False,
          stop_after: int | None = None, show_progress: bool = True, expected_crops: int | None = None,
          mirror: Callable[[Path], None] | None = None) -> TrainResult:
    """Build a :class:`Trainer` and run it (joining torchrun's process group when launched by it).
    ``expected_crops``: the ``teacher.crops`` a cache must have been built with (None: any). ``mirror``:
    :attr:`Trainer.mirror`."""
    trainer = Trainer(cfg, expected_teacher, show_progress, expected_crops)
    trainer.mirror = mirror
    try:
        return trainer.run(restart=restart, stop_after=stop_after)
    finally:
        dist_.shutdown(trainer.layout)
