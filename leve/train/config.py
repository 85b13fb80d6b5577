"""The ``train`` section of params.yaml as typed dataclasses (the schema: types, allowed values, docs; the
values live in params.yaml, the thesis recipe in profiles/thesis.yaml), read by the training code;
:mod:`leve.train.stage` (the stage: ``config()``, ``run()``) builds them from params.yaml.
Apart from the stage so that the training loop imports its configuration, not the stage that runs it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from leve.errors import LeveError
from leve.models.leve import MIN_SIZE, MULTIPLE
from leve.models.registry import model_spec
from leve.params import param, params_section

SSIM_MODES = ("leve", "thesis-code")  # leve: L = 100, valid windows | the thesis code's (leve.train.losses.ssim_loss_thesis_code)
INVALID_MODES = ("mask", "zero-target")  # depth 0: left out | target 0, scored (the thesis code)
KD_NORMS = ("image", "batch")  # kd.loss l1 normalised per image (eq. 7.8) | by the batch maximum (the thesis code)
VAL_SCHEDULES = ("leve", "thesis-code")  # leve.train.schedule.validation_at
BN_AFTER_VALIDATION = ("train", "eval")  # leve.train.loop.Trainer._freezes_after_validation
KD_SHIFTS = ("clipped", "raw_min")  # leve.train.losses.kd_l1_batch
KD_LOSS_NAMES = ("l1", "ssi", "metric")  # leve.train.losses.kd_l1 | kd_ssi | kd_metric (a metric teacher's cache)


@params_section("train.kd", keys={"teacher_dir": "paths.teacher_cache"})
@dataclass
class KDConfig:
    """Distillation from the cached teacher (eq. 7.1). ``eps = 0`` never opens the cache."""

    eps: float = param()
    loss: str = param()  # l1: the thesis's max-normalised L1 (eq. 7.8) | ssi: scale-and-shift-invariant L1 |
    # metric: L1 of log depth to a metric teacher's depth, nothing normalised (its cache only; without labels
    # the student is then metric: depth_kind metric, evaluated without alignment)
    norm: str = param()  # l1 only: image (eq. 7.8: per-image maxima) | batch (the thesis code: teacher
    # shifted by its minimum, both maps divided by their batch maximum; leve.train.losses.kd_l1_batch)
    batch_max_shift: str = param()  # norm batch only: the teacher shifted by |the minimum of the map it gets|
    # (clipped at 0 in the cache, resized to the resolution) | raw_min: by |the raw map's minimum| (the cache's
    # raw_min, before clipping), as the thesis code shifts its raw teacher output
    crops_weight: float = param()  # cross-context distillation's local-global term (leve.train.losses.kd_crops):
    # the student's map inside each cached crop box vs the teacher's map of that crop, per crop ssi; needs
    # teacher.crops > 0; added to the loss with this weight (0: off)
    teacher_dir: Path = param(url=True)  # paths.teacher_cache: a folder, or a bucket prefix (s3://bucket/prefix)


@params_section("train.loss")
@dataclass
class LossConfig:
    """The supervised terms: leve's choices, or the thesis's public code's (for reproduction)."""

    ssim: str = param()  # leve: L = 100 (the target's range), valid windows, (1 - SSIM)/2 per window |
    # thesis-code: L = max_depth, zero 'same' padding, 1 - mean SSIM / 2 (leve.train.losses.ssim_loss_thesis_code)
    invalid: str = param()  # mask: pixels without depth are left out | zero-target: scored against 0 (the thesis code)


@params_section("train.labels")
@dataclass
class LabelsConfig:
    """Which training samples' depth the student may see (few labels, many images: the setting where
    distillation matters). ``fraction`` of the train split keeps its depth, the first
    ``round(fraction * N)`` indices of a permutation seeded by ``seed`` alone (not ``train.seed``: every
    run sees the same labelled samples, and a smaller fraction keeps a subset of a larger one). The
    supervised terms use only those samples; the KD term uses the teacher cache on all. With no
    labelled sample (``fraction: 0``, or a train split without depth) the student learns relative depth
    from the teacher alone (``kd.loss: ssi`` as the whole loss).

    ``sampling`` (when some but not all samples are labelled): ``split`` draws each batch's
    ``batch_size`` samples from the labelled ones, so ε = 0 trains on labelled images only and a KD
    run sees exactly the same labelled batches, plus ``unlabelled_batch`` (None: ``batch_size``)
    unlabelled samples per batch for the KD term alone; an epoch keeps ``N // batch_size`` batches.
    ``mixed`` draws batches from all samples (the supervised terms over the labelled ones in each):
    with ε = 0 the batches without a label teach nothing, yet Adam's momentum still moves the weights."""

    fraction: float = param()
    seed: int = param()
    sampling: str = param()
    unlabelled_batch: int | None = param()


