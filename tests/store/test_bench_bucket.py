"""`leve bench io --source s3://...` against moto's S3 server on loopback: a bucket store's loader throughput
through the read-through cache over its local copy's, per epoch, in one run. The test checks what the JSON
says about the data (no timing assertions): the local copy is the bucket's bytes, the ratios are the
per-epoch rates', the first epoch is reported apart from the later ones."""

from __future__ import annotations

import json

import pytest

from tests.store.loopback import SIZES, endpoint_fixture, prepare, s3_fixture  # noqa: F401 (fixtures)

pytest.importorskip("s3fs")


def test_bench_io_source_reports_each_epoch_and_the_ratios(s3, run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = "s3://bkt/stores/synthetic.zarr"
    prepare(url)
    out = tmp_path / "bench.json"
    done = run_cli("bench", "io", "--source", url, "--samples", "3", "--workers", "0", "--repeats", "3", "--out", out)
    assert done.code == 0, done.stderr
    result = json.loads(out.read_text())
    s3.invalidate_cache()
    objects = s3.find("bkt/stores/synthetic.zarr", detail=True)
    manifest = json.loads(s3.cat_file("bkt/stores/synthetic.zarr/leve-manifest.json"))
    assert result["source"] == url and result["split"] == "train" and result["epochs"] == 3
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
    later = {n: result["readers"][n]["later_epochs_samples_per_s"] for n in rates}
    assert result["ratio_later_epochs"] == pytest.approx(later["bucket"] / later["local"])
    assert result["meets_goal"] == (result["ratio_later_epochs"] >= 0.9)


def test_bench_io_source_needs_two_epochs_and_a_cache(s3, run_cli, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = "s3://bkt/stores/synthetic.zarr"
    prepare(url)
    one = run_cli("bench", "io", "--source", url, "--workers", "0", "--repeats", "1")
    assert one.code == 1 and one.stderr.strip() == ("error: bench io --source: --repeats must be >= 2 (the first "
                                                    "epoch and later ones), got 1")
    off = run_cli("bench", "io", "--source", url, "--workers", "0", "--cache-bytes", "0")
    assert off.code == 1 and "read-through cache of 0 bytes is off" in off.stderr
    missing = run_cli("bench", "io", "--source", "s3://nobucket/synthetic.zarr", "--workers", "0")
    assert missing.code == 1 and "bucket 'nobucket' does not exist" in missing.stderr
