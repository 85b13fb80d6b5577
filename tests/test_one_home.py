"""Every parameter's value has one home: params.yaml (issue 28 item 2).

Counts the params keys whose value is defined in more than one place:

* a literal default in a Config dataclass (the schema) for a key params.yaml also sets;
* a profile (profiles/*.yaml) setting a key to the value params.yaml ships, except the profile that
  ships it (``embedded``: it is the way back after another profile rewrote params.yaml);
* a literal default of a library function's argument, or of a dataclass's field, named after a key of the
  params section its module reads (``build_teacher_cache(workers=0)`` beside ``teacher.workers``,
  ``LossOptions.kd_norm = "image"`` beside ``train.kd.norm``).

Run ``python tests/test_one_home.py`` to print every such key with its places.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
import yaml

from leve.errors import LeveError

ROOT = Path(__file__).resolve().parents[1]

# Config dataclass -> its params section
SCHEMAS: dict[tuple[str, str], str] = {
    ("leve/train/config.py", "TrainConfig"): "train",
    ("leve/train/config.py", "KDConfig"): "train.kd",
    ("leve/train/config.py", "LossConfig"): "train.loss",
    ("leve/train/config.py", "LabelsConfig"): "train.labels",
    ("leve/train/config.py", "ScheduleConfig"): "train.schedule",
    ("leve/train/config.py", "AugmentConfig"): "train.augment",
    ("leve/train/config.py", "DataConfig"): "train.data",
    ("leve/teacher/stage.py", "Config"): "teacher",
    ("leve/evaluation/stage.py", "Config"): "eval",
    ("leve/serve/config.py", "Config"): "serve",
    ("leve/bench/model.py", "Config"): "bench.model",
    ("leve/datasets/synthetic.py", "Config"): "prepare.synthetic",
    ("leve/datasets/nyu.py", "Config"): "prepare.nyu",
    ("leve/datasets/kitti.py", "Config"): "prepare.kitti",
    ("leve/datasets/endoslam.py", "Config"): "prepare.endoslam",
}
# library modules (path prefix) -> the params section they are configured by
MODULE_SECTIONS: dict[str, str] = {
    "leve/train/": "train", "leve/teacher/": "teacher", "leve/evaluation/": "eval", "leve/serve/": "serve",
    "leve/bench/model.py": "bench.model", "leve/datasets/synthetic.py": "prepare.synthetic",
    "leve/datasets/nyu.py": "prepare.nyu", "leve/datasets/kitti.py": "prepare.kitti",
    "leve/datasets/endoslam.py": "prepare.endoslam",
}
PER_DATASET = ("teacher.datasets", "eval.datasets")  # per-dataset override maps, not keys with a default


def flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted keys of the leaves of a params tree (a per-dataset map is one leaf)."""
    if not isinstance(tree, dict) or prefix in PER_DATASET or (prefix and not tree):
        return {prefix: tree}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _literal(node: ast.expr | None) -> tuple[bool, Any]:
    """(True, value) for a default written as a literal (``field(default=...)`` included); a
    ``default_factory`` of a nested config is not a value."""
    if node is None or (isinstance(node, ast.Call) and getattr(node.func, "id", "") == "param"):
        return False, None  # no default, or params.yaml's value (leve.params.param)
    if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "field":
        for kw in node.keywords:
            if kw.arg == "default":
                return _literal(kw.value)
            if kw.arg == "default_factory" and isinstance(kw.value, ast.Lambda):
                return _literal(kw.value.body)
        return False, None
    try:
        return True, ast.literal_eval(node)
    except ValueError:
        return True, ast.unparse(node)  # a named constant (DEFAULT_TEACHER, ORGANS...): still a value in code


def schema_literals(root: Path = ROOT) -> dict[str, Any]:
    """``{dotted key: value}`` of every literal default in the Config dataclasses."""
    out: dict[str, Any] = {}
    for (rel, name), section in SCHEMAS.items():
        tree = ast.parse((root / rel).read_text())
        cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == name)
        for stmt in cls.body:
            if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
                ok, value = _literal(stmt.value)
                if ok:
                    out[f"{section}.{stmt.target.id}"] = value
    return out


def _is_dataclass(node: ast.ClassDef) -> bool:
    return any(getattr(d.func if isinstance(d, ast.Call) else d, "id", getattr(d, "attr", "")) == "dataclass"
               for d in node.decorator_list)


