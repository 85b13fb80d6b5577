"""dvc.yaml's code deps and params are what the code derives (leve/pipeline/stages.py), and DVC
then reruns exactly the stages a change concerns."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dpath
import pytest
import yaml

from leve.pipeline import stages as st

REPO = Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------- the closure


def _package(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


@pytest.fixture
def fake(tmp_path) -> Path:
    return _package(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": ("import os\nimport numpy\nimport other.thing\nfrom pkg.b import value\n"
                     "def f():\n    import pkg.lazy\n    return pkg.lazy\n"),
        "pkg/b.py": "from . import c\nvalue = 1\n",
        "pkg/c.py": "",
        "pkg/lazy.py": "from .sub import d\nfrom pkg.sub2 import m, name\n",
        "pkg/sub/__init__.py": "from ..e import x\n",
        "pkg/sub/d.py": "",
        "pkg/sub/unused.py": "",
        "pkg/sub2/__init__.py": "name = 1\n",
        "pkg/sub2/m.py": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pkg.typing_only\n"
                          "else:\n    import pkg.runtime\n"),
        "pkg/e.py": "x = 1\n",
        "pkg/runtime.py": "",
        "pkg/typing_only.py": "",
        "pkg/unused.py": "import pkg.c\n",
        "other/__init__.py": "",
        "other/thing.py": "import pkg.unused\n",
    })


def test_closure_follows_lazy_submodule_and_relative_imports(fake):
    assert st.code_closure("pkg.a", fake) == [
        "pkg/__init__.py", "pkg/a.py", "pkg/b.py",   # from pkg.b import value
        "pkg/c.py",                                  # from . import c (a submodule, relative)
        "pkg/e.py",                                  # from ..e import x in a package's __init__
        "pkg/lazy.py",                               # import inside a function
        "pkg/runtime.py",                            # the else of `if TYPE_CHECKING`
        "pkg/sub/__init__.py", "pkg/sub/d.py",       # from .sub import d: the package runs first
        "pkg/sub2/__init__.py", "pkg/sub2/m.py",     # from pkg.sub2 import m (m a module, name not)
    ]


def test_closure_ignores_third_party_unimported_and_type_checking(fake):
    files = st.code_closure("pkg.a", fake)
    assert not any(f.startswith("other/") for f in files)       # another top-level package
    assert "pkg/unused.py" not in files                          # only other.thing imports it
    assert "pkg/sub/unused.py" not in files and "pkg/typing_only.py" not in files
    assert st.code_closure("pkg.sub.d", fake) == ["pkg/__init__.py", "pkg/e.py", "pkg/sub/__init__.py", "pkg/sub/d.py"]


def test_folders_are_listed_whole_only_when_complete(fake):
    closure = st.code_closure("pkg.a", fake)
    assert st.compress_folders(closure, fake) == [
        "pkg/__init__.py", "pkg/a.py", "pkg/b.py", "pkg/c.py", "pkg/e.py", "pkg/lazy.py", "pkg/runtime.py",
        "pkg/sub/__init__.py", "pkg/sub/d.py",   # pkg/sub/unused.py is not in it
        "pkg/sub2",                              # every .py file of pkg/sub2
    ]


def test_old_closure_module_still_works_with_a_deprecation():
    import importlib
    import sys

    sys.modules.pop("leve.pipeline.closure", None)
    with pytest.warns(DeprecationWarning, match="import leve.closure"):
        old = importlib.import_module("leve.pipeline.closure")
    from leve import closure

    assert old.code_closure is closure.code_closure and old.ROOT == closure.ROOT


def test_closure_of_a_missing_module_is_an_error(fake):
    with pytest.raises(Exception, match="no such module"):
        st.code_closure("pkg.nothing", fake)


def test_train_run_identity_hashes_the_train_closure(monkeypatch):
    from leve import closure as cl
    from leve.train import loop

    digest = loop.code_digest()
    closure = cl.code_closure("leve.train.stage")
    assert {"leve/train/loop.py", "leve/train/losses.py", "leve/models/leve.py", "leve/store/__init__.py"} <= set(closure)
    assert not [f for f in closure if f.startswith("leve/pipeline/")]  # editing the pipeline does not retrain
    monkeypatch.setattr(cl, "code_closure", lambda entry, root=cl.ROOT: closure[:-1])
    assert loop.code_digest() != digest


def test_run_identity_ignores_exactly_the_result_independent_params():
    from dataclasses import replace

    from leve.train.config import KDConfig, TrainConfig
    from leve.train.loop import run_identity

    cfg = TrainConfig()
    same = replace(cfg, workers=7, log_every=1, out_dir=Path("elsewhere"), kd=KDConfig(teacher_dir=Path("t2")))
    assert run_identity(same) == run_identity(cfg)
    assert run_identity(replace(cfg, kd=KDConfig(eps=0.5))) != run_identity(cfg)
    assert run_identity(replace(cfg, train_split="val")) != run_identity(cfg)


# --------------------------------------------------------------------------- dvc.yaml


def test_package_data_follows_the_module_that_loads_it():
    """A stage whose closure holds leve/teacher/embedded/__init__.py also depends on the shipped
    weights (so retraining them reruns the cache); a stage without it does not."""
    weights = "leve/teacher/embedded/weights"
    for module, data in st.PACKAGE_DATA.items():
        assert (REPO / module).is_file() and all((REPO / d).is_dir() for d in data)
    assert "leve/teacher/embedded/__init__.py" in st.code_closure("leve.teacher.stage")
    assert weights in st.stage_deps("teacher")
    assert "leve/teacher/embedded/__init__.py" not in st.code_closure("leve.report.metrics")
    assert weights not in st.stage_deps("tables")


@pytest.mark.parametrize("stage", list(st.STAGES))
def test_dvc_yaml_lists_the_derived_code_deps_and_params(stage):
    code, params = st.declared(stage, REPO / "dvc.yaml")
    assert code == st.stage_deps(stage), "run `leve pipeline-deps --write`"
    assert params == st.stage_params(stage), "run `leve pipeline-deps --write`"


def test_every_derived_param_is_in_params_yaml():
    """DVC refuses a stage whose params key is missing (MissingParamsError), for any dataset of
    a profile's foreach."""
    from leve.datasets.stage import DATASETS

    params = yaml.safe_load((REPO / "params.yaml").read_text())
    missing = []
    for stage in st.STAGES:
        for key in st.stage_params(stage):
            for name in DATASETS if st.ITEM in key else [None]:
                dotted = key.replace(st.ITEM, name) if name else key
                try:
                    dpath.get(params, dotted, separator=".")
                except KeyError:
                    missing.append(dotted)
    assert not missing


