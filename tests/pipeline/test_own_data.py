"""Your own data through DVC, end to end: a folder with depth (16-bit PNG in millimetres), a folder
without depth and a short video, all made here, become three datasets of one pipeline
(``datasets: [mine_depth, mine_nodepth, mine_video]``) in a throw-away git + DVC workspace;
``dvc repro`` prepares and caches all three, trains a student on the images without depth (relative
depth from the teacher alone) and evaluates it on the test split that has depth (``standard``
protocol, least-squares alignment); ``leve predict`` then writes maps, a PLY and a depth video."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import yaml
import zarr
from PIL import Image

from leve.datasets.synthetic import render_sample
from leve.models.checkpoint import read_checkpoint
from leve.pipeline.demo import Demo, create_workspace, init_repo, source_root
from leve.store.reader import open_store
from tests.outputs.conftest import read_ply, read_video, write_video

H, W = 64, 96  # every image and video frame
SCENES = {"kitchen": 3, "hall": 3, "lab": 3}  # mine_depth: whole scenes -> train / val / test
NODEPTH = 8  # mine_nodepth: loose JPEGs, 2 held out for val
VIDEO_FRAMES, VIDEO_EVERY, FPS = 12, 2, 10  # mine_video: every 2nd of 12 frames
SCALE = 2.0  # leve predict --scale: metres per unit of the relative student's depth


@dataclass
class OwnData:
    demo: Demo
    mm: dict[str, np.ndarray]  # mine_depth: 'scene/NNNN' -> depth written (uint16 mm)
    rgb: dict[str, np.ndarray]  # mine_depth: 'scene/NNNN' -> RGB as decoded by Pillow
    video: list[np.ndarray]  # the frames PyAV decodes from the test video
    log: str  # what dvc repro printed

    @property
    def ws(self) -> Path:
        return self.demo.workspace


def _depth_folder(root: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``<scene>/rgb/NNNN.jpg`` + ``<scene>/depth/NNNN.png`` (16-bit mm) of synthetic rooms."""
    mm, rgbs = {}, {}
    for s, (scene, n) in enumerate(SCENES.items()):
        for k in range(n):
            rgb, depth = render_sample(7, "test", 10 * s + k, H, W)
            for sub in ("rgb", "depth"):
                (root / scene / sub).mkdir(parents=True, exist_ok=True)
            Image.fromarray(rgb).save(root / scene / "rgb" / f"{k:04d}.jpg", quality=95)
            mm[f"{scene}/{k:04d}"] = np.round(depth * 1000).astype(np.uint16)
            Image.fromarray(mm[f"{scene}/{k:04d}"]).save(root / scene / "depth" / f"{k:04d}.png")
            rgbs[f"{scene}/{k:04d}"] = np.asarray(Image.open(root / scene / "rgb" / f"{k:04d}.jpg").convert("RGB"))
    return mm, rgbs


def _nodepth_folder(root: Path) -> None:
    root.mkdir(parents=True)
    for k in range(NODEPTH):
        Image.fromarray(render_sample(7, "train", k, H, W)[0]).save(root / f"photo_{k}.jpg", quality=95)


def _video(path: Path) -> list[np.ndarray]:
    """One synthetic room, still, with a bright square moving right: PyAV (H.264), then decoded."""
    path.parent.mkdir(parents=True)
    room = render_sample(7, "val", 0, H, W)[0]
    frames = []
    for t in range(VIDEO_FRAMES):
        img = room.copy()
        img[8:20, 4 + 4 * t : 16 + 4 * t] = 250
        frames.append(img)
    return read_video(write_video(path, frames, FPS))


