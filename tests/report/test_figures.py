"""Figures a person can read (leve.report.figures): column titles, colour bars with units, the run and
protocol in the title; the drawn data checked against the inputs computed here; the PNGs read back."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import matplotlib
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from PIL import Image

from leve.errors import LeveError
from leve.evaluation.protocols import get_protocol
from leve.evaluation.runner import Example
from leve.report.figures import (
    describe_run,
    error_vs_depth_figure,
    grid_figure,
    save_error_vs_depth,
    save_grid,
    save_training_curves,
    training_figure,
)

H, W = 30, 40


def _examples(teacher: bool = True) -> list[Example]:
    rng = np.random.default_rng(0)
    out = []
    for i, (near, far) in enumerate(((1.0, 4.0), (2.0, 7.5), (0.5, 3.0))):
        gt = np.linspace(near, far, H * W).reshape(H, W)
        gt[:3, :5] = 0.0  # no ground truth there
        student = gt + rng.normal(0, 0.2, (H, W))
        student[:3, :5] = 2.0
        rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        out.append(Example(10 * i, rgb, gt, student, gt * 1.1 if teacher else None))
    return out


def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(matplotlib.text.Text)]


def _colour_bars(fig) -> dict[str, object]:
    """The colour-bar axes of ``fig`` by their label."""
    return {ax.get_xlabel(): ax for ax in fig.axes if ax.get_xlabel() and not ax.get_images() and ax.collections}


def test_grid_has_titled_columns_a_depth_bar_in_metres_and_the_run_in_its_title():
    protocol = get_protocol("leve2024", "synthetic", 10.0)
    title = describe_run("models/student/best.pt", "leve", "synthetic", "test", protocol)
    fig = grid_figure(_examples(), title, "metres")
    top = [ax.get_title() for ax in fig.axes[:5]]
    assert top == ["RGB", "ground truth", "student", "teacher", "student error"]
    texts = _texts(fig)
    head = fig.get_suptitle()
    assert "models/student/best.pt (leve) on synthetic/test" in head and "protocol leve2024" in head
    assert f"align {protocol.align}" in head and f"flip {protocol.flip}" in head
    bars = _colour_bars(fig)
    assert "depth (m), near = red; black: no ground truth" in bars and "|student - ground truth| (m)" in bars
    assert "sample 10" in texts and "sample 20" in texts


def test_grid_draws_the_maps_on_one_scale_computed_independently():
    examples = _examples()
    fig = grid_figure(examples, "run")
    images = [ax.get_images() for ax in fig.axes[: 3 * 5]]
    valid = np.concatenate([e.gt[e.gt > 0] for e in examples])
    lo, hi = valid.min(), valid.max()  # one scale: the valid ground truth of every row
    for row, e in enumerate(examples):
        gt, student, teacher, error = (images[row * 5 + c][0] for c in (1, 2, 3, 4))
        want_gt = np.where(e.gt > 0, e.gt, np.nan)
        np.testing.assert_array_equal(np.ma.filled(gt.get_array().astype(float), np.nan), want_gt)
        np.testing.assert_allclose(np.ma.filled(student.get_array().astype(float), np.nan), e.student)
        want_teacher = np.where(e.teacher > 0, e.teacher, np.nan)  # no depth there: black, as the ground truth
        np.testing.assert_allclose(np.ma.filled(teacher.get_array().astype(float), np.nan), want_teacher)
        want_err = np.where(e.gt > 0, np.abs(e.student - e.gt), np.nan)
        np.testing.assert_allclose(np.ma.filled(error.get_array().astype(float), np.nan), want_err)
        for im in (gt, student, teacher):
            assert im.norm.vmin == pytest.approx(lo) and im.norm.vmax == pytest.approx(hi)
            assert im.get_cmap().name.startswith("turbo_r")
        assert error.norm.vmin == 0


def test_grid_without_teacher_and_in_relative_units():
    fig = grid_figure(_examples(teacher=False), "run", "relative")
    assert [ax.get_title() for ax in fig.axes[:4]] == ["RGB", "ground truth", "student", "student error"]
    bars = _colour_bars(fig)
    assert "depth (relative units of the store), near = red; black: no ground truth" in bars
    assert "|student - ground truth| (relative)" in bars


def test_saved_grid_is_a_png_of_the_expected_size_with_a_colour_bar(tmp_path):
    examples = _examples()
    out = save_grid(examples, tmp_path / "reports" / "examples.png", title="models/x.pt (leve) on synthetic/test\np")
    assert out == tmp_path / "reports" / "examples.png"
    with Image.open(out) as img:
        img.verify()
    img = np.asarray(Image.open(out).convert("RGB"))
    # 160 px rows; columns 160 * 40/30 px wide each (5 of them) plus 40 px; 160 px for titles and bars, 35 per extra line
    assert img.shape[:2] == (3 * 160 + 160 + 35, int(5 * 160 * W / H + 40))
    # the depth colour bar, located where matplotlib drew it, runs through turbo_r from near (red) to far (blue)
    fig = grid_figure(examples, "models/x.pt (leve) on synthetic/test\np")
    FigureCanvasAgg(fig).draw()  # lays the figure out as savefig did
    bar = _colour_bars(fig)["depth (m), near = red; black: no ground truth"]
    box = bar.get_window_extent()
    y = img.shape[0] - int((box.y0 + box.y1) / 2)
    strip = img[y, int(box.x0) + 2 : int(box.x1) - 2].astype(int)
    assert len({tuple(c) for c in strip}) > 50  # not a constant region
    turbo = matplotlib.colormaps["turbo_r"]
    for frac, got in ((0.0, strip[1]), (1.0, strip[-2])):
        want = np.array(turbo(frac)[:3]) * 255
        assert np.abs(got - want).max() < 40, (frac, got, want)


def test_no_examples_writes_nothing(tmp_path):
    assert save_grid([], tmp_path / "examples.png") is None
    assert not list(tmp_path.iterdir())


# --------------------------------------------------------------------------- error against depth


def test_error_vs_depth_lines_are_the_csv_columns(tmp_path):
    rows = [{"depth": 0.25, "student_pixels": 0, "student_rmse": "", "student_abs_rel": "", "teacher_pixels": 0,
             "teacher_rmse": "", "teacher_abs_rel": ""}]
    rows += [{"depth": d, "student_pixels": 10, "student_rmse": 0.1 * d, "student_abs_rel": 0.3 / d,
              "teacher_pixels": 10, "teacher_rmse": 0.05 * d, "teacher_abs_rel": 0.1} for d in (0.75, 1.25, 1.75)]
    path = tmp_path / "error_vs_depth.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    with open(path, newline="") as fh:  # read back as the eval stage's file would be
        read = list(csv.DictReader(fh))
    fig = error_vs_depth_figure(read, "models/x.pt (leve) on synthetic/test", "metres")
    left, right = fig.axes[:2]
    assert left.get_xlabel() == "ground-truth depth, bin centre (m)" and right.get_ylabel() == "RMSE (m)"
    assert fig.get_suptitle() == "models/x.pt (leve) on synthetic/test"
    lines = {(ax.get_title(), line.get_label()): line for ax in (left, right) for line in ax.get_lines()}
    depth = [0.25, 0.75, 1.25, 1.75]
    for d_got in (line.get_xdata() for line in lines.values()):
        np.testing.assert_allclose(d_got, depth)
    want = {("abs_rel against depth", "student"): [math.nan] + [0.3 / d for d in depth[1:]],
            ("abs_rel against depth", "teacher"): [math.nan, 0.1, 0.1, 0.1],
            ("rmse against depth", "student"): [math.nan] + [0.1 * d for d in depth[1:]],
            ("rmse against depth", "teacher"): [math.nan] + [0.05 * d for d in depth[1:]]}
    assert set(lines) == set(want)
    for key, values in want.items():
        np.testing.assert_allclose(lines[key].get_ydata(), values)  # an empty bin is a gap (NaN)
    out = save_error_vs_depth(read, tmp_path / "error_vs_depth.png", "models/x.pt (leve) on synthetic/test")
    assert Image.open(out).size == (900, 360)


# --------------------------------------------------------------------------- training curves


def _dvclive(root: Path) -> dict[str, tuple[list[int], list[float]]]:
    """DVCLive's layout: <dir>/plots/metrics/{train,val}/<name>.tsv (step, value) and params.yaml."""
    series = {"train/loss": ([5, 10, 15], [0.9, 0.5, 0.4]), "train/lr": ([5, 10, 15], [1e-3, 5e-4, 0.0]),
              "val/rmse": ([10, 15], [1.2, 0.8]), "val/d1": ([10, 15], [0.5, 0.7])}
    for name, (steps, values) in series.items():
        path = root / "plots" / "metrics" / f"{name}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        stem = name.split("/")[1]
        path.write_text(f"step\t{stem}\n" + "".join(f"{s}\t{v}\n" for s, v in zip(steps, values)))
    (root / "params.yaml").write_text("model: leve\ndataset: synthetic\nkd:\n  eps: 0.2\nseed: 3\n")
    return series


