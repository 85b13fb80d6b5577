"""leve: knowledge distillation for lightweight monocular depth estimation."""

import os
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("leve")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+source"

from leve.errors import LeveError

STARTED_BY = os.getppid()  # this process's parent at start-up, read before the slow imports (leve.processes)

__all__ = ["LeveError", "__version__"]
