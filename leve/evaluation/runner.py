"""Score a predictor on a store split under a :class:`~leve.evaluation.protocols.Protocol`.

The predictor is any callable mapping a batch ``(B, 3, h, w)`` of RGB in [0, 1] at the
training resolution to the network output ``(B, 1, h, w)`` (read as ``max_depth / depth``);
a Leve model is one. An output at a lower resolution (DenseDepth's, ``output_stride`` 2: h/2 x
w/2) is upsampled to the input size (bilinear, x2): the raw output before it is read as depth,
or the depth read from it (``protocol.upsample: depth``, as DenseDepth's evaluation does).
Images are resized to the training resolution as training resizes them (:mod:`leve.images`),
the output is read at that resolution in the space the protocol scores or fits it in (depth
clamped to the checkpoint's range; for ``median`` the unclamped depth, for ``lstsq`` the
disparity), flip-averaged there, resized back to each image's own size with the same filter,
then cropped, masked, aligned (an aligned prediction is clipped only after its fit) and scored
per image; each scored sample keeps its metrics and its per-pixel sums, and the split's numbers
are aggregated as the protocol says (per-image means or pooled pixels).

Every affine fit has a scale >= 0 (:mod:`leve.evaluation.align`); each scored sample records whether
its unconstrained fit's scale was non-positive (:attr:`Scored.non_positive_fit`), counted per model by
:meth:`EvalResult.alignment`. Every model also gets the depth-ordering metric ``spearman`` (Spearman's
ρ of the prediction *before* alignment against the ground truth: an alignment cannot hide a swapped
order). With ``constant``, a constant predictor (the ``constant`` model: that depth everywhere, read in
the protocol's space and aligned by its alignment) is scored on the same samples, the baseline row.

The teacher rows score the flip-averaged map exactly when the student's prediction is
flip-averaged (``protocol.flip: average``, e.g. ``standard`` with ``eval.flip``) and the cache
holds it (``teacher.tta: flip``), else the image's own map; recorded as the protocol's
``teacher_flip``. (A flip cache written before it kept the plain map beside the average offers
only the average, recorded as such.)

Samples are read in order. With ``read_prefetch`` K > 0, a bucket store's split (and a teacher cache at a URL)
read through the read-through cache has the shard files of the samples scored next fetched ahead in a background
thread, at most K files ahead (:func:`leve.store.cachedread.read_ahead`), while the batches in hand are scored;
the thread is ended when the evaluation returns. The bytes read, and their checks, are those read without it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from leve.evaluation.align import SPACES, align_prediction_fit, fit_lstsq_disparity
from leve.evaluation.protocols import Protocol
from leve.images import RGB_RESIZE, resize_maps, resize_rgb
from leve.metrics import (
    METRIC_KEYS,
    Aggregate,
    MetricAccumulator,
    metrics_from_sums,
    pixel_sums,
    spearman,
)
from leve.models.depth import output_to_depth, upsample_output
from leve.progress import progress_bar
from leve.store.reader import Split

Predictor = Callable[[torch.Tensor], torch.Tensor]
MODELS = ("student", "teacher")  # the models of the error-vs-depth bins
BASELINE = "constant"  # the constant predictor's model name in the scored rows and the metrics document


@dataclass
class Scored:
    """One scored sample: where it came from, its metrics and the per-pixel sums they come
    from (both None: no valid pixel)."""

    index: int
    flipped: bool
    model: str
    group: str
    source: str
    metrics: dict[str, float] | None
    sums: dict[str, float] | None = None
    non_positive_fit: bool | None = None  # the unconstrained scale fit was <= 0 (None: no scale fitted)
    spearman: float | None = None  # depth ordering of the prediction before alignment (None: not scored)

    @classmethod
    def of(cls, index: int, flipped: bool, model: str, group: str, source: str, scoring: Scoring) -> Scored:
        """The record of a :class:`Scoring`."""
        _, _, metrics, sums = scoring.score
        return cls(index, flipped, model, group, source, metrics, sums, scoring.non_positive_fit, scoring.spearman)

    def row(self) -> dict[str, Any]:
        """A per-image CSV row (empty metric cells for a skipped image; ``non_positive_fit`` 1/0, empty
        where no scale was fitted)."""
        values = self.metrics or dict.fromkeys(METRIC_KEYS, None)
        fit = "" if self.non_positive_fit is None else int(self.non_positive_fit)
        return {"index": self.index, "flipped": int(self.flipped), "model": self.model,
                "group": self.group, "source": self.source, "skipped": int(self.metrics is None), **values,
                "spearman": self.spearman, "non_positive_fit": fit}


@dataclass
class DepthBins:
    """Pixel errors binned by ground-truth depth (for the error-vs-depth plot)."""

    edges: np.ndarray
    sums: dict[str, np.ndarray] = field(default_factory=dict)  # "<model>_<stat>" -> per bin

    def add(self, model: str, pred: np.ndarray, gt: np.ndarray) -> None:
        """Add the valid pixels ``pred`` vs ``gt`` (1-D) of one image."""
        n = len(self.edges) - 1
        idx = np.clip(np.searchsorted(self.edges, gt, side="right") - 1, 0, n - 1)
        err = pred - gt
        for stat, values in (("pixels", np.ones_like(gt)), ("abs", np.abs(err)), ("sq", err**2),
                             ("rel", np.abs(err) / gt)):
            key = f"{model}_{stat}"
            self.sums.setdefault(key, np.zeros(n))
            self.sums[key] += np.bincount(idx, weights=values, minlength=n)

    def rows(self) -> list[dict[str, float]]:
        """One row per bin: centre depth, and per model pixels, mae, rmse, abs_rel (NaN if empty)."""
        out = []
        for b in range(len(self.edges) - 1):
            row: dict[str, float] = {"depth": float((self.edges[b] + self.edges[b + 1]) / 2)}
            for model in MODELS:
                if f"{model}_pixels" not in self.sums:
                    continue
                n = self.sums[f"{model}_pixels"][b]
                row[f"{model}_pixels"] = int(n)
                row[f"{model}_mae"] = self.sums[f"{model}_abs"][b] / n if n else float("nan")
                row[f"{model}_rmse"] = float(np.sqrt(self.sums[f"{model}_sq"][b] / n)) if n else float("nan")
                row[f"{model}_abs_rel"] = self.sums[f"{model}_rel"][b] / n if n else float("nan")
            out.append(row)
        return out


@dataclass
class Example:
    """One image for the qualitative grid: RGB, ground truth and the scored depth maps."""

    index: int
    rgb: np.ndarray
    gt: np.ndarray
    student: np.ndarray
    teacher: np.ndarray | None


@dataclass
class EvalResult:
    """Everything an evaluation produced."""

    protocol: Protocol
    scored: list[Scored]
    bins: DepthBins
    examples: list[Example]

    def aggregate(self, model: str = "student", group: str | None = None) -> Aggregate | None:
        """The metrics of ``model`` (optionally one group) aggregated as the protocol says (per-image
        mean or pooled over pixels), None if it has no sample."""
        acc = MetricAccumulator(self.protocol.aggregation, rmse_log_base=self.protocol.rmse_log)
        for s in self.scored:
            if s.model == model and (group is None or s.group == group):
                acc.add(s.metrics, s.sums, None if s.spearman is None else {"spearman": s.spearman})
        return acc.result() if acc.count + acc.skipped else None

    def alignment(self, model: str = "student") -> dict[str, Any] | None:
        """How ``model``'s samples were aligned: ``method``, ``fits`` (samples with a fitted scale) and
        ``non_positive_fits`` (those whose unconstrained scale was <= 0, scored with the constrained
        fit); None when the model has no sample."""
        flags = [s.non_positive_fit for s in self.scored if s.model == model]
        if not flags:
            return None
        method = self.protocol.teacher_align if model == "teacher" else self.protocol.align
        return {"method": method, "fits": sum(f is not None for f in flags), "non_positive_fits": sum(f is True for f in flags)}

    @property
    def groups(self) -> list[str]:
        """The sample groups (EndoSLAM organs), or [] when all samples share one."""
        names = sorted({s.group for s in self.scored})
        return names if len(names) > 1 or (names and names[0]) else []


def batch_input(rgbs: list[np.ndarray], resolution: tuple[int, int], device: str) -> torch.Tensor:
    """(B, 3, h, w) network input: each image resized to ``resolution`` as training resizes it."""
    return torch.stack([resize_rgb(r, resolution) for r in rgbs]).to(device)


def _resize_back(pred: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """(1, h, w) map -> (H, W) float64 numpy at the image's own size (the same filter), resized on the
    device the prediction lies on (on a GPU, not in the CPU's time)."""
    return resize_maps(pred[None].float(), size)[0, 0].cpu().double().numpy()


def read_output(out: torch.Tensor, protocol: Protocol, depth_scale: float) -> torch.Tensor:
    """The output read in the space the protocol scores (``align: none``: depth clamped to
    ``[D/100, D]``) or fits it in, unclamped: ``median`` the depth ``D/out`` (NaN where
    ``out <= 0``), ``lstsq`` the disparity ``out/D`` (``D = depth_scale``)."""
    if SPACES[protocol.align] == "disparity":  # lstsq, median_disparity
        return out / depth_scale
    if protocol.align == "median":
        return torch.where(out > 0, depth_scale / out, torch.full_like(out, float("nan")))
    return output_to_depth(out, depth_scale)


@torch.inference_mode()
def _predict_batch(net: Predictor, x: torch.Tensor, protocol: Protocol,
                   depth_scale: float) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The prediction (:func:`read_output`) at the training resolution, and that of the flipped
    input (back in its own frame for ``flip: separate``, i.e. still mirrored; un-mirrored and
    averaged for ``average``)."""
    size = x.shape[-2:]

    def depth_of(out: torch.Tensor) -> torch.Tensor:  # a half-resolution output is upsampled to the input size
        if protocol.upsample == "depth":
            return upsample_output(read_output(out.float(), protocol, depth_scale), size)
        return read_output(upsample_output(out.float(), size), protocol, depth_scale)

    depth = depth_of(net(x))
    if protocol.flip == "none":
        return depth, None
    flipped = depth_of(net(x.flip(-1)))
    if protocol.flip == "average":
        return 0.5 * (depth + flipped.flip(-1)), None
    return depth, flipped


Score = tuple[np.ndarray, np.ndarray, dict | None, dict | None]  # depth, mask, metrics, pixel sums


@dataclass
class Scoring:
    """A sample scored (:data:`Score`), its depth-ordering ``spearman`` (None: no valid pixel) and whether
    its alignment's unconstrained scale was non-positive (None: no scale fitted)."""

    score: Score
    spearman: float | None
    non_positive_fit: bool | None


def _score(depth: np.ndarray, gt: np.ndarray, mask: np.ndarray, protocol: Protocol) -> Score:
    sums = pixel_sums(depth, gt, mask, protocol.rel_denominator)
    return depth, mask, (None if sums is None else metrics_from_sums(sums, protocol.rmse_log)), sums


def _order(pred: np.ndarray, align: str) -> np.ndarray:
    """A map that increases with the predicted depth: the prediction read as depth, minus one read as disparity."""
    return -pred if SPACES[align] == "disparity" else pred


def score_sample_fit(pred: np.ndarray, gt: np.ndarray, protocol: Protocol) -> Scoring:
    """(aligned depth, scored-pixel mask, metrics, pixel sums) of one full-size prediction, read as
    :func:`read_output` reads it (aligned unclamped, then clipped to the protocol's range), with the
    prediction's ``spearman`` (its order before alignment) and its fit's sign."""
    pred = np.asarray(pred, dtype=np.float64)
    mask = protocol.crop.mask(*gt.shape) & protocol.valid(gt)
    aligned, flag = align_prediction_fit(pred, gt, mask, protocol.align, protocol.min_depth, protocol.max_depth)
    return Scoring(_score(aligned, gt, mask, protocol), spearman(_order(pred, protocol.align), gt, mask), flag)


def score_teacher_fit(disp: np.ndarray, gt: np.ndarray, protocol: Protocol) -> Scoring:
    """:func:`score_teacher` with the map's ``spearman`` (of ``-disp``) and its fit's sign."""
    mask = protocol.crop.mask(*gt.shape) & protocol.valid(gt)
    disp = np.asarray(disp, dtype=np.float64)
    depth, fit = fit_lstsq_disparity(disp, gt, mask, protocol.min_depth, protocol.max_depth)
    return Scoring(_score(depth, gt, mask, protocol), spearman(-disp, gt, mask), None if fit is None else fit.non_positive)


def score_teacher(disp: np.ndarray, gt: np.ndarray, protocol: Protocol) -> Score:
    """(depth, mask, metrics, pixel sums) of a teacher disparity map, lstsq-aligned to the ground
    truth (scale >= 0) on the pixels where it is positive."""
    return score_teacher_fit(disp, gt, protocol).score


def score_constant(value: float, gt: np.ndarray, protocol: Protocol) -> Scoring:
    """The constant predictor: depth ``value`` at every pixel, read in the protocol's space (its
    disparity ``1/value`` for ``lstsq`` and ``median_disparity``) and aligned by the protocol's alignment
    (``none``: ``value`` clipped; ``median``: the median ground truth; ``lstsq``: ``1/mean(1/gt)``);
    its ``spearman`` is 0 (no order)."""
    fill = 1.0 / value if SPACES[protocol.align] == "disparity" else value
    return score_sample_fit(np.full(gt.shape, fill, dtype=np.float64), gt, protocol)


def teacher_flip(teacher: Any, flip: str) -> str:
    """``average`` when the teacher row scores the flip-averaged map: the cache holds it
    (``teacher.tta: flip``) and the student's prediction is flip-averaged (``flip``, the protocol's),
    or the cache holds nothing else; ``none``: the image's own map."""
    attrs = getattr(teacher, "attrs", None) or {}
    if attrs.get("tta") != "flip":
        return "none"
    has_plain = bool(getattr(teacher, "has_plain", False))
    return "average" if flip == "average" or not has_plain else "none"


def teacher_map(teacher: Any, i: int, flip: str) -> np.ndarray:
    """The cached map of sample ``i`` the teacher row scores (``flip``: :func:`teacher_flip`'s answer)."""
    if flip == "none" and getattr(teacher, "has_plain", False):
        return teacher.plain_disparity(i)
    return teacher.disparity(i)


def bucket_sources(split: Any, teacher: Any = None) -> list[tuple[str, str]]:
    """``(url, split)`` of the split and the teacher cache read from a bucket through the read-through cache (what
    read-ahead fetches into); [] when both are local, read without that cache, or have no place (made in memory)."""
    found = []
    for source in (split, teacher):
        path = str(getattr(source, "path", ""))
        if "://" in path and getattr(source, "cache", None) and isinstance(getattr(source, "name", None), str):
            found.append((path, source.name))
    return found


@contextlib.contextmanager
def _reading_ahead(sources: list[tuple[str, str]], count: int, shards: int) -> Iterator[None]:
    """While in it, the shard files of samples ``0 .. count - 1`` of ``sources`` (read in this order) are fetched
    ahead of the reads, at most ``shards`` files (:func:`leve.store.cachedread.read_ahead`; the arrays a reader has
    opened); on leaving, the plan is dropped and the thread has ended. Nothing without sources or with 0 shards."""
    if not sources or shards <= 0:
        yield
        return
    from leve.store.cachedread import end_read_ahead, read_ahead

    read_ahead(sources, list(range(count)), shards)
    try:
        yield
    finally:
        end_read_ahead()


def evaluate(
    net: Predictor,
    split: Split,
    protocol: Protocol,
    resolution: tuple[int, int],
    checkpoint_max_depth: float,
    teacher: Any = None,
    *,
    batch_size: int,
    device: str,
    examples: tuple[int, ...],
    depth_bins: int,
    group_column: str | None = "organ",
    show_progress: bool = True,
    constant: float | None = None,
    read_prefetch: int = 0,
) -> EvalResult:
    """Score ``net`` (and the cached ``teacher``, a reader with ``disparity(i)``; and the constant
    predictor of depth ``constant``, model ``constant``) on ``split``. ``read_prefetch``: the most shard files of a
    bucket store or cache fetched ahead of the reads (0: none; see the module's notes)."""
    if constant is not None and not (np.isfinite(constant) and constant > 0):
        raise ValueError(f"constant predictor: depth must be finite and positive, got {constant}")
    scale = protocol.max_depth if protocol.depth_scale == "dataset" else checkpoint_max_depth
    protocol = replace(protocol, resize=RGB_RESIZE, teacher_flip=teacher_flip(teacher, protocol.flip))
    meta = split.meta
    groups = meta[group_column].astype(str).tolist() if group_column and group_column in meta else [""] * len(split)
    sources = meta["source"].astype(str).tolist() if "source" in meta else [""] * len(split)
    result = EvalResult(protocol, [], DepthBins(np.linspace(0.0, protocol.max_depth, depth_bins + 1)), [])
    ahead = _reading_ahead(bucket_sources(split, teacher), len(split), read_prefetch)
    with progress_bar(show_progress) as bar, ahead:
        task = bar.add_task(f"eval {protocol.dataset}/{split.name}", total=len(split))
        for start in range(0, len(split), batch_size):
            idx = list(range(start, min(start + batch_size, len(split))))
            rgbs = [split.rgb(i) for i in idx]
            depth, flipped = _predict_batch(net, batch_input(rgbs, resolution, device), protocol, scale)
            for k, i in enumerate(idx):
                gt = split.depth(i).astype(np.float64)
                info = (groups[i], sources[i])
                scoring = score_sample_fit(_resize_back(depth[k], gt.shape), gt, protocol)
                result.scored.append(Scored.of(i, False, "student", *info, scoring))
                pred, mask = scoring.score[:2]
                result.bins.add("student", pred[mask], gt[mask])
                if constant is not None:
                    result.scored.append(Scored.of(i, False, BASELINE, *info, score_constant(constant, gt, protocol)))
                if flipped is not None:
                    mirrored = gt[:, ::-1].copy()
                    scoring = score_sample_fit(_resize_back(flipped[k], gt.shape), mirrored, protocol)
                    result.scored.append(Scored.of(i, True, "student", *info, scoring))
                    if constant is not None:
                        result.scored.append(Scored.of(i, True, BASELINE, *info,
                                                       score_constant(constant, mirrored, protocol)))
                t_depth = None
                if teacher is not None:
                    disp = teacher_map(teacher, i, protocol.teacher_flip)
                    scoring = score_teacher_fit(disp, gt, protocol)
                    result.scored.append(Scored.of(i, False, "teacher", *info, scoring))
                    t_depth, t_mask = scoring.score[:2]
                    result.bins.add("teacher", t_depth[t_mask], gt[t_mask])
                if i in examples:
                    result.examples.append(Example(i, rgbs[k], gt, pred, t_depth))
            bar.advance(task, len(idx))
    return result
