"""Importing leve changes no process environment; the command line sets ``OMP_WAIT_POLICY=PASSIVE``
before torch loads (torch's OpenMP runtime reads it once, when it loads). Each case runs a fresh
Python process, started without the variable (this suite's conftest sets it for itself)."""

from __future__ import annotations

import os
import subprocess
import sys

# Records the variable as it is at the moment ``import torch`` starts (None: torch never loaded).
SPY = """
import importlib.abc, os, sys

class TorchSpy(importlib.abc.MetaPathFinder):
    seen = None

    def find_spec(self, name, path=None, target=None):
        if name == "torch" and TorchSpy.seen is None:
            TorchSpy.seen = os.environ.get("OMP_WAIT_POLICY", "unset")
        return None

sys.meta_path.insert(0, TorchSpy())
"""


def python(code: str, **env: str) -> list[str]:
    """stdout lines of ``python -c code`` in an environment without OMP_WAIT_POLICY (plus ``env``)."""
    child = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | env
    done = subprocess.run([sys.executable, "-c", SPY + code], env=child, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_importing_the_library_leaves_the_environment_alone():
    lines = python("before = dict(os.environ)\nimport leve, leve.models, leve.train.loop\n"
                   "print(os.environ.get('OMP_WAIT_POLICY'))\nprint(TorchSpy.seen)\n"
                   "print(sorted(set(before.items()) ^ set(os.environ.items())))")
    assert lines == ["None", "unset", "[]"]  # torch loaded through the library, nothing set


def test_the_command_line_sets_passive_before_torch_loads():
    lines = python("import leve.cli\nprint(TorchSpy.seen)\nimport leve.models.base\nprint(TorchSpy.seen)\n"
                   "print(os.environ['OMP_WAIT_POLICY'])")
    assert lines == ["None", "PASSIVE", "PASSIVE"]  # leve.cli loads no torch itself; when torch loads, it is set


def test_python_dash_m_leve_runs_with_passive():
    lines = python("import atexit, runpy\natexit.register(lambda: print(os.environ.get('OMP_WAIT_POLICY')))\n"
                   "sys.argv = ['leve', '--version']\nrunpy.run_module('leve', run_name='__main__', alter_sys=True)")
    assert lines[-1] == "PASSIVE" and lines[0].startswith("leve ")


def test_a_policy_the_user_set_is_kept():
    assert python("import leve.cli\nprint(os.environ['OMP_WAIT_POLICY'])", OMP_WAIT_POLICY="ACTIVE") == ["ACTIVE"]
