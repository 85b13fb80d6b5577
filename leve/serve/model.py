"""The one model a ``leve serve`` process uses, and the prediction it serves."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from torch import nn

from leve.device import resolve_device
from leve.errors import LeveError
from leve.models.lineage import Lineage
from leve.predict import predict_depth
from leve.serve.config import Config


@dataclass
class LoadedModel:
    """A model in eval mode plus what the page says about it."""

    model: nn.Module
    name: str
    checkpoint: str | None
    max_depth: float
    resolution: tuple[int, int]
    device: str
    lineage: Lineage = field(default_factory=Lineage)  # teacher, data and licence the checkpoint records
    depth_kind: str = "metric"  # or "relative" (distilled without depth): no metres, so no point cloud
    # One inference thread: requests run one at a time, and on the thread the warm-up prepared
    # (CPU thread pools and kernel caches are per calling thread).
    worker: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, "leve-infer"))

    @property
    def random(self) -> bool:
        """True when no checkpoint was given: the weights are a random initialisation."""
        return self.checkpoint is None

    @property
    def parameters(self) -> int:
        """Parameters of the model as trained (a prepared runtime may have folded some away)."""
        return int(getattr(self.model, "source_parameters", 0)) or sum(p.numel() for p in self.model.parameters())

    def predict(self, rgb: np.ndarray, flip: bool) -> tuple[np.ndarray, float]:
        """Metric depth for one image and the seconds the model took (one request at a time)."""
        return self.worker.submit(self._timed, rgb, flip).result()

    def _timed(self, rgb: np.ndarray, flip: bool) -> tuple[np.ndarray, float]:
        start = time.perf_counter()
        depth = predict_depth(self.model, rgb, self.resolution, self.max_depth, flip, self.device)
        return depth, time.perf_counter() - start


    def warm_up(self) -> float:
        """One prediction on a blank image at the model's resolution (allocations, kernel choice)."""
        _, seconds = self.predict(np.zeros((*self.resolution, 3), np.uint8), flip=False)
        return seconds


def load_model(cfg: Config) -> LoadedModel:
    """Load ``cfg.checkpoint`` (or build ``cfg.model`` with random weights) once, in eval mode."""
    from leve.models.checkpoint import DEFAULT_RESOLUTION, load_checkpoint
    from leve.models.registry import DEFAULT_MODEL, create_model
    from leve.models.runtime import check_runtime, prepare_for_inference

    device = str(resolve_device(cfg.device, "serve.device"))
    check_runtime(cfg.runtime, device)  # before a checkpoint is read
    if cfg.checkpoint is None:
        if cfg.runtime == "onnx-int8":
            raise LeveError("runtime onnx-int8 runs a checkpoint's int8 export: give --checkpoint, and make its "
                            "export with `leve export --checkpoint CHECKPOINT --format onnx --quantize int8`")
        name = cfg.model or DEFAULT_MODEL
        model = create_model(name, max_depth=cfg.max_depth).to(device).eval()
        model = prepare_for_inference(model, cfg.runtime, DEFAULT_RESOLUTION)
        return LoadedModel(model, name, None, cfg.max_depth, DEFAULT_RESOLUTION, device)
    model, info = load_checkpoint(cfg.checkpoint, device=device)
    if cfg.model and cfg.model != info.model:
        raise LeveError(f"{cfg.checkpoint}: checkpoint holds model '{info.model}', not '{cfg.model}'")
    if cfg.runtime == "onnx-int8":  # the file `leve export --quantize int8` wrote (and checked) beside it
        from leve.predict import load_int8_export

        model = load_int8_export(cfg.checkpoint, model)
    else:
        model = prepare_for_inference(model, cfg.runtime, info.resolution)  # checked against eager there
    return LoadedModel(model, info.model, info.path, info.max_depth, info.resolution, device,
                       Lineage.of(info), depth_kind=info.depth_kind)
