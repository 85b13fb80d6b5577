"""What each DVC stage depends on, derived from the code instead of listed by hand.

* code: :func:`code_closure` follows the imports of a stage's entry module through ``leve``;
  :func:`stage_deps` is that set of files as dvc.yaml lists it (whole folders where complete).
* params: :func:`stage_params` flattens the stage's Config dataclass into dotted params keys,
  minus the fields that do not change the result (the stage module's ``RESULT_INDEPENDENT``).

``leve pipeline-deps`` prints both per stage, ``--check`` compares them with dvc.yaml and
``--write`` rewrites dvc.yaml's ``deps``/``params`` lists (comments kept); the tests fail when
dvc.yaml and the code disagree.
"""

from __future__ import annotations

import dataclasses
import importlib
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from leve.closure import ROOT, code_closure
from leve.errors import LeveError

DVC_FILE = ROOT / "dvc.yaml"
ITEM = "${item}"  # the foreach variable of dvc.yaml


@dataclass(frozen=True)
class Stage:
    """One dvc.yaml stage: the module whose imports are its code, and where its params live."""

    entry: str  # the module the stage's `leve ...` command runs (its import closure is the code dep)
    section: str | None = None  # params.yaml section read (None: no params)
    config: str | None = None  # the Config dataclass in ``entry`` (None: the section is one key)
    per_item: str | None = None  # per-dataset override section of a foreach stage, one key


# stage name (as in dvc.yaml) -> where its code and params come from
STAGES: dict[str, Stage] = {
    # Each adapter has its own Config (the keys differ per dataset), so a foreach item's section
    # `prepare.${item}` is listed whole. The entry imports every adapter statically (one foreach
    # deps list for all items, as DVC cannot vary deps per item), so every adapter is a dependency.
    "prepare": Stage("leve.datasets.stage", section=f"prepare.{ITEM}"),
    "teacher": Stage("leve.teacher.stage", section="teacher", config="Config", per_item=f"teacher.datasets.{ITEM}"),
    "train": Stage("leve.train.stage", section="train", config="TrainConfig"),
    "eval": Stage("leve.evaluation.stage", section="eval", config="Config", per_item=f"eval.datasets.{ITEM}"),
    "bench-model": Stage("leve.bench.model", section="bench.model", config="Config"),
    "tables": Stage("leve.report.metrics"),
}


def compress_folders(files: list[str], root: Path) -> list[str]:
    """Folders whose .py files are all in ``files`` become the folder; the rest stay files."""
    chosen = set(files)
    out: list[str] = []

    def walk(folder: Path) -> None:
        rel = folder.relative_to(root).as_posix()
        sources = {p.relative_to(root).as_posix() for p in folder.rglob("*.py") if "__pycache__" not in p.parts}
        if not sources & chosen:
            return
        if sources <= chosen:
            out.append(rel)
            return
        out.extend(f for f in sorted(chosen) if f.rpartition("/")[0] == rel)
        for sub in sorted(p for p in folder.iterdir() if p.is_dir() and p.name != "__pycache__"):
            walk(sub)

    for top in sorted({f.split("/")[0] for f in files}):
        walk(root / top)
    return sorted(out)


# Package data that a module loads at run time (not Python, so outside the import closure):
# a stage whose closure holds the module depends on the data too. The `embedded` teacher's
# weights are read by the registry's entry, so retraining them reruns the teacher cache.
PACKAGE_DATA: dict[str, tuple[str, ...]] = {"leve/teacher/embedded/__init__.py": ("leve/teacher/embedded/weights",)}


def stage_deps(stage: str, root: Path = ROOT) -> list[str]:
    """The code deps of ``stage`` as dvc.yaml lists them: its closure, with a folder in place of
    its files where the closure holds every .py file of the folder (subfolders included), plus the
    :data:`PACKAGE_DATA` of its files not already inside a listed folder. Sorted."""
    files = code_closure(_stage(stage).entry, root)
    deps = compress_folders(files, root)
    data = [d for f in files for d in PACKAGE_DATA.get(f, ()) if not any(d.startswith(x + "/") for x in deps)]
    return sorted(deps + data)


# --------------------------------------------------------------------------- params


def _flatten(cls: type, prefix: str) -> list[str]:
    """Dotted keys of a dataclass's fields, nested dataclass fields as ``prefix.field.sub``."""
    keys = []
    for f in dataclasses.fields(cls):
        hint = _field_type(cls, f)
        if dataclasses.is_dataclass(hint) and isinstance(hint, type):
            keys.extend(_flatten(hint, f"{prefix}.{f.name}"))
        else:
            keys.append(f"{prefix}.{f.name}")
    return keys


def _field_type(cls: type, f: dataclasses.Field) -> Any:
    return typing.get_type_hints(cls).get(f.name, f.type)


