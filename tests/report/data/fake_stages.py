"""Stand-ins for ``leve eval`` and ``leve bench model`` in a throw-away DVC repository.

They write ``metrics/<ds>.json`` in the layout of the real eval stage (and a small
``metrics/bench_model.json``) with values that follow from params.yaml through
:func:`expected_rmse`, so tests can check which experiment a table row came from.
Used to capture ``exp_show.json`` (see README.md here) and by the end-to-end test.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

MODEL_BASE = {"leve": 0.50, "leve-3x3": 0.52, "leve-3x3-1x1": 0.53, "leve-5x5-5x5": 0.49, "leve-dw": 0.56,
              "leve-alt-skips": 0.51, "leve-no-skips": 0.60, "leve-mobilenetv3": 0.67,
              "densedepth-densenet169": 0.48, "densedepth-densenet161": 0.485, "densedepth-resnet50": 0.70,
              "densedepth-mobilenetv2": 0.525, "densedepth-resnet101": 0.66}
DATASET_OFFSET = {"synthetic": 0.0, "nyu": 0.0, "kitti": 11.0, "endoslam": -0.4}
ORGANS = ("Colon", "Small Intestine", "Stomach")
FPS = {"leve": 27.0, "leve-3x3": 34.0, "leve-3x3-1x1": 29.5, "leve-5x5-5x5": 17.5, "leve-dw": 33.0,
       "leve-alt-skips": 25.0, "leve-no-skips": 29.0, "leve-mobilenetv3": 43.0, "densedepth-densenet169": 9.0,
       "densedepth-densenet161": 6.5, "densedepth-resnet50": 14.0, "densedepth-mobilenetv2": 31.0,
       "densedepth-resnet101": 11.0}
SEED_STEP = 0.002  # RMSE added per unit of train.seed
PARAMS = {model: 1_000_000 + 250_000 * i for i, model in enumerate(FPS)}  # a distinct count per model


def expected_rmse(model: str, eps: float, dataset: str, organ_index: int | None = None) -> float:
    """The student RMSE the fake eval writes."""
    value = MODEL_BASE[model] + 0.1 * eps + DATASET_OFFSET[dataset] + 0.01 * (organ_index or 0)
    return round(value, 6)


def means(rmse: float) -> dict[str, float | int]:
    return {"abs_rel": round(rmse / 4, 6), "sq_rel": 0.1, "rmse": rmse, "rmse_log": 0.2, "log10": round(rmse / 10, 6),
            "silog": 20.0, "mae": round(rmse / 2, 6), "d1": round(1 / (1 + rmse), 6),
            "d2": round(1 / (1 + rmse / 2), 6), "d3": round(1 / (1 + rmse / 4), 6), "count": 8, "skipped": 0}


def eval_doc(dataset: str, model: str, eps: float, seed: int = 0) -> dict:
    """The metrics document; ``train.seed`` k adds SEED_STEP * k to every RMSE (seed noise, for the report's statistics)."""
    doc = {"dataset": dataset, "split": "test",
           "protocol": {"name": "leve2024", "dataset": dataset,
                        "crop": {"name": "leve2024", "rows": None, "cols": None, "units": "pixels"},
                        "flip": "separate", "valid_mask": False, "min_depth": 0.1, "max_depth": 10.0,
                        "depth_scale": "dataset", "align": "none", "teacher_align": "lstsq"},
           "checkpoint": {"path": "models/student/best.pt", "model": model, "max_depth": 10.0,
                          "resolution": [120, 160]},
           "student": means(round(expected_rmse(model, eps, dataset) + SEED_STEP * seed, 6)), "teacher": means(0.7),
           "teacher_source": {"path": f"data/teacher/{dataset}.zarr", "model": "tiny-random",
                              "revision": "builtin-seed0"}}
    if dataset == "endoslam":
        doc["groups"] = {organ: {"student": means(round(expected_rmse(model, eps, dataset, i) + SEED_STEP * seed, 6)),
                                 "teacher": means(0.7)}
                         for i, organ in enumerate(ORGANS)}
    return doc


def bench_doc() -> dict:
    return {"resolution": [480, 640], "batch": 1,
            "models": {m: {"params": {"total": PARAMS[m]}, "fp32": {"eager": {"median_ms": round(1000 / fps, 3), "fps": fps}}}
                       for m, fps in FPS.items()}}


def main(stage: str, dataset: str | None = None) -> None:
    params = yaml.safe_load(Path("params.yaml").read_text())["train"]
    model, eps = params["model"], float(params["kd"]["eps"])
    if model not in MODEL_BASE:
        sys.exit(f"unknown model {model}")
    Path("metrics").mkdir(exist_ok=True)
    doc = bench_doc() if stage == "bench" else eval_doc(dataset, model, eps, int(params.get("seed", 0)))
    name = "bench_model" if stage == "bench" else dataset
    Path(f"metrics/{name}.json").write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
