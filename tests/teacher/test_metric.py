"""Metric teachers: the registry rows, a tiny random metric Depth-Anything in the real save_pretrained
layout cached as metric depth (checked against transformers' own processor, model and post-processing),
and the architectures the cache refuses with their reason."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoImageProcessor, AutoModelForDepthEstimation

from leve.errors import LeveError
from leve.store.reader import open_split
from leve.teacher.cache.build import build_teacher_cache
from leve.teacher.cache.read import check_kd_loss, open_teacher_cache
from leve.teacher.dpt import DEPTH_ANYTHING_PREPROCESSING
from leve.teacher.loading import load_teacher
from leve.teacher.registry import REGISTRY, find_entry
from tests.explicit import caching

F16_RTOL = 2e-3  # float16 keeps 11 significant bits (2**-11 relative spacing); the inverse adds no error


def test_metric_registry_rows_are_data():
    metric = {name: e for name, e in REGISTRY.items() if e.depth_kind == "metric" and e.hub_id}
    assert {"v2-metric-indoor-small", "v2-metric-indoor-base", "v2-metric-indoor-large", "v2-metric-outdoor-small",
            "v2-metric-outdoor-base", "v2-metric-outdoor-large", "zoedepth-nyu", "zoedepth-kitti",
            "depth-pro"} <= set(metric)
    for e in metric.values():
        assert e.units == "m" and e.licence and "/" in str(e.hub_id)
    assert metric["v2-metric-indoor-small"].max_depth == 20.0 and metric["v2-metric-outdoor-large"].max_depth == 80.0
    assert metric["zoedepth-nyu"].max_depth == 10.0 and metric["depth-pro"].max_depth is None
    assert find_entry("depth-anything/Depth-Anything-V2-Metric-Indoor-Small-hf") is metric["v2-metric-indoor-small"]
    assert all(e.depth_kind == "relative" and e.units == "relative" for e in REGISTRY.values()
               if e.name.startswith(("v1-", "v2-small", "v2-base", "v2-large")))


def _save_metric(folder: Path) -> Path:
    from transformers.models.dpt.image_processing_pil_dpt import DPTImageProcessorPil

    teacher = load_teacher("tiny-random-metric")
    teacher.model.save_pretrained(folder)
    DPTImageProcessorPil(**{**DEPTH_ANYTHING_PREPROCESSING, "size": {"height": 70, "width": 70}}).save_pretrained(folder)
    return folder


@pytest.mark.parametrize("tta", ["none", "flip"])
def test_metric_teacher_caches_metric_depth(tmp_path: Path, mixed_store: Path, tta: str):
    folder = _save_metric(tmp_path / "tiny-metric")
    teacher = load_teacher(str(folder))
    assert (teacher.depth_kind, teacher.max_depth) == ("metric", 10.0)
    out = tmp_path / "teacher.zarr"
    assert build_teacher_cache(mixed_store, out, "train", teacher, **caching(batch_size=2, block_size=4, tta=tta),
                               show_progress=False).complete
    cache = open_teacher_cache(out, "train", mixed_store)
    assert cache.depth_kind == "metric"
    assert cache.attrs["depth_kind"] == "metric" and cache.attrs["max_depth"] == 10.0
    assert cache.attrs["units"].startswith("1/m") and cache.attrs["teacher"]["units"] == "m"
    # the reference: transformers alone, one image at a time (its processor, model, post-processing)
    processor = AutoImageProcessor.from_pretrained(folder)
    model = AutoModelForDepthEstimation.from_pretrained(folder).eval()
    split = open_split(mixed_store, "train")
    for i in range(len(split)):
        rgb = split.rgb(i)
        with torch.no_grad():
            inputs = processor(images=rgb, return_tensors="pt")
            outputs = model(**inputs)
            if tta == "flip":  # the mean of the depth of the image and the un-mirrored depth of its mirror
                mirrored = model(pixel_values=inputs["pixel_values"].flip(-1)).predicted_depth.flip(-1)
                outputs.predicted_depth = 0.5 * (outputs.predicted_depth + mirrored)
        want = processor.post_process_depth_estimation(outputs, target_sizes=[rgb.shape[:2]])[0]["predicted_depth"]
        got = cache.depth(i)
        assert got.shape == rgb.shape[:2]
        np.testing.assert_allclose(got, want.numpy(), rtol=F16_RTOL)
        assert 0 < got.min() and got.max() <= 10.0
        # the relative reading of the same cache: a disparity in [0, 1], nearest pixel 1
        np.testing.assert_allclose(cache.disparity(i), got.min() / got, rtol=F16_RTOL, atol=1e-3)


def test_relative_cache_has_no_metric_depth_and_refuses_metric_kd(tmp_path: Path, mixed_store: Path,
                                                                   fast_teacher_dir: Path):
    out = tmp_path / "teacher.zarr"
    teacher = load_teacher(str(fast_teacher_dir))
    assert teacher.depth_kind == "relative" and "depth_kind" not in teacher.identity()
    build_teacher_cache(mixed_store, out, "train", teacher, **caching(block_size=4), show_progress=False)
    cache = open_teacher_cache(out, "train", mixed_store)
    assert cache.depth_kind == "relative" and "depth_kind" not in cache.attrs  # a relative cache is as before
    with pytest.raises(LeveError, match="no metric depth"):
        cache.depth(0)
    with pytest.raises(LeveError, match="kd.loss metric needs a metric teacher"):
        check_kd_loss(cache.attrs, "metric", "here")
    for loss in ("l1", "ssi"):
        check_kd_loss(cache.attrs, loss, "here")


def _tiny_zoedepth() -> object:
    from transformers import BeitConfig, ZoeDepthConfig

    beit = BeitConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2, intermediate_size=64, image_size=64,
                      patch_size=16, out_features=["stage1", "stage2", "stage3", "stage4"],
                      use_relative_position_bias=True, reshape_hidden_states=False)
    return ZoeDepthConfig(backbone_config=beit, neck_hidden_sizes=[8, 16, 32, 32], reassemble_hidden_size=32,
                          fusion_hidden_size=16, bottleneck_features=16, num_relative_features=8, bin_embedding_dim=16,
                          num_attractors=[4, 4, 4, 4], bin_configurations=[{"n_bins": 8, "min_depth": 0.001, "max_depth": 10.0}])


def _tiny_depth_pro() -> object:
    from transformers import DepthProConfig, Dinov2Config

    def dino() -> object:
        return Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            image_size=32, patch_size=8)

    return DepthProConfig(fusion_hidden_size=16, patch_size=32, intermediate_hook_ids=[1, 0],
                          intermediate_feature_dims=[16, 16], scaled_images_ratios=[0.5, 1.0],
                          scaled_images_overlap_ratios=[0.0, 0.0], scaled_images_feature_dims=[16, 16],
                          image_model_config=dino(), patch_model_config=dino(), fov_model_config=dino())


def _tiny_prompt_depth() -> object:
    from transformers import PromptDepthAnythingConfig

    from leve.teacher.registry import tiny_random_config

    da = tiny_random_config().to_dict()
    keep = ("backbone_config", "reassemble_hidden_size", "reassemble_factors", "neck_hidden_sizes", "fusion_hidden_size",
            "head_hidden_size")
    return PromptDepthAnythingConfig(**{k: da[k] for k in keep}, depth_estimation_type="metric", max_depth=1)


@pytest.mark.parametrize("make, gap", [(_tiny_zoedepth, "ZoeDepth's processor pads"),
                                       (_tiny_depth_pro, "focal length"),
                                       (_tiny_prompt_depth, "takes its metres from its prompt")])
def test_unreplicated_architectures_are_refused_with_the_reason(tmp_path: Path, make: object, gap: str):
    config = make()  # type: ignore[operator]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        AutoModelForDepthEstimation.from_config(config).save_pretrained(tmp_path)  # the real layout, tiny weights
    model = AutoModelForDepthEstimation.from_pretrained(tmp_path).eval()  # transformers runs it
    with torch.no_grad():
        assert model(pixel_values=torch.rand(1, 3, 64, 64)).predicted_depth.ndim == 3
    with pytest.raises(LeveError, match=f"not runnable by the teacher cache yet: .*{gap}"):
        load_teacher(str(tmp_path))


@pytest.mark.parametrize("name", ["zoedepth-nyu", "zoedepth-kitti", "depth-pro"])
def test_unreplicated_registry_entries_are_refused_before_any_download(name: str):
    with pytest.raises(LeveError, match=f"{name} .*not runnable"):
        load_teacher(name)
