"""Train the ``embedded`` teacher: ``python -m leve.pipeline.embedded_teacher --out DIR``.

A build tool of the pipeline (the weights it writes ship in ``leve/teacher/embedded/weights``), so
it sits in the top layer: it renders with :mod:`leve.datasets`, feeds the :mod:`leve.teacher` path
and scores with :mod:`leve.evaluation` (``python -m leve.teacher.embedded.train`` was its old name).

Data: synthetic rooms of :mod:`leve.datasets.synthetic` rendered with ``--seed`` (train split
for training, val split for the recorded check). Sample ``i`` of split ``s`` depends only on
``(seed, s, i)``, so any seed other than the demo's (``prepare.synthetic.seed``, 0) shares no
sample with the demo's train, val or test splits; seed 0 is refused.

Input: each frame goes through the teacher path's own DPT preprocessing
(:class:`leve.teacher.preprocess.Preprocessing` at :data:`PREPROCESSING`: PIL bicubic resize,
then the ImageNet-normalisation table), so the model learns on exactly what it is fed later.

Loss: Depth-Anything's affine-invariant loss on disparity. Per image, prediction and target
disparity are each shifted by their median and divided by their mean absolute deviation
from it, and the loss is the mean absolute difference of the two over the valid pixels, so
scale and shift of the prediction are free (the relative-depth protocol that scores it).
A small gauge term pins the median and mean absolute deviation of the prediction to the
target's (the invariant loss leaves them free, and an offset-dominated map loses its shape in
the float16 teacher cache). While training, the head's final ReLU is bypassed (a dead ReLU
stops every gradient) and negative outputs pay a hinge penalty instead; the saved model has its
ReLU back.

Writes ``DIR/`` with ``config.json``, ``model.safetensors``, ``preprocessor_config.json``
and ``record.json`` (sha256 of each file, the command, seeds, sizes, steps, wall time, and
the lstsq-aligned metrics on the val split through the real teacher path).
"""

from __future__ import annotations

import argparse
import json
import math
import shlex
import sys
import time
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from leve.atomic import atomic_path, write_text
from leve.datasets import synthetic
from leve.errors import LeveError
from leve.teacher.embedded import PREPROCESSING, RECORD_NAME, SHIPPED_FILES, embedded_config, file_sha256
from leve.teacher.preprocess import Preprocessing, normalize_batch

DEMO_SEED = synthetic.Config.seed  # the embedded default's prepare.synthetic.seed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m leve.pipeline.embedded_teacher", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="folder to write (save_pretrained + record.json)")
    p.add_argument("--seed", type=int, default=1, help="data and init seed; must differ from the demo's (0)")
    p.add_argument("--train-samples", type=int, default=1200)
    p.add_argument("--val-samples", type=int, default=48)
    p.add_argument("--height", type=int, default=240, help="render height (the demo's)")
    p.add_argument("--width", type=int, default=320, help="render width (the demo's)")
    p.add_argument("--steps", type=int, default=900)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--warmup", type=float, default=0.1, help="share of the steps with a linear warm-up")
    p.add_argument("--render-cache", type=Path, default=None,
                   help="folder keeping the rendered training set between runs (same bytes: rendering is seeded)")
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    p.add_argument("--workers", type=int, default=2, help="processes rendering the rooms")
    return p.parse_args(argv)


# --------------------------------------------------------------------------- data


