"""Known teachers as data: hub checkpoints (with licence and revision) and built-in random
architectures for offline tests and benchmarks.

A *hub* entry names a Hugging Face repository; ``revision`` pins a commit (``None`` means
the repository's ``main``, and the commit actually resolved is recorded in the cache).
A *builtin* entry is a :class:`DepthAnythingConfig` built in code and initialised from a
fixed seed, so it needs no download and always gives the same weights.
A hub entry's checkpoint is described as every published weights file is
(:class:`~leve.sources.weights.WeightsFile`: page, licence, input mean/std): :attr:`TeacherEntry.weights`.
A *packaged* entry is a ``save_pretrained`` folder shipped inside leve (``embedded``: a small
Depth-Anything trained here, :mod:`leve.teacher.embedded`), loaded offline after its hashes are checked.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leve.sources.weights import WeightsFile
from leve.teacher.embedded import WEIGHTS_DIR

APACHE = "Apache-2.0"
CC_BY_NC = "CC-BY-NC-4.0 (non-commercial use only)"
MIT = "MIT"
APPLE_AMLR = "Apple Machine Learning Research Model licence (research use only)"
DEPTH_KINDS = ("relative", "metric")  # what a teacher's map means: disparity up to scale and shift | metres

@dataclass(frozen=True)
class TeacherEntry:
    """One known teacher: a hub checkpoint or a built-in random architecture."""

    name: str
    licence: str
    hub_id: str | None = None
    revision: str | None = None
    builtin: Callable[[], Any] | None = None
    seed: int = 0
    description: str = ""
    folder: Path | None = None  # a save_pretrained folder shipped with leve (checked against its record)
    depth_kind: str = "relative"  # relative: disparity up to scale and shift | metric: depth in metres
    max_depth: float | None = None  # metric: the largest depth the checkpoint predicts (m); None: unbounded
    model_type: str = "depth_anything"  # the transformers architecture (config.json's model_type)
    runnable: str = ""  # why leve's teacher cache cannot run it yet ("" when it can)

    @property
    def units(self) -> str:
        """The units of the teacher's map: ``m`` for a metric teacher, else ``relative``."""
        return "m" if self.depth_kind == "metric" else "relative"

    @property
    def is_builtin(self) -> bool:
        return self.builtin is not None

    @property
    def weights(self) -> WeightsFile | None:
        """The published checkpoint of a hub entry (its repository page, licence and ImageNet mean/std,
        which Depth-Anything's preprocessing uses); None for built-in and packaged entries."""
        if self.hub_id is None:
            return None
        url = f"https://huggingface.co/{self.hub_id}"
        return WeightsFile(self.name, self.hub_id, url, None, self.licence, source=url)


# --------------------------------------------------------------------------- built-in configs


def _dinov2(**kw: Any) -> Any:
    from transformers import Dinov2Config

    base = {"image_size": 518, "patch_size": 14, "reshape_hidden_states": False}
    return Dinov2Config(**{**base, **kw})


def tiny_random_config() -> Any:
    """A ~0.2 M-parameter Depth-Anything (Dinov2 width 32, 4 layers) for tests and the demo.

    ``initializer_range`` 0.1 (instead of 0.02) keeps the random output well above zero.
    """
    from transformers import DepthAnythingConfig

    backbone = _dinov2(
        hidden_size=32,
        num_hidden_layers=4,
        num_attention_heads=2,
        intermediate_size=64,
        out_indices=[1, 2, 3, 4],
        initializer_range=0.1,
    )
    return DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=32,
        reassemble_factors=[4, 2, 1, 0.5],
        neck_hidden_sizes=[8, 16, 32, 32],
        fusion_hidden_size=16,
        head_hidden_size=8,
        initializer_range=0.1,
    )


def tiny_random_metric_config() -> Any:
    """:func:`tiny_random_config` with the metric head of Depth-Anything V2 Metric (``sigmoid * max_depth``,
    ``max_depth`` 10 m): a metric teacher for offline tests."""
    config = tiny_random_config()
    config.depth_estimation_type = "metric"
    config.max_depth = 10  # an int, as the published configs write it (transformers types it int)
    return config


def small_random_config() -> Any:
    """The real-size V1/V2 Small architecture (ViT-S/14 Dinov2, 24.8 M parameters)."""
    from transformers import DepthAnythingConfig

    backbone = _dinov2(hidden_size=384, num_attention_heads=6, out_indices=[9, 10, 11, 12])
    return DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=384,
        neck_hidden_sizes=[48, 96, 192, 384],
        fusion_hidden_size=64,
    )


def base_random_config() -> Any:
    """The real-size V1/V2 Base architecture (ViT-B/14 Dinov2, ~97 M parameters)."""
    from transformers import DepthAnythingConfig

    backbone = _dinov2(hidden_size=768, num_attention_heads=12, out_indices=[9, 10, 11, 12])
    return DepthAnythingConfig(
        backbone_config=backbone,
        reassemble_hidden_size=768,
        neck_hidden_sizes=[96, 192, 384, 768],
        fusion_hidden_size=128,
    )


# --------------------------------------------------------------------------- registry


def _hub(name: str, hub_id: str, licence: str, description: str, **kw: Any) -> TeacherEntry:
    return TeacherEntry(name=name, licence=licence, hub_id=hub_id, description=description, **kw)


# Why the cache cannot run an architecture yet: its processor does what leve's batched preprocessing
# (leve.teacher.preprocess, the DPT processor's arithmetic) and post-processing (bicubic resize) do not.
ZOEDEPTH_GAP = ("ZoeDepth's processor pads each image by reflection before resizing (bilinear) and its "
                "post-processing resizes to the padded size and crops the padding: not replicated by the cache")
