"""leve: knowledge distillation for lightweight monocular depth estimation."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("leve")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+source"

from leve.errors import LeveError

__all__ = ["LeveError", "__version__"]
