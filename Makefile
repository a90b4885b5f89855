# Two commands do all the set-up on a machine with only Python >= 3.11 and make:
#   make demo   builds .venv, renders the embedded demo survey and runs the main job on it
#   make test   builds .venv and runs the whole test suite: tests/ and the package's doctests
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
DEMO_DIR ?= demo-output

.PHONY: demo test lint bench clean gpu-check gpu-wheels

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test]"
	touch $(STAMP)

# `hipsml demo` renders the sky and builds the dataset with the demo recipe; the recipe in
# recipes/ is the same one (paths relative to recipes/), so extracting it finds that version
demo: $(STAMP)
	$(BIN)/hipsml demo $(DEMO_DIR)
	@if [ "$(DEMO_DIR)" = "demo-output" ]; then $(BIN)/hipsml extract recipes/demo.yaml; fi

# ruff (lint and format) and mypy, as CI runs them before the tests
lint: $(STAMP)
	$(BIN)/ruff check hipsml tests benchmarks conftest.py
	$(BIN)/ruff format --check hipsml tests benchmarks conftest.py
	$(BIN)/mypy

test: $(STAMP)
	$(BIN)/python -m pytest -q tests hipsml  # --doctest-modules comes from pyproject.toml

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_tiles.py
	$(BIN)/python benchmarks/bench_fetch.py
	$(BIN)/python benchmarks/bench_cutouts.py
	$(BIN)/python benchmarks/accuracy_cutouts.py
	$(BIN)/python benchmarks/bench_sky.py
	$(BIN)/python benchmarks/bench_dataset.py
	$(BIN)/python benchmarks/bench_loader.py
	$(BIN)/python benchmarks/bench_som.py
	$(BIN)/python benchmarks/bench_cnn.py --members 3
	$(BIN)/python benchmarks/bench_cnn_rotations.py

# on a GPU machine, from the repository root, with only Python: install into .venv-gpu (from .whl/ when
# there is no network), the gpu-marked tests, the SOM and CNN figures; one table, gpu-figures.json
gpu-check:
	$(PYTHON) benchmarks/gpu_check.py

# on a machine with the package registry: Python 3.12 x86-64 wheels of what the GPU machine lacks, into .whl/
gpu-wheels:
	$(PYTHON) benchmarks/gpu_check.py --download-wheels

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache
