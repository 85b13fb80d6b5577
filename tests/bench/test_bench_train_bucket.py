"""`leve bench train --source s3://...` against moto's S3 server on loopback: the training loader (as leve train
builds it) on a bucket store through the read-through cache over the same loader on its local copy, per epoch, in
one run. The test checks what the JSON says (no timing assertions): the local copy holds the bucket's bytes, the
first epoch is reported apart, the ratios are the per-epoch rates'."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.store.loopback import SIZES, endpoint_fixture, prepare, s3_fixture  # noqa: F401 (fixtures)

pytest.importorskip("s3fs")


@pytest.mark.slow
def test_bench_train_source_reports_each_epoch_and_the_ratios(s3, run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = "s3://bkt/stores/synthetic.zarr"
    prepare(url)
    out = tmp_path / "bench.json"
    done = run_cli("bench", "train", "--source", url, "--samples", "3", "--workers", "0", "--epochs", "3",
                   "--batch-size", "2", "--resolution", "16x16", "--out", out)
    assert done.code == 0, done.stderr
    result = json.loads(out.read_text())
    s3.invalidate_cache()
    objects = s3.find("bkt/stores/synthetic.zarr", detail=True)
    manifest = json.loads(s3.cat_file("bkt/stores/synthetic.zarr/leve-manifest.json"))
    assert result["bench"] == "train-bucket" and result["source"] == url and result["split"] == "train"
    assert result["epochs"] == 3 and result["input"] == [16, 16] and result["batch_size"] == 2
    assert result["samples_per_epoch"] == SIZES["train"]  # --samples 3 of a 3-sample split
    assert result["store_bytes"] == sum(o["size"] for o in manifest["objects"].values())
    assert result["local_copy_bytes"] == sum(o["size"] for o in objects.values())  # every object, the manifest too
    assert result["cache_bytes"] == 2 * result["store_bytes"]
    rates = {name: r["samples_per_s_per_epoch"] for name, r in result["readers"].items()}
    assert set(rates) == {"bucket", "local"} and all(len(v) == 3 and min(v) > 0 for v in rates.values())
    for name, per_epoch in rates.items():
        reader = result["readers"][name]
        assert reader["first_epoch_samples_per_s"] == per_epoch[0]
        # the later epochs: samples over seconds (equal samples per epoch: the harmonic mean of the rates)
        assert reader["later_epochs_samples_per_s"] == pytest.approx(2 / (1 / per_epoch[1] + 1 / per_epoch[2]))
    assert result["ratio_first_epoch"] == pytest.approx(rates["bucket"][0] / rates["local"][0])
    assert result["ratio_later_epochs"] == pytest.approx(
        (2 / (1 / rates["bucket"][1] + 1 / rates["bucket"][2])) / (2 / (1 / rates["local"][1] + 1 / rates["local"][2])))
    assert result["meets_goal"] == (result["ratio_later_epochs"] >= 0.9)


def test_bench_train_source_needs_two_epochs_and_a_cache(s3, run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = "s3://bkt/stores/synthetic.zarr"
    prepare(url)
    one = run_cli("bench", "train", "--source", url, "--workers", "0", "--epochs", "1")
    assert one.code == 1 and one.stderr.strip() == ("error: bench train --source: --epochs must be >= 2 (the first "
                                                    "epoch and later ones), got 1")
    off = run_cli("bench", "train", "--source", url, "--workers", "0", "--cache-bytes", "0")
    assert off.code == 1 and "bench train --source: a read-through cache of 0 bytes is off" in off.stderr
    missing = run_cli("bench", "train", "--source", "s3://nobucket/synthetic.zarr", "--workers", "0")
    assert missing.code == 1 and "bucket 'nobucket' does not exist" in missing.stderr


def test_the_committed_run_agrees_with_itself_and_with_the_docs():
    """docs/bench_train_bucket.json (the run docs/storage.md shows): its ratios are its per-epoch rates', computed
    here independently of the bench and of docs/generate.py, and the page carries them."""
    root = Path(__file__).resolve().parents[2]
    result = json.loads((root / "docs" / "bench_train_bucket.json").read_text())
    rates = {name: r["samples_per_s_per_epoch"] for name, r in result["readers"].items()}
    epochs = result["epochs"]
    assert all(len(v) == epochs for v in rates.values())
    later = {name: (epochs - 1) / sum(1 / r for r in v[1:]) for name, v in rates.items()}
    assert result["ratio_first_epoch"] == pytest.approx(rates["bucket"][0] / rates["local"][0])
    assert result["ratio_later_epochs"] == pytest.approx(later["bucket"] / later["local"])
    assert result["meets_goal"] == (later["bucket"] / later["local"] >= 0.9)
    page = (root / "docs" / "storage.md").read_text()
    assert f"**{result['ratio_first_epoch']:.3f}×**" in page and f"**{result['ratio_later_epochs']:.3f}×**" in page