def _defaults(node: ast.AST) -> list[tuple[str, ast.expr]]:
    """``(name, default)`` of a function's arguments, or of a dataclass's fields (its ``__init__``'s arguments)."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        args = node.args
        positional = [*args.posonlyargs, *args.args]
        pairs = [(a.arg, d) for a, d in zip(positional[len(positional) - len(args.defaults):], args.defaults)]
        return pairs + [(a.arg, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
    if isinstance(node, ast.ClassDef) and _is_dataclass(node):
        return [(s.target.id, s.value) for s in node.body
                if isinstance(s, ast.AnnAssign) and isinstance(s.target, ast.Name) and s.value is not None]
    return []


def signature_literals(root: Path = ROOT) -> dict[str, list[str]]:
    """``{dotted key: [where]}``: function arguments and dataclass fields (``LossOptions.ssim``,
    ``ZipLoader.rgb_codec``) with a literal default named after a key of their module's section: its last
    part (``seed``: ``train.seed``, ``train.labels.seed``) or its last two joined by ``_`` (``kd_norm``:
    ``train.kd.norm``)."""
    params = flat(yaml.safe_load((root / "params.yaml").read_text()))
    out: dict[str, list[str]] = {}
    for path in sorted((root / "leve").rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        section = next((s for prefix, s in MODULE_SECTIONS.items() if rel.startswith(prefix)), None)
        if section is None:
            continue
        names: dict[str, list[str]] = {}
        for key in params:
            if key.startswith(section + "."):
                parts = key.split(".")
                for name in {parts[-1], "_".join(parts[-2:])}:
                    names.setdefault(name, []).append(key)
        for node in ast.walk(ast.parse(path.read_text())):
            for name, default in _defaults(node):
                if name not in names or (isinstance(default, ast.Constant) and default.value is None):
                    continue
                ok, _ = _literal(default)
                if ok:
                    for key in names[name]:
                        out.setdefault(key, []).append(f"{rel}:{node.lineno} {node.name}({name}=...)")  # type: ignore[attr-defined]
    return out


def profile_repeats(root: Path = ROOT) -> dict[str, list[str]]:
    """``{dotted key: [profile]}``: profile values equal to params.yaml's (the shipped profile aside)."""
    params = flat(yaml.safe_load((root / "params.yaml").read_text()))
    out: dict[str, list[str]] = {}
    for path in sorted((root / "profiles").glob("*.yaml")):
        if path.stem == "embedded":
            continue
        for key, value in (yaml.safe_load(path.read_text()) or {}).items():
            if key in params and params[key] == value:
                out.setdefault(key, []).append(path.name)
    return out


def places(root: Path = ROOT) -> dict[str, list[str]]:
    """Every params key defined in more than one place, with those places."""
    params = flat(yaml.safe_load((root / "params.yaml").read_text()))
    out: dict[str, list[str]] = {}
    for key in schema_literals(root):
        if key in params:
            out.setdefault(key, ["params.yaml"]).append("Config literal")
    for key, where in [*signature_literals(root).items(), *profile_repeats(root).items()]:
        out.setdefault(key, ["params.yaml"] if key in params else []).extend(where)
    return {k: v for k, v in sorted(out.items()) if len(v) > 1}


# Keys that a library function's signature default (or a dataclass field's) restates: 159 in all kinds before
# issue 28 item 2, 17 signatures after its first pass, none now. A library function takes the value from its
# caller (a stage passes its Config's; a test states its own, tests/explicit.py).
SIGNATURE_CEILING = 0


def test_every_value_has_one_home():
    many = places()
    copies = {k: v for k, v in many.items() if any(not w.endswith(")") for w in v[1:])}  # a Config or a profile
    assert not copies, "\n".join(f"{k}: {', '.join(v)}" for k, v in copies.items())
    signatures = sorted(k for k, v in many.items() if any(w.endswith(")") for w in v))
    assert len(signatures) <= SIGNATURE_CEILING, signatures


