"""Model registry: one small typed factory per thesis variant, looked up by name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from leve.errors import LeveError
from leve.models.leve import Leve, LeveConfig
from leve.models.pretrained import load_encoder_weights
from leve.progress import console

Factory = Callable[..., Leve]
_REGISTRY: dict[str, Factory] = {}
DEFAULT_MODEL = "leve"


def register_model(name: str) -> Callable[[Factory], Factory]:
    """Decorator adding a factory ``f(encoder_weights=None, max_depth=10.0) -> Leve`` under ``name``."""

    def add(fn: Factory) -> Factory:
        if name in _REGISTRY:
            raise ValueError(f"model '{name}' registered twice")
        _REGISTRY[name] = fn
        return fn

    return add


def list_models() -> list[str]:
    """Registered model names, the default first."""
    return sorted(_REGISTRY, key=lambda n: (n != DEFAULT_MODEL, n))


def create_model(name: str = DEFAULT_MODEL, encoder_weights: str | Path | None = None, max_depth: float = 10.0) -> Leve:
    """Build a registered model; ``encoder_weights`` is a local ``DDRNet23s_imagenet.pth``."""
    if name not in _REGISTRY:
        raise LeveError(f"unknown model '{name}'; choose from {', '.join(list_models())}")
    if not max_depth > 0:
        raise LeveError(f"max_depth must be positive, got {max_depth}")
    return _REGISTRY[name](encoder_weights=encoder_weights, max_depth=max_depth)


def _build(lcb: str, skips: str, encoder_weights: str | Path | None, max_depth: float) -> Leve:
    model = Leve(LeveConfig(lcb=lcb, skips=skips, max_depth=float(max_depth)))
    if encoder_weights is not None:
        report = load_encoder_weights(model.encoder, encoder_weights)
        console.print(report.summary() + ", decoder")
    return model


@register_model("leve")
def leve(encoder_weights: str | Path | None = None, max_depth: float = 10.0) -> Leve:
    """Leve as in the thesis: LCB 3x3+3x3, main skips (image, layer1, high branch)."""
    return _build("3x3+3x3", "main", encoder_weights, max_depth)


@register_model("leve-3x3")
def leve_3x3(encoder_weights: str | Path | None = None, max_depth: float = 10.0) -> Leve:
    """LCB with a single 3x3 convolution."""
    return _build("3x3", "main", encoder_weights, max_depth)


@register_model("leve-3x3-1x1")
def leve_3x3_1x1(encoder_weights: str | Path | None = None, max_depth: float = 10.0) -> Leve:
    """LCB 3x3 then 1x1."""
    return _build("3x3+1x1", "main", encoder_weights, max_depth)


@register_model("leve-5x5-5x5")
def leve_5x5_5x5(encoder_weights: str | Path | None = None, max_depth: float = 10.0) -> Leve:
    """LCB with two 5x5 convolutions."""
    return _build("5x5+5x5", "main", encoder_weights, max_depth)


@register_model("leve-dw")
def leve_dw(encoder_weights: str | Path | None = None, max_depth: float = 10.0) -> Leve:
    """LCB as one depthwise-separable 3x3 (the thesis's [3x3-dw-separable])."""
    return _build("dw", "main", encoder_weights, max_depth)


@register_model("leve-alt-skips")
def leve_alt_skips(encoder_weights: str | Path | None = None, max_depth: float = 10.0) -> Leve:
    """Alternative skips: high branch after each fusion and layer2 (all 64 ch at H/8)."""
    return _build("3x3+3x3", "alt", encoder_weights, max_depth)


@register_model("leve-no-skips")
def leve_no_skips(encoder_weights: str | Path | None = None, max_depth: float = 10.0) -> Leve:
    """No skip connections."""
    return _build("3x3+3x3", "none", encoder_weights, max_depth)
