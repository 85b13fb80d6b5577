"""The values tests run library calls with where the library states none (issue 28 item 2: a value's one
home is params.yaml; a library function takes it from its caller, and a test is a caller that says what it
runs). Each helper returns keyword arguments, ``over`` replacing the test's usual ones."""

from __future__ import annotations

from typing import Any


def evaluation(**over: Any) -> dict[str, Any]:
    """:func:`leve.evaluation.runner.evaluate`'s run: batches of 8 on the CPU, no example grid, 20 depth bins."""
    return {"batch_size": 8, "device": "cpu", "examples": (), "depth_bins": 20, **over}


def loading(**over: Any) -> dict[str, Any]:
    """:class:`leve.train.data.DepthDataset`'s reading: augmentation seed 0, the full decode (evaluation's input)."""
    return {"seed": 0, "decode": "full", **over}
