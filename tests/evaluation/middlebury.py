"""Real RGB-D data a package ships: the Middlebury 2014 *Motorcycle* scene as scikit-image bundles it
(``skimage.data.stereo_motorcycle()``: left image and ground-truth disparity, down-sampled 4x), turned
into metric depth and cut into crops of a small leve store.

Depth from disparity ``d`` (pixels, at the down-sampled size): ``Z = baseline · f / (d + doffs)``. The
scene's calib.txt (Middlebury 2014) gives f = 3979.911 px, doffs = 124.343 px, baseline = 193.001 mm at
full size; scikit-image's docstring gives them for its 4x down-sampled copy: f = 994.978 px, doffs
(principal point dx) = 31.086 px, baseline 193.001 mm. The scene spans about 2.1-5.0 m. Pixels without
ground truth (NaN disparity) are stored as depth 0 (no measurement).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tests.explicit import caching, evaluation

FOCAL_PX = 994.978  # at scikit-image's down-sampled size (3979.911 / 4)
DOFFS_PX = 31.086  # 124.343 / 4
BASELINE_M = 0.193001
MAX_DEPTH = 10.0
CROP = (120, 160)
# crop corners (row, col) of the 500x741 image: 6 test crops, 4 train crops (the constant's median)
TEST_CORNERS = [(r, c) for r in (60, 250) for c in (60, 300, 540)]
TRAIN_CORNERS = [(r, c) for r in (0, 380) for c in (180, 420)]


def motorcycle() -> tuple[np.ndarray, np.ndarray]:
    """(RGB uint8 (500, 741, 3), depth float32 metres (500, 741), 0 where there is no ground truth)."""
    from skimage.data import stereo_motorcycle

    left, _, disp = stereo_motorcycle()
    disp = np.asarray(disp, dtype=np.float64)
    ok = np.isfinite(disp)
    depth = np.zeros(disp.shape, dtype=np.float32)
    depth[ok] = BASELINE_M * FOCAL_PX / (disp[ok] + DOFFS_PX)
    return np.asarray(left, dtype=np.uint8), depth


class Crops:
    """Picklable store loader: sample ``i`` is the crop at ``corners[i]`` of the scene."""

    def __init__(self, corners: list[tuple[int, int]]) -> None:
        self.corners = corners

    def __call__(self, i: int) -> tuple[dict, dict]:
        rgb, depth = motorcycle()
        r, c = self.corners[i]
        h, w = CROP
        return ({"rgb": rgb[r:r + h, c:c + w].copy(), "depth": depth[r:r + h, c:c + w].copy()},
                {"height": h, "width": w, "source": f"motorcycle@{r},{c}"})


def motorcycle_store(path: Path) -> Path:
    """A complete store ``middlebury`` (train: 4 crops, test: 6 crops) of the Motorcycle scene."""
    from leve.datasets.build import SplitSource, build_store
    from leve.store.format import SplitSpec, dataset_arrays, fingerprint

    meta = {"height": "int32", "width": "int32", "source": "str"}
    sources = [SplitSource(SplitSpec(name, len(corners), dataset_arrays(*CROP), meta), Crops(corners))
               for name, corners in (("train", TRAIN_CORNERS), ("test", TEST_CORNERS))]
    build_store(path, {"dataset": "middlebury", "units": "m", "max_depth": MAX_DEPTH},
                fingerprint(["middlebury-motorcycle", TRAIN_CORNERS, TEST_CORNERS]), sources, block_size=3,
                show_progress=False)
    return path


def swapped(depth: np.ndarray, how: str = "mirror") -> np.ndarray:
    """``depth`` with near and far swapped over its measured pixels: ``lo + hi − d`` (``mirror``) or
    ``lo · hi / d`` (``reciprocal``), ``lo, hi`` its range; unmeasured pixels get the swapped median."""
    ok = depth > 0
    lo, hi = float(depth[ok].min()), float(depth[ok].max())
    out = np.empty(depth.shape, dtype=np.float64)
    out[ok] = lo + hi - depth[ok] if how == "mirror" else lo * hi / depth[ok]
    out[~ok] = np.median(out[ok])
    return out


class LookupNet:
    """A predictor that knows its answers: for an input equal to one of ``inputs`` (or its mirror image)
    it returns ``max_depth / depth`` of the matching map of ``depths`` (mirrored likewise), the output
    leve reads as depth ``max_depth / out``."""

    def __init__(self, inputs: list, depths: list[np.ndarray], max_depth: float) -> None:
        import torch

        self.inputs = inputs
        self.outputs = [torch.from_numpy(max_depth / d).float()[None] for d in depths]

    def __call__(self, x):  # (B, 3, h, w) -> (B, 1, h, w)
        import torch

        out = []
        for item in x:
            for k, known in enumerate(self.inputs):
                if torch.equal(item, known):
                    out.append(self.outputs[k])
                    break
                if torch.equal(item, known.flip(-1)):
                    out.append(self.outputs[k].flip(-1))
                    break
            else:
                raise AssertionError("LookupNet: an input it does not know")
        return torch.stack(out)


def lookup_net(split, depths: list[np.ndarray], max_depth: float = MAX_DEPTH) -> LookupNet:
    """A :class:`LookupNet` answering ``depths[i]`` for the network input of sample ``i`` of ``split``."""
    from leve.evaluation.runner import batch_input

    return LookupNet([batch_input([split.rgb(i)], CROP, "cpu")[0] for i in range(len(split))], depths, max_depth)


class Whole:
    """Picklable store loader: the whole scene as one sample."""

    def __call__(self, i: int) -> tuple[dict, dict]:
        rgb, depth = motorcycle()
        return {"rgb": rgb, "depth": depth}, {"height": depth.shape[0], "width": depth.shape[1], "source": "motorcycle"}


def teacher_numbers(root: Path, teacher: str = "embedded") -> list[dict]:
    """The ``teacher``'s scores on the Motorcycle scene through leve's own path (``build_teacher_cache``,
    then the evaluation's teacher row: lstsq with scale >= 0): on the 6 test crops and on the whole scene,
    beside the constant predictor and what the unconstrained fit (leve before issue 27) made of the same maps."""
    from leve.datasets.build import SplitSource, build_store
    from leve.evaluation.align import disparity_to_depth, fit_scale_shift
    from leve.evaluation.protocols import get_protocol
    from leve.evaluation.runner import evaluate
    from leve.metrics import aggregate_metrics, compute_metrics
    from leve.store.format import SplitSpec, dataset_arrays, fingerprint
    from leve.store.reader import open_store
    from leve.teacher.cache.build import build_teacher_cache
    from leve.teacher.cache.read import open_teacher_cache
    from leve.teacher.loading import load_teacher

    meta = {"height": "int32", "width": "int32", "source": "str"}
    crops = motorcycle_store(root / "crops.zarr")
    whole = root / "whole.zarr"
    build_store(whole, {"dataset": "middlebury", "units": "m", "max_depth": MAX_DEPTH}, fingerprint(["middlebury-whole"]),
                [SplitSource(SplitSpec("test", 1, dataset_arrays(500, 741), meta), Whole())], block_size=1,
                show_progress=False)
    out = []
    for name, store_path, size in (("6 crops 120x160", crops, CROP), ("whole scene 500x741", whole, (500, 741))):
        cache_path = root / f"{store_path.stem}-teacher.zarr"
        build_teacher_cache(store_path, cache_path, "test", load_teacher(teacher), **caching(block_size=1), show_progress=False)
        split = open_store(store_path).split("test")
        cache = open_teacher_cache(cache_path, "test", store_path)
        gts = [split.depth(i).astype(np.float64) for i in range(len(split))]
        net = LookupNet([batch_input_of(split, i, size) for i in range(len(split))],
                        [np.where(g > 0, g, np.median(g[g > 0])) for g in gts], MAX_DEPTH)
        protocol = get_protocol("standard", "middlebury", MAX_DEPTH, align="lstsq", flip=False)
        result = evaluate(net, split, protocol, size, MAX_DEPTH, **evaluation(), teacher=cache, constant=1.0, show_progress=False)
        free = []
        for i, gt in enumerate(gts):
            disp = cache.disparity(i).astype(np.float64)
            valid = protocol.crop.mask(*gt.shape) & protocol.valid(gt)
            fit = valid & (disp > 0)
            s, t = fit_scale_shift(disp[fit], 1.0 / gt[fit])
            free.append(compute_metrics(disparity_to_depth(s * disp + t, protocol.min_depth, MAX_DEPTH), gt, valid))
        t_agg, c_agg = result.aggregate("teacher"), result.aggregate("constant")
        assert t_agg is not None and c_agg is not None
        out.append({"data": name, "teacher": t_agg.means, "alignment": result.alignment("teacher"),
                    "constant": c_agg.means, "unconstrained": aggregate_metrics(free).means})
    return out


def batch_input_of(split, i: int, size: tuple[int, int]):
    from leve.evaluation.runner import batch_input

    return batch_input([split.rgb(i)], size, "cpu")[0]


if __name__ == "__main__":  # python -m tests.evaluation.middlebury [TEACHER]: the teacher's numbers on the scene
    import sys
    import tempfile

    keys = ("rmse", "abs_rel", "d1", "spearman")
    with tempfile.TemporaryDirectory() as tmp:
        for row in teacher_numbers(Path(tmp), *(sys.argv[1:2] or ["embedded"])):
            a = row["alignment"]
            print(f"{row['data']}: teacher " + " ".join(f"{k} {row['teacher'][k]:.4f}" for k in keys)
                  + f", non-positive fits {a['non_positive_fits']}/{a['fits']}; constant "
                  + " ".join(f"{k} {row['constant'][k]:.4f}" for k in keys)
                  + "; unconstrained fit " + " ".join(f"{k} {row['unconstrained'][k]:.4f}" for k in keys[:3]))