def test_training_curves_draw_every_dvclive_series(tmp_path):
    series = _dvclive(tmp_path / "dvclive")
    fig = training_figure(tmp_path / "dvclive", "run")
    panels = {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}
    assert set(panels) == {"training losses", "validation errors", "validation accuracy (δ)", "learning rate"}
    where = {"train/loss": "training losses", "train/lr": "learning rate", "val/rmse": "validation errors",
             "val/d1": "validation accuracy (δ)"}
    for name, (steps, values) in series.items():
        (line,) = [ln for ln in panels[where[name]].get_lines() if ln.get_label() == name.split("/")[1]]
        np.testing.assert_allclose(line.get_xdata(), steps)
        np.testing.assert_allclose(line.get_ydata(), values)
    assert all(ax.get_xlabel() == "step" for ax in panels.values())


def test_training_curves_cli_writes_a_png_titled_with_the_run(tmp_path, run_cli):
    _dvclive(tmp_path / "dvclive")
    out = tmp_path / "reports" / "training_curves.png"
    res = run_cli("figures", "--dvclive", tmp_path / "dvclive", "--out", out)
    assert res.code == 0, res.stderr
    assert Image.open(out).size == (4.2 * 2 * 100, (3.0 * 2 + 0.5) * 100)  # 4 panels: 2 x 2, 420 x 300 px each
    fig = training_figure(tmp_path / "dvclive")
    assert "training curves:" in fig.get_suptitle()
    from leve.report.figures import run_name

    assert run_name(tmp_path / "dvclive") == f"training curves: {tmp_path / 'dvclive'} (model leve, dataset synthetic, " \
                                            "kd.eps 0.2, seed 3)"


