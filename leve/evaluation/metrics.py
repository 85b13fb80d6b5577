"""Deprecated: moved to :mod:`leve.metrics` (below training, whose validation uses it, and the reports)."""

import warnings

from leve.metrics import *  # noqa: F403

warnings.warn("leve.evaluation.metrics is deprecated: import leve.metrics", DeprecationWarning, stacklevel=2)
