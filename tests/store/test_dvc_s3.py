"""DVC on the loopback S3 server (moto's server on 127.0.0.1, the same as tests/store/test_s3.py), with
DVC's own S3 plugin (dvc-s3) in subprocesses, as a user runs it.

- ``dvc push`` / ``dvc pull`` of a real leve store, its teacher cache and a checkpoint through a remote
  ``s3://bkt/dvcstore``: after deleting the workspace copies and the DVC cache, the pulled bytes equal the
  originals, the store and the cache verify (``leve verify``) and the checkpoint loads with equal weights.
- The pattern docs/storage.md chooses for a pipeline input that lives in a bucket: ``dvc import-url
  remote://bucket/<prefix>`` (the endpoint in the remote's config, not in the .dvc file); ``dvc status``
  is clean, a republished store in the bucket is picked up by ``dvc update`` (and only by it), an
  unchanged one is skipped. ``--to-remote`` puts the import straight into the DVC remote. DVC 3 refuses a
  cached output in the bucket (external outputs), which is why a stage writes into the workspace.

The endpoint reaches DVC only through its config (``endpointurl``): the subprocesses run without
``AWS_ENDPOINT_URL_S3``. Credentials come from the ``AWS_*`` variables and never enter a config file."""

from __future__ import annotations

import filecmp
import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from tests.report.exp_repo import dvc_env
from tests.store.loopback import CREDENTIALS, SIZES, endpoint_fixture, prepare, s3_fixture  # noqa: F401 (fixtures)

pytest.importorskip("dvc_s3")
pytestmark = pytest.mark.slow  # a dozen dvc subprocesses, a second or two each


def _dvc(ws: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in dvc_env().items() if k != "AWS_ENDPOINT_URL_S3"}  # the endpoint: DVC's config only
    done = subprocess.run(["dvc", *args], cwd=ws, env=env, capture_output=True, text=True, timeout=300)
    if ok:
        assert done.returncode == 0, f"dvc {' '.join(args)}: {done.stdout}{done.stderr}"
    return done


def _git(ws: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=ws, env=dvc_env(), check=True, capture_output=True)


@pytest.fixture
def workspace(s3, endpoint, tmp_path) -> Path:
    """A throw-away git + DVC workspace: default remote ``storage`` at s3://bkt/dvcstore and a remote
    ``bucket`` (s3://bkt) to name objects in the bucket by, both with the loopback endpoint."""
    ws = tmp_path / "ws"
    ws.mkdir()
    _git(ws, "init", "-q", "-b", "main")
    _dvc(ws, "init", "-q")
    _dvc(ws, "config", "core.analytics", "false")
    _dvc(ws, "remote", "add", "-d", "storage", "s3://bkt/dvcstore")
    _dvc(ws, "remote", "modify", "storage", "endpointurl", endpoint)
    _dvc(ws, "remote", "add", "bucket", "s3://bkt")
    _dvc(ws, "remote", "modify", "--local", "bucket", "endpointurl", endpoint)  # this machine's endpoint
    _git(ws, "add", "-A")
    _git(ws, "commit", "-q", "-m", "workspace")
    return ws


def _no_credentials(ws: Path) -> None:
    for config in (ws / ".dvc").glob("config*"):
        text = config.read_text()
        assert CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in text and "access_key" not in text, config


def _same_tree(a: Path, b: Path) -> None:
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files and files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    match, mismatch, errors = filecmp.cmpfiles(a, b, [str(f) for f in files], shallow=False)
    assert not mismatch and not errors and len(match) == len(files)


def test_push_then_pull_of_a_store_a_teacher_cache_and_a_checkpoint_through_the_bucket(workspace, s3, tmp_path, monkeypatch):
    from leve.models.checkpoint import load_checkpoint, save_checkpoint
    from leve.models.registry import create_model
    from leve.store.integrity import verify_store
    from leve.store.reader import open_store
    from leve.teacher.cache.build import build_teacher_cache
    from leve.teacher.cache.read import TeacherCache
    from leve.teacher.loading import load_teacher
    from tests.explicit import caching
    from tests.factories import synthetic_store

    monkeypatch.chdir(tmp_path)
    ws = workspace
    store = synthetic_store(ws / "data/zarr/synthetic.zarr", **SIZES)
    torch.manual_seed(0)
    cache = build_teacher_cache(store, ws / "data/teacher/synthetic.zarr", "train", load_teacher("tiny-random"),
                                **caching(block_size=16), show_progress=False).path
    ckpt = save_checkpoint(ws / "models/best.pt", create_model("leve", max_depth=10.0), "leve", 10.0,
                           resolution=(64, 64))
    originals = tmp_path / "originals"
    shutil.copytree(store, originals / "synthetic.zarr")
    shutil.copytree(cache, originals / "teacher.zarr")
    shutil.copy(ckpt, originals / "best.pt")

    _dvc(ws, "add", "data/zarr/synthetic.zarr", "data/teacher/synthetic.zarr", "models/best.pt")
    _dvc(ws, "push")
    # the remote holds every distinct content (md5-addressed), the checkpoint's, and each folder's listing
    files = [p for p in [*store.rglob("*"), *cache.rglob("*"), ckpt] if p.is_file()]
    contents = {hashlib.md5(p.read_bytes()).hexdigest() for p in files}
    s3.invalidate_cache()
    pushed = {k.split("/")[-2] + k.split("/")[-1] for k in s3.find("bkt/dvcstore/files/md5")}
    listings = [h for h in pushed if h.endswith(".dir")]
    assert len(listings) == 2 and pushed - set(listings) == contents
    _no_credentials(ws)

    shutil.rmtree(store)
    shutil.rmtree(cache)
    ckpt.unlink()
    shutil.rmtree(ws / ".dvc/cache")
    _dvc(ws, "pull")
    _same_tree(originals / "synthetic.zarr", store)
    _same_tree(originals / "teacher.zarr", cache)
    assert (originals / "best.pt").read_bytes() == ckpt.read_bytes()
    for pulled_store in (store, cache):  # `leve verify`: every chunk there and matching its checksum
        assert verify_store(pulled_store)[0] == []
    split = open_store(store).split("train")
    assert TeacherCache(cache, "train", split).disparity(0).shape == (SIZES["height"], SIZES["width"])
    pulled, _ = load_checkpoint(ckpt)
    original, _ = load_checkpoint(originals / "best.pt")
    assert all(torch.equal(a, b) for a, b in zip(pulled.state_dict().values(), original.state_dict().values(),
                                                 strict=True))
    assert "up to date" in _dvc(ws, "status").stdout


