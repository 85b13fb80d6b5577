"""Deprecated: moved to :mod:`leve.closure` (the small utilities, below training, which uses it)."""

import warnings

from leve.closure import ROOT, code_closure

__all__ = ["ROOT", "code_closure"]

warnings.warn("leve.pipeline.closure is deprecated: import leve.closure", DeprecationWarning, stacklevel=2)
