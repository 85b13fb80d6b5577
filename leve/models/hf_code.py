"""The self-contained Python files of a Hugging Face export (``leve export --format hf``), for
transformers' remote code (``trust_remote_code=True``), where leve is not installed.

Each file is one of the templates of :mod:`leve.models.hf_remote` with every ``from leve... import``
replaced by the source of what it names: the definitions it uses, and theirs in turn, taken from
leve's own modules (classes, functions, constants; nothing else of those modules), in an order
where each comes after what it needs at import time. Imports of other packages (torch, numpy,
transformers, the standard library) and relative imports (``from .configuration_leve import``:
transformers copies those files too) stay. The network in ``modeling_leve.py`` is so leve's own
code, not a copy kept by hand: what leve changes, the next export ships. Two different definitions
that would share a name in the one file are refused (:class:`~leve.errors.LeveError`).
"""

from __future__ import annotations

import ast
import importlib.util
import io
import textwrap
import tokenize
from dataclasses import dataclass, field
from pathlib import Path

from leve.errors import LeveError

PACKAGE = "leve"
TEMPLATES = "leve.models.hf_remote"
FILES = ("configuration_leve.py", "modeling_leve.py", "image_processing_leve.py")

Key = tuple[str, str]  # (module, name)


@dataclass
class _Module:
    """One parsed module: its top-level statements by the names they define, and its imports."""

    name: str
    source: str
    lines: list[str]
    defines: dict[str, ast.stmt] = field(default_factory=dict)
    leve_imports: dict[str, Key] = field(default_factory=dict)  # local name -> (module, name)
    other_imports: dict[str, tuple[str, str]] = field(default_factory=dict)  # local name -> (what, import statement)


