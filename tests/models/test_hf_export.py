"""``leve export --format hf``: a folder that transformers loads with its remote code, offline and
without leve (``AutoModelForDepthEstimation``, ``AutoImageProcessor``, ``pipeline("depth-estimation")``),
whose ``predicted_depth`` is ``leve predict``'s depth; and ``--push`` (tested as a dry run and with a
loopback stand-in of the Hub's HTTP API that huggingface_hub talks to: no real Hub is contacted)."""

from __future__ import annotations

import ast
import base64
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from leve.errors import LeveError

# one model per architecture family (leve.models.registry.ARCHITECTURES), one of them relative
FAMILIES = {"leve": ("leve", "metric"), "leve-mobilenetv3": ("leve-mobilenetv3", "relative"),
            "densedepth": ("densedepth-mobilenetv2", "metric")}
RESOLUTION = (64, 64)
IMAGE_SHAPE = (50, 70, 3)  # taller than wide after resizing: enlarged in H, shrunk in W
REL_TOL = 1e-5

# Runs in a fresh interpreter (-I) where `import leve` fails: what a Hub user without leve runs.
REMOTE_SCRIPT = r'''
import json, sys
sys.modules["leve"] = None  # leve cannot be imported here
try:
    import leve  # noqa: F401
    raise SystemExit("leve is importable")
except ImportError:
    pass
import numpy as np
import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoModel, AutoModelForDepthEstimation, pipeline

image_path, out_dir, folders = sys.argv[1], sys.argv[2], sys.argv[3:]
report = {}
for i, folder in enumerate(folders):
    model = AutoModelForDepthEstimation.from_pretrained(folder, trust_remote_code=True).eval()
    base = AutoModel.from_pretrained(folder, trust_remote_code=True)
    processor = AutoImageProcessor.from_pretrained(folder, trust_remote_code=True)
    image = Image.open(image_path)
    with torch.inference_mode():
        out = model(**processor(images=image, return_tensors="pt"))
        auto = processor.post_process_depth_estimation(out, target_sizes=[image.size[::-1]])[0]["predicted_depth"]
    piped = pipeline("depth-estimation", model=folder, trust_remote_code=True)(image_path)["predicted_depth"]
    np.save(f"{out_dir}/{i}_auto.npy", auto.numpy())
    np.save(f"{out_dir}/{i}_pipeline.npy", piped.numpy())
    report[folder] = {"model": type(model).__name__, "base": type(base).__name__,
                      "processor": type(processor).__name__, "leve_loaded": sys.modules.get("leve") is not None,
                      "module": type(model).__module__}
print(json.dumps(report))
'''


