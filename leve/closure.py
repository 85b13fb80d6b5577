"""The static import closure of a module inside ``leve``: the files a stage's code depends on.

Used by dvc.yaml's derived code deps (:mod:`leve.pipeline.stages`) and by the training run
identity (:func:`leve.train.loop.code_digest`); one of the small utilities at the bottom of the
layers (docs/ARCHITECTURE.md), so that training imports nothing of the pipeline's and editing the
stage table does not change the training code's identity.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from leve.errors import LeveError

ROOT = Path(__file__).resolve().parents[1]  # the checkout: leve/ and dvc.yaml are in it


# Hand-written rather than stdlib `modulefinder`: modulefinder follows every third-party import
# (torch, transformers, zarr...) into thousands of files and takes seconds to minutes; we only
# need leve's own files, which a walk over each module's `ast` finds in milliseconds. Every
# import statement counts, wherever it is (inside functions too: the lazy imports of the
# stages run when the stage runs), except under `if TYPE_CHECKING:` (never executed), and so
# does every parent package's __init__.py (Python executes it before the module). Imports of
# names a string builds at run time (importlib.import_module) are not seen; leve has none.


def _module_file(module: str, root: Path) -> Path | None:
    """The file of ``module`` under ``root`` (a module or a package's __init__.py), if any."""
    base = root.joinpath(*module.split("."))
    for path in (base.with_suffix(".py"), base / "__init__.py"):
        if path.is_file():
            return path
    return None


def _with_parents(module: str) -> list[str]:
    """``a.b.c`` -> ``[a, a.b, a.b.c]``: importing a module runs its packages' __init__ first."""
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _executed(node: ast.AST) -> Any:
    """Every node below ``node`` except the bodies of ``if TYPE_CHECKING:`` (never run)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for other in child.orelse:
                yield other
                yield from _executed(other)
            continue
        yield child
        yield from _executed(child)


def _imports(module: str, path: Path) -> list[str]:
    """Every module named by an import statement of ``path`` (absolute names; for
    ``from X import n`` both ``X`` and ``X.n``: n may be a submodule)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: list[str] = []
    for node in _executed(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from . import x / from ..a import b
                parts = package.split(".")
                if node.level - 1 >= len(parts):
                    raise LeveError(f"{path}: relative import beyond the top-level package")
                base = ".".join(parts[: len(parts) - (node.level - 1)])
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            names.append(target)
            names.extend(f"{target}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def code_closure(entry: str, root: Path = ROOT) -> list[str]:
    """The files (posix paths relative to ``root``) of ``entry``'s static import closure within
    its top-level package: the entry module, every module of that package it imports directly or
    through others, and the __init__.py of each of their packages. Sorted."""
    top = entry.split(".")[0]
    if _module_file(entry, root) is None:
        raise LeveError(f"{entry}: no such module under {root}")
    seen: set[str] = set()
    files: set[Path] = set()
    todo = [entry]
    while todo:
        for module in _with_parents(todo.pop()):
            if module in seen:
                continue
            seen.add(module)
            path = _module_file(module, root)
            if path is None:  # a name imported from a module (a class, a function), not a module
                continue
            files.add(path)
            todo.extend(n for n in _imports(module, path) if n == top or n.startswith(top + "."))
    return sorted(p.relative_to(root).as_posix() for p in files)
