"""OpenVINO (issue 29 item 3): ``leve export --format openvino`` writes an IR (.xml + .bin) converted from
the verified ONNX graph, with the ONNX metadata in its ``rt_info``; ``--runtime openvino`` of ``leve
predict``, ``leve serve`` and ``leve bench model`` runs the same conversion on OpenVINO's CPU plugin. The
IR is loaded here with OpenVINO's own Core API and compared with ``leve predict`` (tolerances as for ONNX:
1e-4 of the output range against PyTorch, 1e-3 m in depth)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from leve.errors import LeveError
from leve.models.checkpoint import load_checkpoint
from leve.models.runtime import check_runtime, checkpoint_digest, import_openvino, prepare_for_inference

if importlib.util.find_spec("openvino") is None:
    pytest.skip("openvino is not installed (the export extra)", allow_module_level=True)
ov = import_openvino()  # as leve imports it: without its usage telemetry


def _image(h: int = 64, w: int = 96) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), (xx + yy) % 256], -1)
    return np.clip(base + rng.integers(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def _compiled(xml):
    core = ov.Core()
    return core.read_model(str(xml)), core.compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})


@pytest.mark.slow  # about 5 s: the export, its conversion and two predictions
def test_openvino_ir_matches_leve_predict_and_carries_the_metadata(tmp_path, small_checkpoint, run_cli):
    xml = tmp_path / "ir" / "leve.xml"
    res = run_cli("export", "--checkpoint", small_checkpoint, "--format", "openvino", "--out", xml)
    assert res.code == 0, res.stderr
    report = json.loads(res.stdout)
    assert report["format"] == "openvino" and len(report["checks"]) == 2
    assert all(c["relative"] < 1e-4 for c in report["checks"])
    assert sorted(p.name for p in xml.parent.iterdir()) == ["leve.bin", "leve.xml"]  # no temporary left
    model, compiled = _compiled(xml)

    def meta(key: str) -> str:
        return model.get_rt_info(["leve", key]).astype(str)

    assert meta("leve_input_multiple") == "8" and meta("leve_depth_kind") == "metric"
    assert meta("leve_depth_units") == "m" and meta("max_depth") == "10.0" and meta("resolution") == "64x96"
    assert meta("leve_checkpoint_sha256") == checkpoint_digest(small_checkpoint)
    assert json.loads(meta("leve_lineage"))["recorded"] is False  # small_checkpoint records none
    assert [d.is_dynamic for d in model.input(0).get_partial_shape()] == [True, False, True, True]

    # the IR against `leve predict`, on an image at the checkpoint's size (64x96: no resize)
    rgb = _image()
    Image.fromarray(rgb).save(tmp_path / "a.png")
    depths = {}
    for runtime in ("eager", "openvino"):
        res = run_cli("predict", tmp_path / "a.png", "--checkpoint", small_checkpoint, "--out", tmp_path / runtime,
                      "--depth-format", "npy", "--runtime", runtime)
        assert res.code == 0, res.stderr
        depths[runtime] = np.load(tmp_path / runtime / "a_depth.npy")
    x = rgb.transpose(2, 0, 1)[None].astype(np.float32) / 255
    direct = 10.0 / compiled(x)[0][0, 0]  # metric: max_depth / output
    assert np.abs(direct - depths["openvino"]).max() < 1e-3  # metres
    assert np.abs(direct - depths["eager"]).max() < 1e-3

    # dynamic batch and size: another shape against PyTorch
    torch_model, _ = load_checkpoint(small_checkpoint)
    x2 = torch.rand(2, 3, 80, 104, generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        ref = torch_model(x2).numpy()
    got = compiled(x2.numpy())[0]
    assert got.shape == ref.shape and np.abs(got - ref).max() < 1e-4 * (ref.max() - ref.min())


def test_openvino_export_refuses_a_path_that_is_not_xml(tmp_path, small_checkpoint, run_cli):
    res = run_cli("export", "--checkpoint", small_checkpoint, "--format", "openvino", "--out", tmp_path / "m.onnx")
    assert res.code == 1
    assert res.stderr.strip() == (f"error: {tmp_path / 'm.onnx'}: an OpenVINO IR is an .xml file (its weights go to "
                                  "the .bin beside it)")
    assert list(tmp_path.iterdir()) == []


def test_openvino_runtime_is_checked_against_eager_and_cpu_only():
    from leve.models.registry import create_model

    torch.manual_seed(0)
    model = create_model("leve").eval()
    prepared = prepare_for_inference(model, "openvino", (64, 96))
    assert prepared.runtime == "openvino" and prepared.check is not None and prepared.check.relative < 1e-4
    with pytest.raises(LeveError, match=r"runtime openvino runs on the CPU \(OpenVINO's CPU plugin\), not cuda:0"):
        check_runtime("openvino", "cuda:0")


@pytest.mark.slow
def test_bench_model_gives_one_table_across_the_runtimes(tmp_path, run_cli):
    res = run_cli("bench", "model", "--models", "leve", "--resolution", "64x96", "--repeats", "3", "--warmup", "1",
                  "--modes", "torch,onnx,openvino", "--out", "", "--params", tmp_path / "none.yaml")
    assert res.code == 0, res.stderr
    report = json.loads(res.stdout)
    modes = report["models"]["leve"]["fp32"]
    assert list(modes) == ["eager", "torch", "onnx", "openvino"]
    vino = modes["openvino"]
    assert vino["runs"] == 3 and vino["latency_ratio_vs_eager"] > 0 and vino["check"]["relative"] < 1e-4
    table = report["runtimes"]["models"]["leve"]
    assert list(table) == list(modes)
    for mode, row in table.items():  # the table restates each mode's own figures
        assert row["median_ms"] == modes[mode]["median_ms"]
        assert row["latency_ratio_vs_eager"] == modes[mode]["latency_ratio_vs_eager"]
        if mode != "eager":
            assert row["max_diff_vs_eager"] == modes[mode]["check"]["relative"]
            assert row["mean_diff_vs_eager"] == modes[mode]["check"]["mean_relative"]
    assert table["eager"]["latency_ratio_vs_eager"] == 1.0 and table["eager"]["max_diff_vs_eager"] == 0.0
    printed = [line.split() for line in res.stderr.splitlines() if line.startswith("leve ")]
    assert [row[1] for row in printed] == list(modes)  # the same table on the console
    assert [float(row[3]) for row in printed] == pytest.approx([r["latency_ratio_vs_eager"] for r in table.values()],
                                                               abs=5e-4)


def test_openvino_is_imported_with_its_telemetry_off(tmp_path):
    """``import openvino`` alone would send a usage event and write ~/intel (openvino-telemetry); leve's import
    leaves openvino on its own no-op stub, writes nothing to the home folder, and openvino_telemetry stays
    importable afterwards."""
    code = ("import sys; from leve.models.runtime import import_openvino; import_openvino(); "
            "import openvino.tools.ovc.telemetry_utils as t; print(t.tm.__name__); "
            "import openvino_telemetry; print('openvino_telemetry' in sys.modules)")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["openvino.tools.ovc.telemetry_stub", "True"]
    assert list(tmp_path.iterdir()) == []  # no ~/intel
