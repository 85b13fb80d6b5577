"""Profiles: named sets of params (``profiles/<name>.yaml``, dotted keys -> values).

``apply_profile`` writes them into params.yaml with a ruamel.yaml round trip (the library
DVC itself edits params with), so comments, key order and layout are kept; new values are
spelled as PyYAML's flow style, as ``dvc_set_args`` renders them for ``dvc exp run -S``, so a
profile can also run as an experiment without touching params.yaml.

A profile file holds its deltas over the defaults (params.yaml as shipped). ``embedded`` is the base:
it lists every key a profile may set, at its shipped value, so that ``leve profile embedded`` is the
way back after another profile rewrote params.yaml; every other profile is read as the base with its
own keys over it (:func:`load_profile`), so switching between profiles resets what the previous one set.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import yaml
from ruamel.yaml import YAML, CommentedMap
from ruamel.yaml.error import YAMLError
from ruamel.yaml.util import load_yaml_guess_indent

from leve.atomic import write_text
from leve.errors import LeveError
from leve.params import PARAMS_FILE, load_yaml

PROFILES_DIR = Path("profiles")
BASE_PROFILE = "embedded"  # the shipped values of every key a profile sets (the way back)


def list_profiles(folder: Path = PROFILES_DIR) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml"))


def load_profile(name: str, folder: Path = PROFILES_DIR) -> dict[str, Any]:
    """The dotted-key mapping profile ``name`` sets: ``profiles/<name>.yaml`` laid over the base profile
    (:data:`BASE_PROFILE`, when the folder has it), so a profile file holds only its deltas."""
    own = read_profile(name, folder)
    if name == BASE_PROFILE or not (folder / f"{BASE_PROFILE}.yaml").is_file():
        return own
    return {**read_profile(BASE_PROFILE, folder), **own}


def read_profile(name: str, folder: Path = PROFILES_DIR) -> dict[str, Any]:
    """The dotted-key mapping written in ``profiles/<name>.yaml`` (its deltas)."""
    path = folder / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(list_profiles(folder)) or "none"
        raise LeveError(f"{path}: no such profile (known: {known})")
    try:
        data = load_yaml(path.read_text(encoding="utf-8"), path) or {}  # aliases refused, as in params.yaml
    except yaml.YAMLError as exc:
        raise LeveError(f"{path}: not valid YAML ({exc.__class__.__name__})") from exc
    except (UnicodeDecodeError, RecursionError) as exc:
        raise LeveError(f"{path}: cannot read the profile ({exc.__class__.__name__})") from exc
    if not isinstance(data, dict):
        raise LeveError(f"{path}: expected a mapping of dotted params keys to values")
    return data


def flow(value: Any) -> str:
    """A value in YAML flow style on one line (``null``, ``[a, b]``, ``1.0e-4``)."""
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...").strip()


def _round_trip(text: str) -> YAML:
    """A ruamel.yaml round-trip dumper for ``text``: comments, key order, flow/block style, quotes
    and number spellings are kept; indentation as guessed from ``text``; ``null`` written out."""
    _, indent, dash = load_yaml_guess_indent(text)
    rt = YAML()
    rt.preserve_quotes = True
    rt.width = 10_000  # never fold a long line
    rt.indent(mapping=indent or 2, sequence=indent or 2, offset=dash or 0)
    rt.representer.add_representer(type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    return rt


def _node(value: Any) -> Any:
    """``value`` as ruamel nodes spelled as :func:`flow` (PyYAML) writes it: flow style, ``1.0e+20``
    (ruamel would write ``1e+20``, a string to YAML 1.1) and ``'yes'`` quoted (a bool to YAML 1.1,
    which is how leve reads params.yaml)."""
    rt = YAML()
    rt.preserve_quotes = True
    return rt.load(flow(value))


def _same(a: Any, b: Any) -> bool:
    """Equal with the same types (``1`` is not ``1.0`` nor ``True``), as the file would read."""
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)


def set_value(doc: Any, dotted: str, value: Any, where: Path) -> bool:
    """Set ``dotted`` in a round-trip loaded document (its comment and layout kept); True when the
    value changed (an equal value is left as it is spelled)."""
    *parents, leaf = dotted.split(".")
    node = doc
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
    if not isinstance(node, dict) or leaf not in node:
        raise LeveError(f"{where}: no key '{dotted}' to set")
    old = node[leaf]
    if isinstance(old, CommentedMap) and old and not old.fa.flow_style():
        raise LeveError(f"{where}: '{dotted}' is a section, not a value")
    if _same(old, value):
        return False
    node[leaf] = _node(value)
    return True


def edit_yaml(text: str, values: dict[str, Any], where: Path) -> tuple[str, list[str]]:
    """``text`` with each dotted key of ``values`` set (comments and layout kept), and the keys that
    changed. The result is re-read as leve reads it and must equal the original with only those
    keys changed, else an error."""
    try:
        expected = load_yaml(text, where)  # as leve reads it: aliases refused before anything is edited
    except yaml.YAMLError as exc:
        raise LeveError(f"{where}: not valid YAML ({exc.__class__.__name__})") from exc
    rt = _round_trip(text)
    try:
        doc = rt.load(text)
    except YAMLError as exc:
        raise LeveError(f"{where}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    changed = [key for key, value in values.items() if set_value(doc, key, value, where)]
    out = io.StringIO()
    rt.dump(doc, out)
    for key, value in values.items():
        *parents, leaf = key.split(".")
        node = expected
        for part in parents:
            node = node[part]
        node[leaf] = value
    got = load_yaml(out.getvalue(), where)
    if got != expected:
        bad = [k for k in values if not _same(_get(got, k), values[k])] or ["a key outside the profile"]
        raise LeveError(f"{where}: setting {', '.join(bad)} did not give the expected values when re-read; "
                        "file left unchanged")
    return out.getvalue(), changed


def _get(tree: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        tree = tree.get(part) if isinstance(tree, dict) else None
    return tree


def apply_profile(name: str, params_file: Path = PARAMS_FILE, folder: Path = PROFILES_DIR) -> list[str]:
    """Write profile ``name`` into ``params_file`` (ruamel.yaml round trip: comments kept); returns
    the keys whose value changed. The result is re-read and checked before it atomically
    replaces the file."""
    text, changed = edit_yaml(params_file.read_text(), load_profile(name, folder), params_file)
    write_text(params_file, text)
    return changed


def dvc_set_args(name: str, folder: Path = PROFILES_DIR) -> list[str]:
    """``-S key=value`` arguments for ``dvc exp run`` (values in YAML flow style)."""
    args = []
    for key, value in load_profile(name, folder).items():
        args += ["-S", f"{key}={flow(value)}"]
    return args
