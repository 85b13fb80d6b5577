"""Stage parameters: typed dataclasses filled from a section of ``params.yaml``.

Each stage owns one section (``prepare.nyu``, ``teacher``, ``train``...). Values
come from the dataclass defaults, then ``params.yaml`` (when present), then
command-line overrides, and unknown keys are refused so typos never pass silently.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from leve.errors import LeveError, shown

T = TypeVar("T")

PARAMS_FILE = Path("params.yaml")


class _ParamsLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses aliases (``*name``, and so the merge key ``<<: *name``): one
    alias may stand for a whole subtree, and nested ones for exponentially many copies of it (the
    "billion laughs"), which leve would expand when it copies, compares or prints a value. A params
    file writes each value out; anchors alone (``&name``) are harmless and left alone."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._where: list[Any] = []  # the index (key node or item number) of each node being composed

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise AliasRefused(self._key([*self._where[1:], index]), str(event.anchor), event.start_mark.line + 1)
        self._where.append(index)
        try:
            return super().compose_node(parent, index)
        finally:
            self._where.pop()

    @staticmethod
    def _key(indices: list[Any]) -> str:
        parts: list[str] = []
        for index in indices:
            if isinstance(index, int):
                parts[-1:] = [f"{parts[-1] if parts else ''}[{index}]"]
            elif isinstance(index, yaml.ScalarNode):
                parts.append(shown(index.value, 60, quote=False))
            else:
                parts.append("<a key>")
        return ".".join(parts) or "<the top level>"


class AliasRefused(yaml.YAMLError):
    """A YAML alias in a params or profile file: where it is (the dotted key, the line)."""

    def __init__(self, key: str, anchor: str, line: int) -> None:
        super().__init__(f"{key}: YAML alias '*{shown(anchor, 40, quote=False)}' (line {line}) refused: "
                         "aliases and merge keys are not allowed in params files; write the value out")
        self.key, self.anchor, self.line = key, anchor, line


def load_yaml(text: str, where: Path | str) -> Any:
    """Parse params-like YAML (params.yaml, profiles) with :class:`_ParamsLoader`: an alias is refused in
    one line naming ``where`` and the key; other YAML errors are raised as they are (``yaml.YAMLError``)."""
    loader = _ParamsLoader(text)
    try:
        return loader.get_single_data()
    except AliasRefused as exc:
        raise LeveError(f"{where}: {exc}") from None
    finally:
        loader.dispose()


def load_params(path: Path = PARAMS_FILE) -> dict[str, Any]:
    """Read a params file; a missing file gives an empty mapping (code defaults apply). YAML aliases
    are refused (:class:`_ParamsLoader`)."""
    if not path.exists():
        return {}
    try:
        data = load_yaml(path.read_text(encoding="utf-8"), path) or {}
    except yaml.YAMLError as exc:
        raise LeveError(f"{path}: not valid YAML ({exc.__class__.__name__})") from exc
    except UnicodeDecodeError as exc:
        raise LeveError(f"{path}: not UTF-8 text (byte {exc.start})") from exc
    except (OSError, RecursionError) as exc:
        raise LeveError(f"{path}: cannot read params ({exc.__class__.__name__})") from exc
    if not isinstance(data, dict):
        raise LeveError(f"{path}: expected a mapping at the top level")
    return data


def section(params: dict[str, Any], dotted: str) -> dict[str, Any]:
    """Return ``params[a][b]`` for ``dotted = "a.b"``, or ``{}`` where it is absent."""
    node: Any = params
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return {}
        node = node[key]
    if node is None:
        return {}
    if not isinstance(node, dict):
        raise LeveError(f"params section '{shown(dotted, quote=False)}' must be a mapping, got {type(node).__name__}")
    return dict(node)


class Override(str):
    """A ``--set`` value as typed; read as YAML unless the parameter is a string or path."""


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """Parse ``key=value`` strings into ``{key: Override(value)}``."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise LeveError(f"--set expects key=value, got {shown(item)}")
        out[key.strip()] = Override(value)
    return out


def merge_options(sets: list[str], options: dict[str, Any]) -> dict[str, Any]:
    """The CLI's overrides: ``--set key=value`` items, then the explicit options that were given."""
    return {**parse_overrides(sets), **{k: v for k, v in options.items() if v is not None}}


def nest_overrides(values: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Merge ``overrides`` into a copy of ``values``; a dotted key ``a.b`` sets ``values[a][b]``."""
    out = copy.deepcopy(values)
    for key, value in overrides.items():
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            child = node.get(part)
            node[part] = child = dict(child) if isinstance(child, dict) else {}
            node = child
        node[leaf] = value
    return out


def build_config(cls: type[T], values: dict[str, Any], where: str) -> T:
    """Instantiate dataclass ``cls`` from ``values``, refusing unknown keys and bad types.

    A field typed as another dataclass takes a mapping (a nested params section)."""
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted((k for k in values if k not in fields), key=str)
    if unknown:
        names = ", ".join(shown(k, 60, quote=not (isinstance(k, str) and k.isprintable())) for k in unknown[:10])
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise LeveError(f"{where}: unknown parameter(s) {names}{more}; known: {', '.join(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}") for k, v in values.items()}
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """Light type check/coercion for YAML scalars (int->float, str->Path, lists->tuples)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        if isinstance(value, hint):
            return value
        if not isinstance(value, dict):
            raise LeveError(f"{where}: expected a mapping of {', '.join(f.name for f in dataclasses.fields(hint))}")
        return build_config(hint, value, where)
    if isinstance(value, Override):
        options = set(args) if origin in (typing.Union, types.UnionType) else {hint}
        text_like = {str, Path} & options
        if not text_like or value.strip() in ("null", "~", ""):
            try:
                value = yaml.safe_load(value)
            except yaml.YAMLError as exc:
                raise LeveError(f"{where}: cannot parse {shown(str(value))}") from exc
        else:
            value = str(value)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        return _coerce(value, non_none[0], where) if len(non_none) == 1 else value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            raise LeveError(f"{where}: expected float, got {shown(value)}") from None
    if hint is Path and isinstance(value, str):
        return Path(value)
    if origin in (tuple, list):
        return _coerce_sequence(value, origin, args, where)
    if hint in (int, float, str, bool, Path) and (not isinstance(value, hint) or (hint is not bool and isinstance(value, bool))):
        raise LeveError(f"{where}: expected {hint.__name__}, got {shown(value)}")
    return value


def _coerce_sequence(value: Any, origin: Any, args: tuple[Any, ...], where: str) -> Any:
    """A YAML list as ``tuple[X, ...]``, ``tuple[X, Y]`` or ``list[X]``, each item checked."""
    if not isinstance(value, list | tuple):
        raise LeveError(f"{where}: expected a list, got {shown(value)}")
    if origin is tuple and args and args[-1] is not Ellipsis:
        if len(value) != len(args):
            raise LeveError(f"{where}: expected {len(args)} values, got {len(value)}")
        items = [_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args))]
    else:
        items = [_coerce(v, args[0], f"{where}[{i}]") if args else v for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


def config_dict(cfg: Any) -> dict[str, Any]:
    """A JSON-friendly dict of a config dataclass (paths and tuples made plain)."""
    def plain(v: Any) -> Any:
        if isinstance(v, Path):
            return str(v)
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        return v

    return {k: plain(v) for k, v in dataclasses.asdict(cfg).items()}