@params_section("train.schedule")
@dataclass
class ScheduleConfig:
    """Learning-rate schedule, stepped after every optimiser step."""

    name: str = param()  # step (thesis: x0.99 every 5 epochs) | cosine | constant
    step_epochs: int = param()
    gamma: float = param()
    warmup_steps: int = param()
    min_lr: float = param()  # cosine floor


@params_section("train.augment")
@dataclass
class AugmentConfig:
    """Probabilities of the thesis's two augmentations."""

    flip: float = param()  # horizontal flip of RGB, depth and teacher together
    channel_swap: float = param()  # random permutation of the RGB channels


@params_section("train.data")
@dataclass
class DataConfig:
    """How the loader reads the training split."""

    # full: the RGB decoded in full, then resized (bit-equal to evaluation's input) | draft: an
    # ``rgb_codec: jpeg`` store decoded at libjpeg's reduced DCT scale (1/2, 1/4, 1/8) when the
    # resolution is half the stored one or less, then resized (several times faster, close to full)
    decode: str = param()


# TrainConfig fields that do not change what a run computes (speed, logging cadence, places; dotted
# within nested configs): neither in the run identity (leve/train/loop.py) nor among the `train`
# stage's DVC params (leve/pipeline/stages.py).
RESULT_INDEPENDENT: tuple[str, ...] = (
    "workers", "log_every", "checkpoint_every", "checkpoint_minutes", "device", "compile",
    "out_dir", "log_dir", "data_dir", "kd.teacher_dir", "read_cache_bytes", "read_prefetch",
)


@params_section("train", keys={"data_dir": "paths.stores", "read_cache_bytes": "paths.read_cache_bytes",
                               "read_prefetch": "paths.read_prefetch"})