def test_the_count_sees_each_kind_of_copy(tmp_path):
    """The counter finds a Config literal, a repeated profile value and a signature default."""
    for rel in ("params.yaml", *{r for r, _ in SCHEMAS}, *(p for p in MODULE_SECTIONS if p.endswith(".py"))):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text((ROOT / rel).read_text())
    (tmp_path / "profiles").mkdir()
    (tmp_path / "leve/serve").mkdir(parents=True, exist_ok=True)
    base = places(tmp_path)
    shipped = flat(yaml.safe_load((ROOT / "params.yaml").read_text()))
    (tmp_path / "profiles/p.yaml").write_text(f"train.epochs: {shipped['train.epochs']}\n")
    (tmp_path / "leve/serve/extra.py").write_text("def serve(port: int = 1):\n    return port\n")
    (tmp_path / "leve/train/extra.py").write_text("from dataclasses import dataclass\n\n\n@dataclass(frozen=True)\n"
                                                  "class Options:\n    kd_norm: str = 'image'\n    seed: int = 0\n")
    teacher = tmp_path / "leve/teacher/stage.py"
    teacher.write_text(teacher.read_text().replace("class Config:\n", "class Config:\n    tta: str = 'none'\n", 1))
    found = places(tmp_path)
    assert found["train.epochs"][-1] == "p.yaml" and "train.epochs" not in base
    assert "leve/serve/extra.py:1 serve(port=...)" in found["serve.port"]
    assert "leve/train/extra.py:5 Options(kd_norm=...)" in found["train.kd.norm"]  # a dataclass field, by its last two parts
    assert "leve/train/extra.py:5 Options(seed=...)" in found["train.seed"] and "train.kd.norm" not in base
    assert "Config literal" in found["teacher.tta"]


def _schema_classes() -> dict[str, type]:
    import importlib

    out = {}
    for (rel, name), section in SCHEMAS.items():
        module = importlib.import_module(rel.removesuffix(".py").replace("/", "."))
        out[section] = getattr(module, name)
    return out


def test_each_field_has_its_value_in_params_yaml_and_each_key_a_field():
    """The schema and params.yaml name the same keys: no field without a value, no value without a field."""
    import dataclasses

    from leve.params import section_keys

    params = flat(yaml.safe_load((ROOT / "params.yaml").read_text()))
    for section, cls in _schema_classes().items():
        keys = section_keys(cls)
        nested = {f.name for f in dataclasses.fields(cls) if f.name not in keys}
        for name, key in keys.items():
            assert key in params, f"{section}.{name}: no value at {key} in params.yaml"
        given = {k.removeprefix(section + ".").split(".")[0] for k in params if k.startswith(section + ".")}
        moved = {name for name, key in keys.items() if not key.startswith(section + ".")}
        assert given - {"datasets"} == set(keys) - moved | nested, section


def test_defaults_are_read_from_params_yaml_when_a_config_is_made(monkeypatch, tmp_path):
    from leve import params as p
    from leve.teacher.stage import Config as TeacherConfig
    from leve.train.config import KDConfig, TrainConfig

    cfg = TrainConfig(model="leve")
    assert (cfg.epochs, cfg.resolution, cfg.kd.eps) == (p.default("train.epochs"), tuple(p.default("train.resolution")),
                                                        p.default("train.kd.eps"))
    assert TrainConfig.dataset == p.default("train.dataset")  # the class attribute too
    tree = yaml.safe_load((ROOT / "params.yaml").read_text())
    tree["train"]["epochs"], tree["train"]["kd"]["eps"], tree["paths"]["teacher_cache"] = 7, 0.5, "elsewhere"
    other = tmp_path / "params.yaml"
    other.write_text(yaml.safe_dump(tree))
    monkeypatch.setattr(p, "PACKAGED_PARAMS", other)  # another packaged file: other defaults, no import needed
    assert TrainConfig().epochs == 7 and KDConfig().eps == 0.5 and KDConfig().teacher_dir == Path("elsewhere")
    assert TeacherConfig().out_dir == Path("elsewhere")
    del tree["train"]["lr"]
    other.write_text(yaml.safe_dump(tree) + "\n")  # a new size: the file is read again
    with pytest.raises(LeveError, match=r"no default for 'train.lr'"):
        TrainConfig()  # every field needs its value in the file
    other.unlink()
    with pytest.raises(LeveError, match="default params are missing"):
        KDConfig()


def test_a_literal_default_is_refused_at_class_creation():
    from dataclasses import dataclass

    from leve.params import param, params_section

    with pytest.raises(TypeError, match="value lives in params.yaml"):
        @params_section("train")
        @dataclass
        class Bad:
            epochs: int = param()
            lr: float = 1e-3


