"""Stage ``train``: the ``train`` section of params.yaml as typed dataclasses (code defaults = the
thesis recipe) -> ``models/student/{best,last}.pt`` and DVCLive logs in ``dvclive/train``."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from leve.errors import LeveError
from leve.models.leve import MIN_SIZE, MULTIPLE
from leve.models.registry import model_spec
from leve.params import PARAMS_FILE, build_config, load_params, nest_overrides, section
from leve.processes import exclusive_writer


@dataclass
class KDConfig:
    """Distillation from the cached teacher (eq. 7.1). ``eps = 0`` never opens the cache."""

    eps: float = 0.0
    loss: str = "l1"  # l1: the thesis's max-normalised L1 (eq. 7.8) | ssi: scale-and-shift-invariant L1
    teacher_dir: Path = Path("data/teacher")


@dataclass
class LabelsConfig:
    """Which training samples' depth the student may see (few labels, many images: the setting where
    distillation matters). ``fraction`` of the train split keeps its depth, the first
    ``round(fraction * N)`` indices of a permutation seeded by ``seed`` alone (not ``train.seed``: every
    run sees the same labelled samples, and a smaller fraction keeps a subset of a larger one). The
    supervised terms use only those samples; the KD term uses the teacher cache on all. With no
    labelled sample (``fraction: 0``, or a train split without depth) the student learns relative depth
    from the teacher alone (``kd.loss: ssi`` as the whole loss)."""

    fraction: float = 1.0
    seed: int = 0


@dataclass
class ScheduleConfig:
    """Learning-rate schedule, stepped after every optimiser step."""

    name: str = "step"  # step (thesis: x0.99 every 5 epochs) | cosine | constant
    step_epochs: int = 5
    gamma: float = 0.99
    warmup_steps: int = 0
    min_lr: float = 0.0  # cosine floor


@dataclass
class AugmentConfig:
    """Probabilities of the thesis's two augmentations."""

    flip: float = 0.5  # horizontal flip of RGB, depth and teacher together
    channel_swap: float = 0.5  # random permutation of the RGB channels


# TrainConfig fields that do not change what a run computes (speed, logging cadence, places; dotted
# within nested configs): neither in the run identity (leve/train/loop.py) nor among the `train`
# stage's DVC params (leve/pipeline/stages.py).
RESULT_INDEPENDENT: tuple[str, ...] = (
    "workers", "log_every", "checkpoint_every", "checkpoint_minutes", "device", "compile",
    "out_dir", "log_dir", "data_dir", "kd.teacher_dir",
)


@dataclass
class TrainConfig:
    """Everything ``leve train`` needs; the defaults are the thesis's recipe on NYU."""

    dataset: str = "nyu"
    data_dir: Path = Path("data/zarr")
    train_split: str = "train"
    val_split: str = "val"
    model: str = "leve"  # a registered model (leve.models.list_models()); output at 1/1 or 1/2 (DenseDepth)
    encoder_weights: Path | None = None  # DDRNet23s_imagenet.pth (None: random encoder)
    resolution: tuple[int, int] = (240, 320)  # HxW; 480x640 for the final model
    epochs: int = 20
    max_steps: int | None = None  # stop after this many steps (the schedule then spans them)
    batch_size: int = 8  # global batch (split over torchrun processes and accumulation)
    accumulate: int = 1  # micro-batches per optimiser step
    lr: float = 1e-4
    weight_decay: float = 0.0
    grad_clip: float | None = None  # max gradient norm
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    kd: KDConfig = field(default_factory=KDConfig)
    labels: LabelsConfig = field(default_factory=LabelsConfig)
    val_every: int = 125  # steps between validations (0: only at the end of each epoch)
    val_limit: int | None = None  # validate on the first N val samples
    checkpoint_every: int = 0  # steps between extra last.pt saves (0: each epoch and at the end)
    checkpoint_minutes: float = 5.0  # also save last.pt once this long since the last save (0: off)
    log_every: int = 10  # steps between logged training losses
    workers: int = 2  # DataLoader processes
    seed: int = 0
    deterministic: bool = True
    device: str = "auto"  # auto | cpu | cuda | cuda:N (torchrun: the local rank's GPU)
    amp: str = "bfloat16"  # autocast dtype on CUDA: bfloat16 | float16 | float32 (CPU: float32)
    channels_last: bool = True  # on CUDA
    compile: bool = False  # torch.compile the model
    out_dir: Path = Path("models/student")
    log_dir: Path = Path("dvclive/train")

    def __post_init__(self) -> None:
        checks = [
            (self.batch_size >= 1 and self.accumulate >= 1, "batch_size and accumulate must be >= 1"),
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.checkpoint_every >= 0 and self.checkpoint_minutes >= 0, "checkpoint_every and checkpoint_minutes must be >= 0"),
            (self.max_steps is None or self.max_steps >= 1, "max_steps must be >= 1 or null"),
            (0.0 <= self.kd.eps <= 1.0, f"kd.eps must be in [0, 1], got {self.kd.eps}"),
            (self.kd.loss in ("l1", "ssi"), f"kd.loss must be l1 or ssi, got {self.kd.loss!r}"),
            (0.0 <= self.labels.fraction <= 1.0, f"labels.fraction must be in [0, 1], got {self.labels.fraction}"),
            (self.schedule.name in ("step", "cosine", "constant"),
             f"schedule.name must be step, cosine or constant, got {self.schedule.name!r}"),
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



def config(overrides: dict[str, Any] | None = None, params_file: Path = PARAMS_FILE) -> TrainConfig:
    """Code defaults < ``train`` in params.yaml < overrides (dotted keys such as ``kd.eps``)."""
    values = nest_overrides(section(load_params(params_file), "train"), overrides or {})
    return build_config(TrainConfig, values, "train")


def expected_teacher(dataset: str, params_file: Path = PARAMS_FILE) -> str:
    """The teacher the ``teacher`` params configure for ``dataset`` (a cache from another is stale)."""
    from leve.teacher import stage as teacher

    return teacher.config(dataset, params_file=params_file).model


def run(overrides: dict[str, Any] | None = None, params_file: Path = PARAMS_FILE, restart: bool = False,
        stop_after: int | None = None, show_progress: bool = True) -> Any:
    """Train (or continue training) the student as configured; returns the :class:`TrainResult`."""
    from leve.train.loop import train

    cfg = config(overrides, params_file)
    teacher = expected_teacher(cfg.dataset, params_file) if cfg.kd.eps > 0 else None
    with _sole_writer(cfg.out_dir):
        return train(cfg, expected_teacher=teacher, restart=restart, stop_after=stop_after, show_progress=show_progress)


@contextmanager
def _sole_writer(out_dir: Path) -> Iterator[None]:
    """The write lock of ``out_dir`` (``<out_dir>.lock``), held by the process that writes it (torchrun
    rank 0); another run on the same output is refused. A temporary checkpoint file left by a killed run
    is removed (never a half-written ``last.pt``: it is renamed into place only once whole)."""
    if os.environ.get("RANK", "0") != "0":
        yield
        return
    with exclusive_writer(out_dir):
        for tmp in out_dir.glob("*.pt.tmp"):
            tmp.unlink(missing_ok=True)
        yield