def test_result_independent_params_are_left_out():
    train = st.stage_params("train")
    assert "train.kd.eps" in train and "train.schedule.name" in train and "train.resolution" in train
    assert not {"train.workers", "train.log_every", "train.kd.teacher_dir", "train.out_dir"} & set(train)
    teacher = st.stage_params("teacher")
    assert "teacher.workers" not in teacher and "teacher.model" in teacher
    assert teacher[-1] == "teacher.datasets.${item}" and "eval.device" in st.stage_params("eval")
    assert st.stage_params("prepare") == ["prepare.${item}"] and st.stage_params("tables") == []


def test_write_restores_dvc_yaml_exactly(tmp_path, run_cli):
    original = (REPO / "dvc.yaml").read_text()
    lines = original.splitlines(keepends=True)
    dropped = {"        - leve/report/metrics.py\n", "        - eval.device\n"}  # eval's (a foreach stage)
    assert dropped <= set(lines)
    edited = "".join(line for line in lines if line not in dropped)
    edited = edited.replace("    deps:\n      - leve/__init__.py\n", "    deps:\n      - leve/serve/app.py\n"
                            "      - leve/__init__.py\n", 1)     # bench-model: a file outside its closure
    assert edited.count("leve/serve/app.py") == 1
    path = tmp_path / "dvc.yaml"
    path.write_text(edited)
    res = run_cli("pipeline-deps", "--check", "--dvc-file", path)
    assert res.code == 1 and "leve/serve/app.py" in res.stdout and "eval.device" in res.stdout
    assert run_cli("pipeline-deps", "--write", "--dvc-file", path).code == 0
    assert path.read_text() == original                    # comments, order and data deps kept
    assert run_cli("pipeline-deps", "--check", "--dvc-file", path).code == 0


