"""Model registry, timm-style: every registered model is one frozen :class:`ModelSpec` entry.

An entry carries everything known about a variant: its architecture (``leve``: DDRNet-23-slim
with the :class:`~leve.models.leve.LeveConfig` choices ``lcb`` and ``skips``; ``leve-mobilenetv3``:
the thesis's MobileNetV3-Small Leve; ``densedepth``: DenseDepth's decoder on an ImageNet encoder
of :mod:`leve.models.encoders`), its encoder, its output stride (1: output at the input
resolution, 2: at half of it) and the input sizes it takes, a description, the label the thesis
prints for it, the experiment groups it belongs to (``lcb``: Tables 9.2–9.3, ``skips``: Table 9.4,
``kd``: Tables 9.6–9.8, ``encoders``: Table 9.1 and seed 002's Table I), the published figures
for it (:class:`ReferenceResult` rows: the thesis's chapter 9 tables, seed 002's Table I, read from
the package's ``published.csv``, :mod:`leve.models.published`) and its encoder's pretrained-weights file. The experiment grid
(:mod:`leve.experiments.grid`), the report's labels and table membership
(:mod:`leve.report.experiments`) and the benchmark's thesis FPS (:mod:`leve.bench.model`) are
derived from :data:`MODELS`; nothing else lists the variants.

Usage::

    from leve.models import create_model, list_models, model_spec
    list_models()                      # ['leve', 'leve-3x3', ...] (the default first)
    list_models(group="skips")         # ['leve', 'leve-alt-skips', 'leve-no-skips'] (thesis order)
    model_spec("leve-dw").fps          # 33.0 (Table 9.3, GTX 1650 Ti, 480x640)
    create_model("leve", encoder_weights="DDRNet23s_imagenet.pth")
    create_model("densedepth-densenet169", encoder_weights="densenet169-b2777c0a.pth")  # output at H/2
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from torch import nn

from leve.errors import LeveError
from leve.models.base import DepthModel, size_problem
from leve.models.densedepth import DenseDepth
from leve.models.encoders.catalogue import ENCODERS
from leve.models.encoders.create import create_encoder
from leve.models.leve import MIN_SIZE, MULTIPLE, Leve, LeveConfig
from leve.models.leve_mobilenet import ENCODER as LEVE_MOBILENET_ENCODER
from leve.models.leve_mobilenet import LeveMobileNetV3
from leve.models.pretrained import load_encoder_weights, load_imagenet_weights
from leve.models.published import SEED_002 as SEED_002  # re-exported: the report and the tests cite them here
from leve.models.published import THESIS, ReferenceResult, published_results, results_of
from leve.models.published import THESIS_FPS_DEVICE as THESIS_FPS_DEVICE
from leve.progress import console
from leve.sources.weights import DDRNET23S_IMAGENET, WeightsFile

Factory = Callable[..., nn.Module]
DEFAULT_MODEL = "leve"
GROUPS = ("lcb", "skips", "kd", "encoders")
ARCHITECTURES = ("leve", "leve-mobilenetv3", "densedepth")


@dataclass(frozen=True)
class Group:
    """A model's place in one of the thesis's experiment groups (:data:`GROUPS`)."""

    name: str  # lcb | skips | kd | encoders
    label: str  # its row label in leve's comparison tables: "3x3+3x3", "main skips"
    tag: str  # its part of the experiment names of `leve experiments queue`: "3x3-3x3", "main"


@dataclass(frozen=True)
class ModelSpec:
    """One registered model: architecture, encoder, output stride, description, published figures
    and pretrained file."""

    name: str
    description: str
    lcb: str = "3x3+3x3"  # LeveConfig.lcb (architectures leve, leve-mobilenetv3)
    skips: str = "main"  # LeveConfig.skips (architecture leve)
    label: str = ""  # the thesis's (or seed's) name for the variant: "3x3+3x3", "DenseNet-169"
    groups: tuple[Group, ...] = ()
    results: tuple[ReferenceResult, ...] = ()
    encoder_weights: WeightsFile | None = None  # its encoder's published file (leve.sources.weights)
    factory: Factory | None = None  # a custom builder f(encoder_weights=None, max_depth=10.0)
    architecture: str = "leve"  # one of ARCHITECTURES
    encoder: str = "ddrnet23_slim"  # the encoder: DDRNet-23-slim or a name of leve.models.encoders.catalogue.ENCODERS
    output_stride: int = 1  # output size = input size / output_stride (1 or 2)
    input_multiple: int = MULTIPLE  # input H and W must be multiples of this ...
    min_size: int = MIN_SIZE  # ... and at least this
    # the training resolution (H, W) of its published figures that the experiment grid sets for it;
    # None: the params' own (the thesis's Leve variants)
    train_resolution: tuple[int, int] | None = None

    def config(self, max_depth: float = 10.0) -> LeveConfig:
        """The architecture as a :class:`LeveConfig`."""
        return LeveConfig(lcb=self.lcb, skips=self.skips, max_depth=float(max_depth))

    def group(self, name: str) -> Group | None:
        """The model's entry in experiment group ``name``, None if it is not in it."""
        return next((g for g in self.groups if g.name == name), None)

    @property
    def thesis(self) -> tuple[ReferenceResult, ...]:
        """The thesis's rows for this model (chapter 9)."""
        return tuple(r for r in self.results if r.source == THESIS)

    @property
    def tables(self) -> tuple[str, ...]:
        """The thesis tables reporting this model, in order of appearance."""
        return tuple(dict.fromkeys(r.table for r in self.thesis))

    @property
    def fps(self) -> float | None:
        """The thesis's FPS of this model (:data:`THESIS_FPS_DEVICE`), None if not reported."""
        return next((r.fps for r in self.thesis if r.fps is not None), None)

    def result(self, table: str, dataset: str = "nyu", kd_eps: float = 0.0, source: str = THESIS) -> ReferenceResult | None:
        """The row of this model in ``source``'s ``table`` (on ``dataset``, at ``kd_eps``)."""
        return next((r for r in self.results if r.source == source and r.table == table
                     and r.dataset == dataset and r.kd_eps == kd_eps), None)

    def check_size(self, h: int, w: int, what: str = "input") -> None:
        """Refuse an input size this model cannot take: one line naming the size and the model."""
        problem = size_problem(int(h), int(w), self.input_multiple, self.min_size)
        if problem:
            raise LeveError(f"{what}: model '{self.name}': {problem}")