DEPTH_PRO_GAP = ("DepthPro's post-processing scales its inverse depth by the focal length it predicts (field of "
                 "view) at a fixed 1536 px input: not replicated by the cache")


def _metric_v2(place: str, size: str, licence: str, max_depth: float, trained_on: str) -> TeacherEntry:
    return _hub(f"v2-metric-{place.lower()}-{size.lower()}", f"depth-anything/Depth-Anything-V2-Metric-{place}-{size}-hf",
                licence, f"Depth-Anything V2 {size}, metric {place.lower()} ({trained_on}, depth <= {max_depth:g} m)",
                depth_kind="metric", max_depth=max_depth)


METRIC_TEACHERS: tuple[TeacherEntry, ...] = (
    _metric_v2("Indoor", "Small", APACHE, 20.0, "Hypersim"),
    _metric_v2("Indoor", "Base", CC_BY_NC, 20.0, "Hypersim"),
    _metric_v2("Indoor", "Large", CC_BY_NC, 20.0, "Hypersim"),
    _metric_v2("Outdoor", "Small", APACHE, 80.0, "Virtual KITTI 2"),
    _metric_v2("Outdoor", "Base", CC_BY_NC, 80.0, "Virtual KITTI 2"),
    _metric_v2("Outdoor", "Large", CC_BY_NC, 80.0, "Virtual KITTI 2"),
    _hub("zoedepth-nyu", "Intel/zoedepth-nyu", MIT, "ZoeDepth (BEiT-L), metric, NYU", depth_kind="metric",
         max_depth=10.0, model_type="zoedepth", runnable=ZOEDEPTH_GAP),
    _hub("zoedepth-kitti", "Intel/zoedepth-kitti", MIT, "ZoeDepth (BEiT-L), metric, KITTI", depth_kind="metric",
         max_depth=80.0, model_type="zoedepth", runnable=ZOEDEPTH_GAP),
    _hub("zoedepth-nyu-kitti", "Intel/zoedepth-nyu-kitti", MIT, "ZoeDepth (BEiT-L), metric, NYU + KITTI heads",
         depth_kind="metric", max_depth=80.0, model_type="zoedepth", runnable=ZOEDEPTH_GAP),
    _hub("depth-pro", "apple/DepthPro-hf", APPLE_AMLR, "DepthPro, metric (focal length predicted), unbounded depth",
         depth_kind="metric", max_depth=None, model_type="depth_pro", runnable=DEPTH_PRO_GAP),
)
# Prompt Depth Anything is not listed: without its prompt (a low-resolution metric depth map, e.g. LiDAR) it runs,
# but its output is then the depth normalised to the prompt's [min, max]: the metres come from the prompt.
PROMPT_DEPTH_GAP = ("Prompt Depth Anything takes its metres from its prompt (a metric depth map, e.g. LiDAR): "
                    "without one its output is normalised to the prompt's range, neither metric nor cached")


REGISTRY: dict[str, TeacherEntry] = {
    e.name: e
    for e in (
        _hub("v1-small", "LiheYoung/depth-anything-small-hf", APACHE, "Depth-Anything V1 Small (the thesis)"),
        _hub("v1-base", "LiheYoung/depth-anything-base-hf", APACHE, "Depth-Anything V1 Base"),
        _hub("v1-large", "LiheYoung/depth-anything-large-hf", APACHE, "Depth-Anything V1 Large"),
        _hub("v2-small", "depth-anything/Depth-Anything-V2-Small-hf", APACHE, "Depth-Anything V2 Small"),
        _hub("v2-base", "depth-anything/Depth-Anything-V2-Base-hf", CC_BY_NC, "Depth-Anything V2 Base"),
        _hub("v2-large", "depth-anything/Depth-Anything-V2-Large-hf", CC_BY_NC, "Depth-Anything V2 Large"),
        TeacherEntry("tiny-random", APACHE, builtin=tiny_random_config, description="tiny random (tests, demo)"),
        TeacherEntry("tiny-random-metric", APACHE, builtin=tiny_random_metric_config, depth_kind="metric",
                     max_depth=10.0, description="tiny random, metric head (tests)"),
        TeacherEntry("small-random", APACHE, builtin=small_random_config, description="Small architecture, random"),
        TeacherEntry("base-random", APACHE, builtin=base_random_config, description="Base architecture, random"),
        TeacherEntry("embedded", f"{APACHE} (trained here by leve)", folder=WEIGHTS_DIR,
                     description="synthetic rooms only: a small Depth-Anything trained here on leve's rendered "
                     "rooms (offline, shipped); on real photos use v2-small, v1-small or a save_pretrained folder"),
        *METRIC_TEACHERS,
    )
}
_BY_HUB_ID = {e.hub_id.lower(): e for e in REGISTRY.values() if e.hub_id}



def __getattr__(name: str) -> str:
    """``DEFAULT_TEACHER``, the old constant: now params.yaml's ``teacher.model`` (its one home)."""
    if name != "DEFAULT_TEACHER":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import warnings

    from leve.params import default

    warnings.warn(f"{__name__}.DEFAULT_TEACHER is deprecated: read leve.params.default('teacher.model')",
                  DeprecationWarning, stacklevel=2)
    return str(default("teacher.model"))


def find_entry(model: str) -> TeacherEntry | None:
    """The registry entry for a short name (``v1-small``) or hub id, else ``None``."""
    return REGISTRY.get(model) or _BY_HUB_ID.get(model.lower())


def list_teachers() -> list[TeacherEntry]:
    return list(REGISTRY.values())
