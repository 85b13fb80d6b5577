"""leve2024 on EndoSLAM and KITTI as the thesis scored them (issue #15, item 6).

EndoSLAM: with ``prepare.endoslam.depth: thesis`` every pixel is R/255 + 1e-6, so zero-R pixels are
scored (the thesis code's ``EndoSLAMDataset`` + a metric without a mask). KITTI: ``prepare.kitti.gt:
guideddecoding`` stores GuidedDecoding's prepared test files, scored in the thesis's pixel box with no
mask. Both are checked against a naive computation written here with :class:`ColumnRampNet`, whose
depth is known in closed form; other stores get a note saying why they are not comparable."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import pytest

from leve.datasets import endoslam, kitti
from leve.evaluation.protocols import get_protocol, ground_truth_note
from leve.evaluation.runner import evaluate
from leve.report import experiments as ex
from leve.report.metrics import evaluation_markdown, metrics_document
from leve.sources.archive import close_all
from leve.store.images import encode_png
from leve.store.reader import open_split, open_store
from tests.evaluation.conftest import ColumnRampNet
from tests.explicit import evaluation

H, W = 6, 8


def ramp(rgb: np.ndarray) -> np.ndarray:
    """ColumnRampNet's depth for an image at its own size: 1 + 4 red + 3 column / (w - 1)."""
    return 1.0 + 4.0 * rgb[..., 0] / 255.0 + 3.0 * np.arange(rgb.shape[1]) / (rgb.shape[1] - 1)


def naive(p: np.ndarray, g: np.ndarray) -> dict[str, float]:
    """RMSE, REL, δ1 of one sample over every pixel given (no mask), as the thesis's ``Result.evaluate``."""
    ratio = np.maximum(p / g, g / p)
    return {"rmse": float(np.sqrt(np.mean((p - g) ** 2))), "abs_rel": float(np.mean(np.abs(p - g) / g)),
            "d1": float(np.mean(ratio < 1.25))}


def mean_of(samples: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([s[k] for s in samples])) for k in samples[0]}


# ------------------------------------------------------------------------------------------- EndoSLAM


@pytest.fixture(scope="module")
def endo(tmp_path_factory: pytest.TempPathFactory):
    """One UnityCam organ, two frames whose R channels hold zeros; stores with depth r255 and thesis."""
    root = tmp_path_factory.mktemp("endo")
    base = root / "src" / "UnityCam" / "Stomach"
    (base / "Frames").mkdir(parents=True)
    (base / "Pixelwise Depths").mkdir()
    rng = np.random.default_rng(3)
    frames = []
    for n in (1, 2):
        rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        rgba = rng.integers(1, 256, (H, W, 4), dtype=np.uint8)
        rgba[..., 0][rng.random((H, W)) < 0.25] = 0
        rgba[0, 0, 0] = 0
        (base / "Frames" / f"image_{n:04d}.png").write_bytes(encode_png(rgb))
        (base / "Pixelwise Depths" / f"aov_image_{n:04d}.png").write_bytes(encode_png(rgba))
        frames.append((rgb, rgba[..., 0]))
    stores = {}
    for depth in endoslam.DEPTHS:
        cfg = endoslam.Config(out=root / depth / "endoslam.zarr", raw=root / "raw", source=root / "src",
                              organs=("Stomach",), per_organ=2, depth=depth)
        endoslam.prepare(cfg, show_progress=False)
        stores[depth] = cfg.out
    close_all()
    return stores, frames


def endo_expected(frames: list[tuple[np.ndarray, np.ndarray]], thesis: bool) -> dict[str, float]:
    """leve2024 on EndoSLAM (D = 1, depth = ramp / 10, never clamped): each frame and its mirror a sample;
    thesis: gt = float32(R/255 + 1e-6) at every pixel; else gt = R/255 where R > 0."""
    out = []
    for rgb, red in frames:
        for img, r in ((rgb, red), (rgb[:, ::-1], red[:, ::-1])):
            pred = ramp(img) / 10.0
            if thesis:
                out.append(naive(pred, (r / 255.0 + 1e-6).astype(np.float32).astype(np.float64)))
            else:
                ok = r > 0
                out.append(naive(pred[ok], (r[ok] / np.float32(255.0)).astype(np.float32).astype(np.float64)))
    return mean_of(out)


@pytest.mark.parametrize("depth", ["thesis", "r255"])
def test_endoslam_thesis_depth_scores_zero_red_pixels(endo, depth):
    stores, frames = endo
    protocol = get_protocol("leve2024", "endoslam", 1.0)
    result = evaluate(ColumnRampNet(), open_split(stores[depth], "test"), protocol, (H, W), 10.0,
                      **evaluation(batch_size=2), show_progress=False)
    doc = metrics_document(result, "test", {"path": "best.pt", "model": "ramp"}, None)
    want = endo_expected(frames, depth == "thesis")
    assert {k: doc["student"][k] for k in want} == pytest.approx(want, rel=1e-5)
    assert doc["student"]["count"] == 4
    if depth == "thesis":  # the 1e-6 denominators: a REL in the thousands, as Table 9.8's 35-46 at 320x320
        assert doc["student"]["abs_rel"] > 1000
    note = ground_truth_note(protocol, open_store(stores[depth]).attrs)
    assert (note is None) == (depth == "thesis")
    if note:
        assert "Table 9.8" in note and "prepare.endoslam.depth: thesis" in note


