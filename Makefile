# The two commands of the README. Each sets up a fresh clone first
# (virtual environment in .venv, torch pinned through constraints.txt).
VENV   ?= .venv
BIN    := $(abspath $(VENV))/bin
STAMP  := $(VENV)/.installed
export PATH := $(BIN):$(PATH)

.PHONY: demo test setup clean gpu-check

DEMO_DIR ?= leve-demo
GPU_CHECK_OUT ?= bench-gpu.json

demo: $(STAMP)  ## the whole product on the embedded default: pipeline, 2nd experiment, table, diff, figures
	leve demo $(DEMO_DIR)

test: $(STAMP)  ## lint, type-check and run the test suite (what CI runs)
	ruff check leve tests
	mypy
	python -m pytest -n 2 --dist loadfile

gpu-check: $(STAMP)  ## leve bench gpu on this machine's GPU (< 8 min on an H200, nothing downloaded)
	leve bench gpu --out $(GPU_CHECK_OUT)

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) .pytest_cache
