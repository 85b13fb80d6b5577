"""Stage parameters: typed dataclasses filled from a section of ``params.yaml``.

Each stage owns one section (``prepare.nyu``, ``teacher``, ``train``...). Every value has one home:
params.yaml as the project ships it, packaged with leve as ``leve/params.yaml`` (in a checkout, a link
to the repository's params.yaml). The Config dataclasses are the schema (fields, types, allowed values,
docs) and hold no values: :func:`params_section` fills each field's default from the packaged file.
A run reads the defaults, then the params file it is given (``params.yaml`` in the working folder, when
present), then command-line overrides; unknown keys are refused so typos never pass silently.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

from leve.errors import LeveError, shown

T = TypeVar("T")

PARAMS_FILE = Path("params.yaml")
# params.yaml as shipped: every parameter's default (package data; in a checkout a link to ../params.yaml)
PACKAGED_PARAMS = Path(__file__).with_name("params.yaml")


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
    kwargs = {k: _coerce(v, hints[k], f"{where}.{k}", fields[k].metadata.get("url", False)) for k, v in values.items()}
    return cls(**kwargs)


def _coerce(value: Any, hint: Any, where: str, url: bool = False) -> Any:
    """Light type check/coercion for YAML scalars (int->float, str->Path, lists->tuples). ``url``: the field
    (``param(url=True)``) also takes an fsspec URL, carried as a Path that :func:`leve.store.remote.location`
    reads back as the URL (the reader checks its scheme)."""
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
        return _coerce(value, non_none[0], where, url) if len(non_none) == 1 else value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            raise LeveError(f"{where}: expected float, got {shown(value)}") from None
    if hint is Path and url and isinstance(value, str | Path):
        return Path(value)
    if hint is Path and isinstance(value, str | Path) and re.match(r"[A-Za-z][A-Za-z0-9+.-]+:/", str(value)):
        # Path("s3://b/k") would be a local folder `s3:` (pathlib folds the `//`): a URL is never a local path
        raise LeveError(f"{where}: {shown(str(value))} is a URL; this parameter takes a local path (a store at a URL "
                        f"is written by `leve prepare --out URL`)")
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


# --------------------------------------------------------------------------- defaults: one home


_shipped_cache: dict[Path, tuple[tuple[int, int], dict[str, Any]]] = {}


def shipped_params(path: Path | None = None) -> dict[str, Any]:
    """The packaged params (every default), read once per change of the file. Missing or unreadable: one line."""
    path = PACKAGED_PARAMS if path is None else path
    try:
        stat = path.stat()
    except OSError:
        raise LeveError(f"{path}: leve's default params are missing (params.yaml as shipped; reinstall leve)") from None
    key = (stat.st_mtime_ns, stat.st_size)
    cached = _shipped_cache.get(path)
    if cached is None or cached[0] != key:
        cached = (key, load_params(path))
        _shipped_cache[path] = cached
    return cached[1]


def default(dotted: str) -> Any:
    """The shipped default of params key ``dotted`` (a copy), e.g. ``default("train.dataset")``."""
    node: Any = shipped_params()
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise LeveError(f"{PACKAGED_PARAMS}: no default for '{shown(dotted, quote=False)}' (every parameter has its "
                            "value in params.yaml as shipped)")
        node = node[part]
    return copy.deepcopy(node)


def resolved_params(path: Path = PARAMS_FILE) -> dict[str, Any]:
    """The params a run reads before ``--set``: the file ``path``, or params.yaml as shipped when there is
    none (leve outside the repository runs as the repository does). A key the file leaves out takes its
    default from the Config (:func:`param`); per-dataset maps (``teacher.datasets``) come from the file alone."""
    return load_params(path) if path.exists() else copy.deepcopy(shipped_params())


def resolved(dotted: str, params_file: Path = PARAMS_FILE) -> Any:
    """The value of key ``dotted`` for a run with ``params_file``: the file's when it sets it, else the
    default (what a CLI option backed by a params key shows or uses when not given)."""
    node: Any = load_params(params_file)
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default(dotted)
        node = node[part]
    return copy.deepcopy(node)


class _Default:
    """A field's default, read from the packaged params when a config is made (so importing leve
    reads no file); also the class attribute (``TrainConfig.dataset``), resolved when read."""

    def __init__(self) -> None:
        self.cls: type | None = None
        self.name = ""
        self.key = ""
        self.hint: Any = None

    def __call__(self) -> Any:
        if self.cls is None:
            raise TypeError("param() outside a @params_section class")
        if self.hint is None:
            self.hint = typing.get_type_hints(self.cls)[self.name]
        return _coerce(default(self.key), self.hint, self.key)

    def __get__(self, obj: Any, owner: type) -> Any:
        return self()


def param(url: bool = False) -> Any:
    """A Config field whose default is its params key's value in params.yaml (``lr: float = param()``).
    ``url``: a Path field that also takes an fsspec URL (a store read from a bucket: ``s3://bucket/prefix``)."""
    return dataclasses.field(default_factory=_Default(), metadata={"url": url})


def params_section(dotted: str, keys: dict[str, str] | None = None) -> Callable[[type[T]], type[T]]:
    """Bind the :func:`param` fields of a Config dataclass (put it above ``@dataclass``) to section
    ``dotted``: each field's default is ``<dotted>.<field>`` in params.yaml as shipped, or the key
    ``keys[field]`` names (a value shared by several sections, e.g. ``paths.teacher_cache``). A field
    with a literal default is refused at import: the value lives in params.yaml only."""
    def bind(cls: type[T]) -> type[T]:
        for f in dataclasses.fields(cls):  # type: ignore[arg-type]
            factory = f.default_factory
            if isinstance(factory, _Default):
                factory.cls, factory.name = cls, f.name
                factory.key = (keys or {}).get(f.name, f"{dotted}.{f.name}")
                setattr(cls, f.name, factory)  # the class attribute, read from params.yaml when used
            elif not (f.default is dataclasses.MISSING and dataclasses.is_dataclass(factory)):
                raise TypeError(f"{cls.__qualname__}.{f.name}: a params field's default is param() "
                                "(its value lives in params.yaml) or a nested params section")
        cls.__params_section__ = dotted  # type: ignore[attr-defined]
        return cls

    return bind


def section_keys(cls: type) -> dict[str, str]:
    """``{field: params key}`` of a :func:`params_section` class's value fields (nested sections not included)."""
    out = {}
    for f in dataclasses.fields(cls):
        if isinstance(f.default_factory, _Default):
            out[f.name] = f.default_factory.key
    return out


_warned: set[str] = set()


def shared_keys(cls: type, values: dict[str, Any], params: dict[str, Any], where: str) -> dict[str, Any]:
    """``values`` (section ``where`` as a params file gives it) with each field that
    :func:`params_section` binds to a key outside the section (``paths.teacher_cache``) taken from
    ``params`` (the resolved tree). The section's own old spelling still wins, with one line
    ``warning: <where>.<field> is deprecated; set <key>`` on stderr (once per process). Nested sections
    likewise."""
    out = dict(values)
    own = getattr(cls, "__params_section__", where)
    for name, key in section_keys(cls).items():
        if key.startswith(own + "."):
            continue
        if name in out:
            message = f"warning: {where}.{name} is deprecated; set {key} (one key for every stage that reads it)"
            if message not in _warned:
                _warned.add(message)
                print(message, file=sys.stderr)
            continue
        node: Any = params
        for part in key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            out[name] = node
    for f in dataclasses.fields(cls):
        sub = f.default_factory
        if isinstance(sub, type) and dataclasses.is_dataclass(sub):
            given = out.get(f.name)
            nested = shared_keys(sub, given if isinstance(given, dict) else {}, params, f"{where}.{f.name}")
            if nested or isinstance(given, dict):
                out[f.name] = nested
    return out
