"""Profiles: named sets of params (``profiles/<name>.yaml``, dotted keys -> values).

``apply_profile`` writes them into params.yaml in place, changing only the values on their
lines (comments and layout kept); ``dvc_set_args`` renders the same values as ``dvc exp run -S``
arguments, so a profile can also run as an experiment without touching params.yaml.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from leve.errors import LeveError
from leve.params import PARAMS_FILE

PROFILES_DIR = Path("profiles")


def list_profiles(folder: Path = PROFILES_DIR) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml"))


def load_profile(name: str, folder: Path = PROFILES_DIR) -> dict[str, Any]:
    """The dotted-key mapping of ``profiles/<name>.yaml``."""
    path = folder / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(list_profiles(folder)) or "none"
        raise LeveError(f"{path}: no such profile (known: {known})")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise LeveError(f"{path}: expected a mapping of dotted params keys to values")
    return data


_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?P<rest>.*)$")


def flow(value: Any) -> str:
    """A value in YAML flow style on one line (``null``, ``[a, b]``, ``1.0e-4``)."""
    return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip().removesuffix("\n...").strip()


def _split_comment(rest: str) -> tuple[str, str]:
    """``' value   # note'`` -> (``' value   '``, ``'# note'``)."""
    match = re.search(r"\s#", rest)
    return (rest, "") if match is None else (rest[: match.start() + 1], rest[match.start() + 1 :])


def set_value(lines: list[str], dotted: str, value: Any, where: Path) -> bool:
    """Replace the scalar or flow value of ``dotted`` in YAML ``lines`` in place, keeping the
    line's comment and alignment; True when the text changed."""
    stack: list[tuple[int, str]] = []
    for n, line in enumerate(lines):
        match = _KEY_LINE.match(line)
        if match is None or line.lstrip().startswith("#"):
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        if ".".join(k for _, k in stack) != dotted:
            continue
        old, comment = _split_comment(match["rest"])
        if not old.strip() and not comment and n + 1 < len(lines) and lines[n + 1].startswith(" " * (indent + 1)):
            raise LeveError(f"{where}: '{dotted}' is a section, not a value")
        new = " " + flow(value)
        new = new.ljust(max(len(old), len(new) + 1)) if comment else new
        lines[n] = f"{match['indent']}{match['key']}:{new}{comment}"
        return lines[n] != line
    raise LeveError(f"{where}: no key '{dotted}' to set")


def apply_profile(name: str, params_file: Path = PARAMS_FILE, folder: Path = PROFILES_DIR) -> list[str]:
    """Write profile ``name`` into ``params_file`` line by line (comments kept); returns the
    keys whose value changed. The result is re-read and checked before it replaces the file."""
    values = load_profile(name, folder)
    lines = params_file.read_text().splitlines()
    changed = [key for key, value in values.items() if set_value(lines, key, value, params_file)]
    text = "\n".join(lines) + "\n"
    parsed = yaml.safe_load(text)
    for key, value in values.items():
        node = parsed
        for part in key.split("."):
            node = node[part]
        if node != value:
            raise LeveError(f"{params_file}: setting '{key}' did not give {value!r}; file left unchanged")
    tmp = params_file.with_name(params_file.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(params_file)
    return changed


def dvc_set_args(name: str, folder: Path = PROFILES_DIR) -> list[str]:
    """``-S key=value`` arguments for ``dvc exp run`` (values in YAML flow style)."""
    args = []
    for key, value in load_profile(name, folder).items():
        args += ["-S", f"{key}={flow(value)}"]
    return args