def _params(ws: Path) -> None:
    """The workspace's params.yaml: the three datasets, a tiny relative student, eval standard + lstsq."""
    path = ws / "params.yaml"
    p = yaml.safe_load(path.read_text())
    p["datasets"] = ["mine_depth", "mine_nodepth", "mine_video"]
    common = {"adapter": "folder", "workers": 1, "block_size": 8}
    p["prepare"].update({
        "mine_depth": {**common, "source": "data/raw/mine_depth", "depth_scale": 0.001, "split": "scenes",
                       "val_fraction": 0.3, "test_fraction": 0.3},
        "mine_nodepth": {**common, "source": "data/raw/mine_nodepth", "val_fraction": 0.25, "test_fraction": 0},
        "mine_video": {**common, "source": "data/raw/mine_video/walk.mp4", "video_every": VIDEO_EVERY,
                       "val_fraction": 0, "test_fraction": 0},
    })
    p["teacher"].update({"model": "tiny-random", "workers": 0, "batch_size": 8})
    p["teacher"]["datasets"].update({"mine_depth": {"splits": ["test"]}, "mine_nodepth": {"splits": ["train"]},
                                     "mine_video": {"splits": ["train"]}})
    p["train"].update({"dataset": "mine_nodepth", "resolution": [H, W], "batch_size": 2, "max_steps": 3,
                       "workers": 0, "epochs": 1})
    p["train"]["kd"].update({"eps": 1.0, "loss": "ssi"})
    p["eval"].update({"protocol": "standard", "align": "lstsq", "examples": 2})
    p["eval"]["datasets"].update({"mine_depth": {}, "mine_nodepth": {}, "mine_video": {}})
    path.write_text(yaml.safe_dump(p, sort_keys=False))


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> OwnData:
    """The workspace after ``dvc repro`` and ``leve predict`` (an image with a PLY, and the video)."""
    demo = Demo(tmp_path_factory.mktemp("own") / "ws", quiet=True)
    create_workspace(demo.workspace, source_root())
    raw = demo.workspace / "data" / "raw"
    mm, rgbs = _depth_folder(raw / "mine_depth")
    _nodepth_folder(raw / "mine_nodepth")
    frames = _video(raw / "mine_video" / "walk.mp4")
    _params(demo.workspace)
    init_repo(demo)
    # eval where a split has depth: the student distilled from mine_nodepth, on mine_depth's test split
    log = demo.run("dvc", "repro", "train", "eval@mine_depth", "teacher@mine_video", capture=True)
    demo.run("leve", "predict", "data/raw/mine_depth/hall/rgb/0000.jpg", "data/raw/mine_video/walk.mp4",
             "--checkpoint", "models/student/best.pt", "--out", "predictions", "--runtime", "eager",
             "--pointcloud", "--fov", "60", "--scale", str(SCALE))
    return OwnData(demo, mm, rgbs, frames, log)


@pytest.mark.slow
def test_stores_hold_the_folders_and_the_video(own):
    depth = open_store(own.ws / "data/zarr/mine_depth.zarr")
    assert depth.attrs["units"] == "metres" and set(depth.splits) == {"train", "val", "test"}
    assert depth.attrs["max_depth"] == pytest.approx(max(float(v.max()) for v in own.mm.values()) / 1000, abs=1e-6)
    scenes = {name: set(depth.split(name).meta["scene"]) for name in depth.splits}
    assert sorted(s for v in scenes.values() for s in v) == sorted(SCENES)  # whole scenes, one per split
    for name in depth.splits:
        split = depth.split(name)
        for i, src in enumerate(split.meta["source"]):
            key = src.replace("/rgb/", "/").removesuffix(".jpg")
            assert np.array_equal(split.rgb(i), own.rgb[key])
            np.testing.assert_allclose(split.depth(i), own.mm[key] / 1000.0, rtol=1e-6)
    nodepth = open_store(own.ws / "data/zarr/mine_nodepth.zarr")
    assert {s: len(nodepth.split(s)) for s in nodepth.splits} == {"train": NODEPTH - 2, "val": 2}
    assert not any(nodepth.split(s).has_depth for s in nodepth.splits) and nodepth.attrs["max_depth"] is None
    video = open_store(own.ws / "data/zarr/mine_video.zarr").split("train")
    kept = list(range(0, VIDEO_FRAMES, VIDEO_EVERY))
    assert list(video.meta["frame"]) == kept and not video.has_depth
    np.testing.assert_allclose(video.meta["time"], [k / FPS for k in kept], atol=1e-9)
    for i, k in enumerate(kept):
        assert np.array_equal(video.rgb(i), own.video[k])


