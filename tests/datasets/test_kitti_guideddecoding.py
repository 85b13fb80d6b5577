"""``prepare.kitti.gt: guideddecoding``: GuidedDecoding's prepared KITTI test files (``.npz`` with
``image`` and ``depth``), the ground truth of the thesis's Table 9.7, stored as they are."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from leve.cli import app
from leve.datasets import kitti
from leve.errors import LeveError
from leve.sources.archive import close_all
from leve.store.format import PARTIAL_SUFFIX
from leve.store.reader import is_complete, open_split


def npz_bytes(compressed: bool = False, **arrays: np.ndarray) -> bytes:
    buf = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def sample(rng: np.random.Generator, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    depth = rng.uniform(0.5, 80.0, (h, w)).astype(np.float32)
    depth[0, :2] = 0.0  # no measurement
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8), depth


@pytest.fixture()
def folder(tmp_path: Path):
    """``kitti_test_data/test/*.npz`` (GuidedDecoding's ``<root>/test``) beside a ``train`` folder, two
    image sizes, one float image holding 0..255 integers, one depth stored (H, W, 1)."""
    rng = np.random.default_rng(11)
    root = tmp_path / "kitti_test_data"
    (root / "test").mkdir(parents=True)
    (root / "train").mkdir()
    truth = {}
    for name, (h, w) in (("b_0001", (5, 9)), ("a_0007", (6, 8)), ("c_0003", (5, 9))):
        image, depth = sample(rng, h, w)
        stored_image = image.astype(np.float32) if name == "b_0001" else image
        stored_depth = depth[..., None] if name == "c_0003" else depth
        (root / "test" / f"{name}.npz").write_bytes(npz_bytes(name == "a_0007", image=stored_image, depth=stored_depth))
        truth[name] = (image, depth)
    (root / "train" / "x.npz").write_bytes(npz_bytes(image=np.zeros((2, 2, 3), np.uint8), depth=np.ones((2, 2))))
    yield root, truth
    close_all()


def cfg_for(tmp_path: Path, source: Path, **kw: object) -> kitti.Config:
    return kitti.Config(out=tmp_path / "kitti.zarr", raw=tmp_path / "cache", source=source, gt="guideddecoding",
                        block_size=2, **kw)  # type: ignore[arg-type]


def check_store(path: Path, truth: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    s = open_split(path, "test")
    names = sorted(truth)   # file-name order, as the thesis's KITTIDataset (os.listdir, sorted)
    assert s.meta["frame_id"].astype(str).tolist() == names
    for i, name in enumerate(names):
        image, depth = truth[name]
        np.testing.assert_array_equal(s.rgb(i), image)
        np.testing.assert_array_equal(s.depth(i), depth)
        assert (int(s.meta["height"][i]), int(s.meta["width"][i])) == depth.shape
    attrs = zarr.open_group(str(path)).attrs
    assert attrs["gt"] == "guideddecoding" and attrs["units"] == "metres" and attrs["max_depth"] == 80.0
    assert attrs["sizes"] == ["8x6", "9x5"] and attrs["sources"][0]["files"] == 3


def test_store_from_folder_takes_the_test_folder(folder, tmp_path, capsys):
    root, truth = folder
    kitti.prepare(cfg_for(tmp_path, root), show_progress=False)
    check_store(tmp_path / "kitti.zarr", truth)
    assert "holds 3 test files (the Eigen test split has 697)" in capsys.readouterr().err
    s = open_split(tmp_path / "kitti.zarr", "test")
    assert s.meta["source"][0] == "test/a_0007.npz"


def test_store_from_the_zip(folder, tmp_path):
    root, truth = folder
    archive = tmp_path / "kitti_test_data.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for p in sorted((root / "test").iterdir(), reverse=True):  # members out of name order
            z.write(p, f"kitti_test_data/{p.name}")
    kitti.prepare(cfg_for(tmp_path, archive), show_progress=False)
    check_store(tmp_path / "kitti.zarr", truth)
    attrs = zarr.open_group(str(tmp_path / "kitti.zarr")).attrs
    assert attrs["sources"][0]["size"] == archive.stat().st_size and len(attrs["sources"][0]["sha256"]) == 64


def _cli(tmp_path: Path, source: Path):
    args = ["prepare", "kitti", "--gt", "guideddecoding", "--source", str(source), "--out", str(tmp_path / "kitti.zarr"),
            "--params", str(tmp_path / "none.yaml"), "--set", "block_size=1", "--set", f"raw={tmp_path / 'cache'}"]
    return CliRunner().invoke(app, args)


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda r: (r / "test/b_0001.npz").write_bytes(npz_bytes(image=np.zeros((5, 9, 3), np.uint8))),
         "b_0001.npz: no depth array"),
        (lambda r: (r / "test/b_0001.npz").write_bytes(b"PK junk"), "b_0001.npz: not a readable .npz"),
        (lambda r: (r / "test/b_0001.npz").write_bytes(npz_bytes(image=np.zeros((5, 9, 3), np.uint8),
                                                                 depth=-np.ones((5, 9), np.float32))),
         "b_0001.npz: 'depth' holds negative or non-finite values"),
        (lambda r: (r / "test/b_0001.npz").write_bytes(npz_bytes(image=np.zeros((5, 9, 3), np.uint8),
                                                                 depth=np.ones((5, 8), np.float32))),
         "b_0001.npz: 'depth' is float32 (5, 8), expected (5, 9) numbers"),
        (lambda r: (r / "test/b_0001.npz").write_bytes(npz_bytes(image=np.full((5, 9, 3), 0.5), depth=np.ones((5, 9)))),
         "b_0001.npz: 'image' (float64) must hold integers 0..255"),
        (lambda r: (r / "val").mkdir() or (r / "val/y.npz").write_bytes(b"")
         or (r / "test").rename(r / "other"), ".npz files in 3 folders"),
    ],
)
def test_bad_input_is_one_line_error_and_nothing_complete(folder, tmp_path, damage, message):
    root, _ = folder
    damage(root)
    result = _cli(tmp_path, root)
    assert result.exit_code != 0 and isinstance(result.exception, LeveError)
    assert message in str(result.exception) and "\n" not in str(result.exception)
    assert not (tmp_path / "kitti.zarr").exists()
    partial = tmp_path / ("kitti.zarr" + PARTIAL_SUFFIX)
    assert not partial.exists() or not is_complete(partial)


def test_without_source_says_where_the_files_are(tmp_path):
    with pytest.raises(LeveError, match=r"github.com/mic-rud/GuidedDecoding's README and pass --source"):
        kitti.prepare(kitti.Config(out=tmp_path / "k.zarr", raw=tmp_path / "c", gt="guideddecoding"), show_progress=False)
    with pytest.raises(LeveError, match=r"gt must be one of velodyne, annotated, guideddecoding, got 'dense'"):
        kitti.prepare(kitti.Config(out=tmp_path / "k.zarr", gt="dense"), show_progress=False)
