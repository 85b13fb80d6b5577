"""``leve serve`` runs the model through the chosen inference runtime (leve.models.runtime)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from leve.errors import LeveError
from leve.models.checkpoint import load_checkpoint
from leve.serve.model import load_model


def test_serve_runtimes_agree_and_keep_the_trained_parameter_count(serve_config):
    model, _ = load_checkpoint(serve_config.checkpoint)
    trained = sum(p.numel() for p in model.parameters())
    rgb = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    depths = {}
    for runtime in ("eager", "torch", "onnx"):
        loaded = load_model(replace(serve_config, runtime=runtime))
        try:
            assert loaded.model.runtime == runtime and loaded.parameters == trained
            depths[runtime], _ = loaded.predict(rgb, flip=True)
        finally:
            loaded.worker.shutdown()
    assert depths["eager"].shape == (40, 60)
    assert np.abs(depths["torch"] - depths["eager"]).max() < 1e-3  # metres
    assert np.abs(depths["onnx"] - depths["eager"]).max() < 1e-3


def test_serve_refuses_an_unknown_runtime(serve_config):
    with pytest.raises(LeveError, match="unknown runtime 'tensorrt'"):
        load_model(replace(serve_config, runtime="tensorrt"))