def _random_checkpoint(folder: Path, name: str, kind: str) -> Path:
    """A registered model with random weights and random batch-norm statistics (a non-trivial output)."""
    from leve.models.checkpoint import save_checkpoint
    from leve.models.registry import create_model

    torch.manual_seed(0)
    model = create_model(name, max_depth=10.0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
    extra: dict = {"depth_kind": kind, "epoch": 1}
    if kind == "relative":
        extra["relative_affine"] = [0.02, 0.3]
    return save_checkpoint(folder / f"{name}.safetensors", model, name, 10.0, extra=extra, resolution=RESOLUTION)


def _leve_predict_depth(folder: Path, image: Path, out: Path) -> np.ndarray:
    """``leve predict --depth-format npy --runtime eager`` on the exported folder, read back as depth."""
    from leve.models.checkpoint import read_checkpoint
    from leve.predict import DepthEncoding, PredictOptions, run_predict

    info = read_checkpoint(folder)[1]
    written = run_predict([image], folder, PredictOptions(out_dir=out, depth_format="npy", runtime="eager"))
    encoding = DepthEncoding(info.depth_kind, "npy", info.max_depth)
    depth_file = next(p for p in written if p.name.endswith(encoding.suffix))
    return encoding.decode(depth_file.read_bytes())


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Each family exported, predicted by leve, and loaded by transformers in a process without leve."""
    from PIL import Image

    from leve.export import export_checkpoint

    root = tmp_path_factory.mktemp("hf")
    image = root / "image.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, IMAGE_SHAPE, dtype=np.uint8)).save(image)
    results: dict[str, dict] = {}
    for family, (name, kind) in FAMILIES.items():
        ckpt = _random_checkpoint(root, name, kind)
        result = export_checkpoint(ckpt, "hf", root / f"{name}-hf")
        folder = Path(result.path)
        results[family] = {"folder": folder, "kind": kind, "name": name, "checkpoint": ckpt,
                           "leve": _leve_predict_depth(folder, image, root / f"pred-{name}")}
    script = root / "remote.py"
    script.write_text(REMOTE_SCRIPT, encoding="utf-8")
    env = {**os.environ, "HF_HOME": str(root / "hf-home"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    folders = [str(r["folder"]) for r in results.values()]
    proc = subprocess.run([sys.executable, "-I", str(script), str(image), str(root), *folders],
                          capture_output=True, text=True, env=env, cwd=root, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    for i, r in enumerate(results.values()):
        r["remote"] = report[str(r["folder"])]
        r["auto"] = np.load(root / f"{i}_auto.npy")
        r["pipeline"] = np.load(root / f"{i}_pipeline.npy")
    return results


@pytest.mark.slow
@pytest.mark.parametrize("family", list(FAMILIES))
def test_transformers_gives_leve_predicts_depth_without_leve(exported, family):
    r = exported[family]
    assert r["remote"] == {"model": "LeveForDepthEstimation", "base": "LeveForDepthEstimation",
                           "processor": "LeveImageProcessor", "leve_loaded": False,
                           "module": r["remote"]["module"]}
    assert r["remote"]["module"].startswith("transformers_modules.")  # transformers' remote code, not leve
    ref = r["leve"]
    assert ref.shape == IMAGE_SHAPE[:2] and float(ref.max() - ref.min()) > 0  # a depth map that varies
    for how in ("auto", "pipeline"):
        got = r[how]
        assert got.shape == ref.shape, how
        assert float(np.abs(got - ref).max() / np.abs(ref).max()) <= REL_TOL, how


@pytest.mark.slow
def test_config_and_card_state_depth_kind_units_and_remote_code(exported):
    for r in exported.values():
        folder = r["folder"]
        config = json.loads((folder / "config.json").read_text())
        assert config["model_type"] == "leve" and config["architectures"] == ["LeveForDepthEstimation"]
        assert config["auto_map"]["AutoModelForDepthEstimation"] == "modeling_leve.LeveForDepthEstimation"
        assert config["depth_kind"] == r["kind"] and config["image_size"] == list(RESOLUTION)
        assert (config["depth_units"] == "m") == (r["kind"] == "metric")
        assert ("relative_affine" in config) == (r["kind"] == "relative")
        processor = json.loads((folder / "preprocessor_config.json").read_text())
        assert processor["size"] == {"height": RESOLUTION[0], "width": RESOLUTION[1]}
        assert processor["auto_map"]["AutoImageProcessor"] == "image_processing_leve.LeveImageProcessor"
        card = (folder / "README.md").read_text()
        assert "library_name: transformers" in card and "trust_remote_code=True" in card
        assert f"| units | {config['depth_units']} |" in card and "## Licence" in card
        for name in ("configuration_leve.py", "modeling_leve.py", "image_processing_leve.py"):
            tree = ast.parse((folder / name).read_text())
            imported = {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
            imported |= {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
            assert "leve" not in imported, name
        # every name the files use is defined or imported in them (pyflakes' checks, run by ruff)
        lint = subprocess.run([sys.executable, "-m", "ruff", "check", "--isolated", "--select", "F", str(folder)],
                              capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout[-2000:]


@pytest.mark.slow
def test_bundled_network_is_leves_for_every_registered_model(exported):
    """The one modeling file builds every registered model as leve does: same weights, same output."""
    from leve.models.hf import load_remote_code, transformers_fields
    from leve.models.registry import create_model, list_models, model_spec

    modeling = load_remote_code(exported["leve"]["folder"])["modeling_leve"]
    x = torch.rand(1, 3, *RESOLUTION, generator=torch.Generator().manual_seed(0))
    for name in list_models():
        spec = model_spec(name)
        config = SimpleNamespace(architecture=spec.architecture, encoder=spec.encoder, lcb=spec.lcb, skips=spec.skips,
                                 max_depth=10.0)
        assert set(vars(config)) <= set(transformers_fields(SimpleNamespace(model=name, max_depth=10.0, resolution=RESOLUTION,
                                                                            depth_kind="metric", extra={})))
        torch.manual_seed(0)
        ref = create_model(name, max_depth=10.0).eval()
        net = modeling.build_network(config).eval()
        net.load_state_dict(ref.state_dict(), strict=True)
        with torch.inference_mode():
            assert torch.equal(net(x), ref(x)), name


class _StandInHub:
    """The Hub's HTTP API as far as ``HfApi.create_repo`` and ``upload_folder`` use it, on loopback: it
    answers that every file goes as a regular blob (no LFS or Xet transfer) and keeps what it receives."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.files: dict[str, bytes] = {}
        self.created: dict = {}

    def handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def send(self, obj: dict, code: int = 200) -> None:
                body = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                hub.requests.append(("POST", self.path))
                if self.path == "/api/repos/create":
                    request = json.loads(data)
                    hub.created = {k: request.get(k) for k in ("name", "organization")}
                    return self.send({"url": f"http://{self.headers['Host']}/someone/{request['name']}"})
                if "/preupload/" in self.path:
                    return self.send({"files": [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False}
                                                for f in json.loads(data)["files"]]})
                if self.path.startswith("/api/validate-yaml"):
                    return self.send({})
                if "/commit/" in self.path:
                    for line in data.decode().splitlines():
                        op = json.loads(line)
                        if op["key"] == "file":
                            hub.files[op["value"]["path"]] = base64.b64decode(op["value"]["content"])
                    repo = self.path.split("/api/models/", 1)[1].split("/commit/", 1)[0]
                    return self.send({"commitUrl": f"http://{self.headers['Host']}/{repo}/commit/{'b' * 40}",
                                      "commitOid": "b" * 40})
                return self.send({"error": f"the stand-in does not serve {self.path}"}, 404)

        return Handler