def _render_one(job: tuple[int, str, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(resized uint8 (3, h, w) as the teacher path feeds it, full-size depth (H, W))."""
    seed, split, index, height, width = job
    rgb, depth = synthetic.render_sample(seed, split, index, height, width)
    return Preprocessing.from_dict(PREPROCESSING).resize(rgb), depth


def cached_render_set(cache: Path | None, seed: int, split: str, count: int, height: int, width: int,
                      workers: int) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], float]:
    """:func:`render_set`, kept in ``cache`` when given; returns the set and the seconds its rendering took."""
    key = f"{seed}-{split}-{count}-{height}x{width}-{Preprocessing.from_dict(PREPROCESSING).height}.pt"
    if cache is not None and (cache / key).is_file():
        saved = torch.load(cache / key)
        return saved["data"], saved["seconds"]
    start = time.perf_counter()
    data = render_set(seed, split, count, height, width, workers)
    seconds = time.perf_counter() - start
    if cache is not None:
        with atomic_path(cache / key) as tmp:
            torch.save({"data": data, "seconds": seconds}, tmp)
    return data, seconds


def render_set(seed: int, split: str, count: int, height: int, width: int,
               workers: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``count`` rooms of ``split``: uint8 images (N, 3, h, w), target disparity and valid mask (N, h, w)."""
    jobs = [(seed, split, i, height, width) for i in range(count)]
    if workers > 1:
        with get_context("fork").Pool(workers) as pool:
            pairs = pool.map(_render_one, jobs, chunksize=16)
    else:
        pairs = [_render_one(j) for j in jobs]
    images = torch.from_numpy(np.stack([p[0] for p in pairs]))
    depth = torch.from_numpy(np.stack([p[1] for p in pairs]))
    disp, valid = disparity_at(depth, tuple(images.shape[-2:]))
    return images, disp, valid


def disparity_at(depth: torch.Tensor, size: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, H, W) metric depth -> disparity area-averaged to ``size`` and the mask of fully valid pixels."""
    hit = (depth > 0).float().unsqueeze(1)
    disp = torch.where(depth > 0, 1.0 / depth.clamp(min=1e-6), torch.zeros_like(depth)).unsqueeze(1)
    area = F.interpolate(hit, size=size, mode="area")
    mean = F.interpolate(disp, size=size, mode="area") / area.clamp(min=1e-6)
    return mean.squeeze(1), (area > 0.999).squeeze(1)


# --------------------------------------------------------------------------- loss


def affine_stats(d: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image (B, H, W): the median ``t`` and the mean absolute deviation ``s`` from it over ``valid``."""
    flat = torch.where(valid, d, torch.full_like(d, float("nan"))).flatten(1)
    t = flat.nanmedian(dim=1).values
    s = ((d - t[:, None, None]).abs() * valid).flatten(1).sum(1) / valid.flatten(1).sum(1).clamp(min=1)
    return t, s


def normalise_affine(d: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Per image (B, H, W): (d - t) / s with :func:`affine_stats` (invalid pixels -> 0)."""
    t, s = affine_stats(d, valid)
    centred = (d - t[:, None, None]) / s.clamp(min=1e-6)[:, None, None]
    return torch.where(valid, centred, torch.zeros_like(d))


def affine_invariant_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean over images of the mean |normalised pred - normalised target| over valid pixels."""
    diff = (normalise_affine(pred, valid) - normalise_affine(target, valid)).abs()
    per_image = diff.flatten(1).sum(1) / valid.flatten(1).sum(1).clamp(min=1)
    return per_image.mean()


def gauge_loss(pred: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Mean |t_pred - t_target| + |s_pred - s_target| (:func:`affine_stats`): pins the shift and
    scale that the affine-invariant loss leaves free. Without it the map drifts to a large offset
    with a tiny signal (1 + 1e-4·shape), which the float16 teacher cache cannot hold."""
    tp, sp = affine_stats(pred, valid)
    tt, st = affine_stats(target, valid)
    return ((tp - tt).abs() + (sp - st).abs()).mean()


# --------------------------------------------------------------------------- training


def build_model(seed: int) -> torch.nn.Module:
    """The architecture of :func:`embedded_config` initialised from ``seed``; the last conv's bias
    starts at 0.3, about the median disparity (1/m) of the rooms, so outputs start positive and
    near the target's level."""
    from transformers import DepthAnythingForDepthEstimation

    torch.manual_seed(seed)
    model = DepthAnythingForDepthEstimation(embedded_config())
    with torch.no_grad():
        model.head.conv3.bias.fill_(0.3)
    return model


def set_final_relu(model: torch.nn.Module, on: bool) -> None:
    """The head's final activation: ReLU (the architecture, inference) or identity (training)."""
    model.head.activation2 = torch.nn.ReLU() if on else torch.nn.Identity()


def lr_factor(step: int, steps: int, warmup: float) -> float:
    """Linear warm-up over ``warmup·steps`` steps, then cosine decay to 0."""
    w = max(int(warmup * steps), 1)
    if step < w:
        return (step + 1) / w
    return 0.5 * (1 + math.cos(math.pi * (step - w) / max(steps - w, 1)))


def train(model: torch.nn.Module, data: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
          args: argparse.Namespace) -> list[dict[str, float]]:
    """AdamW with warm-up and cosine decay, random horizontal flips; returns the loss log."""
    images, disp, valid = data
    table = Preprocessing.from_dict(PREPROCESSING).lookup_table()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, args.steps, args.warmup))
    gen = torch.Generator().manual_seed(args.seed)
    log, running, negative, start = [], 0.0, 0.0, time.perf_counter()
    model.train()
    set_final_relu(model, False)
    for step in range(args.steps):
        idx = torch.randint(len(images), (args.batch_size,), generator=gen)
        x, y, m = normalize_batch(images[idx], table), disp[idx].float(), valid[idx]
        flip = torch.rand(args.batch_size, generator=gen) < 0.5
        x[flip], y[flip], m[flip] = x[flip].flip(-1), y[flip].flip(-1), m[flip].flip(-1)
        pred = model(pixel_values=x).predicted_depth
        loss = affine_invariant_loss(pred, y, m) + gauge_loss(pred, y, m) + F.relu(-pred).mean()
        negative += float((pred.detach() < 0).float().mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        running += loss.item()
        if (step + 1) % 25 == 0 or step + 1 == args.steps:
            n = (step % 25) + 1
            entry = {"step": step + 1, "loss": round(running / n, 5), "negative": round(negative / n, 4),
                     "seconds": round(time.perf_counter() - start, 1)}
            log.append(entry)
            print(" ".join(f"{k} {v}" for k, v in entry.items()), flush=True)
            running = negative = 0.0
    set_final_relu(model, True)
    return log


@torch.no_grad()
def fold_calibration(model: torch.nn.Module, data: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                     count: int = 256) -> dict[str, float]:
    """Fold the affine map ``a·pred + c`` that takes the prediction to the target's level (medians
    over ``count`` training images of the per-image MAD ratio and median offset) into the head's
    last conv, which is linear before the ReLU: the shape is unchanged, and the output is disparity
    on the targets' scale instead of a large offset with a small signal (which the float16 teacher
    cache would flatten)."""
    images, disp, valid = data
    table = Preprocessing.from_dict(PREPROCESSING).lookup_table()
    model.eval()
    set_final_relu(model, False)
    stats = []
    for first in range(0, min(count, len(images)), 32):
        sl = slice(first, min(first + 32, count))
        pred = model(pixel_values=normalize_batch(images[sl], table)).predicted_depth
        stats.append((*affine_stats(pred, valid[sl]), *affine_stats(disp[sl].float(), valid[sl])))
    tp, sp, tt, st = (torch.cat(x) for x in zip(*stats))
    a = float((st / sp.clamp(min=1e-12)).median())
    c = float((tt - a * tp).median())
    conv = model.head.conv3
    conv.weight.mul_(a)
    conv.bias.mul_(a).add_(c)
    set_final_relu(model, True)
    return {"scale": a, "shift": c}


def save(model: torch.nn.Module, out: Path) -> None:
    """``save_pretrained`` (safetensors) plus transformers' own DPT processor config."""
    from transformers.models.dpt.image_processing_pil_dpt import DPTImageProcessorPil

    out.mkdir(parents=True, exist_ok=True)
    model.eval().save_pretrained(out)
    DPTImageProcessorPil(**PREPROCESSING).save_pretrained(out)
    missing = [name for name in SHIPPED_FILES if not (out / name).is_file()]
    if missing:
        raise LeveError(f"{out}: save_pretrained wrote no {', '.join(missing)}")


def evaluate_folder(out: Path, seed: int, count: int, height: int, width: int) -> dict[str, float]:
    """lstsq-aligned metrics (leve2024 protocol) of the saved folder on ``count`` val rooms of ``seed``,
    through the real teacher path (load_teacher, preprocessing, TeacherRunner, post-processing)."""
    from leve.evaluation.protocols import get_protocol
    from leve.evaluation.runner import score_teacher
    from leve.metrics import aggregate_metrics
    from leve.teacher.infer import TeacherRunner
    from leve.teacher.loading import load_teacher

    teacher = load_teacher(str(out))
    runner = TeacherRunner(teacher, device="cpu", amp="float32", tta="none")
    protocol = get_protocol("leve2024", "synthetic", synthetic.MAX_DEPTH)
    scores = []
    for first in range(0, count, 16):
        pairs = [synthetic.render_sample(seed, "val", i, height, width) for i in range(first, min(first + 16, count))]
        batch = torch.from_numpy(np.stack([teacher.preprocessing.resize(rgb) for rgb, _ in pairs]))
        maps = runner.predict(batch, (height, width)).disparity.astype(np.float64)
        scores += [score_teacher(maps[k], depth, protocol)[2] for k, (_, depth) in enumerate(pairs)]
    return {k: round(v, 4) for k, v in aggregate_metrics(scores).means.items()}


def result_argv(argv: list[str]) -> list[str]:
    """``argv`` without ``--render-cache`` (it only saves rendering time: the same bytes either way)."""
    out, skip = [], False
    for arg in argv:
        if skip or arg == "--render-cache" or arg.startswith("--render-cache="):
            skip = arg == "--render-cache"
            continue
        out.append(arg)
    return out


def write_record(out: Path, args: argparse.Namespace, argv: list[str], params: int,
                 seconds: dict[str, float], log: list[dict[str, float]], val: dict[str, float]) -> dict[str, Any]:
    import transformers

    record = {
        "name": "embedded",
        "licence": "Apache-2.0 (trained by leve, no third-party weights)",
        "sha256": {name: file_sha256(out / name) for name in SHIPPED_FILES},
        "command": " ".join(["python -m leve.pipeline.embedded_teacher", *map(shlex.quote, result_argv(argv))]),
        "arguments": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "architecture": "DepthAnythingForDepthEstimation, Dinov2 width 96 x 6 layers (leve.teacher.embedded.embedded_config)",
        "parameters": params,
        "data": {"generator": "leve.datasets.synthetic.render_sample", "seed": args.seed,
                 "train": {"split": "train", "indices": [0, args.train_samples]},
                 "val": {"split": "val", "indices": [0, args.val_samples]},
                 "height": args.height, "width": args.width, "demo_seed_excluded": DEMO_SEED},
        "loss": "affine-invariant disparity L1 (per-image median / mean absolute deviation) + gauge (median, MAD) "
                "+ hinge on negative output",
        "steps": args.steps,
        "batch_size": args.batch_size,
        "seconds": seconds,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "python": sys.version.split()[0]},
        "loss_log": log,
        "val_metrics_lstsq": val,
    }
    write_text(out / RECORD_NAME, json.dumps(record, indent=2) + "\n")
    return record


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.seed == DEMO_SEED:
        raise LeveError(f"--seed {args.seed}: the demo's prepare.synthetic.seed; choose another so no sample is shared")
    torch.set_num_threads(args.threads)
    data, render_seconds = cached_render_set(args.render_cache, args.seed, "train", args.train_samples,
                                             args.height, args.width, args.workers)
    t1 = time.perf_counter()
    print(f"rendered {args.train_samples} rooms (seed {args.seed}) at {tuple(data[0].shape[-2:])} in {render_seconds:.0f}s",
          flush=True)
    model = build_model(args.seed)
    params = sum(p.numel() for p in model.parameters())
    log = train(model, data, args)
    calibration = fold_calibration(model, data)
    t2 = time.perf_counter()
    save(model, args.out)
    val = evaluate_folder(args.out, args.seed, args.val_samples, args.height, args.width)
    t3 = time.perf_counter()
    seconds = {"render": round(render_seconds, 1), "train": round(t2 - t1, 1), "evaluate": round(t3 - t2, 1),
               "total": round(render_seconds + t3 - t1, 1)}
    record = write_record(args.out, args, argv, params, seconds, log, val)
    record["output_calibration"] = calibration  # folded into head.conv3 (see fold_calibration)
    write_text(args.out / RECORD_NAME, json.dumps(record, indent=2) + "\n")
    print(json.dumps({k: record[k] for k in ("parameters", "steps", "seconds", "val_metrics_lstsq")}), flush=True)


if __name__ == "__main__":
    try:
        main()
    except LeveError as exc:
        sys.exit(f"error: {exc}")