@pytest.mark.slow
def test_eval_stage_writes_the_note_and_the_tables_show_it(endo, tmp_path):
    """``eval@endoslam`` on an r255 store: the metrics document carries the note, and so do the tables of
    ``leve eval``/``leve tables`` and the caption of ``leve report``; a thesis store has none."""
    import torch

    from leve.evaluation import stage
    from leve.models.checkpoint import save_checkpoint
    from leve.models.registry import create_model

    stores, _ = endo
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "best.pt", create_model("leve"), "leve", 10.0, resolution=(64, 64))
    docs = {}
    for depth, path in stores.items():
        overrides = {"checkpoint": tmp_path / "best.pt", "data_dir": path.parent, "teacher": False, "device": "cpu",
                     "metrics_dir": tmp_path / depth / "metrics", "reports_dir": tmp_path / depth / "reports"}
        stage.run("endoslam", overrides, params_file=tmp_path / "none.yaml", show_progress=False)
        docs[depth] = json.loads((tmp_path / depth / "metrics" / "endoslam.json").read_text())
    assert "note" not in docs["thesis"]
    note = docs["r255"]["note"]
    assert "Table 9.8" in note
    assert f"_Note: {note}._" in (tmp_path / "r255" / "reports" / "endoslam" / "metrics.md").read_text()
    assert "Note:" not in evaluation_markdown([docs["thesis"]])
    record = ex.Record("exp", "abc", "experiment", "success", {"train.seed": 0}, {"endoslam": docs["r255"]})
    rows = ex.dataset_rows([record], ["run"], "endoslam", True, None)
    caption = ex.protocol_caption(ex.Table("kd", "t", "endoslam", tuple(rows)))
    assert caption.endswith(f"; note: {note}")


# ------------------------------------------------------------------------------------------- KITTI

KH, KW = 384, 1280  # GuidedDecoding's KITTI "full" resolution; the thesis's box rows 128:381, cols 45:1196


def npz_bytes(image: np.ndarray, depth: np.ndarray, compressed: bool) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, image=image, depth=depth)
    return buf.getvalue()


@pytest.fixture(scope="module")
def kitti_zip(tmp_path_factory: pytest.TempPathFactory):
    """``kitti_test_data.zip`` as the thesis unpacked it (``kitti_test_data/<name>.npz``), written out of
    name order; dense depth in metres."""
    root = tmp_path_factory.mktemp("gd")
    rng = np.random.default_rng(5)
    files = {}
    for name in ("0002", "0000", "0001"):
        image = rng.integers(0, 256, (KH, KW, 3), dtype=np.uint8)
        depth = rng.uniform(1.0, 80.0, (KH, KW)).astype(np.float32)
        files[name] = (image, depth)
    path = root / "kitti_test_data.zip"
    with zipfile.ZipFile(path, "w") as z:
        for k, (name, (image, depth)) in enumerate(files.items()):
            z.writestr(f"kitti_test_data/{name}.npz", npz_bytes(image, depth, compressed=k % 2 == 0))
    cfg = kitti.Config(out=root / "kitti.zarr", raw=root / "raw", source=path, gt="guideddecoding", block_size=2)
    kitti.prepare(cfg, show_progress=False)
    close_all()
    return cfg.out, [files[n] for n in sorted(files)]


def test_kitti_guideddecoding_scored_as_the_thesis(kitti_zip):
    path, files = kitti_zip
    protocol = get_protocol("leve2024", "kitti", 80.0)
    result = evaluate(ColumnRampNet(), open_split(path, "test"), protocol, (KH, KW), 10.0, **evaluation(batch_size=2),
                      show_progress=False)
    doc = metrics_document(result, "test", {"path": "best.pt", "model": "ramp"}, None)
    out = []
    for image, depth in files:  # the thesis: depth clamp(80 / out, 0.8, 80) = 8 ramp, box [128:381, 45:1196]
        for img, g in ((image, depth), (image[:, ::-1], depth[:, ::-1])):
            pred = 8.0 * ramp(img)
            out.append(naive(pred[128:381, 45:1196], g[128:381, 45:1196].astype(np.float64)))
    want = mean_of(out)
    assert {k: doc["student"][k] for k in want} == pytest.approx(want, rel=1e-5)
    assert doc["student"]["count"] == 6
    attrs = open_store(path).attrs
    assert ground_truth_note(protocol, attrs) is None
    for other in ({"dataset": "kitti", "gt": "velodyne"}, {"dataset": "kitti", "gt": "annotated"}, {"dataset": "kitti"}):
        note = ground_truth_note(protocol, other)
        assert note is not None and "Table 9.7" in note and f"'{other.get('gt', 'velodyne')}'" in note
    assert ground_truth_note(get_protocol("standard", "kitti", 80.0, align="none", flip=True), {"dataset": "kitti"}) is None