@dataclass
class TrainConfig:
    """Everything ``leve train`` needs; the defaults are params.yaml's (the thesis recipe: profiles/thesis.yaml)."""

    dataset: str = param()
    data_dir: Path = param(url=True)  # paths.stores: a folder, or a bucket prefix (s3://bucket/prefix)
    read_cache_bytes: int | None = param()  # paths.read_cache_bytes: a bucket store's local read-through cache
    read_prefetch: int = param()  # paths.read_prefetch: shard files each loader worker fetches ahead (0: none)
    train_split: str = param()
    val_split: str = param()
    model: str = param()  # a registered model (leve.models.list_models()); output at 1/1 or 1/2 (DenseDepth)
    encoder_weights: Path | None = param()  # DDRNet23s_imagenet.pth (None: random encoder)
    resolution: tuple[int, int] = param()  # HxW; 480x640 for the final model
    epochs: int = param()
    max_steps: int | None = param()  # stop after this many steps (the schedule then spans them)
    batch_size: int = param()  # global batch (split over torchrun processes and accumulation)
    accumulate: int = param()  # micro-batches per optimiser step
    lr: float = param()
    weight_decay: float = param()
    grad_clip: float | None = param()  # max gradient norm
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    data: DataConfig = field(default_factory=DataConfig)
    kd: KDConfig = field(default_factory=KDConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    labels: LabelsConfig = field(default_factory=LabelsConfig)
    val_every: int = param()  # steps between validations (0: only at the end of each epoch)
    val_schedule: str = param()  # leve: every val_every steps and each epoch end, best of all | thesis-code:
    # after batch i (0-based, of the epoch) with i % val_every == 0 and i > 0 logged only, best of epoch ends
    val_limit: int | None = param()  # validate on the first N val samples
    bn_after_validation: str = param()  # train: every step in train mode | eval: after a validation, the rest
    # of the epoch in eval mode (BN statistics frozen), as the thesis code (its validation calls model.eval())
    checkpoint_every: int = param()  # steps between extra last.pt saves (0: each epoch and at the end)
    checkpoint_minutes: float = param()  # also save last.pt once this long since the last save (0: off)
    log_every: int = param()  # steps between logged training losses
    workers: int = param()  # DataLoader processes
    seed: int = param()
    deterministic: bool = param()
    device: str = param()  # auto | cpu | cuda | cuda:N (torchrun: the local rank's GPU)
    amp: str = param()  # autocast dtype on CUDA: bfloat16 | float16 | float32 (CPU: float32)
    channels_last: bool = param()  # on CUDA
    compile: bool = param()  # torch.compile the model
    out_dir: Path = param(url=True)  # a folder, or a bucket prefix: written locally, each checkpoint uploaded
    log_dir: Path = param()

    def __post_init__(self) -> None:
        checks = [
            (self.batch_size >= 1 and self.accumulate >= 1, "batch_size and accumulate must be >= 1"),
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.read_prefetch >= 0, f"paths.read_prefetch must be >= 0, got {self.read_prefetch}"),
            (self.checkpoint_every >= 0 and self.checkpoint_minutes >= 0, "checkpoint_every and checkpoint_minutes must be >= 0"),
            (self.max_steps is None or self.max_steps >= 1, "max_steps must be >= 1 or null"),
            (0.0 <= self.kd.eps <= 1.0, f"kd.eps must be in [0, 1], got {self.kd.eps}"),
            (self.kd.loss in KD_LOSS_NAMES, f"kd.loss must be one of {', '.join(KD_LOSS_NAMES)}, got {self.kd.loss!r}"),
            (self.kd.norm in KD_NORMS, f"kd.norm must be one of {', '.join(KD_NORMS)}, got {self.kd.norm!r}"),
            (self.kd.norm == "image" or self.kd.loss == "l1",
             f"kd.norm {self.kd.norm} applies to kd.loss l1 (ssi is invariant to the teacher's scale, metric keeps it)"),
            (self.loss.ssim in SSIM_MODES, f"loss.ssim must be one of {', '.join(SSIM_MODES)}, got {self.loss.ssim!r}"),
            (self.loss.invalid in INVALID_MODES,
             f"loss.invalid must be one of {', '.join(INVALID_MODES)}, got {self.loss.invalid!r}"),
            (self.val_schedule in VAL_SCHEDULES,
             f"val_schedule must be one of {', '.join(VAL_SCHEDULES)}, got {self.val_schedule!r}"),
            (self.val_every >= 0, f"val_every must be >= 0, got {self.val_every}"),
            (self.bn_after_validation in BN_AFTER_VALIDATION,
             f"bn_after_validation must be one of {', '.join(BN_AFTER_VALIDATION)}, got {self.bn_after_validation!r}"),
            (self.kd.batch_max_shift in KD_SHIFTS,
             f"kd.batch_max_shift must be one of {', '.join(KD_SHIFTS)}, got {self.kd.batch_max_shift!r}"),
            (self.kd.batch_max_shift == "clipped" or self.kd.norm == "batch",
             f"kd.batch_max_shift {self.kd.batch_max_shift} applies to kd.norm batch (got kd.norm {self.kd.norm})"),
            (self.kd.crops_weight >= 0, f"kd.crops_weight must be >= 0, got {self.kd.crops_weight}"),
            (self.kd.crops_weight == 0 or self.kd.eps > 0,
             f"kd.crops_weight {self.kd.crops_weight} distils from the cache: it needs kd.eps > 0 (got {self.kd.eps})"),
            (0.0 <= self.labels.fraction <= 1.0, f"labels.fraction must be in [0, 1], got {self.labels.fraction}"),
            (self.labels.sampling in ("split", "mixed"),
             f"labels.sampling must be split or mixed, got {self.labels.sampling!r}"),
            (self.labels.unlabelled_batch is None or self.labels.unlabelled_batch >= 1,
             f"labels.unlabelled_batch must be >= 1 or null, got {self.labels.unlabelled_batch}"),
            (self.schedule.name in ("step", "cosine", "constant"),
             f"schedule.name must be step, cosine or constant, got {self.schedule.name!r}"),
            (self.data.decode in ("full", "draft"), f"data.decode must be full or draft, got {self.data.decode!r}"),
            (self.amp in ("bfloat16", "float16", "float32"), f"amp must be bfloat16, float16 or float32, got {self.amp!r}"),
            (len(self.resolution) == 2 and all(int(v) >= MIN_SIZE and int(v) % MULTIPLE == 0 for v in self.resolution),
             f"resolution must be [H, W], multiples of {MULTIPLE} and at least {MIN_SIZE}, got {list(self.resolution)}"),
        ]
        for ok, message in checks:
            if not ok:
                raise LeveError(f"train: {message}")
        self.resolution = (int(self.resolution[0]), int(self.resolution[1]))
        # the model's own input contract (MobileNetV3 Leve: multiples of 16); an unknown name is refused here
        try:
            spec = model_spec(self.model)
        except LeveError as exc:
            raise LeveError(f"train: {exc}") from None
        spec.check_size(*self.resolution, what=f"train: resolution {list(self.resolution)}")

    @property
    def store_path(self) -> Path:
        return self.data_dir / f"{self.dataset}.zarr"

    @property
    def teacher_path(self) -> Path:
        return self.kd.teacher_dir / f"{self.dataset}.zarr"
