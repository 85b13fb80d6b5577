"""Resumable, checked downloads against a loopback server."""

from __future__ import annotations

import hashlib

import pytest
import requests

from leve.errors import LeveError
from leve.sources.download import download, verify_file


@pytest.fixture
def payload(tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    data = bytes(range(256)) * 4000  # ~1 MB
    (www / "file.bin").write_bytes(data)
    return www, data


@pytest.mark.parametrize("ranges", [True, False])
def test_resume_from_part_file(payload, tmp_path, server_for, ranges):
    www, data = payload
    srv, base = server_for(www, ranges)
    dest = tmp_path / "out" / "file.bin"
    dest.parent.mkdir()
    (dest.parent / "file.bin.part").write_bytes(data[:300_000])  # an interrupted earlier transfer
    download(f"{base}/file.bin", dest, sha256=hashlib.sha256(data).hexdigest(), show_progress=False)
    assert dest.read_bytes() == data
    assert not (dest.parent / "file.bin.part").exists()
    # with Range only the missing bytes travel; without, the server restarts and the file is still whole
    assert srv.sent == (len(data) - 300_000 if ranges else len(data))
    assert (dest.parent / "file.bin.sha256").read_text().split()[0] == hashlib.sha256(data).hexdigest()


def test_recorded_hash_is_verified_later(payload, tmp_path, server_for):
    www, data = payload
    _, base = server_for(www, True)
    dest = tmp_path / "file.bin"
    download(f"{base}/file.bin", dest, show_progress=False)
    assert verify_file(dest, show_progress=False) == hashlib.sha256(data).hexdigest()
    dest.write_bytes(data[:-1] + b"\x00")  # the file changed on disk since it was recorded
    with pytest.raises(LeveError, match="file.bin: sha256 mismatch"):
        verify_file(dest, show_progress=False)


def test_wrong_size_and_missing_url(payload, tmp_path, server_for):
    www, data = payload
    _, base = server_for(www, True)
    with pytest.raises(LeveError, match="size"):
        download(f"{base}/file.bin", tmp_path / "a.bin", size=len(data) + 1, show_progress=False)
    with pytest.raises(LeveError, match="HTTP 404"):
        download(f"{base}/nothing.bin", tmp_path / "b.bin", show_progress=False)


def test_interrupted_transfer_keeps_part_for_resume(payload, tmp_path, server_for, monkeypatch):
    www, data = payload
    _, base = server_for(www, True)
    dest = tmp_path / "file.bin"
    real = requests.Response.iter_content

    def broken(self, chunk_size=1, decode_unicode=False):
        for i, block in enumerate(real(self, chunk_size, decode_unicode)):
            if i == 1:
                raise requests.exceptions.ChunkedEncodingError("connection reset")
            yield block

    monkeypatch.setattr("leve.sources.download.CHUNK", 65536)
    monkeypatch.setattr(requests.Response, "iter_content", broken)
    with pytest.raises(LeveError, match="transfer interrupted.*rerun to resume"):
        download(f"{base}/file.bin", dest, show_progress=False)
    part = tmp_path / "file.bin.part"
    assert 0 < part.stat().st_size < len(data) and not dest.exists()
    monkeypatch.setattr(requests.Response, "iter_content", real)
    download(f"{base}/file.bin", dest, show_progress=False)
    assert dest.read_bytes() == data


def test_obtain_hashes_each_file_once(payload, tmp_path, server_for, monkeypatch):
    """A 4 GB archive must not be read twice: download + verification hash it once."""
    from leve.sources import download as dl

    www, data = payload
    _, base = server_for(www, True)
    calls = []
    real = dl.sha256_file
    monkeypatch.setattr(dl, "sha256_file", lambda path, show=False: calls.append(path) or real(path, show))
    digest = hashlib.sha256(data).hexdigest()
    path, got = dl.obtain(None, f"{base}/file.bin", tmp_path / "file.bin", show_progress=False)
    assert (path.read_bytes(), got, len(calls)) == (data, digest, 1)
    path, got = dl.obtain(None, f"{base}/file.bin", tmp_path / "file.bin", show_progress=False)  # already there
    assert (got, len(calls)) == (digest, 2)
    mine = tmp_path / "mine.bin"
    mine.write_bytes(data)
    assert dl.obtain(mine, "http://unused.invalid/x", tmp_path / "x", sha256=digest, show_progress=False) == (mine, digest)
    assert len(calls) == 3


def test_range_file_retries_and_names_the_url(payload, server_for, monkeypatch):
    """HttpRangeFile: a dropped range request is retried; a server that ignores Range is one clear error."""
    from leve.sources import remote_zip

    www, data = payload
    _, base = server_for(www, True)
    url = f"{base}/file.bin"
    monkeypatch.setattr(remote_zip, "RETRY_WAIT", 0.0)
    real, drops = requests.Session.get, [1]

    def flaky(self, *args, **kwargs):
        if drops and "bytes=0-0" not in kwargs.get("headers", {}).get("Range", ""):
            drops.pop()
            raise requests.ConnectionError("connection reset")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(requests.Session, "get", flaky)
    f = remote_zip.HttpRangeFile(url)
    f.seek(500_000)
    assert f.read(1000) == data[500_000:501_000] and f.requests == 2 and not drops
    monkeypatch.setattr(requests.Session, "get", lambda self, *a, **k: (_ for _ in ()).throw(requests.Timeout("slow")))
    f.seek(0)
    with pytest.raises(LeveError, match=rf"^{url}: range request failed 3 times \(Timeout\); rerun to resume$"):
        f.read(10)
    monkeypatch.setattr(requests.Session, "get", real)
    _, plain = server_for(www, False)
    with pytest.raises(LeveError, match=rf"^{plain}/file.bin: server does not support range requests$"):
        remote_zip.HttpRangeFile(f"{plain}/file.bin")
    ignoring = remote_zip.HttpRangeFile(f"{plain}/file.bin", size=len(data))  # told the size, then refused a range
    with pytest.raises(LeveError, match=r"bad range reply \(HTTP 200, 1024000 bytes for bytes 0-262143\)"):
        ignoring.read(10)
