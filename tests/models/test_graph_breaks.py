"""`train.compile` / `--runtime compiled` compile the whole model: every registered model must trace
into one graph with no graph break (a break splits the compiled program and falls back to eager
Python between the pieces). Checked with dynamo's own explain on CPU; the same trace serves CUDA."""

from __future__ import annotations

import pytest
import torch

from leve.models.registry import create_model, list_models


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_model_traces_into_one_graph_without_breaks(name):
    torch._dynamo.reset()
    model = create_model(name).train()  # training mode: batch-norm statistics updated inside the graph
    explained = torch._dynamo.explain(model)(torch.rand(2, 3, 64, 64))
    reasons = [str(r.reason) for r in explained.break_reasons]
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), reasons
    torch._dynamo.reset()
