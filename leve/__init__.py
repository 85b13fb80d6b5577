"""leve: knowledge distillation for lightweight monocular depth estimation."""

import os
from collections.abc import Callable, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("leve")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+source"

from leve.errors import LeveError

STARTED_BY = os.getppid()  # this process's parent at start-up, read before the slow imports (leve.processes)

__all__ = ["LeveError", "__version__", "moved_names"]


def moved_names(package: str, moved: Mapping[str, str | tuple[str, str]]) -> Callable[[str], Any]:
    """The module ``__getattr__`` of a package that no longer re-exports names: ``moved[name]`` is the
    module that defines ``name`` (or ``(module, new_name)``). The old spelling (``from leve.train import
    TrainConfig``) still works, with one DeprecationWarning naming the new one. Here, in the one module
    every package's closure holds already, so that no package __init__ imports a sibling (dvc.yaml's deps)."""

    def __getattr__(name: str) -> Any:
        target = moved.get(name)
        if target is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        import importlib
        import warnings

        module, attr = (target, name) if isinstance(target, str) else target
        warnings.warn(f"`from {package} import {name}` is deprecated: import {'it' if attr == name else attr} "
                      f"from {module}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(module), attr)

    return __getattr__