def test_a_bucket_store_imported_with_import_url_is_updated_by_dvc_update(workspace, s3, tmp_path, monkeypatch):
    from leve.store.integrity import verify_store
    from leve.store.reader import open_store

    monkeypatch.chdir(tmp_path)
    ws = workspace
    url = "s3://bkt/stores/synthetic.zarr"
    prepare(url)  # published by someone else: leve prepare --out s3://...
    (ws / "data/zarr").mkdir(parents=True)
    _dvc(ws, "import-url", "remote://bucket/stores/synthetic.zarr", "data/zarr/synthetic.zarr")
    store = ws / "data/zarr/synthetic.zarr"
    dvcfile = ws / "data/zarr/synthetic.zarr.dvc"
    assert "127.0.0.1" not in dvcfile.read_text()  # the .dvc file names the remote, not this machine's endpoint
    _no_credentials(ws)
    assert verify_store(store)[0] == [] and open_store(store).split("test").length == SIZES["test"]
    local = {p.relative_to(store).as_posix(): p.read_bytes() for p in store.rglob("*") if p.is_file()}
    s3.invalidate_cache()
    assert local == {k[len("bkt/stores/synthetic.zarr/"):]: s3.cat_file(k) for k in s3.find("bkt/stores/synthetic.zarr")}
    _git(ws, "add", "-A")
    _git(ws, "commit", "-q", "-m", "import the bucket store")
    assert "didn't change" in _dvc(ws, "update", "data/zarr/synthetic.zarr.dvc").stdout
    assert dvcfile.read_text() == _committed(ws, "data/zarr/synthetic.zarr.dvc")

    prepare(url, test=SIZES["test"] + 1)  # the bucket's store is republished with another test split
    status = _dvc(ws, "status", "--json")
    assert json.loads(status.stdout) == {}  # the workspace still matches its .dvc file: no surprise rebuild
    _dvc(ws, "update", "data/zarr/synthetic.zarr.dvc")
    assert dvcfile.read_text() != _committed(ws, "data/zarr/synthetic.zarr.dvc")  # the new hash, to commit
    assert verify_store(store)[0] == [] and open_store(store).split("test").length == SIZES["test"] + 1
    s3.invalidate_cache()
    assert {p.relative_to(store).as_posix(): p.read_bytes() for p in store.rglob("*") if p.is_file()} == \
        {k[len("bkt/stores/synthetic.zarr/"):]: s3.cat_file(k) for k in s3.find("bkt/stores/synthetic.zarr")}

    # --to-remote: the import goes straight into the default remote, nothing in the workspace until a pull
    _dvc(ws, "import-url", "--to-remote", "remote://bucket/stores/synthetic.zarr", "data/zarr/remote.zarr")
    assert not (ws / "data/zarr/remote.zarr").exists()
    _dvc(ws, "pull", "data/zarr/remote.zarr.dvc")
    _same_tree(store, ws / "data/zarr/remote.zarr")

    # DVC 3 refuses a cached output in the bucket: a stage writes into the workspace (and `dvc push`es)
    refused = _dvc(ws, "stage", "add", "-n", "ext", "-o", "remote://bucket/out.zarr", "echo", ok=False)
    assert refused.returncode != 0 and "outside of DVC project" in refused.stderr
    refused = _dvc(ws, "add", "remote://bucket/stores/synthetic.zarr", ok=False)  # nor tracks the bucket in place
    assert refused.returncode != 0 and "outside of DVC project" in refused.stderr


def _committed(ws: Path, rel: str) -> str:
    return subprocess.run(["git", "show", f"HEAD:{rel}"], cwd=ws, env=dvc_env(), check=True, capture_output=True,
                          text=True).stdout

