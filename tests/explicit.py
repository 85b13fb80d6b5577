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


def caching(**over: Any) -> dict[str, Any]:
    """:func:`leve.teacher.cache.build.build_teacher_cache`'s run: batches of 4 on the CPU in the main process
    (no loader workers), no test-time flip, no local crops, blocks of 64 (``amp`` applies on CUDA alone)."""
    return {"batch_size": 4, "device": "cpu", "amp": "float16", "tta": "none", "crops": 0, "workers": 0, "block_size": 64,
            **over}


def running(**over: Any) -> dict[str, Any]:
    """:class:`leve.teacher.infer.TeacherRunner`'s run: on the CPU, no test-time flip (``amp`` applies on CUDA alone)."""
    return {"device": "cpu", "amp": "float16", "tta": "none", **over}


def supervising(**over: Any) -> dict[str, Any]:
    """:func:`leve.train.losses.student_loss`'s terms: leve's SSIM (valid windows, range 100)."""
    return {"ssim": "leve", **over}


def distilling(**over: Any) -> dict[str, Any]:
    """:func:`leve.train.losses.distillation_loss`'s terms: leve's SSIM, the KD maps normalised per image (eq. 7.8)."""
    return {"ssim": "leve", "kd_norm": "image", **over}
