"""``leve weights fetch/list`` against loopback servers: resume, sha256 prefix, --source, offline."""

from __future__ import annotations

import hashlib
import socket
import subprocess
import sys

import pytest
import requests

from leve.errors import LeveError
from leve.models.encoders.catalogue import ENCODERS, list_encoders
from leve.sources import weights as w
from leve.sources.weights import WeightsFile, fetch_weights

FILE = "tiny-net.pth"


@pytest.fixture
def payload(tmp_path):
    www = tmp_path / "www"
    www.mkdir()
    data = bytes(range(256)) * 2000  # ~0.5 MB
    (www / FILE).write_bytes(data)
    return www, data


def register(monkeypatch, url, prefix, name="tiny", file=FILE):
    """Put a temporary entry into the weights table."""
    table = dict(w.WEIGHTS)
    table[name] = WeightsFile(name, file, url, prefix, "test")
    monkeypatch.setattr(w, "WEIGHTS", table)


def prefix_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:8]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_table_derives_every_encoder_and_ddrnet():
    for name, spec in ENCODERS.items():
        entry = w.WEIGHTS[name]
        assert (entry.file, entry.url, entry.sha256_prefix) == (spec.file, spec.url, spec.sha256_prefix)
        assert spec.file.endswith(f"-{entry.sha256_prefix}.pth") and len(entry.sha256_prefix) >= 8
    ddr = w.WEIGHTS["ddrnet23_slim"]
    assert (ddr.file, ddr.url) == ("DDRNet23s_imagenet.pth", None) and "--source" in ddr.help
    assert w.weight_spec("DDRNet23s_imagenet.pth") is ddr  # the file name works too


def test_fetch_checks_prefix_and_is_not_repeated(payload, tmp_path, server_for, monkeypatch):
    www, data = payload
    srv, base = server_for(www, True)
    register(monkeypatch, f"{base}/{FILE}", prefix_of(data))
    dest = tmp_path / "weights"
    path = fetch_weights("tiny", dest, show_progress=False)
    assert path == dest / FILE and path.read_bytes() == data
    assert (dest / f"{FILE}.sha256").read_text().split() == [hashlib.sha256(data).hexdigest(), FILE]
    assert not (dest / w.PARTIAL).exists()
    sent = srv.sent
    assert fetch_weights("tiny", dest, show_progress=False) == path and srv.sent == sent  # verified, not fetched


def test_interrupted_download_resumes(payload, tmp_path, server_for, monkeypatch):
    www, data = payload
    srv, base = server_for(www, True)
    register(monkeypatch, f"{base}/{FILE}", prefix_of(data))
    dest = tmp_path / "weights"
    real = requests.Response.iter_content

    def broken(self, chunk_size=1, decode_unicode=False):
        for i, block in enumerate(real(self, chunk_size, decode_unicode)):
            if i == 2:
                raise requests.exceptions.ChunkedEncodingError("connection reset")
            yield block

    monkeypatch.setattr("leve.sources.download.CHUNK", 65536)
    monkeypatch.setattr(requests.Response, "iter_content", broken)
    with pytest.raises(LeveError, match="transfer interrupted.*rerun to resume"):
        fetch_weights("tiny", dest, show_progress=False)
    part = dest / w.PARTIAL / f"{FILE}.part"
    have = part.stat().st_size
    assert 0 < have < len(data) and not (dest / FILE).exists()
    monkeypatch.setattr(requests.Response, "iter_content", real)
    sent = srv.sent
    assert fetch_weights("tiny", dest, show_progress=False).read_bytes() == data
    assert srv.sent - sent == len(data) - have  # only the missing bytes travelled
    assert not part.exists()


def test_wrong_hash_refused_and_nothing_kept(payload, tmp_path, server_for, monkeypatch):
    www, data = payload
    _, base = server_for(www, True)
    register(monkeypatch, f"{base}/{FILE}", "00000000")
    dest = tmp_path / "weights"
    with pytest.raises(LeveError) as err:
        fetch_weights("tiny", dest, show_progress=False)
    msg = str(err.value)
    assert "\n" not in msg and FILE in msg and "00000000" in msg and hashlib.sha256(data).hexdigest()[:16] in msg
    assert not (dest / FILE).exists() and not (dest / f"{FILE}.sha256").exists()
    assert not (dest / w.PARTIAL / FILE).exists()


def test_mirror_url_for_a_manual_entry(payload, tmp_path, server_for, monkeypatch):
    www, data = payload
    _, base = server_for(www, False)
    register(monkeypatch, None, None)
    with pytest.raises(LeveError, match=f"^{FILE} has no download URL; pass --url .*put it at .*{FILE}"):
        fetch_weights("tiny", tmp_path / "weights", show_progress=False)
    path = fetch_weights("tiny", tmp_path / "weights", url=f"{base}/{FILE}", show_progress=False)
    assert path.read_bytes() == data


def test_web_page_is_not_a_checkpoint(tmp_path, server_for, monkeypatch):
    www = tmp_path / "www"
    www.mkdir()
    (www / FILE).write_bytes(b"<!DOCTYPE html><html><body>Google Drive - virus scan warning</body></html>")
    _, base = server_for(www, True)
    register(monkeypatch, f"{base}/{FILE}", None)
    with pytest.raises(LeveError, match="web page"):
        fetch_weights("tiny", tmp_path / "weights", show_progress=False)
    assert not (tmp_path / "weights" / FILE).exists()