def test_one_key_per_path_and_the_old_keys_warn(tmp_path, capsys):
    """paths.teacher_cache is the teacher's out_dir, train.kd.teacher_dir and eval.teacher_dir; paths.stores
    the stores prepare writes and the others read; the old per-stage key still works, with one warning line."""
    from leve.datasets import stage as datasets_stage
    from leve.evaluation import stage as eval_stage
    from leve.teacher import stage as teacher_stage
    from leve.train import stage as train_stage

    params = tmp_path / "params.yaml"
    params.write_text("paths: {teacher_cache: t, stores: s}\n")
    assert teacher_stage.config("nyu", params_file=params).out_dir == Path("t")
    assert teacher_stage.config("nyu", params_file=params).data_dir == Path("s")
    train = train_stage.config(params_file=params)
    assert (train.kd.teacher_dir, train.data_dir) == (Path("t"), Path("s"))
    assert eval_stage.config("nyu", params_file=params).teacher_dir == Path("t")
    assert datasets_stage.config("kitti", params_file=params).out == Path("s/kitti.zarr")  # the writer too
    assert capsys.readouterr().err == ""
    params.write_text("paths: {teacher_cache: t}\ntrain:\n  kd: {teacher_dir: old}\n")
    assert train_stage.config(params_file=params).kd.teacher_dir == Path("old")
    train_stage.config(params_file=params)
    err = capsys.readouterr().err.splitlines()
    assert err == ["warning: train.kd.teacher_dir is deprecated; set paths.teacher_cache (one key for every stage "
                   "that reads it)"]


def test_the_student_folder_is_one_key_and_restating_its_checkpoint_warns(tmp_path, capsys):
    """train.out_dir is the student's folder; eval.checkpoint null scores <train.out_dir>/best.pt by rule. The
    old spelling (eval.checkpoint naming that file) still works, with one warning line; another file is a choice."""
    from leve.evaluation import stage as eval_stage
    from leve.train import stage as train_stage

    shipped = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert shipped["eval"]["checkpoint"] is None
    params = tmp_path / "params.yaml"
    params.write_text("train: {out_dir: runs/kd}\n")
    assert train_stage.config(params_file=params).out_dir == Path("runs/kd")
    assert eval_stage.config("synthetic", params_file=params).checkpoint == Path("runs/kd/best.pt")
    assert eval_stage.config("synthetic", {"checkpoint": "other.pt"}, params_file=params).checkpoint == Path("other.pt")
    assert capsys.readouterr().err == ""
    params.write_text("train: {out_dir: runs/kd}\neval: {checkpoint: runs/kd/best.pt}\n")
    assert eval_stage.config("synthetic", params_file=params).checkpoint == Path("runs/kd/best.pt")
    eval_stage.config("synthetic", params_file=params)
    assert capsys.readouterr().err.splitlines() == [
        "warning: eval.checkpoint: runs/kd/best.pt is deprecated; leave it null, <train.out_dir>/best.pt by rule "
        "(train.out_dir is the student's one key)"]
    params.write_text("eval: {checkpoint: models/kd/best.pt}\n")  # another checkpoint: no warning
    assert eval_stage.config("synthetic", params_file=params).checkpoint == Path("models/kd/best.pt")
    assert capsys.readouterr().err == ""


def test_outside_the_repository_leve_runs_as_shipped_and_a_partial_file_keeps_the_rest(tmp_path):
    """No params file: params.yaml as shipped, per-dataset maps included. A partial file: the keys it
    leaves out take their defaults; its per-dataset maps are its own (a section's model is not
    overridden by the shipped teacher.datasets.synthetic)."""
    from leve.params import default, resolved
    from leve.teacher import stage as teacher_stage

    shipped = teacher_stage.config("synthetic", params_file=ROOT / "params.yaml")
    assert teacher_stage.config("synthetic", params_file=tmp_path / "none.yaml") == shipped
    params = tmp_path / "params.yaml"
    params.write_text("teacher:\n  batch_size: 2\n  model: tiny-random\n")
    mine = teacher_stage.config("synthetic", params_file=params)
    assert (mine.batch_size, mine.model, mine.tta) == (2, "tiny-random", shipped.tta)
    assert mine.splits == tuple(default("teacher.splits")) != shipped.splits
    assert resolved("teacher.batch_size", params) == 2 and resolved("teacher.tta", params) == shipped.tta


if __name__ == "__main__":
    many = places()
    for key, where in many.items():
        print(f"{key}: {', '.join(where)}")
    kinds = {"Config literal": 0, "profile": 0, "signature": 0}
    for where in many.values():
        kinds["Config literal"] += "Config literal" in where
        kinds["profile"] += any(w.endswith(".yaml") and w != "params.yaml" for w in where)
        kinds["signature"] += any("(" in w for w in where)
    print(f"keys whose value is defined in more than one place: {len(many)} "
          f"(Config literal {kinds['Config literal']}, profile {kinds['profile']}, signature {kinds['signature']})")