@pytest.mark.slow
def test_push_dry_run_lists_the_folder_and_push_uploads_to_a_loopback_stand_in(exported, tmp_path, run_cli, monkeypatch):
    from leve.models.hf import push_hf_folder

    folder = exported["leve-mobilenetv3"]["folder"]
    files = push_hf_folder(folder, "someone/leve-test", dry_run=True)
    assert files == sorted(p.name for p in folder.iterdir())
    res = run_cli("export", "--checkpoint", exported["leve-mobilenetv3"]["checkpoint"], "--format", "hf",
                  "--out", tmp_path / "cli-hf", "--push", "someone/leve-test", "--dry-run")
    assert res.code == 0, res.stderr
    assert f"would upload to someone/leve-test: {', '.join(files)}" in " ".join(res.stderr.split())
    assert {"config.json", "model.safetensors", "modeling_leve.py", "preprocessor_config.json", "README.md"} <= set(files)

    hub = _StandInHub()
    server = ThreadingHTTPServer(("127.0.0.1", 0), hub.handler())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # the suite is offline; loopback is allowed
    try:
        from huggingface_hub import HfApi

        api = HfApi(endpoint=f"http://127.0.0.1:{server.server_address[1]}", token="hf_stand_in")
        assert push_hf_folder(folder, "someone/leve-test", api=api) == files
    finally:
        server.shutdown()
        server.server_close()
    paths = [p for _, p in hub.requests]
    assert paths[0] == "/api/repos/create" and paths[-1] == "/api/models/someone/leve-test/commit/main"
    assert "/api/models/someone/leve-test/preupload/main" in paths
    assert hub.created == {"name": "leve-test", "organization": "someone"}
    assert sorted(hub.files) == files  # every file, byte for byte
    assert all(hub.files[name] == (folder / name).read_bytes() for name in files)
    with pytest.raises(LeveError, match="owner/name"):
        push_hf_folder(folder, "no-owner", dry_run=True)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(LeveError, match="not a folder written by"):
        push_hf_folder(tmp_path, "someone/leve-test", dry_run=True)


def test_push_needs_the_hf_format(run_cli, small_checkpoint, tmp_path):
    res = run_cli("export", "--checkpoint", small_checkpoint, "--format", "onnx", "--out", tmp_path / "m.onnx",
                  "--push", "someone/repo")
    assert res.code == 1 and "needs --format hf" in res.stderr + res.stdout
    assert not (tmp_path / "m.onnx").exists()


def test_an_export_whose_remote_code_disagrees_with_leve_leaves_nothing(small_checkpoint, tmp_path, monkeypatch):
    import leve.models.hf as hf

    monkeypatch.setattr(hf, "check_remote_code", lambda folder, model, info: 2e-5)  # over REMOTE_TOLERANCE
    out = tmp_path / "student-hf"
    with pytest.raises(LeveError, match="transformers code's depth differs from leve's"):
        hf.write_hf_folder(small_checkpoint, out)
    assert not out.exists() and list(tmp_path.iterdir()) == []