def _lcb(label: str, tag: str) -> Group:
    return Group("lcb", label, tag)


# The thesis's variants (§9.1.2-9.2) in the order its tables list them.
_THESIS_MODELS = (
    ModelSpec("leve-3x3", "LCB with a single 3x3 convolution.", lcb="3x3", label="3x3",
              groups=(_lcb("3x3", "3x3"),)),
    ModelSpec("leve-3x3-1x1", "LCB 3x3 then 1x1.", lcb="3x3+1x1", label="3x3+1x1",
              groups=(_lcb("3x3+1x1", "3x3-1x1"),)),
    ModelSpec("leve", "Leve as in the thesis: LCB 3x3+3x3, main skips (image, layer1, high branch).",
              label="3x3+3x3",
              groups=(_lcb("3x3+3x3", "3x3-3x3"), Group("skips", "main skips", "main"), Group("kd", "3x3+3x3", ""),
                      Group("encoders", "DDRNet-23-slim", "ddrnet23s"))),
    ModelSpec("leve-5x5-5x5", "LCB with two 5x5 convolutions.", lcb="5x5+5x5", label="5x5+5x5",
              groups=(_lcb("5x5+5x5", "5x5-5x5"),)),
    ModelSpec("leve-dw", "LCB as one depthwise-separable 3x3 (the thesis's [3x3-dw-separable]).", lcb="dw",
              label="3x3-dw-separable", groups=(_lcb("3x3-dw-separable", "3x3-dw"),)),
    ModelSpec("leve-alt-skips", "Alternative skips: high branch after each fusion and layer2 (all 64 ch at H/8).",
              skips="alt", label="alternative-skip-connections", groups=(Group("skips", "alternative skips", "alt"),)),
    ModelSpec("leve-no-skips", "No skip connections.", skips="none", label="no-skip-connections",
              groups=(Group("skips", "no skips", "none"),)),
)


