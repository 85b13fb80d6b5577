# The two commands of the README. Each sets up a fresh clone first
# (virtual environment in .venv, torch pinned through constraints.txt).
VENV   ?= .venv
BIN    := $(abspath $(VENV))/bin
STAMP  := $(VENV)/.installed
export PATH := $(BIN):$(PATH)

.PHONY: demo test setup clean

demo: $(STAMP)  ## run the main job on the embedded default (synthetic sample, tiny-random teacher)
	dvc repro teacher@synthetic
	leve info data/zarr/synthetic.zarr
	leve info data/teacher/synthetic.zarr
	leve preview data/zarr/synthetic.zarr --split train --count 6 --out reports/synthetic_preview.png

test: $(STAMP)  ## run the test suite (what CI runs)
	python -m pytest

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(BIN)/pip install -q -c constraints.txt -e ".[dev]"
	touch $(STAMP)

clean:
	rm -rf $(VENV) .pytest_cache