def _module_file(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise LeveError(f"cannot find the source of module {name}")
    return Path(spec.origin)


def _targets(node: ast.stmt) -> list[str]:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [n.id for t in node.targets for n in ast.walk(t) if isinstance(n, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


def _import_line(node: ast.Import | ast.ImportFrom, alias: ast.alias) -> tuple[str, str]:
    """What an import binds (``torch.nn.functional`` for both spellings of it) and its statement."""
    named = f"{alias.name} as {alias.asname}" if alias.asname else alias.name
    if isinstance(node, ast.Import):
        return alias.name, f"import {named}"
    module = f"{'.' * node.level}{node.module or ''}"
    return f"{module}.{alias.name}", f"from {module} import {named}"


def _parse(name: str, path: Path | None = None) -> _Module:
    path = path or _module_file(name)
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, str(path))
    mod = _Module(name, source, source.splitlines())
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            absolute = node.module or ""
            if node.level:  # relative: leve's own (resolved) unless it is a template's sibling file
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                absolute = f"{base}.{node.module}" if node.module else base
            for alias in node.names:
                local = alias.asname or alias.name
                if absolute.split(".")[0] == PACKAGE and not absolute.startswith(TEMPLATES):
                    mod.leve_imports[local] = (absolute, alias.name)
                elif node.module != "__future__":
                    mod.other_imports[local] = _import_line(node, alias)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    raise LeveError(f"{path}: 'import {alias.name}': write 'from {alias.name} import ...' to be bundled")
                mod.other_imports[alias.asname or alias.name.split(".")[0]] = _import_line(node, alias)
        else:
            for target in _targets(node):
                mod.defines[target] = node
    return mod


def _used_names(node: ast.AST) -> set[str]:
    """Names a statement reads, its annotations' included (never evaluated under
    ``from __future__ import annotations``, but named, so that the file reads and type-checks whole)."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}


class _Bundle:
    """What one template needs: the imports kept and the definitions, in dependency order, each
    under one name of the output file (the second of two definitions sharing a name is renamed,
    ``Bottleneck`` of ``leve.models.encoders.resnet`` to ``Bottleneck_resnet``, and so is every use of it)."""

    def __init__(self) -> None:
        self.modules: dict[str, _Module] = {}
        self.imports: dict[str, tuple[str, str]] = {}  # local name -> (what, import statement)
        self.order: list[tuple[_Module, ast.stmt]] = []  # definitions, each after what it needs
        self.done: set[Key] = set()
        self.output: dict[Key, str] = {}  # a definition -> its name in the output file
        self.taken: set[str] = set()

    def module(self, name: str) -> _Module:
        if name not in self.modules:
            self.modules[name] = _parse(name)
        return self.modules[name]

    def resolve(self, mod: _Module, local: str) -> Key | None:
        """The definition ``local`` names in ``mod`` (through leve imports), None if not leve's."""
        if local in mod.defines:
            return (mod.name, local)
        if local in mod.leve_imports:
            source, name = mod.leve_imports[local]
            return self.resolve(self.module(source), name)
        return None

    def need_name(self, mod: _Module, local: str) -> None:
        """Bring ``local`` as ``mod`` sees it into the file."""
        key = self.resolve(mod, local)
        if key is not None:
            target = self.module(key[0])
            self.need_definition(target, target.defines[key[1]])
        elif local in mod.other_imports:
            self.add_import(local, *mod.other_imports[local])

    def add_import(self, local: str, what: str, line: str) -> None:
        if self.imports.setdefault(local, (what, line))[0] != what:
            raise LeveError(f"hf export: '{local}' is imported as both '{self.imports[local][1]}' and '{line}'")
        self.taken.add(local)

    def need_definition(self, mod: _Module, node: ast.stmt) -> None:
        names = _targets(node)
        if (mod.name, names[0]) in self.done:
            return
        self.done.add((mod.name, names[0]))
        for used in sorted(_used_names(node) - set(names)):
            self.need_name(mod, used)
        for name in names:
            out = name if name not in self.taken else f"{name}_{mod.name.rsplit('.', 1)[-1]}"
            if out in self.taken:
                raise LeveError(f"hf export: name '{name}' of {mod.name} is taken twice in the bundled file")
            self.output[(mod.name, name)] = out
            self.taken.add(out)
        self.order.append((mod, node))

    def text(self, mod: _Module, node: ast.stmt) -> str:
        """The statement's source lines, each name of ``mod`` written as the output file calls it."""
        decorators = getattr(node, "decorator_list", [])
        start = min([node.lineno, *(d.lineno for d in decorators)])
        lines = mod.lines[start - 1:node.end_lineno or node.lineno]
        edits: list[tuple[int, int, int, str]] = []
        previous = None
        tokens = tokenize.generate_tokens(io.StringIO("\n".join(lines) + "\n").readline)
        for tok in tokens:
            if tok.type == tokenize.NAME and not (previous is not None and previous.string == "."):
                key = self.resolve(mod, tok.string)
                if key is not None and self.output.get(key, tok.string) != tok.string:
                    edits.append((tok.start[0] - 1, tok.start[1], tok.end[1], self.output[key]))
            if tok.type not in (tokenize.NL, tokenize.COMMENT):
                previous = tok
        for row, begin, end, name in reversed(edits):  # right to left: positions stay valid
            lines[row] = lines[row][:begin] + name + lines[row][end:]
        return "\n".join(lines) + "\n"


def bundle(template: str, header: str = "") -> str:
    """The source of template file ``template`` (one of :data:`FILES`) with leve's imports bundled."""
    path = _module_file(TEMPLATES).parent / template
    mod = _parse(f"{TEMPLATES}.{template.removesuffix('.py')}", path)
    out = _Bundle()
    for local, (what, line) in mod.other_imports.items():  # everything the template imports, first
        out.add_import(local, what, line)
    tree = ast.parse(mod.source)
    for node in tree.body:  # the template's own statements, all of them, in its order
        if _targets(node):
            out.need_definition(mod, node)
    doc = ast.get_docstring(tree) or ""
    imports = sorted({line for _, line in out.imports.values()}, key=lambda s: (s.startswith("from ."), s.split()[1], s))
    sources = sorted({m.name for m, _ in out.order} - {mod.name})
    origin = textwrap.fill(f"Bundled from leve's modules {', '.join(sources)}.", 100) if sources else ""
    doc = "\n\n".join(part for part in (doc, header, origin) if part)
    parts = [f'"""{doc}\n"""', "", "from __future__ import annotations", "", *imports, "", "", ""]
    return "\n".join(parts) + "\n\n".join(out.text(m, n) for m, n in out.order)


def write_remote_code(folder: Path, header: str = "") -> list[Path]:
    """Write the three files of :data:`FILES` into ``folder``; return their paths."""
    written = []
    for name in FILES:
        path = folder / name
        path.write_text(bundle(name, header), encoding="utf-8")
        written.append(path)
    return written