def test_training_curves_without_a_log_are_one_line(tmp_path, run_cli):
    res = run_cli("figures", "--dvclive", tmp_path / "none", "--out", tmp_path / "t.png")
    assert res.code == 1 and len(res.stderr.strip().splitlines()) == 1
    assert f"error: {tmp_path / 'none' / 'plots' / 'metrics'}: no DVCLive metrics (*.tsv) to draw" in res.stderr
    assert not (tmp_path / "t.png").exists()
    with pytest.raises(LeveError):
        save_training_curves(tmp_path / "none", tmp_path / "t.png")


# --------------------------------------------------------------------------- a store's preview (leve preview)


def test_store_preview_titles_columns_and_has_a_depth_bar_in_the_stores_units(tmp_path, run_cli):
    import zarr

    from leve.report.preview import preview_figure
    from tests.factories import synthetic_store

    store = synthetic_store(tmp_path / "syn.zarr", 24, 32, 1, 1, 3, 4)
    fig = preview_figure(str(store), "test", count=3, columns=2)
    assert [ax.get_title() for ax in fig.axes[:4]] == ["RGB", "depth", "RGB", "depth"]
    assert fig.get_suptitle() == f"{store} / test: 3 of 3 samples"
    assert "depth (m), near = red; black: no depth" in _colour_bars(fig)
    # the depth drawn is the stored depth (read here with zarr itself), on the fixed scale 0..max_depth
    root = zarr.open_group(str(store), mode="r")
    stored, max_depth = np.asarray(root["test/depth"][:]), float(root.attrs["max_depth"])
    images = [ax.get_images()[0] for ax in fig.axes[:6] if ax.get_visible() and ax.get_title() != "RGB"
              and ax.get_images() and ax.get_images()[0].get_array().ndim == 2]
    assert len(images) == 3
    for k, im in enumerate(images):
        want = np.where(stored[k] > 0, stored[k], np.nan)
        np.testing.assert_allclose(np.ma.filled(im.get_array().astype(float), np.nan), want, rtol=1e-6)
        assert im.norm.vmin == 0 and im.norm.vmax == pytest.approx(max_depth)
    out = tmp_path / "preview.png"
    res = run_cli("preview", store, "--split", "test", "--count", "3", "--out", out)
    assert res.code == 0, res.stderr
    with Image.open(out) as img:
        img.verify()
    assert Image.open(out).size == (int(4 * 160 * 32 / 24 + 40), 2 * 160 + 150)