# --------------------------------------------------------------------------- what DVC reruns


def _outputs(ws: Path) -> None:
    """Stand-in files for every output of the default (synthetic) pipeline."""
    for rel in ("data/zarr/synthetic.zarr/zarr.json", "data/teacher/synthetic.zarr/zarr.json",
                "models/student/best.pt", "models/student/last.pt", "dvclive/train/metrics.json",
                "dvclive/train/plots/metrics/val/rmse.tsv", "metrics/synthetic.json", "metrics/bench_model.json",
                "reports/synthetic/per_image.csv", "reports/synthetic/metrics.md", "reports/synthetic/metrics.csv",
                "reports/synthetic/examples.png", "reports/synthetic/error_vs_depth.csv",
                "reports/synthetic/error_vs_depth.png",
                "reports/synthetic/MODEL_CARD.md", "reports/metrics.md", "reports/metrics.csv"):
        path = ws / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}\n" if rel.endswith(".json") else f"{rel}\n")


@pytest.fixture(scope="module")
def dvc_ws(tmp_path_factory):
    """A git + DVC copy of the pipeline whose stages are marked done (`dvc commit`) without running."""
    if shutil.which("git") is None:
        pytest.skip("needs git")
    ws = tmp_path_factory.mktemp("dvc") / "ws"
    ws.mkdir()
    for name in ("dvc.yaml", "params.yaml", ".dvcignore"):
        shutil.copy2(REPO / name, ws / name)
    shutil.copytree(REPO / "leve", ws / "leve", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}", "DVC_NO_ANALYTICS": "1",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t.invalid", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t.invalid"}

    def dvc(*args: str) -> str:
        done = subprocess.run([str(bindir / "dvc"), *args], cwd=ws, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"dvc {' '.join(args)}: {done.stdout}\n{done.stderr}"
        return done.stdout

    subprocess.run(["git", "init", "-q"], cwd=ws, env=env, check=True)
    dvc("init", "-q")
    dvc("config", "core.analytics", "false")
    _outputs(ws)
    dvc("commit", "-f", "-q")   # record every stage as done with the files as they are
    return ws, dvc


def _status(dvc) -> set[str]:
    return set(json.loads(dvc("status", "--json") or "{}"))


@pytest.mark.slow
def test_dvc_status_follows_the_derived_deps(dvc_ws):
    ws, dvc = dvc_ws
    assert _status(dvc) == set()
    cases = [  # (file, old, new, the stages DVC must mark changed)
        # bench-model reads a store too: its int8 mode is calibrated and scored on one
        ("leve/store/__init__.py", None, "\n# edited\n", {"prepare@synthetic", "teacher@synthetic", "train", "eval@synthetic",
                                                         "bench-model"}),
        ("leve/report/metrics.py", None, "\n# edited\n", {"eval@synthetic", "tables"}),
        ("params.yaml", "    kitti:\n      splits: [test]", "    kitti:\n      splits: [train, test]", set()),
        ("params.yaml", "  workers: 2\n  seed: 0", "  workers: 7\n  seed: 0", set()),  # train.workers
        ("params.yaml", "    eps: 0.2 ", "    eps: 0.5 ", {"train"}),
        ("params.yaml", "      splits: [train, val, test]", "      splits: [train, test]", {"teacher@synthetic"}),
    ]
    for rel, old, new, expected in cases:
        path = ws / rel
        text = path.read_text()
        assert old is None or text.count(old) == 1, (rel, old)
        try:
            path.write_text(text + new if old is None else text.replace(old, new))
            assert _status(dvc) == expected, (rel, old, new)
        finally:
            path.write_text(text)
    pyc = ws / "leve/datasets/__pycache__/synthetic.cpython-311.pyc"  # written by any import (.dvcignore)
    pyc.parent.mkdir()
    try:
        pyc.write_bytes(b"bytecode")
        assert _status(dvc) == set()
    finally:
        shutil.rmtree(pyc.parent)
    assert _status(dvc) == set()