def result_independent(stage: str) -> tuple[str, ...]:
    """The params of ``stage`` that do not change its result (speed, logging cadence, places):
    the entry module's ``RESULT_INDEPENDENT`` (field names, dotted within nested configs)."""
    return tuple(getattr(importlib.import_module(_stage(stage).entry), "RESULT_INDEPENDENT", ()))


def stage_params(stage: str) -> list[str]:
    """The params.yaml keys ``stage`` reads and whose change changes its result: the flattened
    Config fields in declaration order, minus :func:`result_independent`, then the per-dataset
    override section (one key)."""
    spec = _stage(stage)
    if spec.section is None:
        return []
    if spec.config is None:
        keys = [spec.section]
    else:
        cls = getattr(importlib.import_module(spec.entry), spec.config)
        skip = {f"{spec.section}.{name}" for name in result_independent(stage)}
        keys = [k for k in _flatten(cls, spec.section) if k not in skip]
    return keys + ([spec.per_item] if spec.per_item else [])


def _stage(stage: str) -> Stage:
    if stage not in STAGES:
        raise LeveError(f"unknown stage '{stage}'; known: {', '.join(STAGES)}")
    return STAGES[stage]


# --------------------------------------------------------------------------- dvc.yaml


def is_code_dep(path: str) -> bool:
    """Deps under leve/ are code (derived); the rest are data (stores, caches, checkpoints)."""
    return path == "leve" or path.startswith("leve/")


def _stage_body(stages: Any, name: str) -> Any:
    node = stages[name]
    return node["do"] if "foreach" in node else node


def _dep_path(dep: Any) -> str:
    return next(iter(dep)) if isinstance(dep, dict) else str(dep)


def declared(stage: str, dvc_file: Path = DVC_FILE) -> tuple[list[str], list[str]]:
    """dvc.yaml's code deps and params of ``stage`` (as written, not interpolated)."""
    import yaml

    stages = (yaml.safe_load(dvc_file.read_text()) or {}).get("stages", {})
    if stage not in stages:
        raise LeveError(f"{dvc_file}: no stage '{stage}'")
    body = _stage_body(stages, stage)
    code = [p for p in map(_dep_path, body.get("deps") or []) if is_code_dep(p)]
    params = [p for p in body.get("params") or [] if isinstance(p, str)]
    return code, params


def differences(dvc_file: Path = DVC_FILE, root: Path = ROOT) -> list[str]:
    """One line per stage whose dvc.yaml deps or params differ from the derived ones."""
    out = []
    for name in STAGES:
        code, params = declared(name, dvc_file)
        for what, have, want in (("deps", code, stage_deps(name, root)), ("params", params, stage_params(name))):
            if have != want:
                missing = [x for x in want if x not in have]
                extra = [x for x in have if x not in want]
                out.append(f"{name} {what}: missing {missing or '-'}, not derived {extra or '-'}"
                           + ("" if missing or extra else " (order)"))
    return out


def write_dvc_yaml(dvc_file: Path = DVC_FILE, root: Path = ROOT) -> list[str]:
    """Rewrite each stage's code deps and params in ``dvc_file`` (round trip: comments, order and
    the data deps kept; code deps follow the data deps). Returns the stages that changed."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedSeq

    yml = YAML()
    yml.preserve_quotes = True
    yml.width = 4096
    yml.indent(mapping=2, sequence=4, offset=2)
    doc = yml.load(dvc_file.read_text())
    changed = []
    for name in STAGES:
        if name not in doc["stages"]:
            raise LeveError(f"{dvc_file}: no stage '{name}' (add it by hand first: cmd, outs)")
        body = _stage_body(doc["stages"], name)
        before = (list(body.get("deps") or []), list(body.get("params") or []))
        deps = [d for d in body.get("deps") or [] if not is_code_dep(_dep_path(d))] + stage_deps(name, root)
        _set_list(body, "deps", deps, after="cmd", seq=CommentedSeq)
        _set_list(body, "params", stage_params(name), after="deps", seq=CommentedSeq)
        if (list(body.get("deps") or []), list(body.get("params") or [])) != before:
            changed.append(name)
    if changed:
        import io

        buf = io.StringIO()
        yml.dump(doc, buf)
        from leve.atomic import write_text

        write_text(dvc_file, buf.getvalue())
    return changed


def _set_list(body: Any, key: str, values: list[Any], after: str, seq: type) -> None:
    """Set ``body[key]`` to ``values`` in place (a new key goes right after ``after``; an empty
    list removes the key)."""
    if not values:
        body.pop(key, None)
        return
    new = seq(values)
    old = body.get(key)
    if old is None:
        keys = list(body)
        body.insert(keys.index(after) + 1 if after in keys else len(keys), key, new)
        return
    comments = getattr(old, "ca", None)
    for i, item in enumerate(old):  # an item kept keeps its end-of-line comment
        if comments is not None and i in comments.items and item in values:
            new.ca.items[values.index(item)] = comments.items[i]
    body[key] = new
