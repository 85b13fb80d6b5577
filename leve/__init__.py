"""leve: knowledge distillation for lightweight monocular depth estimation."""

import os
from importlib.metadata import PackageNotFoundError, version

# Read by torch's OpenMP runtime when torch loads (so it must be set before: leve's modules import torch
# lazily or after this): idle OpenMP threads sleep at once instead of spinning. On a CPU shared with
# other processes (DataLoader workers, dvc, other jobs) spinning threads starve the thread that each
# parallel region waits for: on this 2-core machine under load a training step at 120x160 took 13-22 s
# with the default policy and 2.1 s with PASSIVE (1.6-2.5 s on one thread). Set the variable to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

try:
    __version__ = version("leve")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+source"

from leve.errors import LeveError

STARTED_BY = os.getppid()  # this process's parent at start-up, read before the slow imports (leve.processes)

__all__ = ["LeveError", "__version__"]