def torchvision_weights(encoder: str) -> WeightsFile:
    """The published ImageNet file of an encoder of :data:`leve.models.encoders.catalogue.ENCODERS`."""
    return ENCODERS[encoder].weights


def _encoders(label: str, tag: str) -> Group:
    return Group("encoders", label, tag)


# Thesis Table 9.1 (encoders under Leve's decoder, NYU, 240x320): the MobileNetV3 row.
LEVE_MOBILENETV3 = ModelSpec(
    "leve-mobilenetv3", "Leve's decoder on MobileNetV3-Small features[0:9] (16 @ 1/2, 24 @ 1/8, 48 @ 1/16), "
    "an extra x2 between the first two blocks (thesis Table 9.1).",
    label="MobileNetV3", groups=(_encoders("MobileNetV3", "mobilenetv3"),),
    encoder_weights=torchvision_weights(LEVE_MOBILENET_ENCODER), architecture="leve-mobilenetv3",
    encoder=LEVE_MOBILENET_ENCODER, input_multiple=LeveMobileNetV3.input_multiple, train_resolution=(240, 320))


def _densedepth(encoder: str, label: str) -> ModelSpec:
    """A DenseDepth model of seed 002 (Table I: NYU, trained at 480x640, output at 240x320)."""
    name = "densedepth-" + encoder.replace("_", "")
    return ModelSpec(name, f"DenseDepth's decoder on an ImageNet {label} (seed 002); output at half the input "
                     "resolution.", label=label, groups=(_encoders(f"DenseDepth {label}", name),),
                     encoder_weights=torchvision_weights(encoder), architecture="densedepth", encoder=encoder,
                     output_stride=DenseDepth.output_stride, input_multiple=DenseDepth.input_multiple,
                     min_size=DenseDepth.min_input_size, train_resolution=(480, 640))


# Seed 002, Table I, in its order.
_DENSEDEPTH_MODELS = (
    _densedepth("densenet169", "DenseNet-169"),
    _densedepth("densenet161", "DenseNet-161"),
    _densedepth("resnet50", "ResNet-50"),
    _densedepth("mobilenet_v2", "MobileNetV2"),
    _densedepth("resnet101", "ResNet-101"),
)

MODELS: dict[str, ModelSpec] = {}  # registration order: the thesis's order, then seed 002's
# How create_model(folder) loads a model saved by `leve export --format hf`: leve.models.checkpoint (which
# builds registered models, so sits above this module) registers its loader here when it is imported.
_FOLDER_LOADER: list[Callable[[str | Path], nn.Module]] = []


def register_folder_loader(load: Callable[[str | Path], nn.Module]) -> None:
    """Let :func:`create_model` build a model from a saved folder with ``load(folder)``."""
    _FOLDER_LOADER[:] = [load]


def register_model(spec: ModelSpec | str) -> ModelSpec | Callable[[Factory], Factory]:
    """Register a :class:`ModelSpec`; or, given a name, a decorator adding a custom factory
    ``f(encoder_weights=None, max_depth=10.0) -> nn.Module`` under that name."""
    if isinstance(spec, ModelSpec):
        if spec.name in MODELS:
            raise ValueError(f"model '{spec.name}' registered twice")
        MODELS[spec.name] = spec
        return spec

    def add(fn: Factory) -> Factory:
        doc = (fn.__doc__ or "").strip()
        register_model(ModelSpec(spec, doc.splitlines()[0] if doc else "", factory=fn))
        return fn

    return add


for _spec in _THESIS_MODELS:  # every thesis variant's encoder loads the ImageNet DDRNet-23-slim file
    register_model(replace(_spec, encoder_weights=DDRNET23S_IMAGENET, results=results_of(_spec.name)))
for _spec in (LEVE_MOBILENETV3, *_DENSEDEPTH_MODELS):
    register_model(replace(_spec, results=results_of(_spec.name)))
_unknown = sorted({m for m, _ in published_results()} - set(MODELS))
if _unknown:
    raise ValueError(f"published.csv: rows for unregistered models {', '.join(_unknown)}")