def test_source_is_verified_then_installed(payload, tmp_path, monkeypatch):
    www, data = payload
    register(monkeypatch, "http://127.0.0.1:9/unused", prefix_of(data))
    mine = tmp_path / "Downloads" / "my-copy.pth"
    mine.parent.mkdir()
    mine.write_bytes(data)
    dest = tmp_path / "weights"
    path = fetch_weights("tiny", dest, source=mine, show_progress=False)
    assert path == dest / FILE and path.read_bytes() == data and mine.read_bytes() == data
    assert (dest / f"{FILE}.sha256").read_text().split()[0] == hashlib.sha256(data).hexdigest()
    assert not (mine.parent / "my-copy.pth.sha256").exists()  # the user's folder is left alone
    bad = tmp_path / "Downloads" / "bad.pth"
    bad.write_bytes(data[:-1])
    with pytest.raises(LeveError, match=r"bad\.pth: sha256 .* expected " + prefix_of(data)):
        fetch_weights("tiny", tmp_path / "other", source=bad, show_progress=False)
    assert not (tmp_path / "other" / FILE).exists()
    with pytest.raises(LeveError, match="file not found"):
        fetch_weights("tiny", dest, source=tmp_path / "missing.pth", show_progress=False)


def test_unknown_name_lists_choices():
    with pytest.raises(LeveError) as err:
        fetch_weights("resnet18")
    msg = str(err.value)
    assert "\n" not in msg and "resnet18" in msg and all(n in msg for n in [*list_encoders(), "ddrnet23_slim"])


def test_offline_is_one_line_via_cli(tmp_path, monkeypatch, run_cli):
    url = f"http://127.0.0.1:{closed_port()}/{FILE}"
    register(monkeypatch, url, "abcdef12")
    dest = tmp_path / "weights"
    res = run_cli("weights", "fetch", "tiny", "--out", dest)
    assert res.code != 0
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    line = lines[0]
    assert line.startswith("error: ") and url in line and "network unreachable" in line
    assert str(dest / FILE) in line and "--source" in line
    assert not (dest / FILE).exists() and not (dest / w.PARTIAL).exists()


def test_cli_fetch_source_and_list(payload, tmp_path, monkeypatch, run_cli):
    www, data = payload
    register(monkeypatch, "http://127.0.0.1:9/unused", prefix_of(data))
    dest = tmp_path / "weights"
    res = run_cli("weights", "list", "--out", dest)
    assert res.code == 0, res.stderr
    rows = {line.split()[0]: line.split() for line in res.stdout.splitlines()[1:]}
    for name in [*list_encoders(), "ddrnet23_slim"]:
        spec = w.WEIGHTS[name]
        assert rows[name][1] == spec.file and rows[name][2] == (spec.url or "manual") and rows[name][-1] == "no"
    assert rows["tiny"][-1] == "no"
    res = run_cli("weights", "fetch", "tiny", "--source", www / FILE, "--out", dest)
    assert res.code == 0, res.stderr
    assert res.stdout.strip() == str(dest / FILE) and (dest / FILE).read_bytes() == data
    rows = {line.split()[0]: line.split() for line in run_cli("weights", "list", "--out", dest).stdout.splitlines()}
    assert rows["tiny"][-1] == "yes"
    res = run_cli("weights", "fetch", "nope", "--out", dest)
    assert res.code == 1 and "choose one of" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_weights_list_loads_neither_torch_nor_the_models(tmp_path):
    """``leve weights list`` reads the catalogue (leve.sources.weights) alone: no torch, no model registry."""
    code = ("import sys\nfrom leve.cli import main\nsys.argv = ['leve', 'weights', 'list']\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print(sorted(m for m in ('torch', 'leve.models', 'leve.models.registry') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[-1] == "[]"
    table = {line.split()[0]: line.split()[1] for line in lines[1:-1]}
    assert table == {name: spec.file for name, spec in w.WEIGHTS.items()}  # every entry listed, none present
    assert all(line.rstrip().endswith("no") for line in lines[1:-1])


def test_encoders_students_and_teachers_share_one_weights_type():
    from leve.models.registry import model_spec
    from leve.teacher.registry import find_entry, list_teachers

    files = [*(s.weights for s in ENCODERS.values()), *(model_spec(n).encoder_weights for n in ("leve", "densedepth-resnet50")),
             *(t.weights for t in list_teachers() if t.hub_id)]
    assert all(type(f) is w.WeightsFile and f.licence and len(f.mean) == len(f.std) == 3 for f in files)
    assert model_spec("leve").encoder_weights is w.WEIGHTS["ddrnet23_slim"]  # the same entry, not a copy
    assert model_spec("densedepth-resnet50").encoder_weights is ENCODERS["resnet50"].weights is w.WEIGHTS["resnet50"]
    small = find_entry("v2-small").weights
    assert small.url == "https://huggingface.co/depth-anything/Depth-Anything-V2-Small-hf" and small.licence == "Apache-2.0"
    assert find_entry("tiny-random").weights is None
