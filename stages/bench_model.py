"""Stage ``bench-model``: params ``bench.model`` -> ``metrics/bench_model.json`` (DVC metrics)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from leve.bench import model as bench
from leve.params import PARAMS_FILE, build_config, load_params, section


def config(overrides: dict[str, Any] | None = None, params_file: Path = PARAMS_FILE) -> bench.Config:
    """The typed config of ``bench.model``: code defaults < params.yaml < overrides."""
    values = {**section(load_params(params_file), "bench.model"), **(overrides or {})}
    return build_config(bench.Config, values, "bench.model")


def run(overrides: dict[str, Any] | None = None, params_file: Path = PARAMS_FILE,
        progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run the benchmark and write its JSON report to ``cfg.out`` (when set)."""
    cfg = config(overrides, params_file)
    report = bench.run(cfg, progress)
    if cfg.out:
        out = Path(cfg.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(report, indent=2) + "\n")
        tmp.replace(out)
    return report