def list_models(group: str | None = None, table: str | None = None) -> list[str]:
    """Registered model names, the default first then sorted; with ``group`` (lcb | skips | kd |
    encoders) or ``table`` (a thesis table number such as "9.2"), only its members, in the
    registry's (the thesis's) order."""
    if group is None and table is None:
        return sorted(MODELS, key=lambda n: (n != DEFAULT_MODEL, n))
    if group is not None and group not in GROUPS:
        raise LeveError(f"unknown model group '{group}'; choose from {', '.join(GROUPS)}")
    return [n for n, s in MODELS.items()
            if (group is None or s.group(group)) and (table is None or table in s.tables)]


def model_spec(name: str = DEFAULT_MODEL) -> ModelSpec:
    """The registry entry of ``name``."""
    if name not in MODELS:
        raise LeveError(f"unknown model '{name}'; choose from {', '.join(list_models())}")
    return MODELS[name]


def model_specs() -> list[ModelSpec]:
    """Every registry entry, in registration (the thesis's) order."""
    return list(MODELS.values())


def _encoder_report(path: str | Path, name: str, loaded: int, params: int, skipped: int) -> None:
    console.print(f"{path}: loaded {loaded} tensors ({params / 1e6:.2f} M parameters) into {name}; "
                  f"skipped {skipped} classifier tensors; random init: decoder")


def _build(spec: ModelSpec, encoder_weights: str | Path | None, max_depth: float) -> DepthModel:
    """The network of a data-only spec, its encoder loaded from ``encoder_weights`` when given."""
    if spec.architecture == "leve":
        model: DepthModel = Leve(spec.config(max_depth))
        if encoder_weights is not None:
            report = load_encoder_weights(model.encoder, encoder_weights)
            console.print(report.summary() + ", decoder")
        return model
    if spec.architecture not in ARCHITECTURES:
        raise LeveError(f"model '{spec.name}': unknown architecture '{spec.architecture}'")
    encoder = create_encoder(spec.encoder)
    if encoder_weights is not None:  # into the whole published trunk, before any unused block is dropped
        r = load_imagenet_weights(encoder, encoder_weights)
        _encoder_report(encoder_weights, spec.encoder, r.loaded, r.loaded_params, len(r.skipped))
    if spec.architecture == "leve-mobilenetv3":
        return LeveMobileNetV3(encoder, max_depth, lcb=spec.lcb)
    trim = getattr(encoder, "trim", None)
    if trim is not None:
        trim()  # MobileNetV2's final 1x1 conv (features.18) is not run: not part of the model
    return DenseDepth(encoder, max_depth)


def create_model(name: str = DEFAULT_MODEL, encoder_weights: str | Path | None = None,
                 max_depth: float = 10.0) -> nn.Module:
    """Build a registered model; ``encoder_weights`` is a local copy of the spec's pretrained file
    (``spec.encoder_weights``: ``DDRNet23s_imagenet.pth`` for Leve, see :data:`DDRNET23S_IMAGENET`;
    torchvision's ImageNet file for the other encoders, e.g. ``densenet169-b2777c0a.pth``).

    Every model has ``encoder``, ``decoder``, ``max_depth``, ``output_stride`` (1 or 2),
    ``input_multiple`` and ``min_input_size``. ``name`` may also be a folder written by
    ``leve export --format hf``: its trained model is loaded (offline, in eval mode) by
    :func:`leve.models.checkpoint.load_checkpoint` (once that module is imported)."""
    if name not in MODELS and Path(name).is_dir():
        if not _FOLDER_LOADER:  # leve.models.checkpoint not imported yet
            raise LeveError(f"{name}: a saved model folder: load it with leve.models.checkpoint.load_checkpoint")
        return _FOLDER_LOADER[0](name)
    spec = model_spec(name)
    if not max_depth > 0:
        raise LeveError(f"max_depth must be positive, got {max_depth}")
    if spec.factory is not None:
        return spec.factory(encoder_weights=encoder_weights, max_depth=max_depth)
    model = _build(spec, encoder_weights, max_depth)
    model.name = spec.name
    return model
