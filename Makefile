# The two commands of the README (and `make docs`). Each sets up a fresh clone first
# (virtual environment in .venv, torch pinned through constraints.txt).
VENV   ?= .venv
BIN    := $(abspath $(VENV))/bin
STAMP  := $(VENV)/.installed
export PATH := $(BIN):$(PATH)

.PHONY: demo test test-slow docs setup clean gpu-check

DEMO_DIR ?= leve-demo
GPU_CHECK_OUT ?= bench-gpu.json

demo: $(STAMP)  ## the whole product on the embedded default: pipeline, 2nd experiment, table, diff, figures
	leve demo $(DEMO_DIR)

# two workers, a file at a time, longest files first (tests/conftest.py)
PYTEST := python -m pytest -n 2 --dist loadfile

test: $(STAMP)  ## build the docs strictly, lint, type-check and run the test suite but its slow tests (CI runs both)
	NO_MKDOCS_2_WARNING=1 mkdocs build --strict
	ruff check leve tests
	mypy
	vulture leve vulture_whitelist.py --min-confidence 60  # dead code: 60 reports unused functions, classes, variables
	lint-imports  # the layers of docs/ARCHITECTURE.md and no package cycles ([tool.importlinter] in pyproject.toml)
	$(PYTEST) -m "not slow"

test-slow: $(STAMP)  ## the tests marked slow: end-to-end pipelines, learning runs, killed processes (CI runs them after make test)
	$(PYTEST) -m slow

docs: $(STAMP)  ## the docs site in build/site (git-ignored); its tables of numbers: python docs/generate.py
	NO_MKDOCS_2_WARNING=1 mkdocs build --strict

gpu-check: $(STAMP)  ## leve bench gpu on this machine's GPU (< 8 min on an H200, nothing downloaded)
	leve bench gpu --out $(GPU_CHECK_OUT)

setup: $(STAMP)

# The install goes through uv (from PyPI), with pip as the fallback. Measured on a fresh clone here, cold
# caches: uv 16 s, pip 107 s, the same versions of every package. uv does not read pip's configuration, so
# pip's find-links (where a local torch build lies) are passed on to it. --compile-bytecode: pip compiles
# at install and uv does not; where PYTHONDONTWRITEBYTECODE is set (this machine, its CI) every leve and
# dvc process then compiled torch and transformers from source at start: a fresh-clone CI took 872 s
# against 649 s. With it the setup took 38.6 s here (uv's cache warm).
FIND_LINKS := $(shell python3 -m pip config get global.find-links 2>/dev/null)

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	( $(BIN)/pip install -q uv && $(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python \
	    $(addprefix --find-links ,$(FIND_LINKS)) -c constraints.txt -e ".[dev]" ) \
	  || $(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) .pytest_cache