@pytest.mark.slow
def test_teacher_caches_are_aligned_with_the_splits(own):
    for ds, split, n in (("mine_depth", "test", 3), ("mine_nodepth", "train", NODEPTH - 2),
                         ("mine_video", "train", VIDEO_FRAMES // VIDEO_EVERY)):
        group = zarr.open_group(str(own.ws / f"data/teacher/{ds}.zarr"), mode="r")
        disparity = np.asarray(group[split]["disparity"], np.float32)
        assert disparity.shape == (n, H, W), ds
        np.testing.assert_allclose(disparity.reshape(n, -1).max(1), 1.0, atol=1e-3)  # per-image max-normalised


@pytest.mark.slow
def test_student_distilled_without_depth_is_relative_and_says_from_what(own):
    _, info = read_checkpoint(own.ws / "models/student/best.pt")
    assert info.depth_kind == "relative" and info.resolution == (H, W)
    lineage = info.extra["lineage"]
    assert [(d["name"], d["split"], d["has_depth"]) for d in lineage["datasets"]] == \
        [("mine_nodepth", "train", False), ("mine_nodepth", "val", False)]
    assert lineage["teacher"]["model"] == "tiny-random" and lineage["datasets"][0]["labels_fraction"] == 0.0


@pytest.mark.slow
def test_eval_scores_the_relative_student_where_there_is_depth(own):
    doc = json.loads((own.ws / "metrics/mine_depth.json").read_text())
    assert (doc["dataset"], doc["split"]) == ("mine_depth", "test")
    assert doc["protocol"]["name"] == "standard" and doc["protocol"]["align"] == "lstsq"
    assert doc["checkpoint"]["depth_kind"] == "relative" and doc["teacher_source"]["model"] == "tiny-random"
    assert doc["student"]["count"] == 3 and doc["teacher"]["count"] == 3
    assert f"eval mine_depth/test [standard]: rmse {doc['student']['rmse']:.4f}" in own.log
    with (own.ws / "reports/mine_depth/per_image.csv").open() as f:
        rows = [r for r in csv.DictReader(f) if r["model"] == "student"]
    assert len(rows) == 3  # per_image aggregation: the document's RMSE is the mean of the rows'
    assert doc["student"]["rmse"] == pytest.approx(np.mean([float(r["rmse"]) for r in rows]), abs=1e-5)


@pytest.mark.slow
def test_eval_writes_the_card_with_its_metrics_without_touching_the_train_output(own):
    doc = json.loads((own.ws / "metrics/mine_depth.json").read_text())
    card = (own.ws / "reports/mine_depth/MODEL_CARD.md").read_text()
    assert "### mine_depth / test (`leve eval`, `metrics/mine_depth.json`)" in card
    assert "protocol `standard`" in card and "alignment lstsq" in card and "relative depth" in card
    student = f"| student | {doc['student']['abs_rel']:.4f} | {doc['student']['sq_rel']:.4f} | {doc['student']['rmse']:.4f} |"
    assert student in card and "| teacher `tiny-random` (lstsq-aligned) |" in card
    assert "`models/student/best.pt`" in card
    # models/student/ is train's output: the card written beside it at training is unchanged and DVC agrees
    assert "### mine_depth" not in (own.ws / "models/student/MODEL_CARD.md").read_text()
    assert "up to date" in own.demo.run("dvc", "status", "train", "eval@mine_depth", capture=True)


@pytest.mark.slow
def test_eval_of_a_dataset_without_depth_is_one_line(own, run_cli, monkeypatch):
    monkeypatch.chdir(own.ws)
    res = run_cli("eval", "--dataset", "mine_nodepth", "--quiet")
    assert res.code == 1 and len(res.stderr.strip().splitlines()) == 1
    assert "data/zarr/mine_nodepth.zarr: no split has depth" in res.stderr
    assert not (own.ws / "metrics/mine_nodepth.json").exists()


@pytest.mark.slow
def test_predict_writes_maps_a_readable_ply_and_the_depth_video(own):
    out = own.ws / "predictions"
    rgb = np.asarray(Image.open(own.ws / "data/raw/mine_depth/hall/rgb/0000.jpg").convert("RGB"))
    mm = np.asarray(Image.open(out / "0000_depth16.png"), np.float64)
    assert mm.shape == (H, W) and (mm > 0).all()
    ply = read_ply(out / "0000.ply")  # (N, 6): x, y, z, r, g, b
    assert len(ply) == H * W  # every pixel has a positive depth
    z = ply[:, 2].reshape(H, W)
    np.testing.assert_allclose(z, mm / 1000, atol=0.5e-3 + 1e-5)  # --scale made the map metric too (mm of the same z)
    fx = (W / 2) / np.tan(np.radians(30))  # --fov 60, principal point at the centre
    u = np.arange(W)[None, :] - (W - 1) / 2
    np.testing.assert_allclose(ply[:, 0].reshape(H, W), u * z / fx, rtol=1e-5, atol=1e-5)
    assert np.array_equal(ply[:, 3:].reshape(H, W, 3), rgb)
    report = json.loads((out / "walk_video.json").read_text())
    assert report["frames"] == VIDEO_FRAMES and report["size"] == [H, W]
    stability = report["temporal_stability"]
    assert stability["pairs"] == VIDEO_FRAMES - 1 and 0 <= stability["value"] < 1
    assert stability["static_fraction"] > 0.8  # only the small square moves
    decoded = read_video(out / "walk_depth.mp4")
    assert len(decoded) == VIDEO_FRAMES and decoded[0].shape[:2] == (H, W)
    assert len(list((out / "walk_frames").glob("*_depth16.png"))) == VIDEO_FRAMES
